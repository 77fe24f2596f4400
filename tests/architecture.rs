//! The house rules of ARCHITECTURE.md, checked by reading `src/`: no import circle between
//! top-level modules, the core rooms import nothing from the rooms above them, and no source file
//! grows past 1 500 lines.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

const MAX_LINES: usize = 1_500;

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).expect("read src") {
        let path = entry.expect("dir entry").path();
        if path.is_dir() {
            rust_files(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

fn src() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("src")
}

/// The top-level module a file belongs to: `src/balancer/state.rs` → `balancer`.
fn room(file: &Path) -> String {
    let rel = file.strip_prefix(src()).expect("under src");
    let first = rel.components().next().expect("a component").as_os_str().to_string_lossy();
    first.trim_end_matches(".rs").to_string()
}

/// `crate::<name>` paths in code (comments dropped), as top-level module names.
fn imports(text: &str) -> BTreeSet<String> {
    let mut found = BTreeSet::new();
    for line in text.lines() {
        let code = line.split("//").next().unwrap_or("");
        let mut rest = code;
        while let Some(at) = rest.find("crate::") {
            let after = &rest[at + "crate::".len()..];
            let name: String = after.chars().take_while(|c| c.is_ascii_alphanumeric() || *c == '_').collect();
            if !name.is_empty() {
                found.insert(name);
            }
            rest = after;
        }
        // `use crate::{a, b::c}` groups.
        if let Some(at) = code.find("crate::{") {
            for part in code[at + "crate::{".len()..].split([',', '}']) {
                let name: String =
                    part.trim().chars().take_while(|c| c.is_ascii_alphanumeric() || *c == '_').collect();
                if !name.is_empty() {
                    found.insert(name);
                }
            }
        }
    }
    found
}

fn graph() -> BTreeMap<String, BTreeSet<String>> {
    let mut files = Vec::new();
    rust_files(&src(), &mut files);
    let rooms: BTreeSet<String> = files.iter().map(|f| room(f)).collect();
    let mut graph: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for file in &files {
        let from = room(file);
        let text = std::fs::read_to_string(file).expect("read source");
        let deps = graph.entry(from.clone()).or_default();
        for to in imports(&text) {
            if to != from && rooms.contains(&to) {
                deps.insert(to);
            }
        }
    }
    graph
}

fn reaches(graph: &BTreeMap<String, BTreeSet<String>>, from: &str, to: &str) -> bool {
    let mut seen = BTreeSet::new();
    let mut stack = vec![from.to_string()];
    while let Some(node) = stack.pop() {
        for next in graph.get(&node).into_iter().flatten() {
            if next == to {
                return true;
            }
            if seen.insert(next.clone()) {
                stack.push(next.clone());
            }
        }
    }
    false
}

#[test]
fn no_import_circle_between_top_level_modules() {
    let graph = graph();
    assert!(graph.get("balancer").is_some_and(|d| !d.is_empty()), "the scanner sees imports: {graph:?}");
    let circles: Vec<String> = graph
        .iter()
        .flat_map(|(from, deps)| deps.iter().map(move |to| (from, to)))
        .filter(|(from, to)| reaches(&graph, to, from))
        .map(|(from, to)| format!("{from} → {to} → … → {from}"))
        .collect();
    assert!(circles.is_empty(), "import circles: {circles:#?}");
}

#[test]
fn core_rooms_import_nothing_from_the_rooms_above() {
    let graph = graph();
    let core = ["balancer", "providers", "config", "classify", "anthropic", "usage"];
    let above = ["server", "tui", "status", "demo", "runtime", "app", "snapshot"];
    let views = ["tui", "status", "snapshot"];
    let mut wrong = Vec::new();
    for room in core {
        for dep in graph.get(room).into_iter().flatten() {
            if above.contains(&dep.as_str()) {
                wrong.push(format!("{room} imports {dep}"));
            }
        }
    }
    for room in views {
        if graph.get(room).is_some_and(|d| d.contains("server")) {
            wrong.push(format!("{room} imports server"));
        }
    }
    assert!(wrong.is_empty(), "{wrong:#?}");
}

#[test]
fn no_source_file_over_the_limit() {
    let mut files = Vec::new();
    for dir in ["src", "tests", "benches"] {
        let path = Path::new(env!("CARGO_MANIFEST_DIR")).join(dir);
        if path.is_dir() {
            rust_files(&path, &mut files);
        }
    }
    let long: Vec<String> = files
        .iter()
        .filter_map(|f| {
            let lines = std::fs::read_to_string(f).expect("read").lines().count();
            (lines > MAX_LINES).then(|| format!("{}: {lines} lines", f.display()))
        })
        .collect();
    assert!(files.len() > 50, "found the sources");
    assert!(long.is_empty(), "files over {MAX_LINES} lines: {long:#?}");
}

#[test]
fn the_scanner_reads_paths_and_groups() {
    let found = imports("use crate::{config::Config, balancer};\nlet x = crate::usage::f(); // crate::tui\n");
    let want: BTreeSet<String> = ["config", "balancer", "usage"].iter().map(|s| s.to_string()).collect();
    assert_eq!(found, want);
}
