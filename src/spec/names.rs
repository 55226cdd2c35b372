//! Names that end up in paths and on screen: a pipeline's `name:`, experiment names and the run names made from
//! them. Checked when the file is read, so a bad name is an error at its line; `out_dir` still turns every name
//! into one safe path component. Two runs whose names become the same file, and two pipelines of one call
//! whose names become the same folder, are errors naming both places.

use super::diagnostic::Diagnostic;
use super::locate::Pos;
use super::{Pipeline, SpecError};
use crate::out_dir::path_component;
use std::path::Path;

/// What a written name may be, as the messages say it.
pub const ALLOWED: &str =
    "ASCII letters, digits, `-`, `_` and `.`, not starting with `.` or `-`, at most 100 characters";

/// Longest name accepted: a run's record file name must stay well under the 255 bytes file systems allow.
const MAX_LEN: usize = 100;

/// Why `name` cannot be a pipeline or experiment name, if it cannot.
pub fn check(name: &str) -> Result<(), String> {
    if name.is_empty() {
        return Err("is empty".into());
    }
    if name == "." || name == ".." {
        return Err(format!("is `{name}`, which names a directory"));
    }
    if let Some(c) = name.chars().find(|c| matches!(c, '/' | '\\')) {
        return Err(format!("contains the path separator `{c}`"));
    }
    if let Some(c) = name.chars().find(|c| c.is_control()) {
        return Err(format!("contains a control character ({})", describe(c)));
    }
    if let Some(c) = name
        .chars()
        .find(|c| !(c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.')))
    {
        return Err(format!("contains `{c}`"));
    }
    if name.starts_with(['.', '-']) {
        return Err(format!("starts with `{}`", &name[..1]));
    }
    if name.chars().count() > MAX_LEN {
        return Err(format!("is {} characters long", name.chars().count()));
    }
    Ok(())
}

/// Why a run name made from values (`lr[root=a b]`) cannot be shown on one line, if it cannot.
pub fn check_generated(name: &str) -> Result<(), String> {
    match name.chars().find(|c| c.is_control()) {
        Some(c) => Err(format!("contains a control character ({})", describe(c))),
        None => Ok(()),
    }
}

fn describe(c: char) -> String {
    match c {
        '\n' => "a line break".into(),
        '\r' => "a carriage return".into(),
        '\t' => "a tab".into(),
        other => format!("U+{:04X}", other as u32),
    }
}

/// Two names that give the same file under `out/`: equal once made a path component, ignoring case (macOS and
/// Windows file systems do).
pub fn file_key(name: &str) -> String {
    path_component(name).to_ascii_lowercase()
}

/// One named thing and where it was written, for collision messages.
pub struct Named<'a> {
    /// The name as written or generated.
    pub name: &'a str,
    /// Where it comes from (`experiment `lr``).
    pub what: String,
    /// Its place in the file.
    pub pos: Option<Pos>,
}

/// Pairs of `items` whose names give the same file, as (earlier, later) indices.
pub fn collisions(items: &[Named]) -> Vec<(usize, usize)> {
    let mut out = Vec::new();
    for (j, b) in items.iter().enumerate() {
        if let Some(i) = items[..j]
            .iter()
            .position(|a| file_key(a.name) == file_key(b.name))
        {
            out.push((i, j));
        }
    }
    out
}

fn place(file: &Path, pos: Option<Pos>) -> String {
    match pos {
        Some(p) => format!("{}:{}", file.display(), p.line),
        None => file.display().to_string(),
    }
}

/// An error for two runs of one pipeline whose records would be the same file.
pub fn run_collision(file: &Path, text: &str, pipeline: &str, a: &Named, b: &Named) -> Diagnostic {
    let record = format!(
        "runs/{}/{}.json",
        path_component(pipeline),
        path_component(b.name)
    );
    let same = if a.name == b.name {
        format!("two different runs are both named `{}`", b.name)
    } else {
        format!("runs `{}` and `{}` would be the same file", a.name, b.name)
    };
    let mut d = Diagnostic::at(
        file,
        text,
        b.pos,
        format!("{same}: both records would be `{record}`"),
    )
    .label(format!("{} here; {} at {}", b.what, a.what, place(file, a.pos)));
    d = if a.name == b.name {
        d.help("matrix values are labelled by their `name` (or their value): give the values distinct names")
    } else {
        d.help(
            "rename one of them: names differing only in case or in characters outside letters, digits and `-_.=,` \
             share a file",
        )
    };
    d
}

/// Checks that no two of `pipelines` (loaded in one call) put their runs in the same `runs/<name>/` folder.
pub fn check_distinct_pipelines(pipelines: &[Pipeline]) -> Result<(), SpecError> {
    let named: Vec<Named> = pipelines
        .iter()
        .map(|p| Named {
            name: &p.name,
            what: format!("`{}`", p.path.display()),
            pos: p.name_pos,
        })
        .collect();
    let diags: Vec<Diagnostic> = collisions(&named)
        .into_iter()
        .map(|(i, j)| {
            let (a, b) = (&pipelines[i], &pipelines[j]);
            let how = if a.name == b.name {
                format!(
                    "pipeline name `{}` is also the name of {}",
                    b.name,
                    place(&a.path, a.name_pos)
                )
            } else {
                format!(
                    "pipeline names `{}` and `{}` ({}) would be the same folder",
                    b.name,
                    a.name,
                    place(&a.path, a.name_pos)
                )
            };
            Diagnostic::at(
                &b.path,
                "",
                b.name_pos,
                format!(
                    "{how}: both pipelines' runs would be recorded in `runs/{}/`",
                    path_component(&b.name)
                ),
            )
            .label(format!(
                "{} here; {} at {}",
                place(&b.path, b.name_pos),
                a.path.display(),
                place(&a.path, a.name_pos)
            ))
            .help("give each pipeline file its own `name:`")
        })
        .collect();
    if diags.is_empty() {
        Ok(())
    } else {
        Err(SpecError::Invalid(diags))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_that_would_be_paths_or_break_lines_are_refused() {
        for (bad, why) in [
            ("", "is empty"),
            ("..", "names a directory"),
            (".", "names a directory"),
            ("../../escaped", "path separator `/`"),
            ("/tmp/x", "path separator `/`"),
            ("a/b", "path separator `/`"),
            ("a\\b", "path separator `\\`"),
            ("a\nb", "a line break"),
            ("a\tb", "a tab"),
            ("a b", "contains ` `"),
            ("lr[lr=0.1]", "contains `[`"),
            ("café", "contains `é`"),
            (".hidden", "starts with `.`"),
            ("-x", "starts with `-`"),
        ] {
            let e = check(bad).expect_err(bad);
            assert!(e.contains(why), "{bad:?}: {e}");
        }
        assert!(check(&"a".repeat(101)).unwrap_err().contains("101 characters"));
        for good in [
            "baseline",
            "no_augmentation",
            "task-2",
            "v1.2",
            "_x",
            "A",
            &"a".repeat(100),
        ] {
            check(good).unwrap();
        }
    }

    #[test]
    fn names_collide_when_their_files_do() {
        let n = |name| Named {
            name,
            what: String::new(),
            pos: None,
        };
        assert_eq!(collisions(&[n("a/b"), n("x"), n("a_b")]), [(0, 2)]);
        assert_eq!(collisions(&[n("Base"), n("base")]), [(0, 1)]);
        assert_eq!(collisions(&[n("lr[lr=0.1]"), n("lr_lr=0.1_")]), [(0, 1)]);
        assert!(collisions(&[n("a"), n("b"), n("lr[lr=0.1]")]).is_empty());
    }
}
