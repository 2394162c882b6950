//! The crate's shape (docs/architecture.md): files of src/ import each
//! other without cycles, a module imports only modules of a lower layer,
//! and no function is longer than a screen and a half.
//!
//! Read from the source, not the compiler: every `use` and every inline
//! `crate::`/`super::` path outside test modules is resolved to the file
//! that defines the item, following `pub use` re-exports (a re-export is an
//! import of the file it re-exports from).

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

/// Top-level modules from the bottom up; a module imports only modules of
/// earlier layers (never one of its own layer but itself).
#[rustfmt::skip]
const LAYERS: &[&[&str]] = &[
    &["", "parallel", "zero_copy", "file_watch"],
    &["context"],
    &["config"],
    &["compress", "metrics"],
    &["store"],
    &["transform", "site"],
    &["rules"],
    &["experiments", "body", "ctx"],
    &["live"],
    &["respond", "access_log"],
    &["proxy"],
    &["handler", "watch", "fleet", "demo_upstream", "connections", "tls"],
    &["offline", "admin"],
    &["server"],
    &["rule_tests"],
    &["check"],
    &["cli"],
];

#[test]
fn files_import_in_one_direction_only() {
    let crate_ = Crate::read(Path::new(env!("CARGO_MANIFEST_DIR")).join("src"));
    let edges = crate_.edges();
    let mut problems = Vec::new();
    for cycle in cycles(&edges) {
        problems.push(format!("import cycle between {}", cycle.join(", ")));
    }
    let layer = |file: &str| {
        let top = top_module(file);
        LAYERS
            .iter()
            .position(|l| l.contains(&top.as_str()))
            .unwrap_or_else(|| panic!("module `{top}` ({file}) is in no layer of tests/shape.rs"))
    };
    for (from, tos) in &edges {
        for to in tos {
            let (a, b) = (top_module(from), top_module(to));
            if a != b && layer(to) >= layer(from) {
                problems.push(format!(
                    "{from} ({a}) imports {to} ({b}) of a layer not below"
                ));
            }
        }
    }
    assert!(problems.is_empty(), "{}", problems.join("\n"));
}

/// Longer than this, a function holds more than one step to read.
const MAX_FUNCTION_LINES: usize = 120;

#[test]
fn no_function_is_longer_than_120_lines() {
    let crate_ = Crate::read(Path::new(env!("CARGO_MANIFEST_DIR")).join("src"));
    let mut long = Vec::new();
    for (file, code) in crate_.modules.values() {
        for (name, line, lines) in functions(code) {
            if lines > MAX_FUNCTION_LINES {
                long.push(format!("src/{file}:{line}: fn {name} has {lines} lines"));
            }
        }
    }
    assert!(long.is_empty(), "{}", long.join("\n"));
}

/// Each function in `code`: its name, first line and length in lines.
fn functions(code: &str) -> Vec<(String, usize, usize)> {
    let bytes = code.as_bytes();
    let line_of = |at: usize| code[..at].matches('\n').count() + 1;
    let mut found = Vec::new();
    let mut from = 0;
    while let Some(at) = find_word(&code[from..], "fn").map(|i| from + i) {
        from = at + 2;
        let name: String = code[at + 2..]
            .trim_start()
            .chars()
            .take_while(|c| c.is_alphanumeric() || *c == '_')
            .collect();
        // The body opens at the first `{` before any `;` (a declaration).
        let Some(open) = code[at..].find(['{', ';']).map(|i| at + i) else {
            break;
        };
        if bytes[open] == b';' || name.is_empty() {
            continue;
        }
        let mut depth = 0;
        let mut close = open;
        for (i, b) in bytes[open..].iter().enumerate() {
            match b {
                b'{' => depth += 1,
                b'}' => depth -= 1,
                _ => continue,
            }
            if depth == 0 {
                close = open + i;
                break;
            }
        }
        found.push((name, line_of(at), line_of(close) - line_of(at) + 1));
    }
    found
}

/// `rules/load.rs` → `rules`; `lib.rs` → `` (the crate root).
fn top_module(file: &str) -> String {
    let first = file.split('/').next().unwrap_or("");
    match first.strip_suffix(".rs") {
        Some("lib") => String::new(),
        Some(m) => m.to_string(),
        None => first.to_string(),
    }
}

struct Crate {
    /// Module path (`["rules", "load"]`) → file relative to src/ and its code.
    modules: BTreeMap<Vec<String>, (String, String)>,
}

impl Crate {
    fn read(src: PathBuf) -> Crate {
        let mut modules = BTreeMap::new();
        let mut stack = vec![src.clone()];
        while let Some(dir) = stack.pop() {
            for entry in std::fs::read_dir(&dir).unwrap() {
                let path = entry.unwrap().path();
                if path.is_dir() {
                    stack.push(path);
                    continue;
                }
                if path.extension().is_none_or(|e| e != "rs") {
                    continue;
                }
                let rel = path
                    .strip_prefix(&src)
                    .unwrap()
                    .to_string_lossy()
                    .replace('\\', "/");
                if rel == "main.rs" {
                    continue; // another crate: it imports the library by name
                }
                let mut module: Vec<String> = rel
                    .trim_end_matches(".rs")
                    .split('/')
                    .map(String::from)
                    .collect();
                if matches!(module.last().map(String::as_str), Some("mod" | "lib")) {
                    module.pop();
                }
                let code = strip(&std::fs::read_to_string(&path).unwrap());
                modules.insert(module, (rel, code));
            }
        }
        Crate { modules }
    }

    fn edges(&self) -> BTreeMap<String, BTreeSet<String>> {
        let mut edges = BTreeMap::new();
        for (module, (file, code)) in &self.modules {
            let mut to = BTreeSet::new();
            for path in paths(code) {
                if let Some(target) = self.resolve(module, &path, 0) {
                    if &target != file {
                        to.insert(target);
                    }
                }
            }
            edges.insert(file.clone(), to);
        }
        edges
    }

    /// The file defining what `path`, written in `module`, names; `None`
    /// for other crates.
    fn resolve(&self, module: &[String], path: &[String], depth: usize) -> Option<String> {
        if depth > 16 {
            return None;
        }
        let mut full = module.to_vec();
        match path.first().map(String::as_str) {
            Some("crate") => full.clear(),
            Some("self" | "super") => {}
            // A path relative to the module names a child module first.
            Some(child)
                if self
                    .modules
                    .contains_key(&[module, &[child.to_string()]].concat()) => {}
            _ => return None, // another crate
        }
        let mut rest = path;
        while let Some(first) = rest.first() {
            match first.as_str() {
                "crate" | "self" => {}
                "super" => {
                    full.pop();
                }
                _ => break,
            }
            rest = &rest[1..];
        }
        // The longest module prefix, then the item in it.
        for segment in rest {
            let mut next = full.clone();
            next.push(segment.clone());
            if !self.modules.contains_key(&next) {
                let (file, code) = &self.modules.get(&full)?;
                return Some(match reexport(code, segment) {
                    Some(source) => self
                        .resolve(&full, &source, depth + 1)
                        .unwrap_or_else(|| file.clone()),
                    None => file.clone(),
                });
            }
            full = next;
        }
        self.modules.get(&full).map(|(file, _)| file.clone())
    }
}

/// The code without comments, string contents and test modules.
fn strip(source: &str) -> String {
    let mut out = String::new();
    let mut lines = source.lines().peekable();
    while let Some(line) = lines.next() {
        let code = line.trim_start();
        if code == "#[cfg(test)]" {
            if let Some(next) = lines.peek() {
                if next.trim_start().starts_with("mod ") {
                    break; // test modules come last
                }
            }
        }
        let mut kept = String::new();
        let mut in_string = false;
        let mut chars = line.chars().peekable();
        while let Some(c) = chars.next() {
            match c {
                '"' => in_string = !in_string,
                '\\' if in_string => {
                    chars.next();
                }
                // A character literal ('{', '\''), not a lifetime.
                '\'' if !in_string => {
                    let mut ahead = chars.clone();
                    let literal = match ahead.next() {
                        Some('\\') => ahead.find(|c| *c == '\'').is_some(),
                        Some(_) => ahead.next() == Some('\''),
                        None => false,
                    };
                    if literal {
                        chars = ahead;
                        kept.push_str("' '");
                    } else {
                        kept.push(c);
                    }
                }
                '/' if !in_string && chars.peek() == Some(&'/') => break,
                _ if in_string => {}
                _ => kept.push(c),
            }
        }
        out.push_str(&kept);
        out.push('\n');
    }
    out
}

/// Every path a file imports: `use` trees expanded, plus inline
/// `crate::`/`super::`/`self::` paths.
fn paths(code: &str) -> Vec<Vec<String>> {
    let mut out = Vec::new();
    let mut rest = code;
    while let Some(at) = find_word(rest, "use") {
        let after = &rest[at + 3..];
        let end = after.find(';').unwrap_or(after.len());
        expand(&after[..end], &mut Vec::new(), &mut out);
        rest = &after[end..];
    }
    let words: Vec<&str> = code
        .split(|c: char| !(c.is_alphanumeric() || c == '_' || c == ':'))
        .collect();
    for word in words {
        if word.starts_with("crate::") || word.starts_with("super::") || word.starts_with("self::")
        {
            out.push(
                word.split("::")
                    .filter(|s| !s.is_empty())
                    .map(String::from)
                    .collect(),
            );
        }
    }
    out
}

fn find_word(text: &str, word: &str) -> Option<usize> {
    let mut from = 0;
    while let Some(i) = text[from..].find(word) {
        let at = from + i;
        let before = text[..at].chars().next_back();
        let after = text[at + word.len()..].chars().next();
        let boundary = |c: Option<char>| c.is_none_or(|c| !(c.is_alphanumeric() || c == '_'));
        if boundary(before) && after.is_some_and(char::is_whitespace) {
            return Some(at);
        }
        from = at + word.len();
    }
    None
}

/// Expands a `use` tree (`a::{b, c::{d, e}}`) into its paths.
fn expand(tree: &str, prefix: &mut Vec<String>, out: &mut Vec<Vec<String>>) {
    let tree = tree.trim();
    let tree = tree.strip_prefix("::").unwrap_or(tree);
    if let Some(open) = tree.find('{') {
        let head: Vec<String> = tree[..open]
            .split("::")
            .map(str::trim)
            .filter(|s| !s.is_empty())
            .map(String::from)
            .collect();
        let inner = &tree[open + 1..tree.rfind('}').unwrap_or(tree.len())];
        let depth = prefix.len();
        prefix.extend(head);
        for part in split_top(inner) {
            expand(part, prefix, out);
        }
        prefix.truncate(depth);
        return;
    }
    let path = tree.split(" as ").next().unwrap_or("");
    let mut full = prefix.clone();
    full.extend(
        path.split("::")
            .map(str::trim)
            .filter(|s| !s.is_empty())
            .map(String::from),
    );
    if full.last().is_some_and(|s| s == "self") {
        full.pop();
    }
    if full.last().is_some_and(|s| s == "*") {
        full.pop();
    }
    if !full.is_empty() {
        out.push(full);
    }
}

/// Splits at commas not inside braces.
fn split_top(text: &str) -> Vec<&str> {
    let mut parts = Vec::new();
    let (mut depth, mut start) = (0, 0);
    for (i, c) in text.char_indices() {
        match c {
            '{' => depth += 1,
            '}' => depth -= 1,
            ',' if depth == 0 => {
                parts.push(&text[start..i]);
                start = i + 1;
            }
            _ => {}
        }
    }
    parts.push(&text[start..]);
    parts
}

/// Where `pub use` in `code` takes `name` from, if it re-exports it.
fn reexport(code: &str, name: &str) -> Option<Vec<String>> {
    let mut rest = code;
    while let Some(at) = rest.find("pub use ") {
        let after = &rest[at + 8..];
        let end = after.find(';').unwrap_or(after.len());
        let mut paths = Vec::new();
        expand(&after[..end], &mut Vec::new(), &mut paths);
        for path in paths {
            let stmt = &after[..end];
            let renamed = stmt.contains(&format!(" as {name}"));
            if path.last().is_some_and(|s| s == name) || renamed {
                return Some(path);
            }
        }
        rest = &after[end..];
    }
    None
}

/// The files that import each other in a circle (the graph's strongly
/// connected components of more than one file), found with Tarjan's method.
fn cycles(edges: &BTreeMap<String, BTreeSet<String>>) -> Vec<Vec<String>> {
    struct Walk<'a> {
        edges: &'a BTreeMap<String, BTreeSet<String>>,
        index: BTreeMap<&'a str, (usize, usize)>,
        stack: Vec<&'a str>,
        found: Vec<Vec<String>>,
    }
    impl<'a> Walk<'a> {
        fn visit(&mut self, file: &'a str) {
            let n = self.index.len();
            self.index.insert(file, (n, n));
            self.stack.push(file);
            for to in self.edges.get(file).into_iter().flatten() {
                let low = match self.index.get(to.as_str()) {
                    None => {
                        self.visit(to);
                        self.index[to.as_str()].1
                    }
                    Some(&(i, _)) if self.stack.contains(&to.as_str()) => i,
                    Some(_) => continue,
                };
                let entry = self.index.get_mut(file).unwrap();
                entry.1 = entry.1.min(low);
            }
            let (i, low) = self.index[file];
            if i == low {
                let at = self.stack.iter().rposition(|f| *f == file).unwrap();
                let component: Vec<String> = self.stack.drain(at..).map(String::from).collect();
                if component.len() > 1 {
                    self.found.push(component);
                }
            }
        }
    }
    let mut walk = Walk {
        edges,
        index: BTreeMap::new(),
        stack: Vec::new(),
        found: Vec::new(),
    };
    for file in edges.keys() {
        if !walk.index.contains_key(file.as_str()) {
            walk.visit(file);
        }
    }
    walk.found
}
