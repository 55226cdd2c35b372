//! Errors in a pipeline file, shown the way compilers show them: file, line, column, the line itself with a
//! caret, what was expected, and a "did you mean" for near misses.

use super::locate::Pos;
use std::fmt;
use std::path::{Path, PathBuf};

/// One problem in a pipeline file.
#[derive(Debug, Clone, PartialEq)]
pub struct Diagnostic {
    /// The pipeline file.
    pub file: PathBuf,
    /// Where in it, when known.
    pub pos: Option<Pos>,
    /// How many characters the caret underlines.
    pub width: usize,
    /// What is wrong.
    pub message: String,
    /// Shown under the caret: what was expected.
    pub label: Option<String>,
    /// A suggestion.
    pub help: Option<String>,
    /// The source line shown in the snippet.
    pub source_line: Option<String>,
}

impl Diagnostic {
    /// A diagnostic at `pos` in `file`, whose text is `source`.
    pub fn at(file: &Path, source: &str, pos: Option<Pos>, message: impl Into<String>) -> Self {
        let source_line = pos
            .and_then(|p| source.lines().nth(p.line.saturating_sub(1)))
            .map(str::to_string);
        let width = match (&source_line, pos) {
            (Some(l), Some(p)) => token_width(l, p.column),
            _ => 1,
        };
        Diagnostic {
            file: file.to_path_buf(),
            pos,
            width,
            message: message.into(),
            label: None,
            help: None,
            source_line,
        }
    }

    /// Set the caret label.
    pub fn label(mut self, label: impl Into<String>) -> Self {
        self.label = Some(label.into());
        self
    }

    /// Set the help line.
    pub fn help(mut self, help: impl Into<String>) -> Self {
        self.help = Some(help.into());
        self
    }
}

fn token_width(line: &str, column: usize) -> usize {
    let rest: String = line.chars().skip(column.saturating_sub(1)).collect();
    let end = rest.find(['#', ',', '}']).unwrap_or(rest.len());
    rest[..end].trim_end().chars().count().max(1)
}

impl fmt::Display for Diagnostic {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(f, "error: {}", self.message)?;
        match self.pos {
            Some(p) => writeln!(f, "  --> {}:{}:{}", self.file.display(), p.line, p.column)?,
            None => writeln!(f, "  --> {}", self.file.display())?,
        }
        if let (Some(p), Some(src)) = (self.pos, &self.source_line) {
            let num = p.line.to_string();
            let pad = " ".repeat(num.len());
            writeln!(f, " {pad} |")?;
            writeln!(f, " {num} | {src}")?;
            let caret_pad = " ".repeat(p.column.saturating_sub(1));
            let carets = "^".repeat(self.width);
            match &self.label {
                Some(l) => writeln!(f, " {pad} | {caret_pad}{carets} {l}")?,
                None => writeln!(f, " {pad} | {caret_pad}{carets}")?,
            }
            if let Some(h) = &self.help {
                writeln!(f, " {pad} = help: {h}")?;
            }
        } else {
            if let Some(l) = &self.label {
                writeln!(f, "  = {l}")?;
            }
            if let Some(h) = &self.help {
                writeln!(f, "  = help: {h}")?;
            }
        }
        Ok(())
    }
}

/// Levenshtein distance, for "did you mean".
pub fn edit_distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut prev: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut cur = vec![i + 1];
        for (j, cb) in b.iter().enumerate() {
            let sub = prev[j] + usize::from(ca != *cb);
            cur.push(sub.min(prev[j + 1] + 1).min(cur[j] + 1));
        }
        prev = cur;
    }
    prev[b.len()]
}

/// The candidate closest to `word`, if it is close enough to be a likely typo.
pub fn closest<'a>(word: &str, candidates: impl IntoIterator<Item = &'a str>) -> Option<&'a str> {
    let norm = |s: &str| s.to_lowercase().replace(['-', '_'], "");
    candidates
        .into_iter()
        .map(|c| (edit_distance(&norm(word), &norm(c)), c))
        .filter(|(d, c)| *d <= (c.len() / 3).max(2))
        .min_by_key(|(d, _)| *d)
        .map(|(_, c)| c)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_snippet_with_caret_and_help() {
        let src = "name: t\nmodel:\n  arch: resnet-18\n";
        let d = Diagnostic::at(
            Path::new("p.yaml"),
            src,
            Some(Pos { line: 3, column: 9 }),
            "unknown model arch `resnet-18`",
        )
        .label("expected one of: simple_cnn, resnet18")
        .help("did you mean `resnet18`?");
        assert_eq!(
            d.to_string(),
            "error: unknown model arch `resnet-18`\n  --> p.yaml:3:9\n   |\n 3 |   arch: resnet-18\n   |         ^^^^^^^^^ expected one of: simple_cnn, resnet18\n   = help: did you mean `resnet18`?\n"
        );
    }

    #[test]
    fn closest_finds_typos_only() {
        assert_eq!(closest("resnet-18", ["simple_cnn", "resnet18"]), Some("resnet18"));
        assert_eq!(closest("epochz", ["epochs", "batch_size"]), Some("epochs"));
        assert_eq!(closest("zzzzzz", ["epochs", "batch_size"]), None);
    }
}
