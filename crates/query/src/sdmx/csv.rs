//! SDMX-CSV 2.0 data: `STRUCTURE,STRUCTURE_ID[,STRUCTURE_NAME],ACTION`, then the dimensions, the
//! measure and the attributes in DSD order; `labels=both` writes `ID: Name`, `labels=name` a name
//! column after each coded column (and the dataflow's name). RFC 4180 quoting.

use super::dataflow::{Attr, Dataflow, Dim, OBS_VALUE, TIME_PERIOD};
use super::format::Labels;
use super::message::DataMessage;

fn field(text: &str) -> String {
    if text.contains([',', '"', '\n', '\r']) {
        format!("\"{}\"", text.replace('"', "\"\""))
    } else {
        text.to_owned()
    }
}

pub fn data(message: &DataMessage) -> String {
    let flow: &Dataflow = message.flow;
    let labels = message.labels;
    let mut header: Vec<String> = vec!["STRUCTURE".into(), "STRUCTURE_ID".into()];
    if labels == Labels::Name {
        header.push("STRUCTURE_NAME".into());
    }
    header.push("ACTION".into());
    let coded = |id: &str, name: &str, header: &mut Vec<String>| match labels {
        Labels::Id => header.push(id.to_owned()),
        Labels::Both => header.push(format!("{id}: {name}")),
        Labels::Name => {
            header.push(id.to_owned());
            header.push(name.to_owned());
        }
    };
    for dim in Dim::ALL {
        coded(dim.id(), dim.name(), &mut header);
    }
    header.push(if labels == Labels::Both {
        format!("{TIME_PERIOD}: Time period")
    } else {
        TIME_PERIOD.into()
    });
    if message.measures {
        header.push(if labels == Labels::Both {
            format!("{OBS_VALUE}: Observation value")
        } else {
            OBS_VALUE.into()
        });
    }
    for attr in &message.attributes {
        coded(attr.id(), attr.name(), &mut header);
    }
    // includeHistory: the interval each release's values stood, as custom columns.
    let history = message.datasets.iter().any(|d| d.valid_from.is_some());
    if history {
        header.push("VALID_FROM".into());
        header.push("VALID_TO".into());
    }
    let mut out = header.iter().map(|h| field(h)).collect::<Vec<_>>().join(",");
    out.push('\n');
    let reference = flow.reference();
    for (dataset, obs) in
        message.datasets.iter().flat_map(|d| d.observations.iter().map(move |o| (d, o)))
    {
        let mut row: Vec<String> = vec!["dataflow".into(), reference.clone()];
        if labels == Labels::Name {
            row.push("Recorded cyber incidents".into());
        }
        row.push(dataset.action.csv().into());
        let values = dataset.action.has_values();
        let mut value = |id: &str, name: Option<&str>| match (labels, name) {
            (Labels::Id, _) | (_, None) => row.push(id.to_owned()),
            (Labels::Both, Some(name)) => row.push(format!("{id}: {name}")),
            (Labels::Name, Some(name)) => {
                row.push(id.to_owned());
                row.push(name.to_owned());
            }
        };
        for (dim, code) in Dim::ALL.iter().zip(&obs.key) {
            let name = flow.codelist(*dim).get(code).map(|c| c.name.as_str());
            value(code, Some(name.unwrap_or(code)));
        }
        value(&obs.period, None);
        if message.measures {
            value(&if values { obs.value.to_string() } else { String::new() }, None);
        }
        for attr in &message.attributes {
            let code = match attr {
                _ if !values => "",
                Attr::ObsStatus => obs.status,
                Attr::Disclosure => obs.disclosure,
            };
            let name = flow.attribute_codelist(*attr).get(code).map(|c| c.name.as_str());
            value(code, name.or((!code.is_empty()).then_some(code)));
        }
        if history {
            row.push(dataset.valid_from.clone().unwrap_or_default());
            row.push(dataset.valid_to.clone().unwrap_or_default());
        }
        out.push_str(&row.iter().map(|f| field(f)).collect::<Vec<_>>().join(","));
        out.push('\n');
    }
    out
}
