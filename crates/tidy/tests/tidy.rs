//! The hygiene gate over the whole repository (see the crate doc for the rules). A failure
//! lists every offending place, so one run shows all there is to fix.

use observatory_tidy::{
    code_map_crates, files_under, machine_paths, opens_with_module_doc, repo_root,
    unpinned_dependencies,
};

fn read(path: &std::path::Path) -> String {
    std::fs::read_to_string(repo_root().join(path)).unwrap_or_default()
}

#[test]
fn every_rust_file_opens_with_a_module_doc() {
    let root = repo_root();
    let missing: Vec<String> = ["crates", "tests"]
        .iter()
        .flat_map(|dir| files_under(&root, dir))
        .filter(|p| p.extension().is_some_and(|e| e == "rs"))
        .filter(|p| !opens_with_module_doc(&read(p)))
        .map(|p| p.display().to_string())
        .collect();
    assert!(
        missing.is_empty(),
        "these files do not open with a `//!` line saying what they are for: {missing:#?}"
    );
}

#[test]
fn no_file_names_a_path_of_one_machine() {
    let root = repo_root();
    let text_like = |p: &std::path::Path| {
        let name = p.file_name().and_then(|n| n.to_str()).unwrap_or("");
        let ext = p.extension().and_then(|e| e.to_str()).unwrap_or("");
        matches!(
            ext,
            "rs" | "md"
                | "toml"
                | "sh"
                | "py"
                | "json"
                | "yaml"
                | "yml"
                | "conf"
                | "service"
                | "example"
                | "csv"
                | "tsv"
                | "R"
        ) || name == "run"
    };
    let mut found = Vec::new();
    for path in files_under(&root, "").iter().filter(|p| text_like(p)) {
        for (line, prefix) in machine_paths(&read(path)) {
            found.push(format!("{}:{line}: {prefix}", path.display()));
        }
    }
    assert!(
        found.is_empty(),
        "absolute paths of one machine (use a path relative to the repository, or a temp dir): \
         {found:#?}"
    );
}

#[test]
fn every_crate_is_in_the_code_map() {
    let root = repo_root();
    let mapped = code_map_crates(&read(std::path::Path::new("ARCHITECTURE.md")));
    let mut crates: Vec<String> = std::fs::read_dir(root.join("crates"))
        .expect("crates/")
        .flatten()
        .filter(|e| e.path().join("Cargo.toml").exists())
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect();
    crates.sort();
    let missing: Vec<&String> = crates.iter().filter(|c| !mapped.contains(c)).collect();
    let stale: Vec<&String> = mapped.iter().filter(|m| !crates.contains(m)).collect();
    assert!(
        missing.is_empty() && stale.is_empty(),
        "ARCHITECTURE.md's code map is out of date: crates missing from it {missing:?}, rows for \
         crates that do not exist {stale:?}"
    );
}

#[test]
fn dependency_versions_are_pinned_once_in_the_workspace() {
    let root = repo_root();
    let mut found = Vec::new();
    for entry in std::fs::read_dir(root.join("crates")).expect("crates/").flatten() {
        let manifest = entry.path().join("Cargo.toml");
        let Ok(text) = std::fs::read_to_string(&manifest) else { continue };
        for dependency in unpinned_dependencies(&text) {
            found.push(format!("crates/{}: {dependency}", entry.file_name().to_string_lossy()));
        }
    }
    assert!(
        found.is_empty(),
        "pin these in [workspace.dependencies] of the root Cargo.toml and use `{{ workspace = true }}`: \
         {found:#?}"
    );
}
