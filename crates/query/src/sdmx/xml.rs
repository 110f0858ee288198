//! SDMX-ML 3.0: structure messages (codelists, concept scheme, dataflow, DSD in the order of the
//! schema's `Structures` sequence), structure-specific data messages and error messages. Written
//! as text with every value escaped; sdmx1 reads them with the DSD the structure message gives.

use std::fmt::Write;

use super::Structures;
use super::dataflow::{
    Attr, CONCEPT_SCHEME, Codelist, DATAFLOW, DSD, Dataflow, Dim, OBS_VALUE, TIME_PERIOD, VERSION,
};
use super::error::SdmxError;
use super::message::{DataMessage, coordinate, dimension_id};
use super::query::AtObservation;

const MESSAGE: &str = "http://www.sdmx.org/resources/sdmxml/schemas/v3_0/message";
const STRUCTURE: &str = "http://www.sdmx.org/resources/sdmxml/schemas/v3_0/structure";
const COMMON: &str = "http://www.sdmx.org/resources/sdmxml/schemas/v3_0/common";
const SPECIFIC: &str = "http://www.sdmx.org/resources/sdmxml/schemas/v3_0/data/structurespecific";

/// Text and attribute values with the five XML entities escaped.
pub fn escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&apos;"),
            c => out.push(c),
        }
    }
    out
}

fn urn(class: &str, agency: &str, id: &str) -> String {
    format!("urn:sdmx:org.sdmx.infomodel.{class}={agency}:{id}({VERSION})")
}

fn header(out: &mut String, prefix: &str, message: &super::message::Header, agency: &str) {
    let _ = write!(
        out,
        "<{prefix}:Header><{prefix}:ID>{}</{prefix}:ID><{prefix}:Test>false</{prefix}:Test>\
         <{prefix}:Prepared>{}</{prefix}:Prepared><{prefix}:Sender id=\"{}\"/>",
        escape(&message.id),
        escape(&message.prepared),
        escape(agency)
    );
}

fn name(out: &mut String, text: &str) {
    let _ = write!(out, "<com:Name xml:lang=\"en\">{}</com:Name>", escape(text));
}

fn maintainable(
    out: &mut String,
    element: &str,
    class: &str,
    agency: &str,
    id: &str,
    partial: bool,
) {
    let _ = write!(
        out,
        "<str:{element} urn=\"{}\" isExternalReference=\"false\" agencyID=\"{}\" id=\"{}\" version=\"{VERSION}\"{}>",
        escape(&urn(class, agency, id)),
        escape(agency),
        escape(id),
        if partial { " isPartial=\"false\"" } else { "" }
    );
}

fn codelist(out: &mut String, agency: &str, list: &Codelist) {
    maintainable(out, "Codelist", "codelist.Codelist", agency, &list.id, true);
    name(out, &list.name);
    for code in &list.codes {
        let _ = write!(
            out,
            "<str:Code urn=\"{}.{}\" id=\"{}\">",
            escape(&urn("codelist.Code", agency, &list.id)),
            escape(&code.id),
            escape(&code.id)
        );
        name(out, &code.name);
        if let Some(parent) = &code.parent {
            let _ = write!(out, "<str:Parent>{}</str:Parent>", escape(parent));
        }
        out.push_str("</str:Code>");
    }
    out.push_str("</str:Codelist>");
}

fn component(out: &mut String, agency: &str, element: &str, class: &str, id: &str, extra: &str) {
    let _ = write!(
        out,
        "<str:{element} id=\"{id}\"{extra} urn=\"{}.{id}\"><str:ConceptIdentity>{}.{id}</str:ConceptIdentity>",
        escape(&urn(&format!("datastructure.{class}"), agency, DSD)),
        escape(&urn("conceptscheme.Concept", agency, CONCEPT_SCHEME)),
    );
}

fn enumeration(out: &mut String, agency: &str, codelist: &str) {
    let _ = write!(
        out,
        "<str:LocalRepresentation><str:Enumeration>{}</str:Enumeration></str:LocalRepresentation>",
        escape(&urn("codelist.Codelist", agency, codelist))
    );
}

fn datastructure(out: &mut String, flow: &Dataflow) {
    let agency = flow.agency.as_str();
    maintainable(out, "DataStructure", "datastructure.DataStructure", agency, DSD, false);
    name(out, "Recorded cyber incidents");
    out.push_str("<str:DataStructureComponents>");
    let _ = write!(
        out,
        "<str:DimensionList id=\"DimensionDescriptor\" urn=\"{}.DimensionDescriptor\">",
        escape(&urn("datastructure.DimensionDescriptor", agency, DSD))
    );
    for (i, dim) in Dim::ALL.iter().enumerate() {
        component(
            out,
            agency,
            "Dimension",
            "Dimension",
            dim.id(),
            &format!(" position=\"{}\"", i + 1),
        );
        enumeration(out, agency, &flow.codelist(*dim).id);
        out.push_str("</str:Dimension>");
    }
    component(out, agency, "TimeDimension", "TimeDimension", TIME_PERIOD, "");
    out.push_str(
        "<str:LocalRepresentation><str:TextFormat textType=\"ObservationalTimePeriod\"/></str:LocalRepresentation>\
         </str:TimeDimension></str:DimensionList>",
    );
    let _ = write!(
        out,
        "<str:AttributeList id=\"AttributeDescriptor\" urn=\"{}.AttributeDescriptor\">",
        escape(&urn("datastructure.AttributeDescriptor", agency, DSD))
    );
    for attr in Attr::ALL {
        component(out, agency, "Attribute", "DataAttribute", attr.id(), " usage=\"optional\"");
        enumeration(out, agency, &attr.codelist());
        out.push_str("<str:AttributeRelationship><str:Observation/></str:AttributeRelationship></str:Attribute>");
    }
    out.push_str("</str:AttributeList>");
    let _ = write!(
        out,
        "<str:MeasureList id=\"MeasureDescriptor\" urn=\"{}.MeasureDescriptor\">",
        escape(&urn("datastructure.MeasureDescriptor", agency, DSD))
    );
    component(out, agency, "Measure", "Measure", OBS_VALUE, " usage=\"mandatory\"");
    out.push_str(
        "<str:LocalRepresentation><str:TextFormat textType=\"Double\"/></str:LocalRepresentation></str:Measure>\
         </str:MeasureList></str:DataStructureComponents></str:DataStructure>",
    );
}

pub fn structure(message: &Structures) -> String {
    let flow = message.flow;
    let agency = flow.agency.as_str();
    let mut out = format!(
        "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<mes:Structure xmlns:mes=\"{MESSAGE}\" xmlns:str=\"{STRUCTURE}\" \
         xmlns:com=\"{COMMON}\">"
    );
    header(&mut out, "mes", &message.header, agency);
    out.push_str("</mes:Header><mes:Structures>");
    if !message.codelists.is_empty() {
        out.push_str("<str:Codelists>");
        for list in flow.dimensions.iter().chain(&flow.attributes) {
            if message.codelists.contains(&list.id) {
                codelist(&mut out, agency, list);
            }
        }
        out.push_str("</str:Codelists>");
    }
    if message.conceptscheme {
        out.push_str("<str:ConceptSchemes>");
        maintainable(
            &mut out,
            "ConceptScheme",
            "conceptscheme.ConceptScheme",
            agency,
            CONCEPT_SCHEME,
            true,
        );
        name(&mut out, "Concepts of recorded cyber incidents");
        for concept in Dataflow::concepts() {
            let _ = write!(
                out,
                "<str:Concept urn=\"{}.{}\" id=\"{}\">",
                escape(&urn("conceptscheme.Concept", agency, CONCEPT_SCHEME)),
                concept.id,
                concept.id
            );
            name(&mut out, concept.name);
            out.push_str("</str:Concept>");
        }
        out.push_str("</str:ConceptScheme></str:ConceptSchemes>");
    }
    if message.dataflow {
        out.push_str("<str:Dataflows>");
        maintainable(&mut out, "Dataflow", "datastructure.Dataflow", agency, DATAFLOW, false);
        name(&mut out, "Recorded cyber incidents");
        let _ = write!(
            out,
            "<str:Structure>{}</str:Structure></str:Dataflow></str:Dataflows>",
            escape(&urn("datastructure.DataStructure", agency, DSD))
        );
    }
    if message.datastructure {
        out.push_str("<str:DataStructures>");
        datastructure(&mut out, flow);
        out.push_str("</str:DataStructures>");
    }
    out.push_str("</mes:Structures></mes:Structure>\n");
    out
}

/// A structure-specific data message: one dataset, a `Series` element per series key (or bare
/// `Obs` elements with every dimension for `AllDimensions`).
pub fn data(message: &DataMessage) -> String {
    let flow = message.flow;
    let agency = flow.agency.as_str();
    let flow_urn = urn("datastructure.Dataflow", agency, DATAFLOW);
    let at = match message.at_observation {
        AtObservation::AllDimensions => "AllDimensions",
        AtObservation::TimePeriod => TIME_PERIOD,
        AtObservation::Dim(dim) => dim.id(),
    };
    let namespace = format!("{flow_urn}:ObsLevelDim:{at}");
    let structure_id = format!("{agency}_{DATAFLOW}_1_0");
    let mut out = format!(
        "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<message:StructureSpecificData xmlns:message=\"{MESSAGE}\" \
         xmlns:ss=\"{SPECIFIC}\" xmlns:ns1=\"{}\" xmlns:common=\"{COMMON}\" \
         xmlns:xsi=\"http://www.w3.org/2001/XMLSchema-instance\">",
        escape(&namespace)
    );
    header(&mut out, "message", &message.header, agency);
    let _ = write!(
        out,
        "<message:Structure structureID=\"{}\" namespace=\"{}\" dimensionAtObservation=\"{at}\">\
         <common:StructureUsage>{}</common:StructureUsage></message:Structure></message:Header>",
        escape(&structure_id),
        escape(&namespace),
        escape(&flow_urn)
    );
    let obs_positions = message.observation_positions();
    let positions = message.series_positions();
    for dataset in &message.datasets {
        let _ = write!(
            out,
            "<message:DataSet action=\"{}\" ss:structureRef=\"{}\" xsi:type=\"ns1:DataSetType\" ss:dataScope=\"DataStructure\"",
            dataset.action.name(),
            escape(&structure_id)
        );
        if let Some(from) = &dataset.valid_from {
            let _ = write!(out, " validFromDate=\"{}\"", escape(from));
        }
        if let Some(to) = &dataset.valid_to {
            let _ = write!(out, " validToDate=\"{}\"", escape(to));
        }
        out.push('>');
        let values = dataset.action.has_values();
        let obs = |out: &mut String, o: &super::plan::Observation| {
            out.push_str("<Obs");
            for p in &obs_positions {
                let _ = write!(out, " {}=\"{}\"", dimension_id(*p), escape(coordinate(o, *p)));
            }
            if message.measures && values {
                let _ = write!(out, " {OBS_VALUE}=\"{}\"", o.value);
            }
            for attr in message.attributes.iter().filter(|_| values) {
                let code = match attr {
                    Attr::ObsStatus => o.status,
                    Attr::Disclosure => o.disclosure,
                };
                let _ = write!(out, " {}=\"{code}\"", attr.id());
            }
            out.push_str("/>");
        };
        if message.at_observation == AtObservation::AllDimensions {
            for o in &dataset.observations {
                obs(&mut out, o);
            }
        } else {
            for (key, observations) in message.series(dataset) {
                out.push_str("<Series");
                for (p, code) in positions.iter().zip(key) {
                    let _ = write!(out, " {}=\"{}\"", dimension_id(*p), escape(code));
                }
                out.push('>');
                for o in observations {
                    obs(&mut out, o);
                }
                out.push_str("</Series>");
            }
        }
        out.push_str("</message:DataSet>");
    }
    out.push_str("</message:StructureSpecificData>\n");
    out
}

pub fn error(error: &SdmxError) -> String {
    format!(
        "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<mes:Error xmlns:mes=\"{MESSAGE}\" xmlns:com=\"{COMMON}\">\
         <mes:ErrorMessage code=\"{}\"><com:Text xml:lang=\"en\">{}</com:Text></mes:ErrorMessage></mes:Error>\n",
        error.code(),
        escape(error.message())
    )
}
