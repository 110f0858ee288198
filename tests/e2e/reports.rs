//! Reports: `observatory report` publishes a monthly and an annual report from one release,
//! byte-identical when run again, after a rebuild and after a restart; the PDF's text and the
//! workbook (read with openpyxl) hold the API's public numbers for that release; the files
//! are served with their content types and ETags; the front page loads in headless chromium
//! without a console error.

use std::collections::BTreeMap;
use std::path::Path;
use std::process::Command;

use reqwest::Method;
use serde_json::Value;

use crate::harness::{Env, Service};

fn python() -> &'static str {
    "python3"
}

fn script(name: &str) -> String {
    format!("{}/../../tests/reports/{name}", env!("CARGO_MANIFEST_DIR"))
}

/// Runs `observatory report`; returns its manifest (stdout) and what it said (stderr).
fn report(
    env: &Env,
    kind: &str,
    period: &str,
    release: Option<&str>,
    out: &Path,
) -> (Value, String) {
    let mut invocation = env.observatory("report").flag("--kind", kind).flag("--period", period);
    invocation = invocation.flag("--out", out.to_str().unwrap());
    if let Some(release) = release {
        invocation = invocation.flag("--release", release);
    }
    let output = invocation.command().output().expect("run observatory report");
    let stderr = String::from_utf8_lossy(&output.stderr).into_owned();
    assert!(output.status.success(), "observatory report failed: {stderr}");
    (serde_json::from_slice(&output.stdout).expect("the manifest on stdout"), stderr)
}

/// Every file under `dir` by relative path → its bytes.
fn files(dir: &Path) -> BTreeMap<String, Vec<u8>> {
    fn walk(root: &Path, dir: &Path, out: &mut BTreeMap<String, Vec<u8>>) {
        for entry in std::fs::read_dir(dir).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                walk(root, &path, out);
            } else {
                let name = path.strip_prefix(root).unwrap().to_string_lossy().into_owned();
                out.insert(name, std::fs::read(&path).unwrap());
            }
        }
    }
    let mut out = BTreeMap::new();
    walk(dir, dir, &mut out);
    out
}

fn pdf_text(pdf: &Path) -> String {
    let output = Command::new("pdftotext")
        .args(["-layout", pdf.to_str().unwrap(), "-"])
        .output()
        .expect("pdftotext (poppler-utils, from scripts/setup.sh)");
    assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
    // One space between words, so a table row reads as its cells in order.
    String::from_utf8(output.stdout)
        .unwrap()
        .lines()
        .map(|l| l.split_whitespace().collect::<Vec<_>>().join(" "))
        .collect::<Vec<_>>()
        .join("\n")
}

fn grouped(v: i64) -> String {
    let digits = v.to_string();
    let mut out = String::new();
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
}

fn xlsx(path: &Path) -> Value {
    let output = Command::new(python())
        .arg(script("read_xlsx.py"))
        .arg(path)
        .output()
        .expect("python3 with openpyxl (scripts/setup.sh)");
    assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
    serde_json::from_slice(&output.stdout).unwrap()
}

async fn public(service: &Service, path: &str) -> Value {
    let answer = service.get_public(path).await;
    assert_eq!(answer.status, 200, "{path}: {}", answer.text);
    answer.body
}

#[tokio::test]
async fn reports_are_reproducible_hold_the_public_numbers_and_are_served() {
    let env = Env::new();
    let service = env.up().await;
    // The demo's feed: four agencies over 2024–2025 (December 2025 left open, so provisional)
    // and a household survey wave over 2024.
    env.observatory("demo").flag("--url", &service.base).flag("--incidents", "4000").run();
    let work = env.dir.path().join("reports");

    // Monthly, from a new release; then again from that release: the same bytes.
    let (monthly, said) = report(&env, "monthly", "2025-12", None, &work.join("m1"));
    let release = monthly["release"].as_str().unwrap().to_owned();
    assert!(said.contains("published to"), "{said}");
    let (again, said) = report(&env, "monthly", "2025-12", Some(&release), &work.join("m2"));
    assert!(said.contains("already published, byte for byte"), "{said}");
    assert_eq!(again, monthly);
    let m1 = files(&work.join("m1"));
    assert_eq!(m1, files(&work.join("m2")));
    for (name, sha) in monthly["files"].as_object().unwrap() {
        let bytes = &m1[name];
        assert_eq!(sha.as_str().unwrap(), observatory_report::sha256(bytes), "{name}");
    }
    for name in
        ["report.pdf", "tables.xlsx", "report.json", "manifest.json", "tables/national_series.csv"]
    {
        assert!(m1.contains_key(name), "{name} in {:?}", m1.keys().collect::<Vec<_>>());
    }

    // Annual 2024 (the survey wave covers it) and 2025 (no wave: the section says so).
    let (annual, _) = report(&env, "annual", "2024", Some(&release), &work.join("a1"));
    let (annual_2025, _) = report(&env, "annual", "2025", Some(&release), &work.join("b1"));

    // The PDF's text holds the API's public numbers for the release.
    let text = pdf_text(&work.join("m1/report.pdf"));
    let series = public(&service, &format!("/v1/incidents/counts?by=month&unit=offence&cyber=true&from=2023-12&to=2025-12&release={release}")).await;
    let rows = series["rows"].as_array().unwrap();
    assert!(rows.len() >= 20, "{series}");
    for row in rows {
        let month = row["month"].as_str().unwrap();
        let status = if row["provisional"] == true { "provisional" } else { "final" };
        let line = format!("{month} {} {status}", grouped(row["count"].as_i64().unwrap()));
        assert!(text.lines().any(|l| l == line), "'{line}' not in the monthly PDF:\n{text}");
    }
    assert!(text.contains("2025-12") && text.contains("provisional"));
    assert!(text.contains(&format!("Release {release}")), "the header names the release");
    assert!(text.contains("cell-key"), "the methods box names the disclosure method");

    let text = pdf_text(&work.join("a1/report.pdf"));
    let rates = public(&service, &format!("/v1/incidents/counts?by=departement&unit=offence&cyber=true&rate=per100k&from=2024&to=2024&release={release}")).await;
    let mut checked = 0;
    for row in rates["rows"].as_array().unwrap() {
        let Some(code) = row["departement"].as_str() else {
            let line =
                format!("– département not stated {} – –", grouped(row["count"].as_i64().unwrap()));
            assert!(text.lines().any(|l| l == line), "'{line}' not in the annual PDF:\n{text}");
            continue;
        };
        let rate = format!("{:.1}", row["rate_per_100k"].as_f64().unwrap());
        let count = grouped(row["count"].as_i64().unwrap());
        let population = grouped(row["population"].as_i64().unwrap());
        let found = text.lines().any(|l| {
            l.starts_with(&format!("{code} "))
                && l.ends_with(&format!(" {count} {population} {rate}"))
        });
        assert!(
            found,
            "département {code}: {count} {population} {rate} not in the annual PDF:\n{text}"
        );
        checked += 1;
    }
    assert!(checked >= 20, "{checked} départements checked");
    let surveys = public(&service, &format!("/v1/surveys?release={release}")).await;
    let items = surveys["surveys"][0]["waves"][0]["items"].as_array().unwrap().clone();
    assert!(!items.is_empty(), "{surveys}");
    for item in &items {
        let item = item.as_str().unwrap();
        let dark = public(
            &service,
            &format!(
                "/v1/surveys/cvs/dark-figure?wave=2024&item={item}&unit=offence&release={release}"
            ),
        )
        .await;
        let figures = &dark["survey_estimates"];
        let prevalence = figures["prevalence"]["estimate"].as_f64().unwrap() * 100.0;
        let lower = figures["prevalence"]["ci_lower"].as_f64().unwrap() * 100.0;
        let upper = figures["prevalence"]["ci_upper"].as_f64().unwrap() * 100.0;
        let shown = format!("{prevalence:.1} {lower:.1} to {upper:.1}");
        assert!(
            text.contains(&shown),
            "{item}: prevalence '{shown}' not in the annual PDF:\n{text}"
        );
        if let Some(rate) = figures["reporting_rate"]["estimate"].as_f64() {
            assert!(
                text.contains(&format!("{:.1}", rate * 100.0)),
                "{item}: reporting rate {rate}"
            );
        }
    }
    let text_2025 = pdf_text(&work.join("b1/report.pdf"));
    assert!(text_2025.contains("No closed survey wave"), "{text_2025}");

    // The workbook holds the same numbers, as numbers.
    let book = xlsx(&work.join("m1/tables.xlsx"));
    let sheet = book["national_series"].as_array().unwrap();
    for row in rows {
        let month = row["month"].as_str().unwrap();
        let cells =
            sheet.iter().find(|r| r[0] == month).unwrap_or_else(|| panic!("{month} in the sheet"));
        assert_eq!(cells[1].as_f64(), row["count"].as_f64(), "{month}");
    }
    assert!(book.get("notes").is_some());
    let book = xlsx(&work.join("a1/tables.xlsx"));
    let sheet = book["departement_rates"].as_array().unwrap();
    for row in rates["rows"].as_array().unwrap() {
        let Some(code) = row["departement"].as_str() else { continue };
        let cells = sheet.iter().find(|r| r[0] == code).unwrap();
        let rate = row["rate_per_100k"].as_f64().unwrap();
        assert!((cells[4].as_f64().unwrap() - rate).abs() < 1e-9, "{code}: {cells:?} vs {rate}");
    }

    // After a rebuild and a restart, the same release gives the same bytes.
    env.rebuild();
    service.stop();
    let service = env.up().await;
    let (after, said) = report(&env, "monthly", "2025-12", Some(&release), &work.join("m3"));
    assert!(said.contains("already published, byte for byte"), "{said}");
    assert_eq!(after, monthly);
    assert_eq!(files(&work.join("m3")), m1);
    let (after, _) = report(&env, "annual", "2024", Some(&release), &work.join("a2"));
    assert_eq!(after, annual);
    assert_eq!(files(&work.join("a2")), files(&work.join("a1")));

    // A second release and its report: the revisions table compares with the first.
    let (second, _) = report(&env, "monthly", "2025-12", None, &work.join("m4"));
    assert_ne!(second["release"], monthly["release"]);
    assert_eq!(second["previous_release"], monthly["release"]);

    // Served: the listing, the newest report of a period, files with types and ETags.
    let listing = public(&service, "/v1/reports").await;
    let reports = listing["reports"].as_array().unwrap();
    assert_eq!(reports.len(), 4, "{listing}");
    let latest = public(&service, "/v1/reports/monthly/2025-12").await;
    assert_eq!(latest["release"], second["release"]);
    let older = public(&service, &format!("/v1/reports/monthly/2025-12?release={release}")).await;
    assert_eq!(older["release"], release.as_str());
    let pdf_href = older["files"]
        .as_array()
        .unwrap()
        .iter()
        .find(|f| f["name"] == "report.pdf")
        .unwrap()["href"]
        .as_str()
        .unwrap()
        .to_owned();
    let answer = service.call(Method::GET, &pdf_href).send().await;
    assert_eq!(answer.status, 200);
    assert_eq!(answer.headers["content-type"], "application/pdf");
    let etag = answer.headers["etag"].to_str().unwrap().to_owned();
    assert_eq!(etag, format!("\"{}\"", monthly["files"]["report.pdf"].as_str().unwrap()));
    let cached = service.call(Method::GET, &pdf_href).header("If-None-Match", &etag).send().await;
    assert_eq!(cached.status, 304);
    let xlsx_href = pdf_href.replace("report.pdf", "tables.xlsx");
    let answer = service.call(Method::GET, &xlsx_href).send().await;
    assert_eq!(
        answer.headers["content-type"],
        "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet"
    );
    for (path, status) in [
        ("/v1/reports/weekly/2025-12", 404),
        ("/v1/reports/monthly/2031-01", 404),
        ("/v1/reports/monthly/2025-12?release=r999", 404),
        (&pdf_href.replace("report.pdf", "nothing.pdf"), 404),
        ("/v1/reports?colour=blue", 400),
    ] {
        let answer = service.get_public(path).await;
        assert_eq!(answer.status, status, "{path}: {}", answer.text);
        assert!(answer.body["error"].as_str().is_some(), "{path}: {}", answer.text);
    }
    assert!(annual_2025["files"].as_object().unwrap().contains_key("report.pdf"));

    // Errors that say what to do.
    let output = env
        .observatory("report")
        .flag("--kind", "weekly")
        .flag("--period", "2025")
        .command()
        .output()
        .unwrap();
    assert!(!output.status.success());
    assert!(String::from_utf8_lossy(&output.stderr).contains("use monthly or annual"));
    let output = env
        .observatory("report")
        .flag("--kind", "monthly")
        .flag("--period", "2019-01")
        .flag("--release", &release)
        .command()
        .output()
        .unwrap();
    assert!(!output.status.success());
    assert!(
        String::from_utf8_lossy(&output.stderr).contains("no recorded cyber offence"),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    // A month nobody sent, inside a window of months that have data: refused, not a zero.
    for (kind, period, says) in [
        ("monthly", "2026-03", "no agency has sent or closed 2026-03"),
        ("annual", "2026", "no agency has sent or closed any month of 2026"),
    ] {
        let output = env
            .observatory("report")
            .flag("--kind", kind)
            .flag("--period", period)
            .flag("--release", &release)
            .command()
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(!output.status.success() && stderr.contains(says), "{stderr}");
    }
    let output = env
        .observatory("report")
        .flag("--kind", "monthly")
        .flag("--period", "2025-12")
        .flag("--release", "r999")
        .command()
        .output()
        .unwrap();
    assert!(String::from_utf8_lossy(&output.stderr).contains("no release 'r999'"));

    // The front page, in a real browser: no console error, the report's charts inline.
    let shot = work.join("front.png");
    let output = Command::new(python())
        .arg(script("frontpage.py"))
        .arg(format!("{}/", service.base))
        .arg(&shot)
        .output()
        .expect("python3 (scripts/setup.sh)");
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(output.status.success(), "{stdout}\n{}", String::from_utf8_lossy(&output.stderr));
    let facts: Value = serde_json::from_str(stdout.trim()).unwrap();
    assert_eq!(facts["page"]["title"], "National cybercrime observatory");
    assert!(facts["page"]["svgs"].as_u64().unwrap() >= 3, "{facts}");
    assert!(std::fs::metadata(&shot).unwrap().len() > 10_000);
    if let Ok(dir) = std::env::var("OBSERVATORY_KEEP_REPORTS") {
        let dir = Path::new(&dir);
        std::fs::create_dir_all(dir).unwrap();
        std::fs::copy(&shot, dir.join("front.png")).unwrap();
        for (name, bytes) in files(&work.join("m1"))
            .into_iter()
            .chain(files(&work.join("a1")).into_iter().map(|(n, b)| (format!("annual-{n}"), b)))
        {
            let path = dir.join(name.replace('/', "-"));
            std::fs::write(path, bytes).unwrap();
        }
    }
}

/// Two schedulers started on one store after a scheduled run was missed: the run is caught
/// up, once — one release, one report, one claim.
#[tokio::test]
async fn two_schedulers_catch_up_a_missed_run_once() {
    use crate::harness::{record, terminate, wait_until};
    use chrono::Datelike;
    use std::time::Duration;

    let env = Env::new();
    let pn = env.add_agency("pn");
    // Before anything is projected, a report makes no (empty) release and says what to do.
    let output = env
        .observatory("report")
        .flag("--kind", "monthly")
        .flag("--period", "2025-10")
        .command()
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(!output.status.success() && stderr.contains("nothing is projected"), "{stderr}");
    let service = env.up().await;
    // Incidents in the month before this one: the period a run this month reports on.
    let today = chrono::Utc::now().date_naive();
    let first = today.with_day(1).unwrap();
    let last_month = first - chrono::Months::new(1);
    let period = last_month.format("%Y-%m").to_string();
    let records: Vec<Value> = (0..60u32)
        .map(|i| {
            record(
                &format!("S{i}"),
                1,
                &last_month.with_day(1 + i % 28).unwrap().to_string(),
                "75",
                "0903",
            )
        })
        .collect();
    let sequence = service.post_ndjson(&pn, &records).await.sequence();
    service.counts("by=month", sequence).await;
    // Runs on the 1st at 00:00 UTC: this month's run was due before the schedulers started.
    let config = env.dir.path().join("reports.toml");
    std::fs::write(
        &config,
        "[[report]]\nkind = \"monthly\"\ncron = \"0 0 1 * *\"\ntimezone = \"UTC\"\n",
    )
    .unwrap();
    let logs: Vec<_> = (0..2).map(|i| env.dir.path().join(format!("scheduler-{i}.log"))).collect();
    let mut schedulers: Vec<_> = logs
        .iter()
        .map(|log| {
            env.observatory("scheduler")
                .flag("--reports-config", config.to_str().unwrap())
                .command()
                .env("OBSERVATORY_LOG", "info")
                .stderr(std::fs::File::create(log).unwrap())
                .spawn()
                .unwrap()
        })
        .collect();
    // Each scheduler logs its next run once the catch-up is behind it.
    wait_until("both schedulers to finish catching up", Duration::from_secs(300), || {
        let logs = logs.clone();
        async move {
            logs.iter().all(|l| {
                std::fs::read_to_string(l).unwrap_or_default().contains("next scheduled report")
            })
        }
    })
    .await;
    for s in &mut schedulers {
        terminate(s);
    }
    let text: Vec<String> = logs.iter().map(|l| std::fs::read_to_string(l).unwrap()).collect();
    let published = text.iter().filter(|t| t.contains("scheduled report published")).count();
    let left = text
        .iter()
        .filter(|t| {
            t.contains("already claimed by another scheduler")
                || t.contains("scheduled report already published")
        })
        .count();
    assert_eq!((published, left), (1, 1), "{text:?}");
    let listing = public(&service, "/v1/reports").await;
    let reports = listing["reports"].as_array().unwrap();
    assert_eq!(reports.len(), 1, "{listing}");
    assert_eq!(reports[0]["period"], period.as_str());
    let releases = public(&service, "/v1/releases").await;
    assert_eq!(releases["releases"].as_array().unwrap().len(), 1, "one release: {releases}");
}
