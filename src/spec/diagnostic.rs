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
    /// The source line shown in the snippet (a long line cut around the column).
    pub source_line: Option<String>,
    /// The caret's 1-based column within `source_line`.
    pub snippet_column: usize,
}

/// Longest source line shown whole; a longer one is cut around the column (a one-line 10 MB file must not
/// become 10 MB of error output).
const MAX_SNIPPET: usize = 120;
/// Characters of a long line kept before the column.
const BEFORE_COLUMN: usize = 40;
/// Longest message shown whole (a parser message may quote a whole value).
const MAX_MESSAGE: usize = 300;

/// `line` cut to at most about `MAX_SNIPPET` characters around `column`, and the column within the cut.
fn snippet(line: &str, column: usize) -> (String, usize) {
    let chars: Vec<char> = line.chars().collect();
    if chars.len() <= MAX_SNIPPET {
        return (line.to_string(), column);
    }
    let col = column.saturating_sub(1).min(chars.len());
    let start = col.saturating_sub(BEFORE_COLUMN);
    let end = (start + MAX_SNIPPET).min(chars.len());
    let mut out = String::new();
    let mut shown_col = col - start + 1;
    if start > 0 {
        out.push('…');
        shown_col += 1;
    }
    out.extend(&chars[start..end]);
    if end < chars.len() {
        out.push_str(&format!("… ({} more characters)", chars.len() - end));
    }
    (out, shown_col)
}

/// `message` cut to `MAX_MESSAGE` characters.
fn short_message(message: String) -> String {
    if message.chars().count() <= MAX_MESSAGE {
        return message;
    }
    let mut m: String = message.chars().take(MAX_MESSAGE).collect();
    m.push_str("… (message cut)");
    m
}

impl Diagnostic {
    /// A diagnostic at `pos` in `file`, whose text is `source`.
    pub fn at(file: &Path, source: &str, pos: Option<Pos>, message: impl Into<String>) -> Self {
        let cut = pos.and_then(|p| {
            let line = source.lines().nth(p.line.saturating_sub(1))?;
            Some(snippet(line, p.column))
        });
        let width = match &cut {
            Some((l, c)) => token_width(l, *c).min(MAX_SNIPPET),
            None => 1,
        };
        Diagnostic {
            file: file.to_path_buf(),
            pos,
            width,
            message: short_message(message.into()),
            label: None,
            help: None,
            snippet_column: cut.as_ref().map_or(1, |c| c.1),
            source_line: cut.map(|c| c.0),
        }
    }

    /// Set the caret label.
    pub fn label(mut self, label: impl Into<String>) -> Self {
        self.label = Some(short_message(label.into()));
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
            let caret_pad = " ".repeat(self.snippet_column.saturating_sub(1));
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
    fn a_long_line_is_cut_around_the_column() {
        let line = format!("data: {{x: \"{}\", y: z}}", "a".repeat(10_000_000));
        let col = line.find("y:").unwrap() + 1;
        let src = format!("name: t\n{line}\n");
        let d = Diagnostic::at(
            Path::new("p.yaml"),
            &src,
            Some(Pos { line: 2, column: col }),
            format!("unknown field `y` in \"{}\"", "b".repeat(1_000_000)),
        )
        .label("here");
        let text = d.to_string();
        assert!(text.len() < 1000, "{} bytes of output", text.len());
        assert!(text.contains(&format!("p.yaml:2:{col}")), "{text}");
        assert!(
            text.contains("… (3 more characters)") || text.contains("y: z}"),
            "{text}"
        );
        // The caret still points at `y`.
        let lines: Vec<&str> = text.lines().collect();
        let src_line = lines.iter().find(|l| l.starts_with(" 2 | ")).unwrap();
        let caret_line = lines.iter().find(|l| l.contains('^')).unwrap();
        let caret_at = caret_line.find('^').unwrap();
        assert_eq!(src_line.chars().nth(caret_at), Some('y'), "{text}");
        // Short lines are shown whole.
        let d = Diagnostic::at(
            Path::new("p.yaml"),
            "a: b\n",
            Some(Pos { line: 1, column: 4 }),
            "m",
        );
        assert_eq!(d.source_line.as_deref(), Some("a: b"));
        assert_eq!(d.snippet_column, 4);
    }

    #[test]
    fn closest_finds_typos_only() {
        assert_eq!(closest("resnet-18", ["simple_cnn", "resnet18"]), Some("resnet18"));
        assert_eq!(closest("epochz", ["epochs", "batch_size"]), Some("epochs"));
        assert_eq!(closest("zzzzzz", ["epochs", "batch_size"]), None);
    }
}
