//! The floors of the workspace, read from cargo's resolved dependency graph: what draws never
//! reaches PostgreSQL, what talks to PostgreSQL never draws, the model reaches neither, and
//! the binary crate uses neither directly.

use std::collections::{BTreeSet, HashMap};
use std::process::Command;

use serde_json::Value;

/// Crates that draw on a terminal.
const DRAWS: [&str; 3] = ["ratatui", "crossterm", "tui-logger"];
/// Crates that talk to PostgreSQL.
const QUERIES: [&str; 2] = ["tokio-postgres", "deadpool-postgres"];

/// The platform the tests run on, as rustc names it.
fn host() -> String {
    let rustc = std::env::var("RUSTC").unwrap_or_else(|_| "rustc".into());
    let output = Command::new(rustc).arg("-vV").output().expect("rustc runs");
    String::from_utf8_lossy(&output.stdout)
        .lines()
        .find_map(|l| l.strip_prefix("host: ").map(str::to_owned))
        .expect("rustc names its host")
}

/// Package name → the names of its normal (not dev, not build) dependencies on this
/// platform (the others' sources need not be here).
fn normal_dependencies() -> HashMap<String, Vec<String>> {
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let output = Command::new(cargo)
        .args([
            "metadata",
            "--format-version",
            "1",
            "--offline",
            "--filter-platform",
        ])
        .arg(host())
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .output()
        .expect("cargo metadata runs");
    assert!(
        output.status.success(),
        "cargo metadata failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    let metadata: Value = serde_json::from_slice(&output.stdout).expect("cargo metadata's JSON");
    let names: HashMap<&str, &str> = metadata["packages"]
        .as_array()
        .expect("packages")
        .iter()
        .filter_map(|p| Some((p["id"].as_str()?, p["name"].as_str()?)))
        .collect();
    metadata["resolve"]["nodes"]
        .as_array()
        .expect("the resolved graph")
        .iter()
        .filter_map(|node| {
            let name = names.get(node["id"].as_str()?)?;
            let deps = node["deps"]
                .as_array()?
                .iter()
                .filter(|d| {
                    d["dep_kinds"]
                        .as_array()
                        .is_some_and(|kinds| kinds.iter().any(|k| k["kind"].is_null()))
                })
                .filter_map(|d| names.get(d["pkg"].as_str()?).map(|n| (*n).to_owned()))
                .collect();
            Some(((*name).to_owned(), deps))
        })
        .collect()
}

/// Every package `name` depends on, directly or not.
fn reached(graph: &HashMap<String, Vec<String>>, name: &str) -> BTreeSet<String> {
    let mut seen = BTreeSet::new();
    let mut todo = vec![name.to_owned()];
    while let Some(next) = todo.pop() {
        for dep in graph.get(&next).into_iter().flatten() {
            if seen.insert(dep.clone()) {
                todo.push(dep.clone());
            }
        }
    }
    seen
}

fn forbidden<'a>(found: &BTreeSet<String>, names: &[&'a str]) -> Vec<&'a str> {
    names
        .iter()
        .copied()
        .filter(|n| found.contains(*n))
        .collect()
}

#[test]
fn the_compiler_keeps_the_floors() {
    let graph = normal_dependencies();
    for drawing in ["notifyscope-screen", "notifyscope-widgets"] {
        let found = reached(&graph, drawing);
        assert_eq!(
            forbidden(&found, &QUERIES),
            Vec::<&str>::new(),
            "{drawing} draws and must not reach PostgreSQL"
        );
    }
    for querying in [
        "notifyscope-store",
        "notifyscope-pipeline",
        "notifyscope-diagnose",
        "notifyscope-bench",
    ] {
        let found = reached(&graph, querying);
        assert_eq!(
            forbidden(&found, &DRAWS),
            Vec::<&str>::new(),
            "{querying} talks to PostgreSQL and must not draw"
        );
    }
    let model = reached(&graph, "notifyscope-model");
    assert_eq!(
        forbidden(&model, &DRAWS)
            .into_iter()
            .chain(forbidden(&model, &QUERIES))
            .collect::<Vec<_>>(),
        Vec::<&str>::new(),
        "the model neither draws nor queries"
    );
    let direct: BTreeSet<String> = graph
        .get("notifyscope")
        .expect("the binary crate")
        .iter()
        .cloned()
        .collect();
    assert_eq!(
        forbidden(&direct, &DRAWS)
            .into_iter()
            .chain(forbidden(&direct, &QUERIES))
            .collect::<Vec<_>>(),
        Vec::<&str>::new(),
        "the binary crate only wires: it neither draws nor queries by itself"
    );
}
