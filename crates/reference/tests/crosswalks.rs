//! The embedded crosswalks (NATINF, platform, NIBRS, the identity): every mapped code exists in ICCS,
//! versions resolve as documented, and unknown codes are refused with the crosswalk named.

use observatory_reference::{Crosswalk, Crosswalks, IDENTITY, Iccs, ReferenceError, Unit};

#[test]
fn builtin_registry() {
    let cws = Crosswalks::builtin();
    let names: Vec<&str> = cws.names().collect();
    assert_eq!(names, ["iccs", "natinf", "nibrs", "platform"]);
    assert_eq!(cws.versions("natinf"), [1, 2]);
    assert_eq!(cws.versions("platform"), [1]);
    assert_eq!(cws.versions("nibrs"), [1]);
    assert_eq!(cws.versions("nope"), Vec::<u32>::new());
    assert_eq!(cws.latest("natinf").unwrap().version, 2);
    assert!(cws.get("natinf", 3).is_none());
    assert!(cws.latest("nope").is_none());
}

#[test]
fn every_row_maps_to_a_code_of_the_classification() {
    let iccs = Iccs::v1_0();
    let mut rows = 0;
    for cw in Crosswalks::builtin().iter() {
        assert!(!cw.rows.is_empty(), "{} v{} is empty", cw.name, cw.version);
        for row in &cw.rows {
            rows += 1;
            assert!(
                iccs.contains(&row.mapping.iccs),
                "{} v{}: {} -> {} is not an ICCS code",
                cw.name,
                cw.version,
                row.source_code,
                row.mapping.iccs
            );
            if iccs.always_cyber(&row.mapping.iccs) {
                assert!(
                    row.mapping.cyber,
                    "{} {} under 0903 must be cyber",
                    cw.name, row.source_code
                );
            }
            assert!(!row.label.is_empty());
            assert_eq!(cw.map(&row.source_code).unwrap(), &row.mapping);
        }
    }
    assert!(rows > iccs.len());
}

#[test]
fn natinf_versions_differ_and_map_the_cyber_articles() {
    let cws = Crosswalks::builtin();
    let v1 = cws.get("natinf", 1).unwrap();
    let v2 = cws.get("natinf", 2).unwrap();
    let m1 = v1.map("323-1").unwrap();
    assert_eq!(m1.iccs, "09031");
    assert!(m1.cyber);
    assert_eq!(m1.unit, Unit::Offence);
    assert_eq!(v1.map("323-2").unwrap().iccs, "09032");
    assert_eq!(v2.map("323-2").unwrap().iccs, "090321");
    assert_eq!(v2.map("323-3").unwrap().iccs, "090322");
    let changed: Vec<&str> = v1
        .rows
        .iter()
        .filter(|r| v2.map(&r.source_code).map(|m| m != &r.mapping).unwrap_or(true))
        .map(|r| r.source_code.as_str())
        .collect();
    assert_eq!(changed, ["323-2", "323-3"]);
    assert_eq!(v1.map("313-1").unwrap().iccs, "0701");
    assert!(!v1.map("313-1").unwrap().cyber, "escroquerie: online is a property of the record");
    assert_eq!(v1.map("227-23").unwrap().iccs, "030221");
    assert!(v1.map("227-22-1").unwrap().cyber, "electronic means is part of the offence");
    assert!(v1.rows.iter().all(|r| r.mapping.unit == Unit::Offence));
}

#[test]
fn unmapped_code_error_names_code_crosswalk_and_file() {
    let v1 = Crosswalks::builtin().get("natinf", 1).unwrap();
    let err = v1.map("323-9").unwrap_err();
    assert_eq!(
        err.to_string(),
        "code '323-9' is not in crosswalk natinf v1; add it to \
         crates/reference/data/crosswalks/natinf/v2.csv or send an iccs code"
    );
    assert!(matches!(err, ReferenceError::UnmappedCode { version: 1, next: 2, .. }));
}

#[test]
fn lookup_is_trimmed_and_case_insensitive() {
    let nibrs = Crosswalks::builtin().latest("nibrs").unwrap();
    assert_eq!(nibrs.map("26g").unwrap().iccs, "09031");
    assert_eq!(nibrs.map(" 26G ").unwrap().iccs, "09031");
    let platform = Crosswalks::builtin().latest("platform").unwrap();
    assert_eq!(platform.map("PHISHING").unwrap().iccs, "0701");
}

#[test]
fn nibrs_units_and_cyber_defaults() {
    let nibrs = Crosswalks::builtin().latest("nibrs").unwrap();
    for row in &nibrs.rows {
        assert_eq!(row.mapping.cyber, row.source_code == "26G", "{}", row.source_code);
    }
    for persons in ["09A", "11A", "13A", "13B", "13C", "64A"] {
        assert_eq!(nibrs.map(persons).unwrap().unit, Unit::Victim, "{persons}");
    }
    for property in ["26A", "26B", "26G", "120", "210", "370"] {
        assert_eq!(nibrs.map(property).unwrap().unit, Unit::Offence, "{property}");
    }
    assert_eq!(nibrs.map("26H").unwrap().iccs, "07041");
}

#[test]
fn platform_is_per_report_and_cyber() {
    let platform = Crosswalks::builtin().latest("platform").unwrap();
    for cat in [
        "phishing",
        "online_fraud",
        "csam",
        "hate_speech",
        "terrorism_apology",
        "harassment",
        "sextortion",
        "scam_marketplace",
        "account_takeover",
        "ransomware",
        "other",
    ] {
        let m = platform.map(cat).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(m.unit, Unit::Report);
        assert!(m.cyber);
    }
}

#[test]
fn identity_crosswalk_is_built_in() {
    let cws = Crosswalks::builtin();
    let id = cws.latest(IDENTITY).unwrap();
    assert!(id.identity);
    assert_eq!(id.rows.len(), Iccs::v1_0().len());
    let m = id.map("09031").unwrap();
    assert_eq!((m.iccs.as_str(), m.cyber, m.unit), ("09031", true, Unit::Offence));
    let m = id.map("0701").unwrap();
    assert_eq!((m.iccs.as_str(), m.cyber), ("0701", false));
    assert!(id.map("9999").unwrap_err().to_string().contains("crosswalk iccs v1"));
}

#[test]
fn resolve_reports_unknown_crosswalks() {
    let cws = Crosswalks::builtin();
    assert_eq!(cws.resolve("natinf", None).unwrap().version, 2);
    assert_eq!(cws.resolve("natinf", Some(1)).unwrap().version, 1);
    let err = cws.resolve("natinf", Some(7)).unwrap_err().to_string();
    assert!(err.starts_with("crosswalk 'natinf' v7 is not built in"), "{err}");
    assert!(err.contains("natinf (v1, v2)"), "{err}");
}

#[test]
fn parse_checks_rows_against_the_classification() {
    let iccs = Iccs::v1_0();
    let header = "source_code,label,iccs,cyber,unit\n";
    let unknown = format!("{header}x1,Something,0999,false,offence\n");
    let err = Crosswalk::parse("demo", 3, &unknown, iccs).unwrap_err().to_string();
    assert!(
        err.contains("crosswalk demo v3") && err.contains("'x1'") && err.contains("'0999'"),
        "{err}"
    );

    let not_cyber = format!("{header}x1,Hack,09031,false,offence\n");
    assert!(Crosswalk::parse("demo", 1, &not_cyber, iccs).is_err());

    let bad_unit = format!("{header}x1,Fraud,0701,false,incident\n");
    let err = Crosswalk::parse("demo", 1, &bad_unit, iccs).unwrap_err().to_string();
    assert!(err.contains("incident"), "{err}");

    let dup = format!("{header}a,A,0701,false,offence\nA,A,0701,false,offence\n");
    assert!(Crosswalk::parse("demo", 1, &dup, iccs).unwrap_err().to_string().contains("twice"));

    let err = Crosswalks::from_files(iccs, &[("iccs", 2, header)]).unwrap_err();
    assert!(err.to_string().contains("reserved"));
}

#[test]
fn units_serialize_lowercase() {
    assert_eq!(serde_json::to_string(&Unit::Victim).unwrap(), "\"victim\"");
    assert_eq!(serde_json::from_str::<Unit>("\"report\"").unwrap(), Unit::Report);
    let json = serde_json::to_value(Crosswalks::builtin().get("natinf", 1).unwrap()).unwrap();
    let first = &json["rows"][0];
    assert_eq!(first["source_code"], "323-1");
    assert_eq!(first["iccs"], "09031");
    assert_eq!(first["unit"], "offence");
    assert_eq!(first["cyber"], true);
    assert!(serde_json::to_value(Crosswalks::builtin()).unwrap().is_object());
}

/// A record the crosswalk does not map counts in the unit every row shares, else offences.
#[test]
fn a_crosswalk_counts_in_the_unit_its_rows_share() {
    let iccs = Iccs::v1_0();
    let header = "source_code,label,iccs,cyber,unit\n";
    let parse = |rows: &str| Crosswalk::parse("demo", 1, &format!("{header}{rows}"), iccs).unwrap();
    assert_eq!(parse("a,A,0701,false,victim\nb,B,0701,false,victim\n").unit(), Unit::Victim);
    assert_eq!(parse("a,A,0701,false,report\n").unit(), Unit::Report);
    assert_eq!(parse("a,A,0701,false,victim\nb,B,0701,false,report\n").unit(), Unit::Offence);
    assert_eq!(parse("").unit(), Unit::Offence);
    assert_eq!(Crosswalk::identity(iccs).unit(), Unit::Offence);
}
