//! Survey waves through the pipeline: declare a wave, upload respondents (CSV, Parquet,
//! NDJSON), close it, and query design-based estimates, the reporting rate and the dark figure.
//! The acceptance test uploads R's apiclus1 and compares every number with `observatory
//! estimate` on the same CSV file, to the last digit.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;

use arrow::array::{ArrayRef, Float64Array, RecordBatch, StringArray};
use observatory_stats::Table;
use reqwest::Method;
use serde_json::{Value, json};

use crate::harness::{Answer, BIN, Env, Service, record};

const APICLUS1: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../../testdata/survey/apiclus1.csv");
const DESIGN: &[&str] = &["--cluster", "dnum", "--weights", "pw", "--fpc", "fpc"];

fn apiclus1_path() -> PathBuf {
    let path = PathBuf::from(
        std::env::var("OBSERVATORY_APICLUS1").unwrap_or_else(|_| APICLUS1.to_owned()),
    );
    assert!(
        path.is_file(),
        "{} is missing (R's apiclus1 data, see testdata/survey/README.md)",
        path.display()
    );
    path
}

pub(crate) async fn declare(
    service: &Service,
    token: &str,
    survey: &str,
    declaration: &Value,
) -> Answer {
    let path = format!("/v1/surveys/{survey}/waves");
    service.post_to(&path, Some(token), "application/json", declaration.to_string()).await
}

pub(crate) async fn responses(
    service: &Service,
    token: &str,
    survey: &str,
    wave: &str,
    content_type: &str,
    body: impl Into<Vec<u8>>,
) -> Answer {
    let path = format!("/v1/surveys/{survey}/waves/{wave}/responses");
    service.post_to(&path, Some(token), content_type, body).await
}

pub(crate) async fn close(
    service: &Service,
    token: &str,
    survey: &str,
    wave: &str,
    body: &str,
) -> Answer {
    let path = format!("/v1/surveys/{survey}/waves/{wave}/close");
    service.post_to(&path, Some(token), "application/json", body).await
}

/// `observatory estimate --input FILE <design> <flags>`, its JSON.
fn cli(input: &Path, flags: &[&str]) -> Value {
    let output = Command::new(BIN)
        .arg("estimate")
        .arg("--input")
        .arg(input)
        .args(DESIGN)
        .args(flags)
        .output()
        .expect("run observatory estimate");
    assert!(
        output.status.success(),
        "estimate {flags:?} failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    serde_json::from_slice(&output.stdout).expect("estimate prints JSON")
}

/// The apiclus1 columns as a wave declaration: numeric columns numeric (district, school and
/// county numbers integer), few-valued text columns categorical, the rest text; `cds` is the
/// respondent id. Types follow what R (and the CLI) read from the CSV.
fn apiclus1_declaration(table: &Table) -> Value {
    let mut variables = Vec::new();
    for name in table.column_names().filter(|n| *n != "cds") {
        let column = table.column(name).unwrap();
        let variable = if column.is_numeric() {
            let integer = ["snum", "dnum", "cnum"].contains(&name);
            json!({"name": name, "type": if integer { "integer" } else { "numeric" }})
        } else {
            let values: BTreeSet<String> = (0..table.n_rows())
                .filter_map(|r| column.text(r).map(|t| t.into_owned()))
                .collect();
            if values.len() <= 5 {
                json!({"name": name, "type": "categorical", "values": values})
            } else {
                json!({"name": name, "type": "text"})
            }
        };
        variables.push(variable);
    }
    json!({
        "wave": "2000",
        "title": "California Academic Performance Index, cluster sample of school districts (R survey::apiclus1)",
        "population": "businesses",
        "reference_period": {"from": "1999-09-01", "to": "2000-06-30"},
        "respondent_id": "cds",
        "design": {"weights": "pw", "clusters": ["dnum"], "fpc": ["fpc"]},
        "variables": variables,
    })
}

/// Rows `range` of the table as a typed Parquet file (numbers Float64, text Utf8).
fn parquet_rows(table: &Table, range: std::ops::Range<usize>) -> Vec<u8> {
    let mut columns: Vec<(String, ArrayRef)> = Vec::new();
    for name in table.column_names() {
        let column = table.column(name).unwrap();
        let array: ArrayRef = match column.numeric() {
            Some(values) if name != "cds" => Arc::new(Float64Array::from_iter(
                range.clone().map(|r| Some(values[r]).filter(|v| !v.is_nan())),
            )),
            _ => Arc::new(StringArray::from_iter(
                range.clone().map(|r| column.text(r).map(|t| t.into_owned())),
            )),
        };
        columns.push((name.to_owned(), array));
    }
    let batch = RecordBatch::try_from_iter(columns).unwrap();
    let mut buffer = Vec::new();
    let mut writer =
        parquet::arrow::ArrowWriter::try_new(&mut buffer, batch.schema(), None).unwrap();
    writer.write(&batch).unwrap();
    writer.close().unwrap();
    buffer
}

async fn estimates(service: &Service, query: &str, min_sequence: u64) -> Value {
    let answer = service
        .get(&format!("/v1/surveys/api/estimates?wave=2000&{query}&min_sequence={min_sequence}"))
        .await;
    assert_eq!(answer.status, 200, "{query}: {}", answer.body);
    assert!(
        answer.body["as_of"]["sequence"].as_u64().unwrap() >= min_sequence,
        "{}",
        answer.body["as_of"]
    );
    answer.body
}

/// (endpoint query, CLI flags) pairs covering every statistic, domains and CI methods.
const COMPARISONS: &[(&str, &[&str])] = &[
    ("stat=mean&var=api00,api99", &["--mean", "api00", "--mean", "api99"]),
    ("stat=total&var=enroll", &["--total", "enroll"]),
    ("stat=prop&var=stype&ci=logit", &["--prop", "stype", "--ci", "logit"]),
    ("stat=prop&var=sch.wide&ci=beta", &["--prop", "sch.wide", "--ci", "beta"]),
    ("stat=ratio&var=api.stu/enroll", &["--ratio", "api.stu/enroll"]),
    (
        "stat=mean&var=api00&by=stype&ci=wald&level=0.9",
        &["--mean", "api00", "--by", "stype", "--ci", "wald", "--level", "0.9"],
    ),
    (
        "stat=total&var=enroll&by=stype,awards",
        &["--total", "enroll", "--by", "stype", "--by", "awards"],
    ),
];

#[tokio::test]
async fn apiclus1_uploaded_through_the_pipeline_gives_the_cli_numbers_to_the_last_digit() {
    let csv_path = apiclus1_path();
    let csv = std::fs::read_to_string(&csv_path).unwrap();
    let table = Table::from_csv_str(&csv).unwrap();
    assert_eq!(table.n_rows(), 183);
    let env = Env::new();
    let token = env.add_agency("cde").to_owned();
    let service = env.up().await;

    let declared = declare(&service, &token, "api", &apiclus1_declaration(&table)).await;
    assert_eq!(declared.status, 201, "{}", declared.body);

    // Rows 1-90 as CSV, 91-183 as typed Parquet: one wave, in upload order.
    let lines: Vec<&str> = csv.lines().collect();
    let first_csv = lines[..91].join("\n");
    let first = responses(&service, &token, "api", "2000", "text/csv", first_csv.clone()).await;
    assert_eq!((first.status, first.body["accepted"].as_u64()), (200, Some(90)), "{}", first.body);
    let rest = responses(
        &service,
        &token,
        "api",
        "2000",
        "application/vnd.apache.parquet",
        parquet_rows(&table, 90..183),
    )
    .await;
    assert_eq!((rest.status, rest.body["accepted"].as_u64()), (200, Some(93)), "{}", rest.body);
    // Re-sending a batch, however late, doubles nothing.
    let again = responses(&service, &token, "api", "2000", "text/csv", first_csv).await;
    assert_eq!(again.body["accepted"], 0, "{}", again.body);
    assert_eq!(again.body["duplicates"], 90, "{}", again.body);

    let closed = close(&service, &token, "api", "2000", "").await;
    assert_eq!(closed.status, 200, "{}", closed.body);
    assert_eq!(closed.body["respondents"], 183);
    let seq = closed.sequence();
    let late = responses(&service, &token, "api", "2000", "text/csv", lines[..2].join("\n")).await;
    assert_eq!(late.status, 409, "{}", late.body);
    assert!(late.body["error"].as_str().unwrap().contains("closed"), "{}", late.body);

    for (query, flags) in COMPARISONS {
        let answer = estimates(&service, query, seq).await;
        let expected = cli(&csv_path, flags);
        assert_eq!(
            answer["estimates"], expected["estimates"],
            "{query} vs observatory estimate {flags:?}"
        );
        assert_eq!(answer["respondents"], 183);
        assert_eq!(answer["status"], "closed");
    }
    // The public reads the same estimates, but a domain with fewer than 10 respondents is
    // withheld (every figure but n null, flagged); the others are the researcher's.
    let query = "stat=total&var=enroll&by=stype,awards";
    let exact = estimates(&service, query, seq).await;
    let public = service
        .get_public(&format!("/v1/surveys/api/estimates?wave=2000&{query}&min_sequence={seq}"))
        .await;
    assert_eq!(public.status, 200, "{}", public.body);
    assert_eq!(public.body["disclosure"]["tier"], "public");
    assert_eq!(public.body["disclosure"]["survey_min_respondents"], 10);
    let (mut withheld, mut kept) = (0, 0);
    for (p, e) in public.body["estimates"]
        .as_array()
        .unwrap()
        .iter()
        .zip(exact["estimates"].as_array().unwrap())
    {
        assert_eq!(p["n"], e["n"], "{p}");
        if e["n"].as_u64().unwrap() < 10 {
            withheld += 1;
            assert!(
                p["flags"].as_array().unwrap().iter().any(|f| f == "withheld_small_domain"),
                "{p}"
            );
            for field in ["estimate", "se", "var", "cv", "ci_lower", "ci_upper"] {
                assert_eq!(p[field], Value::Null, "{field} of {p}");
            }
        } else {
            kept += 1;
            assert_eq!(p, e);
        }
    }
    assert!(withheld > 0 && kept > 0, "{withheld} withheld, {kept} kept: the query tests both");
    // JSON-stat carries the same public estimates along its metric dimension, a withheld domain
    // as null with status w; Arrow and Parquet answer with their media types.
    let base = format!("/v1/surveys/api/estimates?wave=2000&{query}&min_sequence={seq}");
    let stat = service.get_public(&format!("{base}&format=jsonstat")).await;
    assert_eq!(stat.status, 200, "{}", stat.body);
    let cube = &stat.body;
    assert_eq!(cube["id"], serde_json::json!(["variable", "stype", "awards", "measure"]));
    let sizes: Vec<usize> =
        cube["size"].as_array().unwrap().iter().map(|s| s.as_u64().unwrap() as usize).collect();
    let position = |dim: &str, code: &str| {
        cube["dimension"][dim]["category"]["index"][code].as_u64().unwrap() as usize
    };
    for row in public.body["estimates"].as_array().unwrap() {
        let key = [
            position("variable", "total enroll"),
            position("stype", row["domain"]["stype"].as_str().unwrap()),
            position("awards", row["domain"]["awards"].as_str().unwrap()),
            position("measure", "estimate"),
        ];
        let index = key.iter().zip(&sizes).fold(0, |acc, (k, s)| acc * s + k);
        assert_eq!(cube["value"][index], row["estimate"], "{row}");
        let withheld = row["estimate"].is_null();
        assert_eq!(cube["status"][index.to_string()] == "w", withheld, "{row}");
    }
    for (format, media) in [
        ("arrow", "application/vnd.apache.arrow.stream"),
        ("parquet", "application/vnd.apache.parquet"),
    ] {
        let answer = service.get_public(&format!("{base}&format={format}")).await;
        assert_eq!(answer.status, 200, "{format}: {}", answer.text);
        assert_eq!(answer.headers["content-type"], media);
    }

    let mean = estimates(&service, "stat=mean&var=api00", seq).await;
    eprintln!(
        "apiclus1 mean api00: pipeline {} (se {}), CLI {} (se {})",
        mean["estimates"][0]["estimate"],
        mean["estimates"][0]["se"],
        cli(&csv_path, &["--mean", "api00"])["estimates"][0]["estimate"],
        cli(&csv_path, &["--mean", "api00"])["estimates"][0]["se"],
    );
    assert_eq!(
        mean["design"],
        json!({"weights": "pw", "strata": null, "clusters": ["dnum"], "fpc": ["fpc"], "lonely_psu": "fail"})
    );

    // The closed wave is one microdata file, itself valid CLI input with the same answer.
    let version = env.store().join("projections/surveys/v1");
    let mut manifests: Vec<PathBuf> =
        std::fs::read_dir(version.join("manifests")).unwrap().map(|e| e.unwrap().path()).collect();
    manifests.sort();
    let manifest: Value = serde_json::from_slice(&std::fs::read(&manifests[0]).unwrap()).unwrap();
    assert_eq!(manifest["last_sequence"].as_u64().unwrap(), seq, "the newest manifest sorts first");
    let files = manifest["tables"]["microdata/api/2000"].as_array().unwrap();
    assert_eq!(files.len(), 1, "{manifest}");
    assert_eq!(files[0]["rows"], 183);
    let microdata = version.join(files[0]["path"].as_str().unwrap());
    assert_eq!(cli(&microdata, &["--mean", "api00"])["estimates"], mean["estimates"]);

    // A rebuild from sequence 1 gives the same numbers from version 2.
    let output = env.rebuild();
    assert!(output.contains("rebuilt surveys v2"), "{output}");
    for (query, flags) in &COMPARISONS[..3] {
        let answer = estimates(&service, query, seq).await;
        assert_eq!(answer["as_of"]["version"], 2, "{}", answer["as_of"]);
        assert_eq!(
            answer["estimates"],
            cli(&csv_path, flags)["estimates"],
            "after rebuild: {query}"
        );
    }
}

pub(crate) fn small_declaration(wave: &str) -> Value {
    json!({
        "wave": wave,
        "population": "households",
        "reference_period": {"from": "2024-01-01", "to": "2024-12-31"},
        "respondent_id": "hh",
        "design": {"weights": "w", "strata": "region"},
        "variables": [
            {"name": "region", "type": "categorical", "values": ["11", "84"]},
            {"name": "w", "type": "numeric", "min": 0},
            {"name": "victim", "type": "categorical", "values": ["yes", "no"], "required": true},
            {"name": "reported", "type": "categorical", "values": ["yes", "no"]},
            {"name": "age", "type": "integer", "min": 15, "max": 120}
        ],
        "victimisation_items": [{"name": "fraud", "victim": "victim", "reported": "reported", "iccs": "0701"}]
    })
}

/// hh, region, w, victim, reported
const HOUSEHOLDS: &[(&str, &str, f64, &str, &str)] = &[
    ("H01", "11", 100.0, "yes", "yes"),
    ("H02", "11", 100.0, "yes", "no"),
    ("H03", "11", 150.0, "no", ""),
    ("H04", "11", 150.0, "yes", "no"),
    ("H05", "11", 120.0, "no", ""),
    ("H06", "84", 200.0, "yes", "yes"),
    ("H07", "84", 200.0, "no", ""),
    ("H08", "84", 250.0, "yes", "no"),
    ("H09", "84", 250.0, "no", ""),
    ("H10", "84", 180.0, "yes", ""),
];

fn households_ndjson() -> String {
    HOUSEHOLDS
        .iter()
        .map(|(hh, region, w, victim, reported)| {
            let mut row = json!({"hh": hh, "region": region, "w": w, "victim": victim});
            if !reported.is_empty() {
                row["reported"] = json!(reported);
            }
            format!("{row}\n")
        })
        .collect()
}

#[tokio::test]
async fn declarations_rows_and_closures_are_checked_with_precise_errors() {
    let env = Env::new();
    let owner = env.add_agency("ssmsi");
    let other = env.add_agency("pn");
    let service = env.up().await;

    let undeclared =
        responses(&service, &owner, "cvs", "2024", "application/x-ndjson", households_ndjson())
            .await;
    assert_eq!(undeclared.status, 404, "{}", undeclared.body);
    let mut bad = small_declaration("2024");
    bad["design"]["weights"] = json!("region");
    bad["variables"][2]["values"] = json!([]);
    let refused = declare(&service, &owner, "cvs", &bad).await;
    assert_eq!(refused.status, 422, "{}", refused.body);
    let fields: Vec<&str> = refused.body["rejected"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["field"].as_str().unwrap())
        .collect();
    assert!(
        fields.contains(&"design.weights") && fields.contains(&"variables[2].values"),
        "{}",
        refused.body
    );
    let mismatch = declare(&service, &owner, "other", &json!({"survey": "cvs"})).await;
    assert_eq!(mismatch.status, 400, "{}", mismatch.body);

    assert_eq!(declare(&service, &owner, "cvs", &small_declaration("2024")).await.status, 201);
    let again = declare(&service, &owner, "cvs", &small_declaration("2024")).await;
    assert_eq!((again.status, &again.body["duplicate"]), (200, &json!(true)), "{}", again.body);
    let mut changed = small_declaration("2024");
    changed["title"] = json!("another title");
    assert_eq!(declare(&service, &owner, "cvs", &changed).await.status, 409);
    let stolen = declare(&service, &other, "cvs", &small_declaration("2025")).await;
    assert_eq!(stolen.status, 403, "{}", stolen.body);
    assert!(stolen.body["error"].as_str().unwrap().contains("belongs to agency 'ssmsi'"));
    let no_token = service.call(Method::POST, "/v1/surveys/cvs/waves/2024/responses").send().await;
    assert_eq!(no_token.status, 401);
    let wrong_type = responses(&service, &owner, "cvs", "2024", "application/xml", "<x/>").await;
    assert_eq!(wrong_type.status, 415, "{}", wrong_type.body);

    // Every problem of a row is reported with its line and column; good rows still go in.
    let body = format!(
        "{}{}\n{}\n",
        households_ndjson(),
        json!({"hh": "H11", "region": "93", "w": 10, "victim": "yes", "colour": "red"}),
        json!({"hh": "H12", "region": "11", "w": "heavy", "age": 7}),
    );
    let answer = responses(&service, &owner, "cvs", "2024", "application/x-ndjson", body).await;
    assert_eq!(answer.status, 200, "{}", answer.body);
    assert_eq!(answer.body["accepted"], 10, "{}", answer.body);
    let rejected: Vec<(u64, String)> = answer.body["rejected"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| (r["line"].as_u64().unwrap(), r["field"].as_str().unwrap().to_owned()))
        .collect();
    for expected in [(11, "region"), (11, "colour"), (12, "w"), (12, "age"), (12, "victim")] {
        assert!(
            rejected.contains(&(expected.0, expected.1.to_owned())),
            "{expected:?} missing from {}",
            answer.body
        );
    }
    let csv = responses(
        &service,
        &owner,
        "cvs",
        "2024",
        "text/csv",
        "hh,region,w,victim\nH13,84,abc,no\n",
    )
    .await;
    assert_eq!(
        csv.body["rejected"][0],
        json!({"line": 2, "field": "w", "error": "expected a number, got \"abc\""})
    );

    // Final weights must cover every respondent; then they replace the design weights.
    let partial =
        close(&service, &owner, "cvs", "2024", r#"{"final_weights": {"H01": 1.5}}"#).await;
    assert_eq!(partial.status, 422, "{}", partial.body);
    let weights: serde_json::Map<String, Value> =
        HOUSEHOLDS.iter().map(|(hh, ..)| (hh.to_string(), json!(2.0))).collect();
    let closed =
        close(&service, &owner, "cvs", "2024", &json!({"final_weights": weights}).to_string())
            .await;
    assert_eq!(closed.status, 200, "{}", closed.body);
    let seq = closed.sequence();
    let retried =
        close(&service, &owner, "cvs", "2024", &json!({"final_weights": weights}).to_string())
            .await;
    assert_eq!((retried.status, &retried.body["duplicate"]), (200, &json!(true)));
    assert_eq!(close(&service, &owner, "cvs", "2024", "").await.status, 409);
    let late =
        responses(&service, &owner, "cvs", "2024", "text/csv", "hh,region,w,victim\nH20,84,1,no\n")
            .await;
    assert_eq!(late.status, 409);

    let answer = service
        .get(&format!("/v1/surveys/cvs/estimates?wave=2024&stat=total&var=w&min_sequence={seq}"))
        .await;
    assert_eq!(answer.status, 200, "{}", answer.body);
    assert_eq!(answer.body["design"]["weights"], "final_weight");
    // Σ final_weight · w over the ten households.
    let total: f64 = HOUSEHOLDS.iter().map(|h| 2.0 * h.2).sum();
    assert_eq!(answer.body["estimates"][0]["estimate"].as_f64().unwrap(), total);

    for (query, status, message) in [
        ("wave=2024&stat=mean&var=colour", 400, "not a variable of wave"),
        ("wave=2099&stat=mean&var=w", 404, "has no wave '2099'"),
        ("wave=2024&stat=median&var=w", 400, "stat='median'"),
        ("stat=mean&var=w", 400, "wave= is required"),
    ] {
        let answer = service.get(&format!("/v1/surveys/cvs/estimates?{query}")).await;
        assert_eq!(answer.status, status, "{query}: {}", answer.body);
        assert!(
            answer.body["error"].as_str().unwrap().contains(message),
            "{query}: {}",
            answer.body
        );
    }
    let unknown = service.get("/v1/surveys/nope/estimates?wave=1&stat=mean&var=w").await;
    assert_eq!(unknown.status, 404);

    // Restarted, the ingest still knows the wave is closed and the respondents it has.
    service.stop();
    let service = env.up().await;
    let late =
        responses(&service, &owner, "cvs", "2024", "text/csv", "hh,region,w,victim\nH01,84,1,no\n")
            .await;
    assert_eq!(late.status, 409, "{}", late.body);
    let listing = service.get("/v1/surveys").await;
    assert_eq!(listing.body["surveys"][0]["waves"][0]["respondents"], 10, "{}", listing.body);
    assert_eq!(listing.body["surveys"][0]["waves"][0]["status"], "closed");
}

#[tokio::test]
async fn reporting_rate_and_dark_figure_set_the_survey_beside_recorded_incidents() {
    let env = Env::new();
    let owner = env.add_agency("ssmsi");
    let pn = env.add_agency("pn");
    let service = env.up().await;
    assert_eq!(declare(&service, &owner, "cvs", &small_declaration("2024")).await.status, 201);
    let uploaded =
        responses(&service, &owner, "cvs", "2024", "application/x-ndjson", households_ndjson())
            .await;
    assert_eq!(uploaded.body["accepted"], 10, "{}", uploaded.body);
    let seq = uploaded.sequence();

    // Open waves are estimated too (status says so).
    let rate =
        service.get(&format!("/v1/surveys/cvs/reporting-rate?wave=2024&min_sequence={seq}")).await;
    assert_eq!(rate.status, 200, "{}", rate.body);
    assert_eq!(rate.body["status"], "open");
    let estimate = &rate.body["estimates"][0];
    // Victims who answered the follow-up: H01 (yes), H02, H04, H06 (yes), H08 → (100 + 200) / 800.
    assert!(
        (estimate["estimate"].as_f64().unwrap() - 300.0 / 800.0).abs() < 1e-12,
        "{}",
        rate.body
    );
    assert_eq!(estimate["ci_method"], "logit");
    assert!(
        estimate["ci_lower"].as_f64().unwrap() < 0.375
            && estimate["ci_upper"].as_f64().unwrap() > 0.375
    );
    assert_eq!(estimate["statistic"], "reporting_rate");
    let by_region = service
        .get(&format!("/v1/surveys/cvs/reporting-rate?wave=2024&by=region&min_sequence={seq}"))
        .await;
    let regions: Vec<&str> = by_region.body["estimates"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["domain"]["region"].as_str().unwrap())
        .collect();
    assert_eq!(regions, ["11", "84"], "{}", by_region.body);

    // Incidents recorded by the police for 2024 fraud (ICCS 0701) against individuals.
    let incidents: Vec<Value> =
        (0..7).map(|i| record(&format!("F{i}"), 1, "2024-05-10", "75", "0701")).collect();
    let mut other: Vec<Value> = vec![
        record("X1", 1, "2023-05-10", "75", "0701"),
        record("X2", 1, "2024-05-10", "75", "0208"),
    ];
    other[0]["reported_on"] = json!("2023-05-11");
    let posted = service.post_ndjson(&pn, &[incidents, other].concat()).await;
    assert_eq!(posted.body["accepted"], 9, "{}", posted.body);
    let incidents_seq = posted.sequence();
    let dark = service
        .get(&format!("/v1/surveys/cvs/dark-figure?wave=2024&item=fraud&min_sequence={seq}&incidents_min_sequence={incidents_seq}"))
        .await;
    assert_eq!(dark.status, 200, "{}", dark.body);
    let body = &dark.body;
    // Victims: H01 H02 H04 H06 H08 H10 → 100+100+150+200+250+180.
    assert_eq!(body["survey_estimates"]["victims"]["estimate"].as_f64().unwrap(), 980.0);
    assert_eq!(body["recorded_incidents"]["count"], 7, "{body}");
    assert_eq!(body["recorded_incidents"]["filters"]["victim_type"], "individual");
    assert!(body["caveats"][0].as_str().unwrap().contains("Different counting units"), "{body}");
    assert!((body["recorded_per_estimated_victim"].as_f64().unwrap() - 7.0 / 980.0).abs() < 1e-15);
    assert!(body["survey_estimates"]["reporting_rate"]["estimate"].as_f64().is_some());
    assert!(
        body["as_of"]["sequence"].as_u64().unwrap() >= seq
            && body["recorded_incidents"]["as_of"]["sequence"].as_u64().unwrap() >= incidents_seq
    );
    // A source that has sent nothing cannot be compared: a 400 naming it, not a zero.
    let none = service
        .get(&format!("/v1/surveys/cvs/dark-figure?wave=2024&source=gn&min_sequence={seq}"))
        .await;
    assert_eq!(none.status, 400, "{}", none.body);
    assert!(none.body["error"].as_str().unwrap().contains("source='gn'"), "{}", none.body);
}

/// Publishes a survey event straight to the stream, as a second ingest replica (or a buggy
/// producer with NATS access) could: the projector must hold to the same rules as the ingest.
pub(crate) async fn publish_direct(
    env: &Env,
    source: &str,
    event: &observatory_model::survey::SurveyEvent,
) -> u64 {
    let bus = observatory_bus::Bus::connect(observatory_bus::BusConfig::new(env.nats.url()))
        .await
        .expect("connect");
    let envelope = event.envelope(source, chrono::Utc::now());
    let outgoing =
        observatory_bus::Outgoing::from_envelope(&envelope, event.dedupe_key(source), None);
    bus.publisher().publish_all(vec![outgoing]).await.pop().unwrap().expect("published").sequence
}

#[tokio::test]
async fn the_projector_resumes_from_its_manifest_and_never_doubles_a_respondent() {
    use observatory_model::survey::{Cell, SurveyEvent, SurveyResponsesRecorded, SurveyRow};
    let env = Env::new();
    let owner = env.add_agency("ssmsi");
    let service = env.up().await;
    assert_eq!(declare(&service, &owner, "cvs", &small_declaration("2024")).await.status, 201);
    let seq =
        responses(&service, &owner, "cvs", "2024", "application/x-ndjson", households_ndjson())
            .await
            .sequence();
    let before = service
        .get(&format!("/v1/surveys/cvs/estimates?wave=2024&stat=total&var=w&min_sequence={seq}"))
        .await;
    assert_eq!(before.status, 200, "{}", before.body);
    service.stop();

    // Separate processes now: the projector restores the open wave's respondents from its files.
    let mut projector = env.spawn_projector();
    let query = env.observatory("query").start().await;
    let row = |id: &str, w: f64| SurveyRow {
        respondent_id: id.into(),
        values: [
            ("region".to_owned(), Cell::Text("84".into())),
            ("w".to_owned(), Cell::Number(w)),
            ("victim".to_owned(), Cell::Text("no".into())),
        ]
        .into(),
    };
    let batch = SurveyEvent::ResponsesRecorded(SurveyResponsesRecorded {
        survey: "cvs".into(),
        wave: "2024".into(),
        rows: vec![row("H01", 5000.0), row("H99", 0.25), row("H99", 7000.0)],
    });
    let direct = publish_direct(&env, "ssmsi", &batch).await;
    // Another agency cannot write into the survey, even on the bus.
    let foreign = publish_direct(
        &env,
        "pn",
        &SurveyEvent::ResponsesRecorded(SurveyResponsesRecorded {
            survey: "cvs".into(),
            wave: "2024".into(),
            rows: vec![row("H98", 1.0)],
        }),
    )
    .await;
    assert!(foreign > direct);
    let after = query
        .get(&format!("/v1/surveys/cvs/estimates?wave=2024&stat=total&var=w&min_sequence={direct}"))
        .await;
    assert_eq!(after.status, 200, "{}", after.body);
    assert_eq!(
        after.body["respondents"], 11,
        "H01 stays once, H99 once, H98 refused: {}",
        after.body
    );
    let total = before.body["estimates"][0]["estimate"].as_f64().unwrap();
    // H99 enters with its first row (w = 0.25, weight 0.25).
    assert_eq!(after.body["estimates"][0]["estimate"].as_f64().unwrap(), total + 0.25 * 0.25);
    crate::harness::terminate(&mut projector);

    let output = env.rebuild();
    assert!(output.contains("rebuilt surveys v2") && output.contains("11 respondents"), "{output}");
    let rebuilt = query
        .get(&format!("/v1/surveys/cvs/estimates?wave=2024&stat=total&var=w&min_sequence={direct}"))
        .await;
    assert_eq!(rebuilt.body["as_of"]["version"], 2);
    assert_eq!(rebuilt.body["estimates"], after.body["estimates"]);
}

/// Issue 15, defects 3, 4 and 7: intervals stay where their statistic lives, and the dark
/// figure never adds offences to platform reports.
#[tokio::test]
async fn survey_intervals_stay_in_range_and_units_are_never_added() {
    let env = Env::new();
    let owner = env.add_agency("ssmsi");
    let pn = env.add_agency("pn");
    let platform = env.add_agency_with("pharos", &["--crosswalk", "platform"]);
    let service = env.up().await;
    assert_eq!(declare(&service, &owner, "cvs", &small_declaration("2024")).await.status, 201);
    let uploaded =
        responses(&service, &owner, "cvs", "2024", "application/x-ndjson", households_ndjson())
            .await;
    let seq = uploaded.sequence();

    // Defect 4: a proportion defaults to an interval inside [0, 1] (logit, as svyciprop).
    let cvs = |query: &str| {
        let url = format!("/v1/surveys/cvs/estimates?{query}&min_sequence={seq}");
        let service = &service;
        async move {
            let answer = service.get(&url).await;
            assert_eq!(answer.status, 200, "{url}: {}", answer.body);
            answer.body
        }
    };
    let prop = cvs("wave=2024&stat=prop&var=victim").await;
    for e in prop["estimates"].as_array().unwrap() {
        assert_eq!(e["ci_method"], "logit", "{e}");
        let (l, u) = (e["ci_lower"].as_f64().unwrap(), e["ci_upper"].as_f64().unwrap());
        assert!(0.0 <= l && u <= 1.0, "{e}");
    }
    // The t interval asked for explicitly may leave [0, 1]: then it says so.
    let t = cvs("wave=2024&stat=prop&var=victim&by=region&ci=t").await;
    for e in t["estimates"].as_array().unwrap() {
        let outside =
            e["ci_lower"].as_f64().unwrap() < 0.0 || e["ci_upper"].as_f64().unwrap() > 1.0;
        let flagged = e["flags"].as_array().unwrap().iter().any(|f| f == "ci_outside_range");
        assert_eq!(outside, flagged, "{e}");
    }

    // Defect 3: every victim of a wave reported: the estimate is 1 and no interval excludes it.
    let mut all_reported = small_declaration("2025");
    all_reported["reference_period"] = json!({"from": "2025-01-01", "to": "2025-12-31"});
    assert_eq!(declare(&service, &owner, "cvs", &all_reported).await.status, 201);
    let rows: String = HOUSEHOLDS
        .iter()
        .map(|(hh, region, w, victim, _)| {
            let mut row = json!({"hh": hh, "region": region, "w": w, "victim": victim});
            if *victim == "yes" {
                row["reported"] = json!("yes");
            }
            format!("{row}\n")
        })
        .collect();
    let seq =
        responses(&service, &owner, "cvs", "2025", "application/x-ndjson", rows).await.sequence();
    let rate =
        service.get(&format!("/v1/surveys/cvs/reporting-rate?wave=2025&min_sequence={seq}")).await;
    assert_eq!(rate.status, 200, "{}", rate.body);
    let e = &rate.body["estimates"][0];
    assert_eq!(e["estimate"], 1.0, "{e}");
    assert!(e["ci_lower"].is_null() && e["ci_upper"].is_null(), "{e}");
    assert!(e["flags"].as_array().unwrap().iter().any(|f| f == "ci_undefined"), "{e}");

    // Defect 7: offences and platform reports stay apart.
    let offences: Vec<Value> =
        (0..3).map(|i| record(&format!("F{i}"), 1, "2024-05-10", "75", "0701")).collect();
    assert_eq!(service.post_ndjson(&pn, &offences).await.body["accepted"], 3);
    let reports: Vec<Value> = (0..2)
        .map(|i| {
            let mut r = record(&format!("P{i}"), 1, "2024-06-10", "92", "0701");
            r.as_object_mut().unwrap().remove("iccs");
            r["offence_code"] = json!("phishing");
            r
        })
        .collect();
    let posted = service.post_ndjson(&platform, &reports).await;
    assert_eq!(posted.body["accepted"], 2, "{}", posted.body);
    let incidents = posted.sequence();
    let dark = service
        .get(&format!("/v1/surveys/cvs/dark-figure?wave=2024&item=fraud&min_sequence={seq}&incidents_min_sequence={incidents}"))
        .await;
    assert_eq!(dark.status, 200, "{}", dark.body);
    let recorded = &dark.body["recorded_incidents"];
    assert!(recorded["count"].is_null(), "two units are never added: {recorded}");
    assert!(dark.body["recorded_per_estimated_victim"].is_null(), "{}", dark.body);
    let by_unit: Vec<(String, i64)> = recorded["by_unit"]
        .as_array()
        .unwrap()
        .iter()
        .map(|u| (u["unit"].as_str().unwrap().to_owned(), u["count"].as_i64().unwrap()))
        .collect();
    assert_eq!(by_unit, vec![("offence".to_owned(), 3), ("report".to_owned(), 2)], "{recorded}");
    let offences_only = service
        .get(&format!("/v1/surveys/cvs/dark-figure?wave=2024&item=fraud&unit=offence&incidents_min_sequence={incidents}"))
        .await;
    assert_eq!(offences_only.body["recorded_incidents"]["count"], 3, "{}", offences_only.body);
    let victims = offences_only.body["survey_estimates"]["victims"]["estimate"].as_f64().unwrap();
    assert_eq!(offences_only.body["recorded_per_estimated_victim"].as_f64(), Some(3.0 / victims));
    let unknown = service.get("/v1/surveys/cvs/dark-figure?wave=2024&source=nosuch").await;
    assert_eq!(unknown.status, 400, "{}", unknown.body);
    assert!(unknown.body["error"].as_str().unwrap().contains("nosuch"), "{}", unknown.body);
}

/// A stream written by an earlier version holds survey events on the old subjects (one per
/// kind and source): the ingest reads them at start and goes on from them, on the survey's own
/// subjects, and the projector folds both into one wave.
#[tokio::test]
async fn surveys_written_on_the_old_subjects_go_on_after_an_upgrade() {
    use observatory_model::survey::{Cell, SurveyEvent, SurveyResponsesRecorded, SurveyRow};
    let env = Env::new();
    let owner = env.add_agency("ssmsi");
    let declaration: observatory_model::survey::SurveyWaveDeclared = serde_json::from_value({
        let mut d = small_declaration("2024");
        d["survey"] = json!("cvs");
        d
    })
    .unwrap();
    publish_direct(&env, "ssmsi", &SurveyEvent::WaveDeclared(declaration)).await;
    let row = |id: &str| SurveyRow {
        respondent_id: id.into(),
        values: [
            ("region".to_owned(), Cell::Text("84".into())),
            ("w".to_owned(), Cell::Number(10.0)),
            ("victim".to_owned(), Cell::Text("no".into())),
        ]
        .into(),
    };
    let batch = SurveyEvent::ResponsesRecorded(SurveyResponsesRecorded {
        survey: "cvs".into(),
        wave: "2024".into(),
        rows: vec![row("H01"), row("H02")],
    });
    publish_direct(&env, "ssmsi", &batch).await;

    let service = env.up().await;
    // The old declaration is known, and so are its respondents.
    let again = declare(&service, &owner, "cvs", &small_declaration("2024")).await;
    assert_eq!((again.status, &again.body["duplicate"]), (200, &json!(true)), "{}", again.body);
    let ndjson = households_ndjson();
    let answer = responses(&service, &owner, "cvs", "2024", "application/x-ndjson", ndjson).await;
    assert_eq!(answer.status, 200, "{}", answer.body);
    assert_eq!((&answer.body["accepted"], &answer.body["duplicates"]), (&json!(8), &json!(2)));
    let closed = close(&service, &owner, "cvs", "2024", "").await;
    assert_eq!(closed.body["respondents"], 10, "{}", closed.body);
    let last = closed.sequence();
    let listing = service
        .get(&format!("/v1/surveys/cvs/estimates?wave=2024&stat=total&var=w&min_sequence={last}"))
        .await;
    assert_eq!(listing.body["respondents"], 10, "{}", listing.body);
}
