//! Content negotiation of the SDMX endpoints: the `Accept` header (or `format=`) picks SDMX-ML
//! 3.0, SDMX-CSV 2.0 or SDMX-JSON 2.0; anything else is a 406. The answer's `Content-Type` is the
//! exact SDMX media type, which is what clients such as sdmx1 choose their reader by.

use super::error::SdmxError;

/// What is asked for: data or structures (their media types differ).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Data,
    Structure,
}

/// `labels=` of SDMX-CSV: codes only, a name column beside each code, or `ID: Name` values.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Labels {
    #[default]
    Id,
    Name,
    Both,
}

impl Labels {
    pub fn parse(text: &str) -> Option<Labels> {
        match text {
            "id" => Some(Labels::Id),
            "name" => Some(Labels::Name),
            "both" => Some(Labels::Both),
            _ => None,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    /// SDMX-ML 3.0 (structure-specific data).
    Xml,
    /// SDMX-CSV 2.0 (data only).
    Csv(Labels),
    /// SDMX-JSON 2.0.
    Json,
}

impl Format {
    pub fn content_type(self, kind: Kind) -> &'static str {
        match (self, kind) {
            (Format::Xml, Kind::Data) => "application/vnd.sdmx.data+xml;version=3.0.0",
            (Format::Xml, Kind::Structure) => "application/vnd.sdmx.structure+xml;version=3.0.0",
            (Format::Json, Kind::Data) => "application/vnd.sdmx.data+json;version=2.0.0",
            (Format::Json, Kind::Structure) => "application/vnd.sdmx.structure+json;version=2.0.0",
            (Format::Csv(_), _) => "application/vnd.sdmx.data+csv;version=2.0.0",
        }
    }
}

const SUPPORTED_DATA: &str = "application/vnd.sdmx.data+xml;version=3.0.0, \
     application/vnd.sdmx.data+csv;version=2.0.0, application/vnd.sdmx.data+json;version=2.0.0 \
     (or format=xml|csv|json)";
const SUPPORTED_STRUCTURE: &str = "application/vnd.sdmx.structure+xml;version=3.0.0, \
     application/vnd.sdmx.structure+json;version=2.0.0 (or format=xml|json)";

/// One media range of `Accept`: its type, parameters and quality.
struct Range<'a> {
    essence: String,
    params: Vec<(String, &'a str)>,
    quality: f32,
}

fn ranges(accept: &str) -> Vec<Range<'_>> {
    let mut ranges: Vec<Range> = accept
        .split(',')
        .filter_map(|range| {
            let mut parts = range.split(';');
            let essence = parts.next()?.trim().to_ascii_lowercase();
            if essence.is_empty() {
                return None;
            }
            let mut params = Vec::new();
            let mut quality = 1.0;
            for param in parts {
                let Some((name, value)) = param.split_once('=') else { continue };
                let name = name.trim().to_ascii_lowercase();
                let value = value.trim().trim_matches('"');
                if name == "q" {
                    quality = value.parse().unwrap_or(0.0);
                } else {
                    params.push((name, value));
                }
            }
            Some(Range { essence, params, quality })
        })
        .collect();
    // Stable: equal qualities keep the client's order.
    ranges.sort_by(|a, b| b.quality.total_cmp(&a.quality));
    ranges
}

fn param<'a>(range: &'a Range, name: &str) -> Option<&'a str> {
    range.params.iter().find(|(n, _)| n == name).map(|(_, v)| *v)
}

/// The version parameter of an SDMX media type is ours when absent or when it names `major`.
fn version_is(range: &Range, major: &str) -> bool {
    param(range, "version").is_none_or(|v| v == major || v.starts_with(&format!("{major}.")))
}

fn labels_of(range: &Range) -> Result<Labels, SdmxError> {
    match param(range, "labels") {
        None => Ok(Labels::Id),
        Some(text) => Labels::parse(text).ok_or_else(|| {
            SdmxError::not_acceptable(format!(
                "labels={text} is not supported; use id, name or both"
            ))
        }),
    }
}

/// The format of an answer: `format=` first, else the best `Accept` range we serve, else SDMX-ML
/// 3.0; a request that accepts nothing we serve is a 406. REST v2 makes SDMX-JSON the default,
/// but sdmx1 sends `Accept: */*` and reads only SDMX-ML 3.0 (and no Python client reads
/// SDMX-JSON 2.0 data), so the default is the format every client reads.
pub fn negotiate(
    kind: Kind,
    accept: Option<&str>,
    format: Option<&str>,
    labels: Option<Labels>,
) -> Result<Format, SdmxError> {
    let supported = match kind {
        Kind::Data => SUPPORTED_DATA,
        Kind::Structure => SUPPORTED_STRUCTURE,
    };
    if let Some(format) = format {
        return match (format, kind) {
            ("xml" | "sdmx-ml", _) => Ok(Format::Xml),
            ("json" | "sdmx-json", _) => Ok(Format::Json),
            ("csv" | "sdmx-csv", Kind::Data) => Ok(Format::Csv(labels.unwrap_or_default())),
            _ => Err(SdmxError::not_acceptable(format!(
                "format={format} is not served here; served: {supported}"
            ))),
        };
    }
    let Some(accept) = accept.filter(|a| !a.trim().is_empty()) else {
        return Ok(Format::Xml);
    };
    for range in ranges(accept) {
        if range.quality <= 0.0 {
            continue;
        }
        let chosen = match (range.essence.as_str(), kind) {
            ("application/vnd.sdmx.data+xml", Kind::Data)
            | ("application/vnd.sdmx.structure+xml", Kind::Structure)
                if version_is(&range, "3") =>
            {
                Some(Format::Xml)
            }
            ("application/vnd.sdmx.data+json", Kind::Data)
            | ("application/vnd.sdmx.structure+json", Kind::Structure)
                if version_is(&range, "2") =>
            {
                Some(Format::Json)
            }
            ("application/vnd.sdmx.data+csv", Kind::Data) if version_is(&range, "2") => {
                Some(Format::Csv(labels.map_or_else(|| labels_of(&range), Ok)?))
            }
            ("text/csv", Kind::Data) => {
                Some(Format::Csv(labels.map_or_else(|| labels_of(&range), Ok)?))
            }
            ("application/xml" | "text/xml", _) => Some(Format::Xml),
            ("application/json", _) => Some(Format::Json),
            ("*/*" | "application/*", _) => Some(Format::Xml),
            _ => None,
        };
        if let Some(format) = chosen {
            return Ok(match format {
                Format::Csv(l) => Format::Csv(labels.unwrap_or(l)),
                other => other,
            });
        }
    }
    Err(SdmxError::not_acceptable(format!(
        "Accept: {accept} names nothing served here; served: {supported}"
    )))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accept_picks_the_best_served_type() {
        let data = |accept: &str| negotiate(Kind::Data, Some(accept), None, None);
        assert_eq!(data("application/vnd.sdmx.data+xml;version=3.0.0").unwrap(), Format::Xml);
        assert_eq!(
            data("application/vnd.sdmx.data+csv;version=2.0.0;labels=both").unwrap(),
            Format::Csv(Labels::Both)
        );
        assert_eq!(
            data("text/html, application/vnd.sdmx.data+json; version=2.0.0; q=0.9").unwrap(),
            Format::Json
        );
        assert_eq!(
            data("application/vnd.sdmx.data+csv;version=2.0.0;q=0.5, application/xml").unwrap(),
            Format::Xml
        );
        assert_eq!(data("*/*").unwrap(), Format::Xml, "what sdmx1 sends");
        assert_eq!(negotiate(Kind::Data, None, None, None).unwrap(), Format::Xml);
        for refused in [
            "application/vnd.sdmx.structurespecificdata+xml;version=2.1",
            "application/vnd.sdmx.data+csv;version=1.0.0",
            "application/vnd.sdmx.data+xml;version=3.0.0;q=0",
            "image/png",
        ] {
            let error = data(refused).unwrap_err();
            assert_eq!(error.status().as_u16(), 406, "{refused}");
            assert!(error.message().contains("served:"), "{}", error.message());
        }
        assert_eq!(
            negotiate(
                Kind::Structure,
                Some("application/vnd.sdmx.data+csv;version=2.0.0"),
                None,
                None
            )
            .unwrap_err()
            .status()
            .as_u16(),
            406
        );
    }

    #[test]
    fn format_overrides_accept() {
        let csv = negotiate(Kind::Data, Some("application/xml"), Some("csv"), Some(Labels::Name))
            .unwrap();
        assert_eq!(csv, Format::Csv(Labels::Name));
        assert_eq!(
            negotiate(Kind::Structure, None, Some("csv"), None).unwrap_err().status().as_u16(),
            406
        );
        assert_eq!(
            negotiate(Kind::Data, None, Some("pdf"), None).unwrap_err().status().as_u16(),
            406
        );
    }
}
