//! Every file in `tests/` is built and run. The package sets `autotests = false` and
//! groups the test files into a few binaries (the `[[test]]` targets of `Cargo.toml`,
//! whose `tests/suite_*.rs` entry files include the others with `#[path]`; build time,
//! issue 22), so a new file that no target names would otherwise never run.

use std::collections::BTreeMap;
use std::path::Path;

/// Each test file's owners: the `[[test]]` targets whose entry file it is or includes.
fn owners(root: &Path) -> BTreeMap<String, Vec<String>> {
    let manifest = std::fs::read_to_string(root.join("Cargo.toml")).expect("Cargo.toml");
    let manifest: toml::Table = manifest.parse().expect("Cargo.toml is TOML");
    let package = manifest["package"].as_table().expect("[package]");
    assert_eq!(package.get("autotests").and_then(|v| v.as_bool()), Some(false), "autotests = false");
    let mut owners: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for target in manifest["test"].as_array().expect("[[test]] targets") {
        let name = target["name"].as_str().expect("a [[test]] name").to_string();
        let path =
            target.get("path").and_then(|p| p.as_str()).map_or(format!("tests/{name}.rs"), String::from);
        let entry = path.strip_prefix("tests/").unwrap_or_else(|| panic!("{path}: expected under tests/"));
        owners.entry(entry.to_string()).or_default().push(name.clone());
        let text = std::fs::read_to_string(root.join(&path)).unwrap_or_else(|e| panic!("{path}: {e}"));
        for line in text.lines() {
            if let Some(rest) = line.trim().strip_prefix("#[path = \"") {
                let file = rest.split('"').next().unwrap_or_default();
                owners.entry(file.to_string()).or_default().push(name.clone());
            }
        }
    }
    owners
}

#[test]
fn every_test_file_belongs_to_exactly_one_test_binary() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let owners = owners(root);
    let mut files: Vec<String> = std::fs::read_dir(root.join("tests"))
        .expect("tests/")
        .map(|e| e.expect("a tests/ entry").file_name().to_string_lossy().into_owned())
        .filter_map(|name| {
            // A file, or a folder that is a test binary of its own (`NAME/main.rs`).
            if name.ends_with(".rs") {
                Some(name)
            } else {
                root.join("tests").join(&name).join("main.rs").is_file().then(|| format!("{name}/main.rs"))
            }
        })
        .collect();
    files.sort();
    assert!(files.len() > 20, "found only {files:?}");
    for file in &files {
        match owners.get(file).map(Vec::as_slice) {
            Some([_]) => {}
            None | Some([]) => panic!("tests/{file} is in no [[test]] target: add it to a tests/suite_*.rs"),
            Some(many) => panic!("tests/{file} runs in several binaries: {many:?}"),
        }
    }
    for file in owners.keys() {
        assert!(files.contains(file), "a [[test]] target names tests/{file}, which does not exist");
    }
}
