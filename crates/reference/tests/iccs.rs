//! The embedded ICCS 1.0 classification: its hierarchy (sections, divisions, groups, classes), code
//! parsing and subtree lookups.

use observatory_reference::{Iccs, Level, ReferenceError};

#[test]
fn embedded_table_parses_and_has_every_section() {
    let iccs = Iccs::v1_0();
    assert_eq!(iccs.version, "1.0");
    assert!(iccs.len() > 200, "only {} codes", iccs.len());
    let sections: Vec<&str> =
        iccs.iter().filter(|e| e.level == Level::Section).map(|e| e.code.as_str()).collect();
    let expected: Vec<String> = (1..=11).map(|n| format!("{n:02}")).collect();
    assert_eq!(sections, expected);
    for s in &expected {
        assert!(iccs.children(s).count() > 0, "section {s} has no division");
    }
}

#[test]
fn every_entry_is_well_formed() {
    let iccs = Iccs::v1_0();
    for e in iccs.iter() {
        assert_eq!(e.code.len(), e.level.code_len(), "{}", e.code);
        assert!(e.code.bytes().all(|b| b.is_ascii_digit()), "{}", e.code);
        assert!(!e.label.trim().is_empty(), "{}", e.code);
        assert_eq!(Level::for_code(&e.code), Some(e.level));
        match (&e.parent, e.level.parent()) {
            (None, None) => {}
            (Some(p), Some(pl)) => {
                let parent =
                    iccs.get(p).unwrap_or_else(|| panic!("{}: parent {p} missing", e.code));
                assert_eq!(parent.level, pl, "{}: parent {p} has the wrong level", e.code);
                assert!(e.code.starts_with(p.as_str()), "{} not under {p}", e.code);
            }
            other => panic!("{}: parent/level mismatch {other:?}", e.code),
        }
    }
}

#[test]
fn known_lookups() {
    let iccs = Iccs::v1_0();
    assert_eq!(iccs.get("0903").unwrap().label, "Acts against computer systems");
    assert_eq!(iccs.get("09").unwrap().label, "Acts against public safety and state security");
    assert_eq!(iccs.get("09031").unwrap().label, "Unlawful access to a computer system");
    assert_eq!(
        iccs.get("09032").unwrap().label,
        "Unlawful interference with a computer system or computer data"
    );
    assert_eq!(
        iccs.get("09033").unwrap().label,
        "Unlawful interception or access of computer data"
    );
    assert_eq!(iccs.get("09039").unwrap().label, "Other acts against computer systems");
    assert_eq!(iccs.get("0701").unwrap().label, "Fraud");
    assert_eq!(iccs.get("030221").unwrap().label, "Child pornography");
    assert_eq!(
        iccs.get("0208").unwrap().label,
        "Acts intended to induce fear or emotional distress"
    );
    assert_eq!(iccs.get("020111").unwrap().parent.as_deref(), Some("02011"));
    assert!(iccs.contains("0101"));
    assert!(!iccs.contains("0999"));
    assert!(iccs.get("").is_none());
}

#[test]
fn hierarchy_helpers() {
    let iccs = Iccs::v1_0();
    assert_eq!(iccs.section_of("090321"), "09");
    assert_eq!(iccs.division_of("090321"), Some("0903"));
    assert_eq!(iccs.group_of("090321"), Some("09032"));
    assert_eq!(iccs.division_of("09"), None);
    assert_eq!(iccs.group_of("0903"), None);
    assert_eq!(iccs.group_of("09031"), Some("09031"));
    let chain: Vec<&str> = iccs.ancestors("090321").iter().map(|e| e.code.as_str()).collect();
    assert_eq!(chain, ["090321", "09032", "0903", "09"]);
    let kids: Vec<&str> = iccs.children("0903").map(|e| e.code.as_str()).collect();
    assert_eq!(kids, ["09031", "09032", "09033", "09039"]);
    assert!(iccs.is_within("09031", "09"));
    assert!(!iccs.is_within("0701", "09"));
}

#[test]
fn cyber_is_everything_under_0903_and_nothing_else() {
    let iccs = Iccs::v1_0();
    for e in iccs.iter() {
        let under = e.code.starts_with("0903");
        assert_eq!(iccs.always_cyber(&e.code), under, "{}", e.code);
        assert_eq!(e.always_cyber, under, "{}", e.code);
    }
    assert!(!iccs.always_cyber("09"));
    assert!(!iccs.always_cyber("0701"));
}

#[test]
fn evidence_flags_are_loaded() {
    let iccs = Iccs::v1_0();
    for code in ["0903", "09031", "0701", "030221", "08051", "09051"] {
        assert!(iccs.get(code).unwrap().verified, "{code} should be marked verified");
    }
    let verified = iccs.iter().filter(|e| e.verified).count();
    assert!(verified >= 90, "{verified}");
    assert!(verified < iccs.len());
}

#[test]
fn parse_rejects_bad_tables_with_named_errors() {
    let bad_header = "code,lvl,parent,label\n01,section,,X\n";
    let err = Iccs::parse("t", bad_header, None).unwrap_err();
    assert!(matches!(err, ReferenceError::Parse { line: 1, .. }), "{err}");
    assert!(err.to_string().starts_with("table iccs t: line 1:"), "{err}");

    let missing_parent = "code,level,parent,label\n01,section,,A\n0201,division,02,B\n";
    let err = Iccs::parse("t", missing_parent, None).unwrap_err().to_string();
    assert!(err.contains("'0201'") && err.contains("'02'") && err.contains("iccs t"), "{err}");

    let wrong_len = "code,level,parent,label\n01,section,,A\n010,division,01,B\n";
    let err = Iccs::parse("t", wrong_len, None).unwrap_err().to_string();
    assert!(err.contains("'010'") && err.contains("line 3"), "{err}");

    let wrong_parent_level =
        "code,level,parent,label\n01,section,,A\n0101,division,01,B\n01011,group,01,C\n";
    let err = Iccs::parse("t", wrong_parent_level, None).unwrap_err().to_string();
    assert!(err.contains("'01011'"), "{err}");

    let dup = "code,level,parent,label\n01,section,,A\n01,section,,A\n";
    assert!(Iccs::parse("t", dup, None).unwrap_err().to_string().contains("twice"));

    let ok = "code,level,parent,label\n01,section,,A\n";
    let missing_evidence = "code,status,evidence\n";
    let err = Iccs::parse("t", ok, Some(missing_evidence)).unwrap_err().to_string();
    assert!(err.contains("'01'") && err.contains("no evidence"), "{err}");

    let err = Iccs::v1_0().require("0999").unwrap_err();
    assert_eq!(err.to_string(), "code '0999' is not in table iccs 1.0");
}

#[test]
fn serializes_for_http() {
    let json = serde_json::to_value(Iccs::v1_0()).unwrap();
    let entries = json["entries"].as_array().unwrap();
    assert_eq!(entries.len(), Iccs::v1_0().len());
    let cyber = entries.iter().find(|e| e["code"] == "0903").unwrap();
    assert_eq!(cyber["level"], "division");
    assert_eq!(cyber["parent"], "09");
    assert_eq!(cyber["always_cyber"], true);
    let section = entries.iter().find(|e| e["code"] == "01").unwrap();
    assert!(section["parent"].is_null());
}
