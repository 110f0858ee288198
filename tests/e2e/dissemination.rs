//! Dissemination: SDMX REST v2 structures and data in SDMX-ML 3.0, SDMX-CSV 2.0 and SDMX-JSON
//! 2.0, each observation equal to the same cell of `/v1/incidents/counts` for the same tier and
//! release; the standard's status codes, `Vary` and CORS on every answer, errors included.

use std::collections::BTreeMap;

use reqwest::Method;
use serde_json::{Value, json};

use crate::harness::{Answer, Env, Service, record};

const FLOW: &str = "/sdmx/v2/data/dataflow/OBSERVATORY/INCIDENTS/1.0";
const CSV: &str = "application/vnd.sdmx.data+csv;version=2.0.0";

async fn sdmx(service: &Service, path: &str, accept: &str, public: bool) -> Answer {
    let mut call = service.call(Method::GET, path).header("accept", accept);
    if !public {
        call = call.token(&service.researcher);
    }
    call.send().await
}

/// SDMX-CSV rows as maps from column to value.
fn csv_rows(text: &str) -> Vec<BTreeMap<String, String>> {
    let mut lines = text.lines();
    let header: Vec<&str> = lines.next().expect("a header").split(',').collect();
    lines
        .map(|line| {
            header.iter().map(|h| h.to_string()).zip(line.split(',').map(str::to_owned)).collect()
        })
        .collect()
}

/// `(period or code) → count` of a counts API answer grouped by `column`.
fn counts_by(answer: &Answer, column: &str) -> BTreeMap<String, i64> {
    assert_eq!(answer.status, 200, "{}", answer.body);
    answer.body["rows"]
        .as_array()
        .unwrap()
        .iter()
        .map(|row| {
            let key = match &row[column] {
                Value::String(s) => s.clone(),
                other => other.to_string(),
            };
            (key, row["count"].as_i64().unwrap())
        })
        .collect()
}

/// `column → OBS_VALUE` of SDMX-CSV rows.
fn observed(text: &str, column: &str) -> BTreeMap<String, i64> {
    csv_rows(text).iter().map(|r| (r[column].clone(), r["OBS_VALUE"].parse().unwrap())).collect()
}

/// A counts API answer to the tier of the test.
async fn read(service: &Service, public: bool, query: String) -> Answer {
    if public { service.get_public(&query).await } else { service.get(&query).await }
}

async fn feed(env: &Env, service: &Service) -> u64 {
    let pn = env.add_agency("pn");
    let mut records: Vec<Value> = Vec::new();
    let places = ["75", "92", "13", "69", "2A", "971"];
    let codes = ["0903", "09031", "0701", "07011", "0201"];
    for i in 0..300usize {
        let year = 2024 + (i % 2);
        let month = 1 + (i * 7) % 12;
        let mut r = record(
            &format!("S{i}"),
            1,
            &format!("{year}-{month:02}-0{}", 1 + i % 9),
            places[i % places.len()],
            codes[(i / 3) % codes.len()],
        );
        if i % 5 == 0 {
            r["channel"] = json!("sms");
        }
        records.push(r);
    }
    let answer = service.post_ndjson(&pn, &records).await;
    assert_eq!(answer.status, 200, "{}", answer.body);
    let sequence = answer.sequence();
    service.counts("by=year", sequence).await;
    sequence
}

#[tokio::test]
async fn sdmx_data_equals_the_counts_api_for_every_tier_and_format() {
    let env = Env::new();
    let service = env.up().await;
    feed(&env, &service).await;
    let unit = service.get("/v1/incidents/counts?by=unit").await.body["rows"][0]["unit"]
        .as_str()
        .unwrap()
        .to_owned();

    for public in [true, false] {
        let tier = if public { "public" } else { "researcher" };
        // The acceptance cell: national annual totals over 2024-2025.
        let key = format!("A.FR._T._T._T._T._T.{unit}");
        let path = format!("{FLOW}/{key}?c[TIME_PERIOD]=ge:2024+le:2025");
        let answer = sdmx(&service, &path, CSV, public).await;
        assert_eq!(answer.status, 200, "{tier}: {}", answer.text);
        assert_eq!(answer.headers["content-type"], CSV);
        let query = format!("/v1/incidents/counts?by=year&unit={unit}&from=2024&to=2025");
        let json =
            if public { service.get_public(&query).await } else { service.get(&query).await };
        assert_eq!(observed(&answer.text, "TIME_PERIOD"), counts_by(&json, "year"), "{tier}");
        let disclosure = if public { "CKM" } else { "EXACT" };
        assert!(csv_rows(&answer.text).iter().all(|r| r["DISCLOSURE"] == disclosure), "{tier}");

        // Every département of one year, and every région, as the counts API groups them.
        let path = format!("{FLOW}/A.*._T._T._T._T._T.{unit}?c[TIME_PERIOD]=2024");
        let answer = sdmx(&service, &path, CSV, public).await;
        assert_eq!(answer.status, 200, "{tier}: {}", answer.text);
        let by_area = observed(&answer.text, "REF_AREA");
        let departements = counts_by(
            &read(
                &service,
                public,
                format!("/v1/incidents/counts?by=departement&unit={unit}&year=2024"),
            )
            .await,
            "departement",
        );
        let regions = counts_by(
            &read(
                &service,
                public,
                format!("/v1/incidents/counts?by=region&unit={unit}&year=2024"),
            )
            .await,
            "region",
        );
        let national = counts_by(
            &read(&service, public, format!("/v1/incidents/counts?by=year&unit={unit}&year=2024"))
                .await,
            "year",
        );
        let mut expected: BTreeMap<String, i64> = departements;
        expected.extend(regions.into_iter().map(|(r, c)| (format!("R{r}"), c)));
        expected.insert("FR".into(), national["2024"]);
        assert_eq!(by_area, expected, "{tier}");

        // Every level of the ICCS hierarchy: a section or a division is its subtree's count.
        let path = format!("{FLOW}/M.FR.*._T._T._T._T.{unit}");
        let answer = sdmx(&service, &path, CSV, public).await;
        let rows = csv_rows(&answer.text);
        for level in ["iccs_section", "iccs_division", "iccs_group"] {
            let json = read(
                &service,
                public,
                format!("/v1/incidents/counts?by=month,{level}&unit={unit}"),
            )
            .await;
            for row in json.body["rows"].as_array().unwrap() {
                // Incidents coded above this level have no code at it.
                let Some(code) = row[level].as_str() else { continue };
                let month = row["month"].as_str().unwrap();
                let found = rows
                    .iter()
                    .find(|r| r["ICCS"] == code && r["TIME_PERIOD"] == month)
                    .unwrap_or_else(|| panic!("{tier}: no {code} {month} in SDMX"));
                assert_eq!(found["OBS_VALUE"], row["count"].to_string(), "{tier} {code} {month}");
            }
        }

        // The three formats carry the same observations.
        let path = format!("{FLOW}/A.FR+75.0903.true._T._T._T.{unit}");
        let csv = csv_rows(&sdmx(&service, &path, CSV, public).await.text);
        let xml =
            sdmx(&service, &path, "application/vnd.sdmx.data+xml;version=3.0.0", public).await;
        assert_eq!(xml.status, 200, "{}", xml.text);
        assert_eq!(xml.text.matches("<Obs ").count(), csv.len(), "{tier}: {}", xml.text);
        for row in &csv {
            let needle = format!(
                "<Obs TIME_PERIOD=\"{}\" OBS_VALUE=\"{}\"",
                row["TIME_PERIOD"], row["OBS_VALUE"]
            );
            assert!(xml.text.contains(&needle), "{tier}: {needle} not in {}", xml.text);
        }
        let sjson =
            sdmx(&service, &path, "application/vnd.sdmx.data+json;version=2.0.0", public).await;
        assert_eq!(sjson.status, 200, "{}", sjson.text);
        let series = sjson.body["data"]["dataSets"][0]["series"].as_object().unwrap();
        let observations: usize =
            series.values().map(|s| s["observations"].as_object().unwrap().len()).sum();
        assert_eq!(observations, csv.len(), "{tier}");

        // JSON-stat: the same rows as a row-major cube, every other cell a zero count.
        let query = format!("/v1/incidents/counts?by=year,departement&unit={unit}");
        let json = read(&service, public, query.clone()).await;
        let stat = read(&service, public, format!("{query}&format=jsonstat")).await;
        assert_eq!(stat.status, 200, "{}", stat.text);
        let cube = &stat.body;
        assert_eq!(cube["version"], "2.0");
        assert_eq!(cube["id"], json!(["year", "departement", "unit", "measure"]));
        assert_eq!(cube["role"]["geo"], json!(["departement"]));
        assert_eq!(cube["extension"]["disclosure"]["tier"], tier);
        assert_eq!(cube["dimension"]["departement"]["category"]["label"]["2A"], "Corse-du-Sud");
        let sizes: Vec<usize> =
            cube["size"].as_array().unwrap().iter().map(|s| s.as_u64().unwrap() as usize).collect();
        let values = cube["value"].as_array().unwrap();
        assert_eq!(values.len(), sizes.iter().product::<usize>());
        let position = |dim: &str, code: &str| {
            cube["dimension"][dim]["category"]["index"][code].as_u64().unwrap() as usize
        };
        let rows = json.body["rows"].as_array().unwrap();
        for row in rows {
            let codes = [
                position("year", &row["year"].to_string()),
                position("departement", row["departement"].as_str().unwrap()),
                position("unit", &unit),
                position("measure", "count"),
            ];
            let index = codes.iter().zip(&sizes).fold(0, |acc, (c, s)| acc * s + c);
            assert_eq!(values[index], row["count"], "{tier}: {row}");
        }
        let nonzero = values
            .iter()
            .enumerate()
            .filter(|(i, v)| i % sizes[3] == 0 && v.as_i64().unwrap() != 0)
            .count();
        assert_eq!(nonzero, rows.len(), "{tier}: every other count cell is zero");
    }
}

#[tokio::test]
async fn sdmx_refusals_carry_the_standard_status_and_cors() {
    let env = Env::new();
    let service = env.up().await;
    feed(&env, &service).await;
    let cases: &[(&str, &str, u16, &str)] = &[
        (&format!("{FLOW}/A.FR?c[TIME_PERIOD]=2031"), CSV, 204, ""),
        ("/sdmx/v2/data/dataflow/OBSERVATORY/VICTIMS/1.0/A", CSV, 404, "no dataflow"),
        (&format!("{FLOW}/A.FR"), "image/png", 406, "served:"),
        (&format!("{FLOW}/A.XX"), CSV, 422, "REF_AREA has no code 'XX'"),
        (&format!("{FLOW}/A.F%20R"), CSV, 400, "is not a code"),
        (&format!("{FLOW}/A.FR.1.2.3.4.5.6.7"), CSV, 422, "has 9 dimensions"),
        (
            &format!("{FLOW}/A?c[COLOUR]=red"),
            "application/vnd.sdmx.data+json;version=2.0.0",
            422,
            "no component COLOUR",
        ),
        (
            &format!("{FLOW}/A?c[CYBER]=xx:true"),
            "application/vnd.sdmx.data+xml;version=3.0.0",
            400,
            "not an operator",
        ),
        (&format!("{FLOW}/A?colour=red"), CSV, 400, "unknown parameter 'colour'"),
        (&format!("{FLOW}/A.FR.._T._T._T.nobody"), CSV, 422, "SOURCE has no code 'nobody'"),
    ];
    for (path, accept, status, text) in cases {
        let answer = sdmx(&service, path, accept, true).await;
        assert_eq!(answer.status, *status, "{path} ({accept}): {}", answer.text);
        assert!(answer.text.contains(text), "{path}: {}", answer.text);
        assert_eq!(answer.headers["vary"], "Accept", "{path}");
        assert_eq!(answer.headers["access-control-allow-origin"], "*", "{path}");
    }
    // An error is written in the format asked for.
    let xml = sdmx(
        &service,
        &format!("{FLOW}/A.XX"),
        "application/vnd.sdmx.data+xml;version=3.0.0",
        true,
    )
    .await;
    assert!(xml.text.contains("<mes:ErrorMessage code=\"150\">"), "{}", xml.text);
    let json = sdmx(&service, &format!("{FLOW}/A.XX"), "application/json", true).await;
    assert_eq!(json.body["errors"][0]["code"], 150, "{}", json.text);
    // A bad token is refused, never answered as public.
    let bad = service.call(Method::GET, &format!("{FLOW}/A.FR")).token("nope").send().await;
    assert_eq!(bad.status, 401, "{}", bad.text);
}

#[tokio::test]
async fn sdmx_structures_describe_the_dataflow_and_vintages_map_onto_releases() {
    let env = Env::new();
    let publisher = env.add_reader("ssmsi", "publisher");
    let service = env.up().await;
    let first = feed(&env, &service).await;

    let all = sdmx(
        &service,
        "/sdmx/v2/structure/dataflow/OBSERVATORY/INCIDENTS/1.0?references=all",
        "application/vnd.sdmx.structure+xml;version=3.0.0",
        true,
    )
    .await;
    assert_eq!(all.status, 200, "{}", all.text);
    for needle in [
        "<str:Dataflow ",
        "id=\"DSD_INCIDENTS\"",
        "<str:Codelist ",
        "id=\"CL_REF_AREA\"",
        "id=\"R11\"",
        "<str:Parent>R11</str:Parent>",
        "id=\"pn\"",
        "<str:TimeDimension id=\"TIME_PERIOD\"",
        "<str:Attribute id=\"DISCLOSURE\"",
    ] {
        assert!(all.text.contains(needle), "{needle} missing");
    }
    let json = sdmx(
        &service,
        "/sdmx/v2/structure/datastructure/OBSERVATORY/DSD_INCIDENTS/1.0?references=children",
        "application/vnd.sdmx.structure+json;version=2.0.0",
        true,
    )
    .await;
    assert_eq!(json.status, 200, "{}", json.text);
    let dsd = &json.body["data"]["dataStructures"][0]["dataStructureComponents"];
    assert_eq!(dsd["dimensionList"]["dimensions"].as_array().unwrap().len(), 8);
    assert_eq!(json.body["data"]["codelists"].as_array().unwrap().len(), 10);
    let codelist = sdmx(
        &service,
        "/sdmx/v2/structure/codelist/OBSERVATORY/CL_ICCS/1.0",
        "application/json",
        true,
    )
    .await;
    assert_eq!(
        codelist.body["data"]["codelists"].as_array().unwrap().len(),
        1,
        "{}",
        codelist.text
    );
    let schema = sdmx(
        &service,
        "/sdmx/v2/schema/dataflow/OBSERVATORY/INCIDENTS/1.0/",
        "application/vnd.sdmx.structure+json;version=2.0.0",
        true,
    )
    .await;
    assert_eq!(schema.status, 200, "{}", schema.text);
    assert_eq!(schema.body["data"]["dataStructures"][0]["id"], "DSD_INCIDENTS");
    let missing =
        sdmx(&service, "/sdmx/v2/structure/codelist/OBSERVATORY/CL_NOPE", "application/json", true)
            .await;
    assert_eq!(missing.status, 404, "{}", missing.text);

    // asOf: the newest release made at or before that instant, answering what the release does.
    let release = service
        .call(Method::POST, "/v1/releases")
        .token(&publisher)
        .json(&json!({"name": "first"}))
        .send_json()
        .await;
    assert_eq!(release.status, 201, "{}", release.body);
    let made = release.body["created_at"].as_str().unwrap().to_owned();
    let pn = env.add_agency("gn");
    let more: Vec<Value> =
        (0..20).map(|i| record(&format!("G{i}"), 1, "2024-03-05", "75", "0903")).collect();
    let later = service.post_ndjson(&pn, &more).await.sequence();
    service.counts("by=year", later).await;
    assert!(later > first);
    let unit = service.get("/v1/incidents/counts?by=unit").await.body["rows"][0]["unit"]
        .as_str()
        .unwrap()
        .to_owned();
    let path = format!("{FLOW}/M.FR._T._T._T._T._T.{unit}?asOf={made}");
    let at_release = sdmx(&service, &path, CSV, true).await;
    assert_eq!(at_release.status, 200, "{}", at_release.text);
    assert_eq!(at_release.headers["observatory-release"], "r1");
    let json =
        service.get_public(&format!("/v1/incidents/counts?by=month&unit={unit}&release=r1")).await;
    assert_eq!(observed(&at_release.text, "TIME_PERIOD"), counts_by(&json, "month"));
    let again = sdmx(&service, &path, CSV, true).await;
    assert_eq!(again.text, at_release.text, "a release answers the same bytes");
    let now = sdmx(&service, &format!("{FLOW}/M.FR._T._T._T._T._T.{unit}"), CSV, true).await;
    assert_ne!(now.text, at_release.text, "the newer feed changed the current answer");

    // updatedAfter (also spelled updateAfter, as sdmx1 sends it): what changed since the release
    // standing at that instant, to replace.
    let before = observed(&at_release.text, "TIME_PERIOD");
    let current = observed(&now.text, "TIME_PERIOD");
    let changed: BTreeMap<String, i64> = current
        .iter()
        .filter(|(k, v)| before.get(*k) != Some(v))
        .map(|(k, v)| (k.clone(), *v))
        .collect();
    assert!(!changed.is_empty());
    for spelling in ["updatedAfter", "updateAfter"] {
        let path = format!("{FLOW}/M.FR._T._T._T._T._T.{unit}?{spelling}={made}");
        let delta = sdmx(&service, &path, CSV, true).await;
        assert_eq!(delta.status, 200, "{}", delta.text);
        assert!(csv_rows(&delta.text).iter().all(|r| r["ACTION"] == "R"), "{}", delta.text);
        assert_eq!(observed(&delta.text, "TIME_PERIOD"), changed, "{spelling}");
    }
    // includeHistory: one dataset per release, with the interval each stood.
    let second = service
        .call(Method::POST, "/v1/releases")
        .token(&publisher)
        .json(&json!({"name": "second"}))
        .send_json()
        .await;
    assert_eq!(second.status, 201, "{}", second.body);
    let path = format!("{FLOW}/M.FR._T._T._T._T._T.{unit}?includeHistory=true");
    let history = sdmx(&service, &path, CSV, true).await;
    assert_eq!(history.status, 200, "{}", history.text);
    let rows = csv_rows(&history.text);
    let r2_made = second.body["created_at"].as_str().unwrap();
    let first_rows: BTreeMap<String, i64> = rows
        .iter()
        .filter(|r| !r["VALID_TO"].is_empty())
        .map(|r| (r["TIME_PERIOD"].clone(), r["OBS_VALUE"].parse().unwrap()))
        .collect();
    assert_eq!(first_rows, before, "the first release's values, standing until the second");
    assert!(rows.iter().filter(|r| r["VALID_TO"].is_empty()).all(|r| r["VALID_FROM"].len() == 20));
    assert!(
        r2_made.starts_with(
            &rows.iter().find(|r| !r["VALID_TO"].is_empty()).unwrap()["VALID_TO"][..19]
        )
    );
    let xml = sdmx(&service, &path, "application/vnd.sdmx.data+xml;version=3.0.0", true).await;
    assert_eq!(xml.text.matches("<message:DataSet ").count(), 2, "{}", xml.text);
    assert!(xml.text.contains("validToDate=\""), "{}", xml.text);
}
