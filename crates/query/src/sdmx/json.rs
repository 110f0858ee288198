//! SDMX-JSON 2.0: data messages (the structure of the answer with the codes it uses, then one
//! dataset of series keyed by `i:j:…` indices into those codes), structure messages and error
//! messages. pysdmx needs `meta.schema`, `meta.sender`, `meta.prepared` and a `name` beside each
//! `names`.

use std::collections::{BTreeSet, HashMap};

use serde_json::{Map, Value, json};

use super::Structures;
use super::dataflow::{
    Attr, CONCEPT_SCHEME, Codelist, DATAFLOW, DSD, Dataflow, Dim, OBS_VALUE, TIME_PERIOD, VERSION,
};
use super::error::SdmxError;
use super::message::{DataMessage, Header, coordinate, dimension_id};
use super::plan::Value as Number;

const DATA_SCHEMA: &str = "https://raw.githubusercontent.com/sdmx-twg/sdmx-json/v2.0.0/data-message/tools/schemas/2.0.0/sdmx-json-data-schema.json";
const STRUCTURE_SCHEMA: &str = "https://raw.githubusercontent.com/sdmx-twg/sdmx-json/v2.0.0/structure-message/tools/schemas/2.0.0/sdmx-json-structure-schema.json";

fn urn(class: &str, agency: &str, id: &str) -> String {
    format!("urn:sdmx:org.sdmx.infomodel.{class}={agency}:{id}({VERSION})")
}

fn meta(schema: &str, header: &Header, agency: &str) -> Value {
    json!({
        "schema": schema,
        "id": header.id,
        "test": false,
        "prepared": header.prepared,
        "contentLanguages": ["en"],
        "sender": {"id": agency},
    })
}

fn named(id: &str, name: &str) -> Map<String, Value> {
    let mut map = Map::new();
    map.insert("id".into(), json!(id));
    map.insert("name".into(), json!(name));
    map.insert("names".into(), json!({"en": name}));
    map
}

fn number(value: Number) -> Value {
    match value {
        Number::Count(c) => json!(c),
        Number::Rate(r) => serde_json::Number::from_f64(r).map_or(Value::Null, Value::Number),
    }
}

/// The codes of a dimension the answer uses, in codelist order (periods sorted).
fn used_values(message: &DataMessage, position: usize) -> Vec<String> {
    let used: BTreeSet<&str> = message.observations().map(|o| coordinate(o, position)).collect();
    match Dim::ALL.get(position) {
        Some(dim) => message
            .flow
            .codelist(*dim)
            .codes
            .iter()
            .filter(|c| used.contains(c.id.as_str()))
            .map(|c| c.id.clone())
            .collect(),
        None => used.into_iter().map(str::to_owned).collect(),
    }
}

fn dimension(message: &DataMessage, position: usize, values: &[String]) -> Value {
    let id = dimension_id(position);
    let (name, codes): (&str, Vec<Value>) = match Dim::ALL.get(position) {
        Some(dim) => {
            let list = message.flow.codelist(*dim);
            let codes = values
                .iter()
                .map(|v| {
                    let code = list.get(v).map_or(v.as_str(), |c| c.name.as_str());
                    Value::Object(named(v, code))
                })
                .collect();
            (dim.name(), codes)
        }
        None => ("Time period", values.iter().map(|v| json!({"value": v})).collect()),
    };
    let mut map = named(id, name);
    map.insert("keyPosition".into(), json!(position));
    map.insert("roles".into(), json!([id]));
    map.insert("values".into(), Value::Array(codes));
    Value::Object(map)
}

fn attribute(flow: &Dataflow, attr: Attr) -> Value {
    let list = flow.attribute_codelist(attr);
    let mut map = named(attr.id(), attr.name());
    map.insert("roles".into(), json!([]));
    map.insert("relationship".into(), json!({"observation": {}}));
    map.insert(
        "values".into(),
        Value::Array(list.codes.iter().map(|c| Value::Object(named(&c.id, &c.name))).collect()),
    );
    Value::Object(map)
}

pub fn data(message: &DataMessage) -> String {
    let flow = message.flow;
    let agency = flow.agency.as_str();
    let series_positions = message.series_positions();
    let obs_positions = message.observation_positions();
    let values: Vec<Vec<String>> = (0..=Dim::ALL.len()).map(|p| used_values(message, p)).collect();
    let index: Vec<HashMap<&str, usize>> = values
        .iter()
        .map(|v| v.iter().enumerate().map(|(i, c)| (c.as_str(), i)).collect())
        .collect();
    let flow_urn = urn("datastructure.Dataflow", agency, DATAFLOW);
    let link = json!([{"rel": "dataflow", "type": "dataflow", "urn": flow_urn}]);
    let attribute_codes: Vec<(Attr, HashMap<&str, usize>)> = message
        .attributes
        .iter()
        .map(|a| {
            let list = flow.attribute_codelist(*a);
            (*a, list.codes.iter().enumerate().map(|(i, c)| (c.id.as_str(), i)).collect())
        })
        .collect();
    let observation = |o: &super::plan::Observation, values: bool| -> Value {
        let mut cells = Vec::new();
        if !values {
            return Value::Array(cells);
        }
        if message.measures {
            cells.push(number(o.value));
        }
        for (attr, codes) in &attribute_codes {
            let code = match attr {
                Attr::ObsStatus => o.status,
                Attr::Disclosure => o.disclosure,
            };
            cells.push(codes.get(code).map_or(Value::Null, |i| json!(i)));
        }
        Value::Array(cells)
    };
    let key_of = |o: &super::plan::Observation, positions: &[usize]| -> String {
        positions
            .iter()
            .map(|p| index[*p][coordinate(o, *p)].to_string())
            .collect::<Vec<_>>()
            .join(":")
    };
    let mut datasets = Vec::new();
    for set in &message.datasets {
        let values = set.action.has_values();
        let mut dataset = Map::new();
        dataset.insert("structure".into(), json!(0));
        dataset.insert("action".into(), json!(set.action.name()));
        dataset.insert("links".into(), link.clone());
        if let Some(from) = &set.valid_from {
            dataset.insert("validFrom".into(), json!(from));
        }
        if let Some(to) = &set.valid_to {
            dataset.insert("validTo".into(), json!(to));
        }
        if series_positions.is_empty() {
            let observations: Map<String, Value> = set
                .observations
                .iter()
                .map(|o| (key_of(o, &obs_positions), observation(o, values)))
                .collect();
            dataset.insert("observations".into(), Value::Object(observations));
        } else {
            let mut series = Map::new();
            for (_, observations) in message.series(set) {
                let key = key_of(observations[0], &series_positions);
                let obs: Map<String, Value> = observations
                    .iter()
                    .map(|o| (key_of(o, &obs_positions), observation(o, values)))
                    .collect();
                series.insert(key, json!({"attributes": [], "observations": obs}));
            }
            dataset.insert("series".into(), Value::Object(series));
        }
        datasets.push(Value::Object(dataset));
    }
    let mut names = named(DATAFLOW, "Recorded cyber incidents");
    names.remove("id");
    let mut structure = Map::new();
    structure.insert("structure".into(), json!(urn("datastructure.DataStructure", agency, DSD)));
    structure.insert("links".into(), link);
    structure.extend(names);
    structure.insert(
        "dimensions".into(),
        json!({
            "dataSet": [],
            "series": series_positions.iter().map(|p| dimension(message, *p, &values[*p])).collect::<Vec<_>>(),
            "observation": obs_positions.iter().map(|p| dimension(message, *p, &values[*p])).collect::<Vec<_>>(),
        }),
    );
    let measures: Vec<Value> = if message.measures {
        let mut m = named(OBS_VALUE, "Observation value");
        m.insert("roles".into(), json!(["PRIMARY_MEASURE"]));
        vec![Value::Object(m)]
    } else {
        Vec::new()
    };
    structure.insert("measures".into(), json!({"observation": measures}));
    structure.insert(
        "attributes".into(),
        json!({
            "dataSet": [],
            "series": [],
            "observation": message.attributes.iter().map(|a| attribute(flow, *a)).collect::<Vec<_>>(),
        }),
    );
    structure.insert("annotations".into(), json!([]));
    let body = json!({
        "meta": meta(DATA_SCHEMA, &message.header, agency),
        "data": {"structures": [structure], "dataSets": datasets},
    });
    serde_json::to_string(&body).expect("JSON values serialise")
}

fn maintainable(class: &str, agency: &str, id: &str, name: &str) -> Map<String, Value> {
    let mut map = Map::new();
    map.insert("id".into(), json!(id));
    map.insert("version".into(), json!(VERSION));
    map.insert("agencyID".into(), json!(agency));
    map.insert("urn".into(), json!(urn(class, agency, id)));
    map.insert("isExternalReference".into(), json!(false));
    map.insert("name".into(), json!(name));
    map.insert("names".into(), json!({"en": name}));
    map
}

fn codelist(agency: &str, list: &Codelist) -> Value {
    let mut map = maintainable("codelist.Codelist", agency, &list.id, &list.name);
    map.insert("isPartial".into(), json!(false));
    let code_urn = urn("codelist.Code", agency, &list.id);
    let codes: Vec<Value> = list
        .codes
        .iter()
        .map(|c| {
            let mut code = named(&c.id, &c.name);
            code.insert("urn".into(), json!(format!("{code_urn}.{}", c.id)));
            if let Some(parent) = &c.parent {
                code.insert("parent".into(), json!(parent));
            }
            Value::Object(code)
        })
        .collect();
    map.insert("codes".into(), Value::Array(codes));
    Value::Object(map)
}

fn component(agency: &str, class: &str, id: &str) -> Map<String, Value> {
    let mut map = Map::new();
    map.insert("id".into(), json!(id));
    map.insert(
        "urn".into(),
        json!(format!("{}.{id}", urn(&format!("datastructure.{class}"), agency, DSD))),
    );
    map.insert(
        "conceptIdentity".into(),
        json!(format!("{}.{id}", urn("conceptscheme.Concept", agency, CONCEPT_SCHEME))),
    );
    map
}

fn datastructure(flow: &Dataflow) -> Value {
    let agency = flow.agency.as_str();
    let enumeration = |list: &str| json!({"enumeration": urn("codelist.Codelist", agency, list)});
    let dimensions: Vec<Value> = Dim::ALL
        .iter()
        .enumerate()
        .map(|(i, dim)| {
            let mut map = component(agency, "Dimension", dim.id());
            map.insert("position".into(), json!(i));
            map.insert("localRepresentation".into(), enumeration(&flow.codelist(*dim).id));
            Value::Object(map)
        })
        .collect();
    let mut time = component(agency, "TimeDimension", TIME_PERIOD);
    time.insert("position".into(), json!(Dim::ALL.len()));
    time.insert(
        "localRepresentation".into(),
        json!({"format": {"dataType": "ObservationalTimePeriod"}}),
    );
    let attributes: Vec<Value> = Attr::ALL
        .iter()
        .map(|attr| {
            let mut map = component(agency, "DataAttribute", attr.id());
            map.insert("usage".into(), json!("optional"));
            map.insert("localRepresentation".into(), enumeration(&attr.codelist()));
            map.insert("attributeRelationship".into(), json!({"observation": {}}));
            Value::Object(map)
        })
        .collect();
    let mut measure = component(agency, "Measure", OBS_VALUE);
    measure.insert("usage".into(), json!("mandatory"));
    measure.insert("localRepresentation".into(), json!({"format": {"dataType": "Double"}}));
    let mut map =
        maintainable("datastructure.DataStructure", agency, DSD, "Recorded cyber incidents");
    map.insert(
        "dataStructureComponents".into(),
        json!({
            "attributeList": {"id": "AttributeDescriptor", "attributes": attributes},
            "dimensionList": {"id": "DimensionDescriptor", "dimensions": dimensions, "timeDimension": time},
            "measureList": {"id": "MeasureDescriptor", "measures": [measure]},
        }),
    );
    Value::Object(map)
}

pub fn structure(message: &Structures) -> String {
    let flow = message.flow;
    let agency = flow.agency.as_str();
    let mut data = Map::new();
    if message.datastructure {
        data.insert("dataStructures".into(), json!([datastructure(flow)]));
    }
    if message.dataflow {
        let mut map =
            maintainable("datastructure.Dataflow", agency, DATAFLOW, "Recorded cyber incidents");
        map.insert("structure".into(), json!(urn("datastructure.DataStructure", agency, DSD)));
        data.insert("dataflows".into(), json!([map]));
    }
    if !message.codelists.is_empty() {
        let lists: Vec<Value> = flow
            .dimensions
            .iter()
            .chain(&flow.attributes)
            .filter(|l| message.codelists.contains(&l.id))
            .map(|l| codelist(agency, l))
            .collect();
        data.insert("codelists".into(), Value::Array(lists));
    }
    if message.conceptscheme {
        let mut map = maintainable(
            "conceptscheme.ConceptScheme",
            agency,
            CONCEPT_SCHEME,
            "Concepts of recorded cyber incidents",
        );
        map.insert("isPartial".into(), json!(false));
        let concept_urn = urn("conceptscheme.Concept", agency, CONCEPT_SCHEME);
        let concepts: Vec<Value> = Dataflow::concepts()
            .iter()
            .map(|c| {
                let mut concept = named(c.id, c.name);
                concept.insert("urn".into(), json!(format!("{concept_urn}.{}", c.id)));
                Value::Object(concept)
            })
            .collect();
        map.insert("concepts".into(), Value::Array(concepts));
        data.insert("conceptSchemes".into(), json!([map]));
    }
    let body = json!({"meta": meta(STRUCTURE_SCHEMA, &message.header, agency), "data": data});
    serde_json::to_string(&body).expect("JSON values serialise")
}

pub fn error(error: &SdmxError) -> String {
    let body = json!({
        "errors": [{
            "code": error.code(),
            "title": error.message(),
            "titles": {"en": error.message()},
        }],
    });
    serde_json::to_string(&body).expect("JSON values serialise")
}
