//! `GET /openapi.json`: the OpenAPI 3.1 document of every endpoint (`openapi/openapi.json`),
//! served as written. A test holds it to the router: every path a router registers is
//! documented and every documented path is registered, so the two cannot drift; the e2e suite
//! calls each documented path and runs schemathesis against the running service.

use axum::Router;
use axum::http::header;
use axum::routing::get;

pub const DOCUMENT: &str = include_str!("../openapi/openapi.json");

pub fn router() -> Router {
    Router::new().route(
        "/openapi.json",
        get(|| async { ([(header::CONTENT_TYPE, "application/json")], DOCUMENT) }),
    )
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeSet;
    use std::path::Path;

    use super::*;

    /// Every `.route("…")` path literal in the sources of the crates that serve HTTP.
    fn registered() -> BTreeSet<String> {
        let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
        let mut paths = BTreeSet::new();
        let mut stack: Vec<_> =
            ["query", "ingest", "cli"].iter().map(|c| root.join(c).join("src")).collect();
        while let Some(dir) = stack.pop() {
            for entry in std::fs::read_dir(&dir).unwrap() {
                let path = entry.unwrap().path();
                if path.is_dir() {
                    stack.push(path);
                } else if path.extension().is_some_and(|e| e == "rs") {
                    let text = std::fs::read_to_string(&path).unwrap();
                    for (i, _) in text.match_indices(".route(") {
                        let rest = text[i + 7..].trim_start();
                        let literal = rest.strip_prefix('"').and_then(|r| r.split('"').next());
                        // A path; not this scanner's own text.
                        if let Some(literal) = literal.filter(|l| l.starts_with('/')) {
                            // axum's catch-all `{*file}` is OpenAPI's `{file}`.
                            paths.insert(literal.replace("{*", "{"));
                        }
                    }
                }
            }
        }
        use observatory_query::sdmx;
        paths.extend(sdmx::STRUCTURE_PATHS.iter().chain(&sdmx::DATA_PATHS).map(|p| p.to_string()));
        paths.insert(sdmx::SCHEMA_PATH.to_owned());
        paths
    }

    #[test]
    fn the_document_lists_exactly_the_registered_paths() {
        let document: serde_json::Value = serde_json::from_str(DOCUMENT).unwrap();
        assert_eq!(document["openapi"], "3.1.0");
        let documented: BTreeSet<String> =
            document["paths"].as_object().unwrap().keys().cloned().collect();
        let registered = registered();
        let undocumented: Vec<_> = registered.difference(&documented).collect();
        let unserved: Vec<_> = documented.difference(&registered).collect();
        assert!(
            undocumented.is_empty(),
            "routes missing from openapi/openapi.json: {undocumented:?}"
        );
        assert!(unserved.is_empty(), "documented paths no router registers: {unserved:?}");
        assert!(registered.len() > 25, "{registered:?}");
    }

    #[test]
    fn every_operation_says_its_answers() {
        let document: serde_json::Value = serde_json::from_str(DOCUMENT).unwrap();
        for (path, item) in document["paths"].as_object().unwrap() {
            for (method, operation) in item.as_object().unwrap() {
                let responses = operation["responses"].as_object().unwrap();
                assert!(
                    responses.keys().any(|s| s.starts_with('2')),
                    "{method} {path} documents no success"
                );
                for name in operation["parameters"].as_array().into_iter().flatten() {
                    if let Some(reference) = name["$ref"].as_str() {
                        let key = reference.trim_start_matches("#/components/parameters/");
                        assert!(
                            !document["components"]["parameters"][key].is_null(),
                            "{reference}"
                        );
                    }
                }
            }
        }
    }
}
