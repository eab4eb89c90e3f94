//! Reading a crate's sources: the module tree from `mod name;` declarations, and in each
//! file the paths its code names (`use` trees and paths written in the code), with
//! comments and literals skipped.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

/// A module's path below its crate root (`["data", "video"]` is `data::video`).
pub type ModPath = Vec<String>;

/// `data::video`, or `crate` for the root.
pub fn show(path: &[String]) -> String {
    if path.is_empty() {
        "crate".to_string()
    } else {
        path.join("::")
    }
}

/// A path named in a file.
#[derive(Debug, Clone)]
pub struct NamedPath {
    /// The module the path is written in (an inline module such as `tests` included).
    pub scope: ModPath,
    /// The path's segments, `use` trees expanded (`crate`, `super` and `self` kept).
    pub segments: Vec<String>,
    /// Written in a `pub use` (of any visibility): a re-export.
    pub reexport: bool,
    /// The line it starts on.
    pub line: usize,
}

/// One source file: a module, with its inline modules.
#[derive(Debug)]
pub struct SourceFile {
    /// Relative to the directory given to [`load`], for messages.
    pub name: String,
    pub paths: Vec<NamedPath>,
}

/// A crate: its files by module path, and every module (file or inline) with the file
/// that holds it.
#[derive(Debug, Default)]
pub struct Crate {
    pub files: BTreeMap<ModPath, SourceFile>,
    pub modules: BTreeMap<ModPath, ModPath>,
}

/// Loads the crate whose root file is `root` (`lib.rs` or `main.rs`), reading files with
/// `read` (`None`: no such file); files are named relative to `base` in messages.
pub fn load(root: &Path, base: &Path, read: &dyn Fn(&Path) -> Option<String>) -> Crate {
    let mut krate = Crate::default();
    let mut pending: Vec<(ModPath, PathBuf, PathBuf)> =
        vec![(Vec::new(), root.to_path_buf(), root.parent().unwrap_or(Path::new("")).to_path_buf())];
    while let Some((path, file, dir)) = pending.pop() {
        let text = read(&file).unwrap_or_else(|| panic!("{}: cannot read", file.display()));
        let scanned = scan(&path, &text);
        for inline in &scanned.inline {
            krate.modules.insert(inline.clone(), path.clone());
        }
        for child in scanned.children {
            let candidates = [dir.join(format!("{child}.rs")), dir.join(&child).join("mod.rs")];
            let found = candidates.iter().find(|c| read(c).is_some()).unwrap_or_else(|| {
                panic!("{}: `mod {child};` has no file {}", file.display(), candidates[0].display())
            });
            // The children of `x.rs` and of `x/mod.rs` both live in `x/`.
            let child_dir = dir.join(&child);
            let mut child_path = path.clone();
            child_path.push(child);
            pending.push((child_path, found.clone(), child_dir));
        }
        krate.modules.insert(path.clone(), path.clone());
        let name = file.strip_prefix(base).unwrap_or(&file).display().to_string();
        krate.files.insert(path, SourceFile { name, paths: scanned.paths });
    }
    krate
}

/// What one file declares and names.
struct Scanned {
    children: Vec<String>,
    inline: BTreeSet<ModPath>,
    paths: Vec<NamedPath>,
}

#[derive(Debug, Clone, PartialEq)]
enum Token {
    Ident(String),
    PathSep,
    Punct(char),
}

/// The tokens of `text` that matter here, each with its line: identifiers, `::` and
/// single punctuation characters. Comments, string, byte-string, raw-string and
/// character literals are dropped; lifetimes keep only their name.
fn tokens(text: &str) -> Vec<(Token, usize)> {
    let chars: Vec<char> = text.chars().collect();
    let mut out = Vec::new();
    let (mut i, mut line) = (0, 1);
    let ident_char = |c: char| c.is_alphanumeric() || c == '_';
    while i < chars.len() {
        let c = chars[i];
        let next = chars.get(i + 1).copied();
        if c == '\n' {
            line += 1;
            i += 1;
        } else if c.is_whitespace() {
            i += 1;
        } else if c == '/' && next == Some('/') {
            while i < chars.len() && chars[i] != '\n' {
                i += 1;
            }
        } else if c == '/' && next == Some('*') {
            let mut depth = 0;
            while i < chars.len() {
                if chars[i] == '/' && chars.get(i + 1) == Some(&'*') {
                    depth += 1;
                    i += 2;
                } else if chars[i] == '*' && chars.get(i + 1) == Some(&'/') {
                    depth -= 1;
                    i += 2;
                    if depth == 0 {
                        break;
                    }
                } else {
                    line += usize::from(chars[i] == '\n');
                    i += 1;
                }
            }
        } else if c == '"' {
            i += 1;
            while i < chars.len() && chars[i] != '"' {
                line += usize::from(chars[i] == '\n');
                i += if chars[i] == '\\' { 2 } else { 1 };
            }
            i += 1;
        } else if c == '\'' {
            // A character literal ('x', '\n', '{') or a lifetime ('a).
            if next == Some('\\') {
                i += 2;
                while i < chars.len() && chars[i] != '\'' {
                    i += 1;
                }
                i += 1;
            } else if chars.get(i + 2) == Some(&'\'') {
                i += 3;
            } else {
                i += 1;
            }
        } else if ident_char(c) {
            let start = i;
            while i < chars.len() && ident_char(chars[i]) {
                i += 1;
            }
            let word: String = chars[start..i].iter().collect();
            let raw = matches!(word.as_str(), "r" | "br") && matches!(chars.get(i), Some('"') | Some('#'));
            if raw && chars[i] == '#' && chars.get(i + 1).is_some_and(|&c| ident_char(c)) {
                // A raw identifier (`r#type`).
                i += 1;
            } else if raw {
                let hashes = chars[i..].iter().take_while(|&&c| c == '#').count();
                i += hashes + 1;
                let closing: Vec<char> =
                    std::iter::once('"').chain(std::iter::repeat_n('#', hashes)).collect();
                while i < chars.len() && !chars[i..].starts_with(&closing) {
                    line += usize::from(chars[i] == '\n');
                    i += 1;
                }
                i += closing.len();
            } else if word == "b" && next == Some('\'') {
                // A byte literal (b'x', b'\n').
                i += 1;
                while i < chars.len() && chars[i] != '\'' {
                    i += if chars[i] == '\\' { 2 } else { 1 };
                }
                i += 1;
            } else if !word.starts_with(|c: char| c.is_ascii_digit()) {
                out.push((Token::Ident(word), line));
            }
        } else if c == ':' && next == Some(':') {
            out.push((Token::PathSep, line));
            i += 2;
        } else {
            out.push((Token::Punct(c), line));
            i += 1;
        }
    }
    out
}

fn ident(t: Option<&(Token, usize)>) -> Option<&str> {
    match t {
        Some((Token::Ident(s), _)) => Some(s),
        _ => None,
    }
}

fn is(t: Option<&(Token, usize)>, c: char) -> bool {
    matches!(t, Some((Token::Punct(p), _)) if *p == c)
}

/// Scans the file of module `path`.
fn scan(path: &ModPath, text: &str) -> Scanned {
    let toks = tokens(text);
    let mut children = Vec::new();
    let mut inline = BTreeSet::new();
    let mut paths = Vec::new();
    // Open inline modules: (path, brace depth inside them).
    let mut scopes: Vec<(ModPath, usize)> = Vec::new();
    let mut depth = 0usize;
    let mut i = 0;
    // Child modules are declared before they are used in practice; collect them first so
    // that `child::item` written anywhere in the file is recognised.
    let declared: BTreeSet<String> = toks
        .windows(3)
        .filter(|w| ident(Some(&w[0])) == Some("mod") && is(Some(&w[2]), ';'))
        .filter_map(|w| ident(Some(&w[1])).map(str::to_string))
        .collect();
    while i < toks.len() {
        let scope = scopes.last().map_or_else(|| path.clone(), |s| s.0.clone());
        let prev = i.checked_sub(1).and_then(|p| toks.get(p));
        match &toks[i].0 {
            Token::Punct('{') => {
                depth += 1;
                i += 1;
            }
            Token::Punct('}') => {
                if scopes.last().is_some_and(|s| s.1 == depth) {
                    scopes.pop();
                }
                depth = depth.saturating_sub(1);
                i += 1;
            }
            Token::Ident(w) if w == "mod" => {
                match (ident(toks.get(i + 1)), toks.get(i + 2).map(|t| &t.0)) {
                    (Some(name), Some(Token::Punct(';'))) if scopes.is_empty() => {
                        children.push(name.to_string())
                    }
                    (Some(name), Some(Token::Punct('{'))) => {
                        let mut inner = scope.clone();
                        inner.push(name.to_string());
                        inline.insert(inner.clone());
                        scopes.push((inner, depth + 1));
                    }
                    _ => {}
                }
                i += 2;
            }
            Token::Ident(w) if w == "use" && !is(toks.get(i + 1), '<') => {
                let reexport = ident(prev) == Some("pub") || (is(prev, ')') && pub_restricted(&toks[..i]));
                let line = toks[i].1;
                let end =
                    toks[i..].iter().position(|t| t.0 == Token::Punct(';')).map_or(toks.len(), |p| i + p);
                for segments in expand_use(&toks[i + 1..end]) {
                    paths.push(NamedPath { scope: scope.clone(), segments, reexport, line });
                }
                i = end;
            }
            Token::Ident(w)
                if (matches!(w.as_str(), "crate" | "super" | "self") || declared.contains(w))
                    && toks.get(i + 1).map(|t| &t.0) == Some(&Token::PathSep)
                    && !matches!(prev.map(|t| &t.0), Some(Token::PathSep) | Some(Token::Punct('$'))) =>
            {
                let line = toks[i].1;
                let mut segments = vec![w.clone()];
                let mut j = i + 1;
                while toks.get(j).map(|t| &t.0) == Some(&Token::PathSep) {
                    match ident(toks.get(j + 1)) {
                        Some(s) => segments.push(s.to_string()),
                        None => break,
                    }
                    j += 2;
                }
                paths.push(NamedPath { scope: scope.clone(), segments, reexport: false, line });
                i = j;
            }
            _ => i += 1,
        }
    }
    Scanned { children, inline, paths }
}

/// Whether the tokens before a `use` end with `pub(crate)`, `pub(super)` or `pub(in ...)`.
fn pub_restricted(before: &[(Token, usize)]) -> bool {
    let open = before.iter().rposition(|t| t.0 == Token::Punct('('));
    open.is_some_and(|o| o > 0 && ident(before.get(o - 1)) == Some("pub"))
}

/// The paths of a `use` tree (the tokens between `use` and `;`), `as` renames dropped,
/// a trailing `self` in braces dropped (`a::{self, b}` gives `a` and `a::b`).
fn expand_use(tree: &[(Token, usize)]) -> Vec<Vec<String>> {
    fn walk(tree: &[(Token, usize)], prefix: &[String], out: &mut Vec<Vec<String>>) {
        // Split at top-level commas.
        let mut depth = 0;
        let mut start = 0;
        let mut parts = Vec::new();
        for (k, t) in tree.iter().enumerate() {
            match t.0 {
                Token::Punct('{') => depth += 1,
                Token::Punct('}') => depth -= 1,
                Token::Punct(',') if depth == 0 => {
                    parts.push(&tree[start..k]);
                    start = k + 1;
                }
                _ => {}
            }
        }
        parts.push(&tree[start..]);
        for part in parts {
            let mut path = prefix.to_vec();
            let mut k = 0;
            while k < part.len() {
                match &part[k].0 {
                    Token::Ident(s) if s == "as" => break,
                    Token::Ident(s) if s == "self" && !path.is_empty() => {}
                    Token::Ident(s) => path.push(s.clone()),
                    Token::Punct('*') => path.push("*".to_string()),
                    Token::Punct('{') => {
                        let close = part.len() - 1;
                        walk(&part[k + 1..close], &path, out);
                        path.clear();
                        break;
                    }
                    _ => {}
                }
                k += 1;
            }
            if !path.is_empty() {
                out.push(path);
            }
        }
    }
    let mut out = Vec::new();
    walk(tree, &[], &mut out);
    out
}
