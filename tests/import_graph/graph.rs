//! Which module imports which, and the cycles among them.
//!
//! A path is resolved to the file of the longest module prefix it names
//! (`crate::data::video::Video` -> `data::video`). A parent's re-export of an item of
//! its own descendants (`pub use video::Video` in `data/mod.rs`, a facade) is no import
//! of the parent's: a path through it resolves to the module that defines the item, and
//! the re-export itself adds no edge. Every other `pub use` is an import like any `use`.

use std::collections::{BTreeMap, BTreeSet};

use super::source::{show, Crate, ModPath, NamedPath};

/// `from` imports `to`; `because` is one place that says so (`file:line: path`).
#[derive(Debug, Clone)]
pub struct Edge {
    pub from: ModPath,
    pub to: ModPath,
    pub because: String,
}

/// Every module-to-module import of `krate` (files as modules), one edge per pair with
/// the first place found.
pub fn edges(krate: &Crate) -> Vec<Edge> {
    // Facade re-exports: module -> name -> the path it stands for.
    let mut facades: BTreeMap<ModPath, BTreeMap<String, ModPath>> = BTreeMap::new();
    for (file, source) in &krate.files {
        for named in &source.paths {
            if let Some(target) = facade_target(krate, file, named) {
                if let Some(name) = target.last().filter(|n| *n != "*") {
                    facades.entry(named.scope.clone()).or_default().insert(name.clone(), target.clone());
                }
            }
        }
    }
    let mut found: BTreeMap<(ModPath, ModPath), String> = BTreeMap::new();
    for (file, source) in &krate.files {
        for named in &source.paths {
            if facade_target(krate, file, named).is_some() {
                continue;
            }
            let Some(target) = absolute(krate, named) else { continue };
            let Some(to) = resolve(krate, &facades, &target, 0) else { continue };
            if &to != file {
                found.entry((file.clone(), to)).or_insert_with(|| {
                    format!("{}:{}: {}", source.name, named.line, named.segments.join("::"))
                });
            }
        }
    }
    found.into_iter().map(|((from, to), because)| Edge { from, to, because }).collect()
}

/// The path a `pub use` in `file` re-exports when it is a facade: the item lives in a
/// module below `file` (not in `file` itself).
fn facade_target(krate: &Crate, file: &ModPath, named: &NamedPath) -> Option<ModPath> {
    if !named.reexport {
        return None;
    }
    let target = absolute(krate, named)?;
    let owner = owner_file(krate, &target)?;
    (owner.len() > file.len() && owner.starts_with(file)).then_some(target)
}

/// The file holding the longest module prefix of `path`.
fn owner_file(krate: &Crate, path: &[String]) -> Option<ModPath> {
    (0..=path.len()).rev().find_map(|k| krate.modules.get(&path[..k]).cloned())
}

/// `named` as a path from the crate root, or `None` when it leaves the crate (`std::`,
/// another crate, a name brought in by a glob).
fn absolute(krate: &Crate, named: &NamedPath) -> Option<ModPath> {
    let segments = &named.segments;
    let first = segments.first()?;
    let (mut base, rest) = match first.as_str() {
        "crate" => (Vec::new(), &segments[1..]),
        "super" | "self" => {
            let mut base = named.scope.clone();
            let mut k = 0;
            while let Some(s) = segments.get(k).filter(|s| *s == "super" || *s == "self") {
                if s == "super" {
                    base.pop()?;
                }
                k += 1;
            }
            (base, &segments[k..])
        }
        // A child module of the scope (`use video::Video` in `data/mod.rs`), or outside.
        name => {
            let mut child = named.scope.clone();
            child.push(name.to_string());
            if !krate.modules.contains_key(&child) {
                return None;
            }
            (named.scope.clone(), &segments[..])
        }
    };
    base.extend(rest.iter().cloned());
    Some(base)
}

/// The graph between top-level modules (`data::video` -> `infer::predictor` is `data` ->
/// `infer`; a file at the root, `model.rs`, is a module of its own), one edge per pair
/// with every file-level import that makes it (`; `-separated). Imports inside a module
/// and those of the crate root add no edge.
pub fn top_level(edges: &[Edge]) -> Vec<Edge> {
    let mut found: BTreeMap<(ModPath, ModPath), Vec<String>> = BTreeMap::new();
    for e in edges {
        let (Some(from), Some(to)) = (e.from.first(), e.to.first()) else { continue };
        if from != to {
            found.entry((vec![from.clone()], vec![to.clone()])).or_default().push(e.because.clone());
        }
    }
    found.into_iter().map(|((from, to), because)| Edge { from, to, because: because.join("; ") }).collect()
}

/// The file that defines what `path` names, following facade re-exports.
fn resolve(
    krate: &Crate,
    facades: &BTreeMap<ModPath, BTreeMap<String, ModPath>>,
    path: &[String],
    hops: usize,
) -> Option<ModPath> {
    let k = (0..=path.len()).rev().find(|&k| krate.modules.contains_key(&path[..k]))?;
    let module = &path[..k];
    if let (Some(name), true) = (path.get(k), hops < 16) {
        if let Some(target) = facades.get(module).and_then(|f| f.get(name)) {
            let mut through = target.clone();
            through.extend(path[k + 1..].iter().cloned());
            return resolve(krate, facades, &through, hops + 1);
        }
    }
    krate.modules.get(module).cloned()
}

/// The cycles of the graph: its strongly connected components of more than one module,
/// each with the edges inside it.
pub fn cycles(edges: &[Edge]) -> Vec<Vec<Edge>> {
    let nodes: BTreeSet<&ModPath> = edges.iter().flat_map(|e| [&e.from, &e.to]).collect();
    let index: BTreeMap<&ModPath, usize> = nodes.iter().enumerate().map(|(i, n)| (*n, i)).collect();
    let mut next: Vec<Vec<usize>> = vec![Vec::new(); nodes.len()];
    for e in edges {
        next[index[&e.from]].push(index[&e.to]);
    }
    let component = strongly_connected(&next);
    let mut groups: BTreeMap<usize, Vec<Edge>> = BTreeMap::new();
    let mut sizes: BTreeMap<usize, usize> = BTreeMap::new();
    for c in &component {
        *sizes.entry(*c).or_default() += 1;
    }
    for e in edges {
        let (a, b) = (component[index[&e.from]], component[index[&e.to]]);
        if a == b && sizes[&a] > 1 {
            groups.entry(a).or_default().push(e.clone());
        }
    }
    groups.into_values().collect()
}

/// Tarjan's algorithm, iterative: the component number of each node.
fn strongly_connected(next: &[Vec<usize>]) -> Vec<usize> {
    const UNSEEN: usize = usize::MAX;
    let n = next.len();
    let (mut order, mut low, mut component) = (vec![UNSEEN; n], vec![0; n], vec![UNSEEN; n]);
    let (mut counter, mut components) = (0, 0);
    let mut stack = Vec::new();
    for start in 0..n {
        if order[start] != UNSEEN {
            continue;
        }
        // (node, next edge to look at)
        let mut work = vec![(start, 0)];
        while let Some(&mut (v, ref mut at)) = work.last_mut() {
            if *at == 0 && order[v] == UNSEEN {
                order[v] = counter;
                low[v] = counter;
                counter += 1;
                stack.push(v);
            }
            if let Some(&w) = next[v].get(*at) {
                *at += 1;
                if order[w] == UNSEEN {
                    work.push((w, 0));
                } else if component[w] == UNSEEN {
                    low[v] = low[v].min(order[w]);
                }
                continue;
            }
            work.pop();
            if let Some(&(parent, _)) = work.last() {
                low[parent] = low[parent].min(low[v]);
            }
            if low[v] == order[v] {
                while let Some(w) = stack.pop() {
                    component[w] = components;
                    if w == v {
                        break;
                    }
                }
                components += 1;
            }
        }
    }
    component
}

/// A cycle as the test prints it: its modules, then each edge with where it comes from.
pub fn describe(cycle: &[Edge]) -> String {
    let modules: BTreeSet<String> = cycle.iter().flat_map(|e| [show(&e.from), show(&e.to)]).collect();
    let mut text = format!("cycle among {}:", modules.into_iter().collect::<Vec<_>>().join(", "));
    for e in cycle {
        text.push_str(&format!("\n    {} -> {}   ({})", show(&e.from), show(&e.to), e.because));
    }
    text
}
