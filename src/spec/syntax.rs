//! Plain explanations for the YAML mistakes whose parser messages mislead: a `{` or `[` never closed (the
//! parser reads the following lines as part of it and complains about something else), a key written twice,
//! and a file that is not UTF-8.

use super::diagnostic::Diagnostic;
use super::locate::Pos;
use std::path::Path;

/// A file that is not UTF-8, located at its first bad byte.
pub fn not_utf8(path: &Path, e: &std::string::FromUtf8Error) -> Diagnostic {
    let bytes = e.as_bytes();
    let at = e.utf8_error().valid_up_to();
    let before = String::from_utf8_lossy(&bytes[..at]);
    let line = before.matches('\n').count() + 1;
    let column = before.rsplit('\n').next().map_or(0, |l| l.chars().count()) + 1;
    let lossy = String::from_utf8_lossy(bytes);
    Diagnostic::at(
        path,
        &lossy,
        Some(Pos { line, column }),
        format!(
            "the pipeline file is not UTF-8 text: byte 0x{:02X} at line {line}, column {column} is not valid UTF-8",
            bytes[at]
        ),
    )
    .label("this character")
    .help("save the file as UTF-8 (e.g. `iconv -f latin1 -t utf-8 FILE`)")
}

/// A flow collection (`{` or `[`) opened and never closed before the next block key, if the text has one.
pub fn explain(path: &Path, text: &str) -> Option<Diagnostic> {
    let (open, next) = unclosed_flow(text)?;
    let (ch, close) = if open.1 == '{' { ('{', '}') } else { ('[', ']') };
    let label = match next {
        Some(line) => format!("not closed before line {line}"),
        None => "not closed before the end of the file".to_string(),
    };
    Some(
        Diagnostic::at(path, text, Some(open.0), format!("this `{ch}` is never closed"))
            .label(label)
            .help(format!(
                "add the `{close}` at the end of the line, e.g. `data: {{dataset: synthetic}}`"
            )),
    )
}

/// The position and bracket of the outermost unclosed flow collection, and the line of the block key that
/// shows it was left open (None: open at the end of the file).
fn unclosed_flow(text: &str) -> Option<((Pos, char), Option<usize>)> {
    // (position, bracket, indentation of the line it opened on)
    let mut stack: Vec<(Pos, char, usize)> = Vec::new();
    for (ln, line) in text.lines().enumerate() {
        let indent = line.len() - line.trim_start().len();
        if let Some(&(pos, ch, opened_indent)) = stack.first()
            && indent <= opened_indent
            && is_block_key(line.trim_start())
        {
            return Some(((pos, ch), Some(ln + 1)));
        }
        let mut quote: Option<char> = None;
        let mut prev = ' ';
        for (col, c) in line.chars().enumerate() {
            match quote {
                Some(q) if c == q => quote = None,
                Some(_) => {}
                None => match c {
                    '"' | '\''
                        if stack.is_empty() || prev == ' ' || prev == '{' || prev == '[' || prev == ',' =>
                    {
                        quote = Some(c)
                    }
                    '#' if prev == ' ' || col == 0 => break,
                    '{' | '[' => stack.push((
                        Pos {
                            line: ln + 1,
                            column: col + 1,
                        },
                        c,
                        indent,
                    )),
                    '}' | ']' => {
                        stack.pop();
                    }
                    _ => {}
                },
            }
            prev = c;
        }
    }
    stack.first().map(|&(pos, ch, _)| ((pos, ch), None))
}

/// `key:` or `key: value` in block style (not `- item`, not a flow continuation).
fn is_block_key(line: &str) -> bool {
    let Some(colon) = line.find(':') else {
        return false;
    };
    let key = &line[..colon];
    let after = &line[colon + 1..];
    !key.is_empty()
        && key
            .chars()
            .all(|c| c.is_alphanumeric() || matches!(c, '_' | '-' | '.'))
        && (after.is_empty() || after.starts_with(' '))
}

/// serde-saphyr's "duplicate mapping key: K, set DuplicateKeyPolicy in Options if acceptable", said plainly
/// with the line of the first occurrence.
pub fn duplicate_key(path: &Path, text: &str, pos: Option<Pos>, message: &str) -> Option<Diagnostic> {
    let rest = message.strip_prefix("duplicate mapping key: ")?;
    let key = rest
        .split(", set DuplicateKeyPolicy")
        .next()
        .unwrap_or(rest)
        .trim();
    let first = pos.and_then(|p| {
        text.lines()
            .take(p.line.saturating_sub(1))
            .enumerate()
            .find_map(|(i, l)| {
                let indent = l.len() - l.trim_start().len();
                let t = l.trim_start();
                (indent + 1 == p.column && t.strip_prefix(key).is_some_and(|r| r.starts_with(':')))
                    .then_some(i + 1)
            })
    });
    let label = match first {
        Some(line) => format!("`{key}` is already written at line {line}"),
        None => format!("`{key}` is already written above"),
    };
    Some(
        Diagnostic::at(
            path,
            text,
            pos,
            format!("`{key}` is written twice in the same mapping"),
        )
        .label(label)
        .help("each key appears once: rename one (experiments need distinct names) or merge them"),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_the_unclosed_bracket_not_what_the_parser_trips_on() {
        let t = "name: t\ndata: {dataset: synthetic\nmodel:\n  arch: simple_cnn\n";
        assert_eq!(
            unclosed_flow(t),
            Some(((Pos { line: 2, column: 7 }, '{'), Some(3)))
        );
        let t = "train:\n  optimizer: [adam, 0.1\n";
        assert_eq!(unclosed_flow(t), Some(((Pos { line: 2, column: 14 }, '['), None)));
        // Closed, spanning lines, quoted or commented brackets are fine.
        for ok in [
            "data: {dataset: synthetic}\nmodel: {}\n",
            "data: {\n  dataset: synthetic,\n  x: 1\n}\nmodel: {}\n",
            "name: \"a{b\"\nx: 'c[' # {\n",
        ] {
            assert_eq!(unclosed_flow(ok), None, "{ok}");
        }
    }

    #[test]
    fn a_duplicate_key_names_both_lines() {
        let t = "experiments:\n  a: {}\n  b: {}\n  a: {x: 1}\n";
        let d = duplicate_key(
            Path::new("p.yaml"),
            t,
            Some(Pos { line: 4, column: 3 }),
            "duplicate mapping key: a, set DuplicateKeyPolicy in Options if acceptable",
        )
        .unwrap();
        let s = d.to_string();
        assert!(
            s.contains("`a` is written twice") && s.contains("already written at line 2"),
            "{s}"
        );
        assert!(
            s.contains("p.yaml:4:3") && !s.contains("DuplicateKeyPolicy"),
            "{s}"
        );
    }
}
