//! Problems found in files a user wrote, each pinned to `file:line:col`.
//!
//! Every configuration error outpost reports goes through [`Diagnostic`], so
//! `outpost check`, the log and the admin status all print the same text.

use std::fmt;
use std::ops::Range;
use std::path::{Path, PathBuf};

/// One problem in one file, at a 1-based line and column.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub struct Diagnostic {
    pub file: PathBuf,
    pub line: usize,
    pub col: usize,
    pub message: String,
}

impl fmt::Display for Diagnostic {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}:{}:{}: {}",
            self.file.display(),
            self.line,
            self.col,
            self.message
        )
    }
}

impl Diagnostic {
    /// Several diagnostics, one per line, as `check` prints them.
    pub fn lines(diagnostics: &[Diagnostic]) -> String {
        diagnostics
            .iter()
            .map(|d| d.to_string())
            .collect::<Vec<_>>()
            .join("\n")
    }

    /// A problem at byte offset `at` of `source`.
    pub fn at(file: &Path, source: &str, at: usize, message: impl Into<String>) -> Self {
        let (line, col) = line_col(source, at);
        Diagnostic {
            file: tidy(file),
            line,
            col,
            message: message.into(),
        }
    }

    /// A problem with the file as a whole (it cannot be read, say).
    pub fn whole_file(file: &Path, message: impl Into<String>) -> Self {
        Diagnostic {
            file: tidy(file),
            line: 1,
            col: 1,
            message: message.into(),
        }
    }

    /// Turns a TOML parse or type error into a diagnostic. An unknown key is
    /// reported with the closest valid key, since a typo is the usual cause.
    pub fn from_toml(file: &Path, source: &str, err: &toml::de::Error) -> Self {
        let at = err.span().map(|s: Range<usize>| s.start).unwrap_or(0);
        let message = err.message().trim().to_string();
        Diagnostic::at(
            file,
            source,
            at,
            explain_unknown_key(&message).unwrap_or(message),
        )
    }
}

/// `./rules/a.toml` reads better as `rules/a.toml`.
fn tidy(file: &Path) -> PathBuf {
    file.strip_prefix(".").unwrap_or(file).to_path_buf()
}

/// serde says "unknown field `hots`, expected one of `hosts`, `locale`";
/// users say keys, and want the one they meant.
fn explain_unknown_key(message: &str) -> Option<String> {
    let rest = message.strip_prefix("unknown field `")?;
    let (key, expected) = rest.split_once('`')?;
    let candidates: Vec<&str> = expected.split('`').skip(1).step_by(2).collect();
    Some(match closest(key, &candidates) {
        Some(best) => format!("unknown key `{key}`, did you mean `{best}`?"),
        None if candidates.is_empty() => format!("unknown key `{key}`: no keys are allowed here"),
        None => format!(
            "unknown key `{key}`, expected one of: {}",
            candidates.join(", ")
        ),
    })
}

/// The candidate nearest to `word`, if any is near enough to be a typo.
pub fn closest<'a>(word: &str, candidates: &[&'a str]) -> Option<&'a str> {
    candidates
        .iter()
        .map(|c| (strsim::damerau_levenshtein(word, c), *c))
        .filter(|(d, c)| *d <= 2.max(c.len() / 3))
        .min_by_key(|(d, _)| *d)
        .map(|(_, c)| c)
}

fn line_col(source: &str, at: usize) -> (usize, usize) {
    let at = at.min(source.len());
    let before = &source[..source.floor_char_boundary(at)];
    let line = before.matches('\n').count() + 1;
    let col = before.rsplit('\n').next().map_or(0, |l| l.chars().count()) + 1;
    (line, col)
}

/// Where in a user's file a value was written, kept so that problems found
/// later (two sites claiming one host) still point at the line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Origin {
    pub file: PathBuf,
    pub line: usize,
    pub col: usize,
}

impl Origin {
    pub fn new(file: &Path, source: &str, at: usize) -> Self {
        let d = Diagnostic::at(file, source, at, "");
        Origin {
            file: d.file,
            line: d.line,
            col: d.col,
        }
    }

    /// A problem at this place.
    pub fn error(&self, message: impl Into<String>) -> Diagnostic {
        Diagnostic {
            file: self.file.clone(),
            line: self.line,
            col: self.col,
            message: message.into(),
        }
    }
}

/// Parses `source` as TOML straight into `T`, keeping line numbers in errors.
pub fn parse_toml<T: serde::de::DeserializeOwned>(
    file: &Path,
    source: &str,
) -> Result<T, Diagnostic> {
    toml::from_str(source).map_err(|e| Diagnostic::from_toml(file, source, &e))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unknown_key_names_the_closest() {
        let msg = "unknown field `hots`, expected one of `hosts`, `locale`, `countries`";
        assert_eq!(
            explain_unknown_key(msg).unwrap(),
            "unknown key `hots`, did you mean `hosts`?"
        );
    }

    #[test]
    fn line_and_column_are_one_based() {
        assert_eq!(line_col("a = 1\nbb = 2\n", 6), (2, 1));
        assert_eq!(line_col("a = 1\nbb = 2\n", 8), (2, 3));
        assert_eq!(line_col("é = 1", 2), (1, 2));
    }
}
