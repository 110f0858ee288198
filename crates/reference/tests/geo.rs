//! The embedded French geography: every région and département, their codes and legal populations
//! by reference year, and lookups refusing what does not exist.

use observatory_reference::{Geography, ReferenceError};

const REGIONS: [&str; 18] = [
    "01", "02", "03", "04", "06", "11", "24", "27", "28", "32", "44", "52", "53", "75", "76", "84",
    "93", "94",
];

#[test]
fn regions_and_departements() {
    let geo = Geography::france();
    let mut codes: Vec<&str> = geo.regions().iter().map(|r| r.code.as_str()).collect();
    codes.sort();
    assert_eq!(codes, REGIONS);
    assert_eq!(geo.departements().len(), 101);
    for d in geo.departements() {
        assert!(geo.region(&d.region).is_some(), "{} -> {}", d.code, d.region);
        assert_eq!(geo.region_of(&d.code).unwrap().code, d.region);
    }
    for r in geo.regions() {
        assert!(geo.departements_of(&r.code).count() >= 1, "{}", r.code);
    }
    let metro = geo.departements().iter().filter(|d| d.code.len() == 2).count();
    assert_eq!(metro, 96);
    for code in ["2A", "2B", "971", "972", "973", "974", "976"] {
        assert!(geo.departement(code).is_some(), "{code}");
    }
    assert!(geo.departement("20").is_none());
    assert!(geo.departement("975").is_none());
}

#[test]
fn known_lookups() {
    let geo = Geography::france();
    let paris = geo.departement("75").unwrap();
    assert_eq!(paris.name, "Paris");
    assert_eq!(paris.region, "11");
    assert_eq!(geo.region_of("75").unwrap().name, "Île-de-France");
    let cds = geo.departement("2A").unwrap();
    assert_eq!(cds.name, "Corse-du-Sud");
    assert_eq!(geo.region_of("2A").unwrap().code, "94");
    assert_eq!(geo.region_of("2B").unwrap().name, "Corse");
    assert_eq!(geo.region_of("976").unwrap().name, "Mayotte");
    assert_eq!(geo.region_of("974").unwrap().code, "04");
    assert_eq!(geo.departements_of("11").count(), 8);
    assert_eq!(geo.departements_of("94").count(), 2);
    assert_eq!(
        geo.require_departement("99").unwrap_err(),
        ReferenceError::UnknownDepartement { code: "99".into() }
    );
    assert_eq!(
        geo.require_region("12").unwrap_err().to_string(),
        "code '12' is not in table regions"
    );
}

#[test]
fn every_departement_has_the_published_years() {
    let geo = Geography::france();
    for d in geo.departements() {
        assert_eq!(geo.population_years(&d.code), [2019, 2020, 2021, 2022, 2023], "{}", d.code);
    }
}

#[test]
fn population_picks_the_nearest_year_not_after() {
    let geo = Geography::france();
    assert_eq!(geo.population("75", 2021), Some((2_133_111, 2021)));
    assert_eq!(geo.population("75", 2019), Some((2_165_423, 2019)));
    assert_eq!(geo.population("59", 2019), Some((2_608_346, 2019)));
    assert_eq!(geo.population("01", 2023), Some((679_344, 2023)));
    // after the last millésime: the last one
    assert_eq!(geo.population("75", 2025).unwrap().1, 2023);
    // before the first: the earliest
    assert_eq!(geo.population("75", 2010).unwrap().1, 2019);
    assert_eq!(geo.population("99", 2021), None);
    // legal figure in force during 2024 is millésime 2021
    assert_eq!(geo.population_in_force("75", 2024), Some((2_133_111, 2021)));
    // Mayotte: the 2017 census figure is the only one
    assert_eq!(geo.population("976", 2021), Some((256_518, 2021)));
}

#[test]
fn national_population_is_the_sum_of_departements() {
    let geo = Geography::france();
    for year in [2019, 2020, 2021, 2022, 2023] {
        let (total, used) = geo.national_population(year).unwrap();
        assert_eq!(used, year);
        let sum: u64 =
            geo.departements().iter().map(|d| geo.population(&d.code, year).unwrap().0).sum();
        assert_eq!(total, sum, "{year}");
        let regions: u64 =
            geo.regions().iter().map(|r| geo.region_population(&r.code, year).unwrap().0).sum();
        assert_eq!(total, regions, "{year}");
    }
    let (p2021, _) = geo.national_population(2021).unwrap();
    assert!((67_000_000..68_500_000).contains(&p2021), "{p2021}");
    assert_eq!(p2021, 67_664_570);
    // INSEE: 67.408 million at 1 January 2021 excluding Mayotte
    let mayotte = geo.population("976", 2021).unwrap().0;
    assert_eq!(p2021 - mayotte, 67_408_052);
    // INSEE legal population 2020 excluding Mayotte
    assert_eq!(geo.national_population(2020).unwrap().0 - mayotte, 67_162_154);
    assert_eq!(geo.national_population(2030).unwrap().1, 2023);
    assert_eq!(geo.national_population(2000).unwrap().1, 2019);
}

#[test]
fn region_population() {
    let geo = Geography::france();
    let (idf, used) = geo.region_population("11", 2021).unwrap();
    assert_eq!(used, 2021);
    let sum: u64 =
        geo.departements_of("11").map(|d| geo.population(&d.code, 2021).unwrap().0).sum();
    assert_eq!(idf, sum);
    assert!((12_000_000..12_500_000).contains(&idf), "{idf}");
    assert!(geo.region_population("12", 2021).is_none());
}

#[test]
fn parse_checks_links() {
    let regions = "code,name\n11,Île-de-France\n";
    let depts = "code,name,region\n75,Paris,11\n";
    let pop = "departement,year,population\n75,2021,2133111\n";
    assert!(Geography::parse(regions, depts, pop).is_ok());
    let err =
        Geography::parse(regions, "code,name,region\n75,Paris,12\n", pop).unwrap_err().to_string();
    assert!(err.contains("departements") && err.contains("'12'"), "{err}");
    let err = Geography::parse(regions, depts, "departement,year,population\n77,2021,1\n")
        .unwrap_err()
        .to_string();
    assert!(err.contains("'77'") && err.contains("table departements"), "{err}");
    let err = Geography::parse(
        regions,
        depts,
        "departement,year,population\n75,2021,2133111\n75,2021,1\n",
    )
    .unwrap_err()
    .to_string();
    assert!(err.contains("twice"), "{err}");
}

#[test]
fn serializes_for_http() {
    let json = serde_json::to_value(Geography::france()).unwrap();
    assert_eq!(json["regions"].as_array().unwrap().len(), 18);
    assert_eq!(json["departements"].as_array().unwrap().len(), 101);
    assert_eq!(json["populations"]["75"]["2021"], 2_133_111);
}
