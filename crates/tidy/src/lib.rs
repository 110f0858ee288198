//! The tree's hygiene rules, checked by `tests/tidy.rs` (run by `scripts/test.sh`, so by CI):
//! rules a reviewer would otherwise have to remember. Each rule says what to do when it fails.
//!
//! - every Rust source file opens with a `//!` line saying what it is for;
//! - no absolute path of a developer's machine in any committed text file;
//! - every crate appears in ARCHITECTURE.md's code map;
//! - dependency versions are pinned once, in the workspace `Cargo.toml`.

use std::path::{Path, PathBuf};

/// The repository root (two levels above this crate).
pub fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..").canonicalize().expect("repository root")
}

/// Directories never walked: build output, installed tools, local data, VCS.
const SKIPPED_DIRS: [&str; 6] = ["target", ".git", ".tools", "data", "bench-out", "node_modules"];

/// Every file below `dir` (relative to `root`), skipping [`SKIPPED_DIRS`], sorted.
pub fn files_under(root: &Path, dir: &str) -> Vec<PathBuf> {
    let mut found = Vec::new();
    let mut pending = vec![root.join(dir)];
    while let Some(dir) = pending.pop() {
        let Ok(entries) = std::fs::read_dir(&dir) else { continue };
        for entry in entries.flatten() {
            let path = entry.path();
            let name = entry.file_name();
            if path.is_dir() {
                if !SKIPPED_DIRS.iter().any(|s| name == *s) {
                    pending.push(path);
                }
            } else {
                found.push(path.strip_prefix(root).expect("below root").to_path_buf());
            }
        }
    }
    found.sort();
    found
}

/// Whether a Rust source opens (after blank lines) with an inner doc comment.
pub fn opens_with_module_doc(source: &str) -> bool {
    source.lines().find(|line| !line.trim().is_empty()).is_some_and(|l| l.starts_with("//!"))
}

/// Top directories of paths that only exist on one machine. Named without their slashes, so
/// this file passes its own rule and the tidy test needs no exemption for its own crate.
pub const MACHINE_DIRS: [&str; 5] = ["work", "home", "root", "Users", "tmp"];

/// The machine paths a text mentions (`/<dir>/` of [`MACHINE_DIRS`], or a Windows user
/// directory), with their 1-based line numbers and the prefix found.
pub fn machine_paths(text: &str) -> Vec<(usize, String)> {
    let mut prefixes: Vec<String> = MACHINE_DIRS.iter().map(|dir| format!("/{dir}/")).collect();
    prefixes.push(format!("C:\\{}", "Users"));
    let mut found = Vec::new();
    for (n, line) in text.lines().enumerate() {
        for prefix in &prefixes {
            // A prefix preceded by a path character is the tail of a relative path
            // (`crates/x/tmp/`), not an absolute one.
            let absolute = line.match_indices(prefix.as_str()).any(|(at, _)| {
                at == 0
                    || !line[..at].ends_with(|c: char| c.is_alphanumeric() || "._-/~".contains(c))
            });
            if absolute {
                found.push((n + 1, prefix.clone()));
            }
        }
    }
    found
}

/// Crate directories named in the code map table of ARCHITECTURE.md (rows "| `name` | ...").
pub fn code_map_crates(architecture: &str) -> Vec<String> {
    let Some(start) = architecture.find("## Code map") else { return Vec::new() };
    let section = &architecture[start..];
    let end = section[3..].find("\n## ").map_or(section.len(), |i| i + 3);
    section[..end]
        .lines()
        .filter_map(|line| {
            line.strip_prefix("| `")?.split_once('`').map(|(name, _)| name.to_owned())
        })
        .collect()
}

/// Dependencies of a crate manifest that carry their own version instead of
/// `{ workspace = true }` (path dependencies of the workspace included).
pub fn unpinned_dependencies(manifest: &str) -> Vec<String> {
    let mut section = "";
    let mut found = Vec::new();
    for line in manifest.lines().map(str::trim) {
        if line.starts_with('[') {
            section = line;
            continue;
        }
        let in_dependencies = section.ends_with("dependencies]");
        if !in_dependencies || line.is_empty() || line.starts_with('#') {
            continue;
        }
        if let Some((name, spec)) = line.split_once('=')
            && !spec.contains("workspace = true")
        {
            found.push(format!("{section} {}", name.trim()));
        }
    }
    found
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn module_docs_are_recognised_after_blank_lines() {
        assert!(opens_with_module_doc("\n//! What this is.\nuse x;"));
        assert!(!opens_with_module_doc("use x;\n//! late"));
        assert!(!opens_with_module_doc("/// item doc\nfn f() {}"));
    }

    #[test]
    fn machine_paths_are_found_and_relative_ones_are_not() {
        // Spelled in parts so this file passes its own rule.
        let (work, tmp) = (format!("/{}/", "work"), format!("/{}/", "tmp"));
        assert_eq!(machine_paths(&format!("see {work}main/x")), vec![(1, work.clone())]);
        assert_eq!(machine_paths(&format!("a\n`--json {tmp}out.json`")), vec![(2, tmp.clone())]);
        assert!(machine_paths("crates/stats/tmp/x and ./work/y").is_empty());
        let windows = format!("C:\\{}\\me", "Users");
        assert_eq!(machine_paths(&windows), vec![(1, format!("C:\\{}", "Users"))]);
    }

    #[test]
    fn the_code_map_is_read_from_its_section_only() {
        let doc = "# A\n## Code map\n| crate | role |\n|---|---|\n| `model` | m |\n| `cli` | c |\n\
                   ## Events\n| `not_a_crate` | x |\n";
        assert_eq!(code_map_crates(doc), vec!["model", "cli"]);
    }

    #[test]
    fn versions_outside_the_workspace_are_found() {
        let manifest = "[package]\nversion.workspace = true\n[dependencies]\nserde = { workspace = true }\n\
                        tokio = \"1\"\n[dev-dependencies]\nx = { version = \"2\" }\n";
        assert_eq!(
            unpinned_dependencies(manifest),
            vec!["[dependencies] tokio", "[dev-dependencies] x"]
        );
    }
}
