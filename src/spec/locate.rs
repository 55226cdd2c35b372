//! Maps dotted paths (`train.optimizer.lr`, `model.layers.3`) to where they are written in a YAML file,
//! so errors found after parsing (validation, shapes) can still point at a line and column.
//!
//! It reads block-style YAML line by line; a value written in flow style (`{lr: 0.1}`) is located at its
//! parent key, which is still the right line.

use std::collections::BTreeMap;

/// A 1-based line and column.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Pos {
    /// 1-based line.
    pub line: usize,
    /// 1-based column.
    pub column: usize,
}

/// Positions of every block-style key and sequence item in a YAML document.
#[derive(Debug, Default, Clone)]
pub struct LocationIndex {
    map: BTreeMap<String, Pos>,
}

fn split_key(rest: &str) -> Option<(&str, usize)> {
    // A key is text up to ": " or a trailing ":", outside quotes; good enough for config keys.
    let bytes = rest.as_bytes();
    // A quoted key (`"a/b": …`) is indexed by its text between the quotes.
    if let Some(&q) = bytes.first().filter(|b| matches!(b, b'"' | b'\''))
        && let Some(end) = rest[1..].find(q as char).map(|e| e + 1)
        && rest[end + 1..].starts_with(':')
        && (end + 2 == rest.len() || rest.as_bytes()[end + 2] == b' ')
    {
        return Some((&rest[1..end], end + 1));
    }
    if bytes
        .first()
        .is_some_and(|b| matches!(b, b'{' | b'[' | b'"' | b'\'' | b'#'))
    {
        return None;
    }
    for (i, &b) in bytes.iter().enumerate() {
        if b == b':' && (i + 1 == bytes.len() || bytes[i + 1] == b' ') {
            let key = rest[..i].trim();
            return (!key.is_empty()).then_some((key, i));
        }
        if b == b'#' && i > 0 && bytes[i - 1] == b' ' {
            return None;
        }
    }
    None
}

impl LocationIndex {
    /// Index `text`.
    pub fn build(text: &str) -> Self {
        // Stack of (indent, path) for open mappings/sequence items.
        let mut stack: Vec<(usize, String)> = Vec::new();
        let mut seq_counters: BTreeMap<String, usize> = BTreeMap::new();
        let mut map = BTreeMap::new();
        for (ln, raw) in text.lines().enumerate() {
            let line_no = ln + 1;
            let trimmed = raw.trim_start();
            if trimmed.is_empty() || trimmed.starts_with('#') || trimmed.starts_with("---") {
                continue;
            }
            let mut indent = raw.len() - trimmed.len();
            let mut rest = trimmed;
            // Each leading "- " opens a sequence item at this indent.
            loop {
                while stack.last().is_some_and(|(i, _)| *i >= indent) {
                    stack.pop();
                }
                let parent = stack.last().map(|(_, p)| p.clone()).unwrap_or_default();
                if rest == "-" || rest.starts_with("- ") {
                    let idx = seq_counters.entry(parent.clone()).or_insert(0);
                    let path = join(&parent, &idx.to_string());
                    *idx += 1;
                    map.entry(path.clone()).or_insert(Pos {
                        line: line_no,
                        column: indent + 3,
                    });
                    stack.push((indent, path));
                    let after = rest[1..].trim_start();
                    indent += rest.len() - after.len();
                    rest = after;
                    if rest.is_empty() {
                        break;
                    }
                    continue;
                }
                if let Some((key, colon)) = split_key(rest) {
                    let path = join(&parent, key);
                    let value = rest[colon + 1..].trim_start();
                    let value_col = if value.is_empty() || value.starts_with('#') {
                        indent + 1
                    } else {
                        indent + 1 + (rest.len() - value.len())
                    };
                    map.insert(
                        path.clone(),
                        Pos {
                            line: line_no,
                            column: value_col,
                        },
                    );
                    map.insert(
                        format!("{path}#key"),
                        Pos {
                            line: line_no,
                            column: indent + 1,
                        },
                    );
                    seq_counters.remove(&path);
                    stack.push((indent, path));
                }
                break;
            }
        }
        LocationIndex { map }
    }

    /// Position of the value at `path`, or of its closest written ancestor.
    pub fn find(&self, path: &str) -> Option<Pos> {
        let mut p = path.to_string();
        loop {
            if let Some(pos) = self.map.get(&p) {
                return Some(*pos);
            }
            match p.rfind('.') {
                Some(i) => p.truncate(i),
                None => return None,
            }
        }
    }

    /// Position of the key at `path` itself (its first character), falling back like `find`.
    pub fn find_key(&self, path: &str) -> Option<Pos> {
        self.map
            .get(&format!("{path}#key"))
            .copied()
            .or_else(|| self.find(path))
    }
}

fn join(parent: &str, key: &str) -> String {
    if parent.is_empty() {
        key.to_string()
    } else {
        format!("{parent}.{key}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const DOC: &str = "name: t\ndata:\n  dataset: synthetic\n  augment:\n    - random_crop: {size: 32}\n    - random_horizontal_flip: {p: 0.5}\ntrain:\n  epochs: 0 # bad\n  optimizer:\n    lr: 0.1\nmodel:\n  layers:\n    - conv2d:\n        out_channels: 8\n    - relu\n";

    #[test]
    fn finds_nested_keys_and_items() {
        let ix = LocationIndex::build(DOC);
        assert_eq!(ix.find("train.epochs"), Some(Pos { line: 8, column: 11 }));
        assert_eq!(ix.find("train.optimizer.lr"), Some(Pos { line: 10, column: 9 }));
        assert_eq!(ix.find("data.augment.1").map(|p| p.line), Some(6));
        assert_eq!(
            ix.find("model.layers.0.conv2d.out_channels").map(|p| p.line),
            Some(14)
        );
        assert_eq!(ix.find("model.layers.1").map(|p| p.line), Some(15));
        assert_eq!(ix.find_key("train.epochs"), Some(Pos { line: 8, column: 3 }));
    }

    #[test]
    fn quoted_keys_are_found_by_their_text() {
        let ix = LocationIndex::build("experiments:\n  \"a/b\": {x: 1}\n  'c d':\n    e: 2\n");
        assert_eq!(ix.find_key("experiments.a/b"), Some(Pos { line: 2, column: 3 }));
        assert_eq!(ix.find("experiments.c d.e"), Some(Pos { line: 4, column: 8 }));
    }

    #[test]
    fn falls_back_to_ancestor() {
        let ix = LocationIndex::build(DOC);
        assert_eq!(
            ix.find("data.augment.0.random_crop.size").map(|p| p.line),
            Some(5)
        );
        assert_eq!(ix.find("nothing.here"), None);
    }
}
