//! README and docs/ stand alone: every link and every relative path they
//! give leads to a file of this repository (and a link's `#section` to a
//! heading there), and no example runs a binary from a build folder.

use std::path::{Path, PathBuf};

/// The Markdown files a reader of a clone gets, and the demo's settings
/// (the first file a new user opens).
fn documents(root: &Path) -> Vec<PathBuf> {
    let mut files = vec![
        root.join("outpost.toml"),
        root.join("README.md"),
        root.join("deploy/README.md"),
        root.join("benches/README.md"),
    ];
    let mut docs: Vec<PathBuf> = std::fs::read_dir(root.join("docs"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "md"))
        .collect();
    docs.sort();
    files.extend(docs);
    files
}

/// Lines outside fenced code blocks.
fn prose(text: &str) -> Vec<&str> {
    let mut fenced = false;
    let mut lines = Vec::new();
    for line in text.lines() {
        if line.trim_start().starts_with("```") {
            fenced = !fenced;
        } else if !fenced {
            lines.push(line);
        }
    }
    lines
}

/// GitHub's anchor for a heading: lowercase, punctuation dropped, spaces
/// to `-`.
fn anchors(text: &str) -> Vec<String> {
    prose(text)
        .into_iter()
        .filter_map(|l| l.strip_prefix('#'))
        .map(|h| {
            h.trim_start_matches('#')
                .trim()
                .to_lowercase()
                .chars()
                .filter(|c| c.is_alphanumeric() || matches!(c, ' ' | '-' | '_'))
                .map(|c| if c == ' ' { '-' } else { c })
                .collect()
        })
        .collect()
}

/// Targets of `[text](target)` links.
fn links(line: &str) -> Vec<&str> {
    line.match_indices("](")
        .filter_map(|(i, _)| {
            let rest = &line[i + 2..];
            rest.find(')').map(|end| &rest[..end])
        })
        .collect()
}

#[test]
fn docs_point_only_inside_the_repository() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"))
        .canonicalize()
        .unwrap();
    let mut problems = Vec::new();
    for doc in documents(&root) {
        let text = std::fs::read_to_string(&doc).unwrap();
        let name = doc.strip_prefix(&root).unwrap().display().to_string();
        let dir = doc.parent().unwrap();
        for (n, line) in text.lines().enumerate() {
            for bad in ["target/debug/", "/work/", "shared/"] {
                if line.contains(bad) {
                    problems.push(format!("{name}:{}: `{bad}` is not in a clone", n + 1));
                }
            }
        }
        for line in prose(&text) {
            // Relative paths, linked or quoted as `../x`.
            let quoted = line
                .split('`')
                .skip(1)
                .step_by(2)
                .filter(|q| q.starts_with("../"));
            for target in links(line).into_iter().chain(quoted) {
                if target.starts_with("http://")
                    || target.starts_with("https://")
                    || target.starts_with("mailto:")
                {
                    continue;
                }
                let (path, anchor) = target.split_once('#').unwrap_or((target, ""));
                let file = if path.is_empty() {
                    doc.clone()
                } else {
                    dir.join(path)
                };
                let Ok(file) = file.canonicalize() else {
                    problems.push(format!("{name}: `{target}` does not exist"));
                    continue;
                };
                if !file.starts_with(&root) {
                    problems.push(format!("{name}: `{target}` is outside the repository"));
                    continue;
                }
                if !anchor.is_empty() {
                    let there = std::fs::read_to_string(&file).unwrap_or_default();
                    if !anchors(&there).iter().any(|a| a == anchor) {
                        problems.push(format!("{name}: `{target}` names no heading"));
                    }
                }
            }
        }
    }
    assert!(problems.is_empty(), "{}", problems.join("\n"));
}
