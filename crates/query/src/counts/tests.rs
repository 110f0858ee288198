//! Netting, coverage flags, filters and the incremental netting of [`super::CountsEngine`],
//! on small frames in the counts schema (and Parquet files in a temporary store).

use observatory_reference::Geography;
use observatory_store::layout::coverage as closures;
use observatory_store::{ProjectionId, Store};
use serde_json::{Map, Value};

use super::*;

/// One counts row: (month, département, iccs, source, unit, count, loss in cents).
type Row<'a> = (&'a str, Option<&'a str>, &'a str, &'a str, &'a str, i64, i64);

fn counts_file(rows: &[Row]) -> LazyFrame {
    counts_frame(rows).lazy()
}

/// A counts file's content, in the schema the projector writes.
fn counts_frame(rows: &[Row]) -> DataFrame {
    let geography = Geography::france();
    let text = |name: &str, f: &dyn Fn(&Row) -> String| {
        Column::new(name.into(), rows.iter().map(f).collect::<Vec<_>>())
    };
    let optional = |name: &str, f: &dyn Fn(&Row) -> Option<String>| {
        Column::new(name.into(), rows.iter().map(f).collect::<Vec<_>>())
    };
    DataFrame::new_infer_height(vec![
        Column::new(
            stored::YEAR.into(),
            rows.iter().map(|r| r.0[..4].parse::<i32>().unwrap()).collect::<Vec<_>>(),
        ),
        text(stored::MONTH, &|r| r.0.to_owned()),
        optional(stored::DEPARTEMENT, &|r| r.1.map(str::to_owned)),
        text(stored::ICCS, &|r| r.2.to_owned()),
        Column::new(stored::CYBER.into(), vec![true; rows.len()]),
        text(stored::VICTIM_TYPE, &|_| "individual".to_owned()),
        text(stored::CHANNEL, &|_| "email".to_owned()),
        text(stored::SOURCE, &|r| r.3.to_owned()),
        text(stored::UNIT, &|r| r.4.to_owned()),
        text(stored::ICCS_SECTION, &|r| r.2[..2].to_owned()),
        optional(stored::ICCS_DIVISION, &|r| r.2.get(..4).map(str::to_owned)),
        optional(stored::ICCS_GROUP, &|r| r.2.get(..5).map(str::to_owned)),
        optional(stored::REGION, &|r| {
            r.1.and_then(|d| geography.region_of(d)).map(|g| g.code.clone())
        }),
        Column::new(stored::COUNT.into(), rows.iter().map(|r| r.5).collect::<Vec<_>>()),
        Column::new(stored::LOSS_CENTS.into(), rows.iter().map(|r| r.6).collect::<Vec<_>>()),
        // A key sum that moves with the count, as the fold's does (7 per record).
        Column::new(stored::KEY_SUM.into(), rows.iter().map(|r| r.5 * 7).collect::<Vec<_>>()),
    ])
    .unwrap()
}

fn context(rows: &[Row], coverage: Coverage) -> Context {
    context_of(vec![counts_file(rows)], coverage)
}

/// What a request reads once `files` are netted under `coverage`.
fn context_of(files: Vec<LazyFrame>, coverage: Coverage) -> Context {
    let frame = net(files, &coverage).unwrap();
    Context {
        coded: Arc::new(Coded::encode(&frame).unwrap()),
        data_months: Arc::new(data_months(&frame).unwrap()),
        coverage: Arc::new(coverage),
    }
}

fn request(query: &[(&str, &str)]) -> CountsRequest {
    CountsRequest::parse(
        &query.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect::<Vec<_>>(),
    )
    .unwrap()
}

fn closed(source: &str, month: &str) -> DataFrame {
    coverage_file(&[(source, month, None)])
}

/// A coverage file: closed (source, month[, département]).
fn coverage_file(rows: &[(&str, &str, Option<&str>)]) -> DataFrame {
    df!(
        closures::SOURCE => rows.iter().map(|r| r.0).collect::<Vec<_>>(),
        closures::MONTH => rows.iter().map(|r| r.1).collect::<Vec<_>>(),
        closures::DEPARTEMENT => rows.iter().map(|r| r.2).collect::<Vec<_>>(),
    )
    .unwrap()
}

const ROWS: &[Row] = &[
    ("2024-01", Some("75"), "0701", "pn", "offence", 3, 1_000),
    ("2024-02", Some("92"), "0701", "pn", "offence", 1, 0),
    ("2024-02", Some("13"), "09031", "gn", "offence", 2, 250),
    ("2024-02", Some("75"), "0701", "pharos", "report", 4, 0),
    // An amendment moved one incident from 92 to 75: the deltas net out.
    ("2024-02", Some("92"), "0701", "pn", "offence", -1, 0),
    ("2024-02", Some("75"), "0701", "pn", "offence", 1, 0),
];

#[test]
fn deltas_net_per_cell_and_units_are_never_added() {
    let context = context(ROWS, Coverage::default());
    let frame =
        aggregate(&context, &request(&[("by", "departement"), ("unit", "offence")]), None).unwrap();
    let rows = crate::api::frame_rows(&frame);
    let counts: Vec<(String, i64)> = rows
        .iter()
        .map(|r| (r["departement"].as_str().unwrap().to_owned(), r["count"].as_i64().unwrap()))
        .collect();
    assert_eq!(counts, [("13".to_owned(), 2), ("75".to_owned(), 4)]);
    assert!(matches!(aggregate(&context, &request(&[]), None), Err(QueryError::MixedUnits(_))));
    let by_unit = aggregate(&context, &request(&[("by", "unit")]), None).unwrap();
    assert_eq!(by_unit.height(), 2);
}

#[test]
fn the_rate_of_a_row_is_over_what_the_row_counts() {
    let context = context(ROWS, Coverage::default());
    let geography = Geography::france();
    let frame = aggregate(
        &context,
        &request(&[
            ("by", "region"),
            ("departement", "75,75"),
            ("unit", "offence"),
            ("rate", "per100k"),
            ("from", "2024"),
        ]),
        None,
    )
    .unwrap();
    let row = &crate::api::frame_rows(&frame)[0];
    let paris = geography.population("75", 2024).unwrap();
    assert_eq!(row["population"].as_u64(), Some(paris.0), "{row:?}");
    assert_eq!(row["population_area"], "departement 75");
    // `to` left open: up to the last month with data.
    assert_eq!(row["rate_period"], "2024-01/2024-02");
    assert_eq!(row["rate_per_100k"].as_f64(), Some(4.0 * 100_000.0 / paris.0 as f64));
    let frame =
        aggregate(&context, &request(&[("unit", "offence"), ("rate", "per100k")]), None).unwrap();
    let row = &crate::api::frame_rows(&frame)[0];
    assert_eq!(
        (row["population_area"].as_str(), row["rate_period"].as_str()),
        (Some("FR"), Some("2024-01/2024-02"))
    );
    assert_eq!(row["population"].as_u64(), geography.national_population(2024).map(|p| p.0));
}

#[test]
fn a_zero_is_final_only_where_every_source_closed_every_month() {
    let mut coverage = Coverage::default();
    for (source, month) in
        [("pn", "2023-06"), ("gn", "2023-06"), ("pharos", "2023-06"), ("pn", "2023-07")]
    {
        coverage.add(&closed(source, month)).unwrap();
    }
    let context = context(ROWS, coverage);
    let provisional = |query: &[(&str, &str)]| {
        let frame = aggregate(&context, &request(query), None).unwrap();
        let row = &crate::api::frame_rows(&frame)[0];
        assert_eq!(row["count"], 0, "{query:?}");
        row["provisional"].as_bool().unwrap()
    };
    assert!(!provisional(&[("unit", "offence"), ("month", "2023-06")]));
    assert!(
        provisional(&[("unit", "offence"), ("month", "2023-07")]),
        "gn and pharos did not close July"
    );
    assert!(!provisional(&[("unit", "offence"), ("month", "2023-07"), ("source", "pn")]));
    assert!(provisional(&[("unit", "offence"), ("month", "2023-05")]));
    assert!(provisional(&[
        ("unit", "offence"),
        ("from", "2023-06"),
        ("to", "2023-07"),
        ("iccs", "0903")
    ]));
}

#[test]
fn loss_totals_that_do_not_fit_are_refused() {
    let big = i64::MAX / 2 + 1;
    let rows: &[Row] = &[
        ("2024-01", Some("75"), "0701", "pn", "offence", 1, big),
        ("2024-01", Some("92"), "0701", "pn", "offence", 1, big),
    ];
    assert!(matches!(
        net(vec![counts_file(rows)], &Coverage::default()),
        Err(QueryError::LossOverflow(_))
    ));
    let rows: &[Row] = &[("2024-01", Some("75"), "0701", "pn", "offence", 1, -5)];
    assert!(matches!(
        net(vec![counts_file(rows)], &Coverage::default()),
        Err(QueryError::LossOverflow(_))
    ));
}

#[test]
fn month_ranges_are_never_cut() {
    assert_eq!(month_range("1900-01", "2100-12").len(), 201 * 12);
    assert_eq!(month_range("2024-11", "2025-02"), ["2024-11", "2024-12", "2025-01", "2025-02"]);
}

fn answer(context: &Context, query: &[(&str, &str)]) -> Vec<Map<String, Value>> {
    crate::api::frame_rows(&aggregate(context, &request(query), None).unwrap())
}

/// The count of an ungrouped answer.
fn total(context: &Context, query: &[(&str, &str)]) -> i64 {
    answer(context, query)[0]["count"].as_i64().unwrap()
}

#[test]
fn cells_whose_deltas_net_to_zero_are_dropped() {
    let rows: &[Row] = &[
        // Reported, then withdrawn: nothing is left of the cell.
        ("2024-03", Some("75"), "0701", "pn", "offence", 1, 500),
        ("2024-03", Some("75"), "0701", "pn", "offence", -1, -500),
        ("2024-03", Some("92"), "0701", "pn", "offence", 2, 0),
        // An amendment of the loss alone nets to a count of 0 with a loss: kept.
        ("2024-03", Some("13"), "0701", "pn", "offence", 1, 0),
        ("2024-03", Some("13"), "0701", "pn", "offence", -1, 300),
    ];
    let cells = net(vec![counts_file(rows)], &Coverage::default()).unwrap();
    let mut departements: Vec<&str> =
        cells.column(stored::DEPARTEMENT).unwrap().str().unwrap().iter().flatten().collect();
    departements.sort_unstable();
    assert_eq!(departements, ["13", "92"]);
    // A grouped answer leaves out the cell that counts no incident.
    let context = context(rows, Coverage::default());
    let by_departement = answer(&context, &[("by", "departement")]);
    assert_eq!(by_departement.len(), 1, "{by_departement:?}");
    assert_eq!(by_departement[0]["departement"], "92");
    assert_eq!(answer(&context, &[])[0]["loss_eur"].as_f64(), Some(3.0));
}

#[test]
fn a_snapshot_plus_later_deltas_sums_both() {
    // A compaction wrote the year as one snapshot; later flushes add deltas to it.
    let snapshot: &[Row] = &[
        ("2024-01", Some("75"), "0701", "pn", "offence", 10, 1_000),
        ("2024-01", Some("92"), "0701", "pn", "offence", 3, 0),
    ];
    let deltas: &[Row] = &[
        ("2024-01", Some("75"), "0701", "pn", "offence", -2, -250),
        ("2024-01", Some("92"), "0701", "pn", "offence", -3, 0),
        ("2024-02", Some("75"), "0701", "pn", "offence", 1, 50),
    ];
    let context = context_of(vec![counts_file(snapshot), counts_file(deltas)], Coverage::default());
    let rows = answer(&context, &[("by", "month,departement")]);
    let cells: Vec<(&str, &str, i64, f64)> = rows
        .iter()
        .map(|r| {
            (
                r["month"].as_str().unwrap(),
                r["departement"].as_str().unwrap(),
                r["count"].as_i64().unwrap(),
                r["loss_eur"].as_f64().unwrap(),
            )
        })
        .collect();
    assert_eq!(cells, [("2024-01", "75", 8, 7.5), ("2024-02", "75", 1, 0.5)]);
}

#[test]
fn coverage_says_closed_partial_open_or_missing() {
    let mut coverage = Coverage::default();
    coverage
        .add(&coverage_file(&[
            ("pn", "2024-01", None),
            ("gn", "2024-02", Some("13")),
            ("gn", "2024-02", Some("2A")),
        ]))
        .unwrap();
    let context = context(ROWS, coverage);
    assert_eq!(context.status("pn", "2024-01"), ("closed", None));
    assert_eq!(context.status("gn", "2024-02"), ("partial", Some(vec!["13".into(), "2A".into()])));
    assert_eq!(context.status("pn", "2024-02"), ("open", None));
    assert_eq!(context.status("gn", "2024-01"), ("missing", None));
    assert!(context.coverage.is_closed("gn", "2024-02", Some("13")));
    assert!(!context.coverage.is_closed("gn", "2024-02", Some("75")));
    assert!(!context.coverage.is_closed("gn", "2024-02", None), "a partial closure is not whole");

    // A row is provisional while a source it counts has not closed its month there.
    let rows = answer(&context, &[("by", "month,source,departement,unit")]);
    let flags: Vec<(&str, &str, &str, bool)> = rows
        .iter()
        .map(|r| {
            (
                r["month"].as_str().unwrap(),
                r["source"].as_str().unwrap(),
                r["departement"].as_str().unwrap(),
                r["provisional"].as_bool().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        flags,
        [
            ("2024-01", "pn", "75", false),
            ("2024-02", "gn", "13", false),
            ("2024-02", "pharos", "75", true),
            ("2024-02", "pn", "75", true),
        ]
    );
    let by_month = answer(&context, &[("by", "month"), ("unit", "offence")]);
    assert_eq!(by_month[0]["provisional"], false);
    assert_eq!(by_month[1]["provisional"], true, "pn has not closed February");
}

#[test]
fn month_ranges_and_iccs_subtrees_select_coded_cells() {
    let rows: &[Row] = &[
        ("2023-12", Some("75"), "0701", "pn", "offence", 1, 0),
        ("2024-01", Some("75"), "0701", "pn", "offence", 2, 0),
        ("2024-01", Some("75"), "07011", "pn", "offence", 4, 0),
        ("2024-02", Some("75"), "0702", "pn", "offence", 8, 0),
        ("2024-03", Some("75"), "09031", "pn", "offence", 16, 0),
        ("2024-04", Some("75"), "0701", "pn", "offence", 32, 0),
    ];
    let context = context(rows, Coverage::default());
    assert_eq!(total(&context, &[]), 63);
    assert_eq!(total(&context, &[("from", "2024-01"), ("to", "2024-03")]), 2 + 4 + 8 + 16);
    assert_eq!(total(&context, &[("from", "2024")]), 2 + 4 + 8 + 16 + 32);
    assert_eq!(total(&context, &[("to", "2023")]), 1);
    assert_eq!(total(&context, &[("from", "2025-01")]), 0);
    // An ICCS code matches its whole subtree, and nothing that merely shares digits.
    assert_eq!(total(&context, &[("iccs", "0701")]), 1 + 2 + 4 + 32);
    assert_eq!(total(&context, &[("iccs", "07011")]), 4);
    assert_eq!(total(&context, &[("iccs", "07")]), 1 + 2 + 4 + 8 + 32);
    assert_eq!(total(&context, &[("iccs", "0702,0903")]), 8 + 16);
    assert_eq!(total(&context, &[("iccs", "0701"), ("from", "2024-01"), ("to", "2024-03")]), 6);
    let by_month = answer(&context, &[("by", "month"), ("iccs", "07"), ("from", "2024-02")]);
    let months: Vec<&str> = by_month.iter().map(|r| r["month"].as_str().unwrap()).collect();
    assert_eq!(months, ["2024-02", "2024-04"]);
}

#[test]
fn different_units_are_refused_unless_chosen_or_grouped() {
    let context = context(ROWS, Coverage::default());
    let refused = aggregate(&context, &request(&[("month", "2024-02")]), None).unwrap_err();
    assert!(matches!(&refused, QueryError::MixedUnits(units) if units == "offence, report"));
    assert!(refused.is_bad_request());
    assert!(refused.to_string().contains("choose one with unit="), "{refused}");
    // A filter that leaves one unit, a chosen unit, or units side by side are answers.
    assert_eq!(total(&context, &[("source", "pharos")]), 4);
    assert_eq!(total(&context, &[("unit", "report")]), 4);
    assert_eq!(answer(&context, &[("source", "pharos")])[0]["unit"], "report");
    let by_unit = answer(&context, &[("by", "unit"), ("month", "2024-02")]);
    let units: Vec<(&str, i64)> = by_unit
        .iter()
        .map(|r| (r["unit"].as_str().unwrap(), r["count"].as_i64().unwrap()))
        .collect();
    assert_eq!(units, [("offence", 3), ("report", 4)]);
}

/// Writes `frame` as the Parquet file of `table` for sequences `first..=last` of version 1.
async fn write(
    projection: &Projection,
    table: TableId,
    year: Option<i32>,
    (first, last): (u64, u64),
    mut frame: DataFrame,
) -> DataFile {
    let path = table.data_file(year, first, last);
    let mut bytes = Vec::new();
    ParquetWriter::new(&mut bytes).finish(&mut frame).unwrap();
    let size = bytes.len() as u64;
    projection.store().put(&projection.object_path(1, &path), bytes.into()).await.unwrap();
    DataFile {
        path,
        year,
        first_sequence: first,
        last_sequence: last,
        rows: frame.height() as u64,
        bytes: size,
    }
}

fn sorted(cells: &DataFrame) -> DataFrame {
    cells
        .sort(stored::DIMENSIONS.to_vec(), SortMultipleOptions::default().with_nulls_last(true))
        .unwrap()
}

/// A flush that only adds files extends the previous netting; the result must be the
/// netting of the whole manifest from scratch, open flags included.
// Polars reads Parquet through blocking sections, which need the multi-threaded runtime.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_netting_extended_by_new_files_equals_one_from_scratch() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path().to_str().unwrap()).unwrap();
    let projection = Projection::new(store, ProjectionId::Incidents);
    let counts =
        write(&projection, TableId::Counts, Some(2024), (1, 10), counts_frame(&ROWS[..4])).await;
    let coverage = coverage_file(&[("pn", "2024-02", None)]);
    let coverage = write(&projection, TableId::Coverage, None, (1, 10), coverage).await;
    let mut manifest = Manifest::empty(ProjectionId::Incidents, 1, "OBSERVATORY");
    manifest.last_sequence = 10;
    manifest.tables.insert(TableId::Counts.key(), vec![counts.clone()]);
    manifest.tables.insert(TableId::Coverage.key(), vec![coverage]);
    let engine = CountsEngine::new(projection.clone());
    let first = engine.netted(&manifest).await.unwrap();
    assert!(Arc::ptr_eq(&first, &engine.netted(&manifest).await.unwrap()), "cached per manifest");

    // The next flush: the amendment's deltas (netting one cell to zero), a withdrawal, and
    // coverage rewritten whole with one more closure.
    let mut added = ROWS[4..].to_vec();
    added.push(("2024-02", Some("13"), "09031", "gn", "offence", -2, -250));
    let added =
        write(&projection, TableId::Counts, Some(2024), (11, 20), counts_frame(&added)).await;
    let coverage = coverage_file(&[("pn", "2024-02", None), ("pn", "2024-01", None)]);
    let coverage = write(&projection, TableId::Coverage, None, (11, 20), coverage).await;
    let mut next = manifest.clone();
    next.last_sequence = 20;
    next.tables.insert(TableId::Counts.key(), vec![counts.clone(), added]);
    next.tables.insert(TableId::Coverage.key(), vec![coverage]);
    let scratch = CountsEngine::new(projection.clone()).netted(&next).await.unwrap();

    // Without the first file in the store, only an extension can answer.
    projection.store().delete(&projection.object_path(1, &counts.path)).await.unwrap();
    let extended = engine.netted(&next).await.unwrap();
    let (extended_cells, scratch_cells) = (sorted(&extended.frame), sorted(&scratch.frame));
    assert!(extended_cells.equals_missing(&scratch_cells), "{extended_cells}\n{scratch_cells}");
    assert_eq!(extended.frame.height(), 3, "{}", extended.frame);
    let query = [("by", "month,source,departement,unit")];
    assert_eq!(answer(&extended.context(), &query), answer(&scratch.context(), &query));
    assert_eq!(*extended.data_months, *scratch.data_months);
}

/// Of the serving nettings only the served one and the one before it are kept: the one
/// before those is freed (on a blocking thread, apart from the lock requests take), not kept.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_netting_before_the_previous_one_is_freed() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path().to_str().unwrap()).unwrap();
    let projection = Projection::new(store, ProjectionId::Incidents);
    let engine = CountsEngine::new(projection.clone());
    let mut manifest = Manifest::empty(ProjectionId::Incidents, 1, "OBSERVATORY");
    let mut files = Vec::new();
    let mut nettings = Vec::new();
    for (i, rows) in [&ROWS[..2], &ROWS[2..4], &ROWS[4..]].into_iter().enumerate() {
        let (first, last) = (i as u64 * 10 + 1, i as u64 * 10 + 10);
        files.push(
            write(&projection, TableId::Counts, Some(2024), (first, last), counts_frame(rows))
                .await,
        );
        manifest.last_sequence = last;
        manifest.tables.insert(TableId::Counts.key(), files.clone());
        nettings.push(Arc::downgrade(&engine.netted(&manifest).await.unwrap()));
    }
    let started = Instant::now();
    while nettings[0].upgrade().is_some() {
        assert!(started.elapsed() < Duration::from_secs(10), "the oldest netting was kept");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert!(nettings[1].upgrade().is_some() && nettings[2].upgrade().is_some());
    assert_eq!(engine.recent.lock().unwrap().len(), 2);
}

/// Years are netted apart: a flush touching one year re-nets that year and keeps the other
/// years' cells; the result equals a netting of every file from scratch.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_flush_re_nets_only_the_years_it_touches() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path().to_str().unwrap()).unwrap();
    let projection = Projection::new(store, ProjectionId::Incidents);
    let old: Vec<Row> = vec![
        ("2023-11", Some("75"), "0701", "pn", "offence", 5, 100),
        ("2023-12", Some("13"), "0701", "gn", "offence", 2, 0),
    ];
    let y2023 = write(&projection, TableId::Counts, Some(2023), (1, 5), counts_frame(&old)).await;
    let y2024 =
        write(&projection, TableId::Counts, Some(2024), (1, 10), counts_frame(&ROWS[..4])).await;
    let mut manifest = Manifest::empty(ProjectionId::Incidents, 1, "OBSERVATORY");
    manifest.last_sequence = 10;
    manifest.tables.insert(TableId::Counts.key(), vec![y2023.clone(), y2024.clone()]);
    let engine = CountsEngine::new(projection.clone());
    engine.netted(&manifest).await.unwrap();

    // The next flush: 2024's amendment (netting a cell to zero) and a 2023 withdrawal.
    let mut added = ROWS[4..].to_vec();
    added.push(("2024-02", Some("13"), "09031", "gn", "offence", -2, -250));
    let added =
        write(&projection, TableId::Counts, Some(2024), (11, 20), counts_frame(&added)).await;
    let withdrawn = vec![("2023-12", Some("13"), "0701", "gn", "offence", -2, 0)];
    let withdrawn =
        write(&projection, TableId::Counts, Some(2023), (11, 20), counts_frame(&withdrawn)).await;
    let mut next = manifest.clone();
    next.last_sequence = 20;
    next.tables.insert(TableId::Counts.key(), vec![y2023, y2024, added, withdrawn]);
    let scratch = CountsEngine::new(projection.clone()).netted(&next).await.unwrap();
    let extended = engine.netted(&next).await.unwrap();
    let (extended_cells, scratch_cells) = (sorted(&extended.frame), sorted(&scratch.frame));
    assert!(extended_cells.equals_missing(&scratch_cells), "{extended_cells}\n{scratch_cells}");
    // 2023: one cell left; 2024: the three of the other test.
    assert_eq!(extended.frame.height(), 4, "{}", extended.frame);
    let query = [("by", "year,month,source,departement,unit")];
    assert_eq!(answer(&extended.context(), &query), answer(&scratch.context(), &query));
}

/// A service nets each new manifest before serving it: while the next netting is being made
/// (held here by taking the build lock, as a long netting would), requests are answered at once
/// from the previous one, with its `as_of`; then the new one is served.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_new_manifest_is_served_once_netted_and_the_previous_one_until_then() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path().to_str().unwrap()).unwrap();
    let projection = Projection::new(store, ProjectionId::Incidents);
    let engine = Arc::new(CountsEngine::new(projection.clone()));
    let refresher = engine.clone();
    let task = tokio::spawn(async move { refresher.keep_netted().await });
    let within = Duration::from_secs(10);
    let prepared = || {
        let prepared = engine.serving().prepared();
        async move { prepared == Some(true) }
    };
    wait_until(prepared, within).await;
    // No manifest yet: an empty answer, nothing waits.
    let request =
        CountsRequest::parse(&[("by".to_owned(), "source,unit,departement".to_owned())]).unwrap();
    let empty = engine.counts(&request, Duration::ZERO).await.unwrap();
    assert_eq!((empty.as_of.sequence, empty.frame.height()), (0, 0));

    let first =
        write(&projection, TableId::Counts, Some(2024), (1, 10), counts_frame(&ROWS[..4])).await;
    let mut m1 = Manifest::empty(ProjectionId::Incidents, 1, "OBSERVATORY");
    m1.last_sequence = 10;
    m1.tables.insert(TableId::Counts.key(), vec![first.clone()]);
    projection.commit(&m1).await.unwrap();
    projection.set_current(1).await.unwrap();
    let served = |engine: &Arc<CountsEngine>, sequence: u64| {
        let engine = engine.clone();
        async move {
            engine.serving().current().await.unwrap().is_some_and(|m| m.last_sequence == sequence)
        }
    };
    wait_until(|| served(&engine, 10), within).await;
    let on_m1 = engine.counts(&request, Duration::ZERO).await.unwrap();
    assert_eq!(on_m1.as_of.sequence, 10);

    // The next manifest is committed while a netting is in progress.
    let building = engine.building.lock().await;
    let second =
        write(&projection, TableId::Counts, Some(2024), (11, 20), counts_frame(&ROWS[4..])).await;
    let mut m2 = m1.clone();
    m2.last_sequence = 20;
    m2.tables.insert(TableId::Counts.key(), vec![first, second]);
    projection.commit(&m2).await.unwrap();
    let meanwhile = tokio::time::timeout(within, engine.counts(&request, Duration::ZERO))
        .await
        .expect("a request on the previous netting does not wait for the next")
        .unwrap();
    assert_eq!(meanwhile.as_of.sequence, 10);
    assert_eq!(meanwhile.frame, on_m1.frame);
    // A reader asking for the new state waits for it, as for the projector, and says so.
    let later = CountsRequest { min_sequence: Some(20), ..request.clone() };
    let waited = engine.counts(&later, Duration::from_millis(100)).await;
    assert!(matches!(waited, Err(QueryError::NotYet(_))));

    drop(building);
    wait_until(|| served(&engine, 20), within).await;
    let on_m2 = engine.counts(&request, Duration::ZERO).await.unwrap();
    assert_eq!(on_m2.as_of.sequence, 20);
    assert_ne!(on_m2.frame, on_m1.frame);
    task.abort();
}

async fn wait_until<F: std::future::Future<Output = bool>>(
    condition: impl Fn() -> F,
    within: Duration,
) {
    let started = Instant::now();
    while !condition().await {
        assert!(started.elapsed() < within, "timed out");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// The public tier: each row perturbed from its own cell key (the sum of its cells' key sums),
/// nothing published in 1..=js, rows published as zero left out of grouped answers like true
/// zeros, losses withheld under the threshold, and the same cell reached by two query shapes
/// published the same.
#[test]
fn public_rows_are_perturbed_from_their_cell_key() {
    let policy = Policy::standard();
    let context = context(ROWS, Coverage::default());
    let exact =
        aggregate(&context, &request(&[("by", "departement"), ("unit", "offence")]), None).unwrap();
    let public =
        aggregate(&context, &request(&[("by", "departement"), ("unit", "offence")]), Some(&policy))
            .unwrap();
    let exact_rows = crate::api::frame_rows(&exact);
    let public_rows = crate::api::frame_rows(&public);
    // The key sums of the test rows are 7 per record: 13 holds 2 records (key 14), 75 holds 4
    // (3 + 1 + an amendment, key 28).
    let expected = |departement: &str, count: i64| {
        let published = policy.count(count, count * 7);
        (published > 0).then(|| (departement.to_owned(), published))
    };
    let wanted: Vec<(String, i64)> =
        [expected("13", 2), expected("75", 4)].into_iter().flatten().collect();
    let got: Vec<(String, i64)> = public_rows
        .iter()
        .map(|r| (r["departement"].as_str().unwrap().to_owned(), r["count"].as_i64().unwrap()))
        .collect();
    assert_eq!(got, wanted, "exact: {exact_rows:?}");
    for row in &public_rows {
        let count = row["count"].as_i64().unwrap();
        assert!(count > 2, "{row:?}");
        // Fewer than 10: the loss is withheld.
        assert_eq!(row["loss_eur"], Value::Null);
        assert_eq!(row["loss_withheld"], Value::Bool(true));
    }
    assert!(!exact_rows[0].contains_key("loss_withheld"), "exact rows carry no public flag");
    // The Paris offence cell by two shapes: by month then filtered, or as a total.
    let total = aggregate(
        &context,
        &request(&[
            ("departement", "75"),
            ("unit", "offence"),
            ("from", "2024-02"),
            ("to", "2024-02"),
        ]),
        Some(&policy),
    )
    .unwrap();
    let by_month = aggregate(
        &context,
        &request(&[
            ("by", "month"),
            ("departement", "75"),
            ("unit", "offence"),
            ("month", "2024-02"),
        ]),
        Some(&policy),
    )
    .unwrap();
    let published = |frame: &DataFrame| frame.column("count").unwrap().i64().unwrap().get(0);
    // February in Paris: the one offence amended in (key 7).
    let feb = policy.count(1, 7);
    assert!(feb == 0 || feb > 2);
    assert_eq!(published(&total), Some(feb));
    if feb > 0 {
        assert_eq!(published(&by_month), Some(feb));
    } else {
        assert_eq!(by_month.height(), 0, "a cell published as zero is not listed");
    }
    // A total with no data stays zero.
    let nothing = aggregate(
        &context,
        &request(&[("unit", "offence"), ("from", "2030-01"), ("to", "2030-01")]),
        Some(&policy),
    )
    .unwrap();
    assert_eq!(published(&nothing), Some(0));
}

/// The answer of `request` computed the plain way, with polars over the netted text columns:
/// (grouping values as text, count, loss in cents, provisional), in answer order.
fn reference(cells: &DataFrame, request: &CountsRequest) -> Vec<(Vec<String>, i64, i64, bool)> {
    let mut frame = cells.clone().lazy();
    if let Some(from) = &request.from {
        frame = frame.filter(col(stored::MONTH).gt_eq(lit(from.clone())));
    }
    if let Some(to) = &request.to {
        frame = frame.filter(col(stored::MONTH).lt(lit(format!("{to}\u{7f}"))));
    }
    for (dimension, values) in &request.filters {
        let column = || col(dimension.column());
        let predicate = values
            .iter()
            .map(|v| match dimension {
                // A subtree: every code with `v` as its prefix.
                Dimension::Iccs => {
                    let upper =
                        format!("{}{}", &v[..v.len() - 1], (v.as_bytes()[v.len() - 1] + 1) as char);
                    column().gt_eq(lit(v.clone())).and(column().lt(lit(upper)))
                }
                Dimension::Year => column().eq(lit(v.parse::<i32>().unwrap())),
                Dimension::Cyber => column().eq(lit(v == "true")),
                _ => column().eq(lit(v.clone())),
            })
            .reduce(|a, b| a.or(b))
            .unwrap();
        frame = frame.filter(predicate);
    }
    let mut keys: Vec<Expr> = request.by.iter().map(|d| col(d.column())).collect();
    if !request.by.contains(&Dimension::Unit) {
        keys.push(col(stored::UNIT));
    }
    let mut grouped = frame
        .group_by(keys)
        .agg([col(stored::COUNT).sum(), col(stored::LOSS_CENTS).sum(), col(OPEN).sum()])
        .collect()
        .unwrap();
    if !request.by.is_empty() {
        let names: Vec<PlSmallStr> = request.by.iter().map(|d| d.column().into()).collect();
        grouped = grouped
            .lazy()
            .filter(col(stored::COUNT).neq(lit(0i64)))
            .sort(names, SortMultipleOptions::default().with_nulls_last(true))
            .collect()
            .unwrap();
    }
    (0..grouped.height())
        .map(|i| {
            let text = |name: &str| match grouped.column(name).unwrap().get(i).unwrap() {
                AnyValue::Null => "null".to_owned(),
                other => other.get_str().map_or_else(|| other.to_string(), str::to_owned),
            };
            let number = |name: &str| grouped.column(name).unwrap().i64().unwrap().get(i).unwrap();
            (
                request.by.iter().map(|d| text(d.column())).collect(),
                number(stored::COUNT),
                number(stored::LOSS_CENTS),
                number(OPEN) > 0,
            )
        })
        .collect()
}

proptest::proptest! {
    #![proptest_config(proptest::prelude::ProptestConfig::with_cases(256))]

    /// The coded scan (several threads, array, hashed and wide group keys: the test build
    /// lowers their thresholds) answers what polars answers over the text columns, for
    /// groupings, month ranges, ICCS subtrees, repeated values and filters that keep nothing.
    #[test]
    fn the_coded_scan_answers_as_polars_does(
        cells in proptest::collection::vec(
            (0usize..5, 0usize..5, 0usize..5, 0usize..2, -2i64..6, 0i64..1_000),
            0..400,
        ),
        by in proptest::sample::subsequence(
            vec!["month", "departement", "iccs_section", "source", "region", "year", "iccs", "cyber", "unit"],
            0..4,
        ),
        from in proptest::option::of(0usize..5),
        to in proptest::option::of(0usize..5),
        departements in proptest::option::of(proptest::sample::subsequence(vec!["75", "92", "13", "2A"], 1..3)),
        iccs in proptest::option::of(proptest::sample::select(vec!["07", "0701", "09", "0903", "02"])),
        closed_months in proptest::sample::subsequence(vec!["2023-11", "2023-12", "2024-01"], 0..3),
        year in proptest::option::of(proptest::sample::select(vec!["2023", "2024", "2025", "2023,2024"])),
        source in proptest::option::of(proptest::sample::select(vec!["pn", "gn", "gn,pn"])),
        cyber in proptest::option::of(proptest::sample::select(vec!["true", "false"])),
    ) {
        const MONTHS: [&str; 5] = ["2023-11", "2023-12", "2024-01", "2024-02", "2024-03"];
        const DEPARTEMENTS: [Option<&str>; 5] = [None, Some("75"), Some("92"), Some("13"), Some("2A")];
        const ICCS: [&str; 5] = ["0701", "07011", "0903", "09031", "0201"];
        let rows: Vec<Row> = cells
            .iter()
            .map(|&(m, d, i, s, count, loss)| {
                (MONTHS[m], DEPARTEMENTS[d], ICCS[i], ["pn", "gn"][s], "offence", count, loss)
            })
            .collect();
        let mut coverage = Coverage::default();
        for month in closed_months {
            coverage.add(&closed("pn", month)).unwrap();
        }
        let frame = net(vec![counts_file(&rows)], &coverage).unwrap();
        let context = Context {
            coded: Arc::new(Coded::encode(&frame).unwrap()),
            data_months: Arc::new(data_months(&frame).unwrap()),
            coverage: Arc::new(coverage),
        };
        let by = by.join(",");
        // A range the parser accepts: from never after to.
        let (from, to) = match (from, to) {
            (Some(a), Some(b)) => (Some(a.min(b)), Some(a.max(b))),
            other => other,
        };
        let from = from.map(|m| MONTHS[m]);
        let to = to.map(|m| MONTHS[m]);
        let departements = departements.map(|d| d.join(","));
        let mut query: Vec<(&str, &str)> = vec![("unit", "offence")];
        if !by.is_empty() {
            query.push(("by", &by));
        }
        query.extend(from.map(|m| ("from", m)));
        query.extend(to.map(|m| ("to", m)));
        query.extend(departements.as_deref().map(|d| ("departement", d)));
        query.extend(iccs.map(|i| ("iccs", i)));
        query.extend(year.map(|y| ("year", y)));
        query.extend(source.map(|s| ("source", s)));
        query.extend(cyber.map(|c| ("cyber", c)));
        let request = request(&query);
        let answer = aggregate(&context, &request, None).unwrap();
        let rows: Vec<(Vec<String>, i64, i64, bool)> = crate::api::frame_rows(&answer)
            .iter()
            .map(|row| {
                let text = |v: &Value| match v {
                    Value::Null => "null".to_owned(),
                    Value::String(s) => s.clone(),
                    other => other.to_string(),
                };
                (
                    request.by.iter().map(|d| text(&row[d.name()])).collect(),
                    row["count"].as_i64().unwrap(),
                    (row["loss_eur"].as_f64().unwrap() * 100.0).round() as i64,
                    row["provisional"].as_bool().unwrap(),
                )
            })
            .collect();
        let mut expected = reference(&frame, &request);
        if request.by.is_empty() && expected.is_empty() {
            // No data: the total is a zero, final only where every source closed every month.
            expected.push((Vec::new(), 0, 0, !zero_is_final(&context, &request)));
        }
        proptest::prop_assert_eq!(rows, expected, "{:?}", query);
    }
}
