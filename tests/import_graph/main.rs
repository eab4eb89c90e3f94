//! The module import graph has no cycles, neither between files nor between
//! `loupe-core`'s top-level modules (folders), and `kernels` imports nothing from `nn`
//! (issue 17: each module can be read knowing only the modules below it).
//!
//! Modules are source files: `loupe-core/src/data/video.rs` is `data::video`, inline
//! modules (`mod tests`, `mod builder`) belong to their file. A module imports another
//! when its code names an item of it: a `use` of a `crate::`, `super::`, `self::` or
//! child-module path, or such a path written in the code. How paths are resolved is in
//! `graph.rs` next to this file. The four crates of the workspace are checked: `loupe-core`,
//! `loupe-macros`, and the `loupe` package's library and command line.

mod graph;
mod source;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use graph::{cycles, describe, edges, top_level};
use source::{load, show, Crate};

fn workspace_crate(root: &str) -> Crate {
    let workspace = Path::new(env!("CARGO_MANIFEST_DIR"));
    load(&workspace.join(root), workspace, &|path: &Path| std::fs::read_to_string(path).ok())
}

#[test]
fn the_workspace_s_import_graphs_have_no_cycles() {
    let mut report = Vec::new();
    let mut modules = 0;
    for root in ["loupe-core/src/lib.rs", "loupe-macros/src/lib.rs", "src/lib.rs", "src/main.rs"] {
        let krate = workspace_crate(root);
        modules += krate.files.len();
        for cycle in cycles(&edges(&krate)) {
            report.push(describe(&cycle));
        }
    }
    // The walk found the crates' files (a wrong root would find one and pass).
    assert!(modules > 100, "only {modules} source files found");
    assert!(
        report.is_empty(),
        "import cycles (break each by moving the shared piece down):\n{}",
        report.join("\n")
    );
}

#[test]
fn loupe_core_s_top_level_modules_import_each_other_one_way() {
    let krate = workspace_crate("loupe-core/src/lib.rs");
    let modules = top_level(&edges(&krate));
    // The graph is the real one: `train` runs models through `infer`.
    assert!(modules.iter().any(|e| show(&e.from) == "train" && show(&e.to) == "infer"), "{modules:?}");
    let report: Vec<String> = cycles(&modules).iter().map(|c| describe(c)).collect();
    assert!(
        report.is_empty(),
        "import cycles between loupe-core's top-level modules (move the shared piece down):\n{}",
        report.join("\n")
    );
}

#[test]
fn kernels_import_nothing_from_nn() {
    let krate = workspace_crate("loupe-core/src/lib.rs");
    let all = edges(&krate);
    assert!(all
        .iter()
        .any(|e| e.from.first().is_some_and(|m| m == "nn") && e.to.first().is_some_and(|m| m == "kernels")));
    let wrong: Vec<String> = all
        .iter()
        .filter(|e| {
            e.from.first().is_some_and(|m| m == "kernels") && e.to.first().is_some_and(|m| m != "kernels")
        })
        .map(|e| format!("{} -> {} ({})", show(&e.from), show(&e.to), e.because))
        .collect();
    assert!(wrong.is_empty(), "kernels must be a leaf:\n{}", wrong.join("\n"));
}

/// A crate held in memory: file name -> text.
fn in_memory(files: &[(&str, &str)]) -> Crate {
    let files: BTreeMap<PathBuf, String> =
        files.iter().map(|(name, text)| (Path::new("src").join(name), text.to_string())).collect();
    load(Path::new("src/lib.rs"), Path::new(""), &|path: &Path| files.get(path).cloned())
}

fn cycle_names(krate: &Crate) -> Vec<Vec<String>> {
    cycles(&edges(krate))
        .iter()
        .map(|c| {
            let mut names: Vec<String> = c.iter().map(|e| show(&e.from)).collect();
            names.sort();
            names.dedup();
            names
        })
        .collect()
}

#[test]
fn a_cycle_through_a_use_and_a_written_path_is_found() {
    let krate = in_memory(&[
        ("lib.rs", "pub mod a;\npub mod b;\npub mod c;\n"),
        ("a.rs", "use super::b::{self, Thing as T};\npub fn f() {}\n"),
        ("b.rs", "pub struct Thing;\nfn g() { crate::a::f() }\n"),
        ("c.rs", "use crate::a::f;\n"),
    ]);
    assert_eq!(cycle_names(&krate), vec![vec!["a".to_string(), "b".to_string()]]);
    let text = describe(&cycles(&edges(&krate))[0]);
    assert!(text.contains("a -> b   (src/a.rs:1: super::b)"), "{text}");
    assert!(text.contains("b -> a   (src/b.rs:2: crate::a::f)"), "{text}");
}

#[test]
fn comments_literals_and_tests_modules_add_no_imports() {
    let krate = in_memory(&[
        ("lib.rs", "pub mod a;\npub mod b;\n"),
        (
            "a.rs",
            "use crate::b::X;\n/// Unlike [`crate::a`].\npub fn f() {}\n#[cfg(test)]\nmod tests {\n    use super::*;\n}\n",
        ),
        (
            "b.rs",
            "// crate::a::f\n/* crate::a::f /* nested */ crate::a::f */\npub struct X;\nconst S: &str = \"crate::a::f\";\nconst R: &str = r#\"super::a::f \"#;\nconst C: char = '{';\nfn g<'a>(x: &'a str) -> &'a str { x }\nmod inner { fn h() { let _ = '}'; } }\nfn k() { inner::h() }\n",
        ),
    ]);
    assert_eq!(cycle_names(&krate), Vec::<Vec<String>>::new());
    let all = edges(&krate);
    assert_eq!(all.len(), 1, "{all:?}");
    assert_eq!((show(&all[0].from), show(&all[0].to)), ("a".to_string(), "b".to_string()));
}

#[test]
fn a_facade_re_export_resolves_to_its_source() {
    // `x` uses `Y` through the parent's re-export: an import of `p::y`, not of `p`.
    let files = [
        ("lib.rs", "pub mod p;\n"),
        ("p/mod.rs", "mod x;\nmod y;\npub use x::X;\npub use self::y::Y;\n"),
        ("p/x.rs", "use super::Y;\npub struct X;\n"),
        ("p/y.rs", "pub struct Y;\n"),
    ];
    let krate = in_memory(&files);
    let pairs: Vec<(String, String)> = edges(&krate).iter().map(|e| (show(&e.from), show(&e.to))).collect();
    assert_eq!(pairs, vec![("p::x".to_string(), "p::y".to_string())]);
    assert!(cycle_names(&krate).is_empty());
    // The same through the facade in the other direction closes a cycle.
    let mut files = files.to_vec();
    files[3] = ("p/y.rs", "pub struct Y(pub crate::p::X);\n");
    assert_eq!(cycle_names(&in_memory(&files)), vec![vec!["p::x".to_string(), "p::y".to_string()]]);
    // A sibling's re-export is an import: `y` re-exporting `x`'s item depends on `x`.
    files[3] = ("p/y.rs", "pub use super::x::X as Again;\npub struct Y;\n");
    assert_eq!(cycle_names(&in_memory(&files)), vec![vec!["p::x".to_string(), "p::y".to_string()]]);
}

#[test]
fn a_cycle_between_folders_is_found_though_their_files_form_none() {
    let krate = in_memory(&[
        ("lib.rs", "pub mod a;\npub mod b;\npub mod c;\n"),
        ("a/mod.rs", "pub mod x;\npub mod y;\n"),
        ("a/x.rs", "pub struct X;\n"),
        ("a/y.rs", "use crate::b::Z;\npub struct Y(Z);\n"),
        ("b.rs", "use crate::a::x::X;\npub struct Z(X);\n"),
        ("c.rs", "use crate::a::y::Y;\n"),
    ]);
    assert!(cycle_names(&krate).is_empty());
    let modules = top_level(&edges(&krate));
    let pairs: Vec<(String, String)> = modules.iter().map(|e| (show(&e.from), show(&e.to))).collect();
    let expected = [("a", "b"), ("b", "a"), ("c", "a")].map(|(f, t)| (f.to_string(), t.to_string()));
    assert_eq!(pairs, expected);
    let found = cycles(&modules);
    assert_eq!(found.len(), 1);
    let text = describe(&found[0]);
    assert!(text.contains("a -> b   (src/a/y.rs:1: crate::b::Z)"), "{text}");
    assert!(text.contains("b -> a   (src/b.rs:1: crate::a::x::X)"), "{text}");
}

#[test]
fn a_parent_that_calls_its_child_and_is_used_by_it_is_a_cycle() {
    let krate = in_memory(&[
        ("lib.rs", "mod cli;\n"),
        ("cli/mod.rs", "mod train;\npub struct CliError;\npub fn main() { train::run() }\n"),
        ("cli/train.rs", "use super::CliError;\npub fn run() {}\n"),
    ]);
    assert_eq!(cycle_names(&krate), vec![vec!["cli".to_string(), "cli::train".to_string()]]);
}
