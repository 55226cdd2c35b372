//! Checks that the house stays as docs/architecture.md draws it: modules import only lower layers, no two
//! files import each other (directly or round a loop), and no file outside a stage's own spells that stage's
//! name or artifact files. The source is read as text: these are facts about files, not types.

use crate::pipeline::stage::Stage;
use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;

/// A source file relative to src/, its module path, and its code without comments and test modules.
struct SourceFile {
    rel: String,
    module: Vec<String>,
    code: String,
}

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// Comments removed (line and block), so documentation that names a path is not an import. String and
/// character literals are kept as they are (a `"//"` inside one is not a comment).
fn strip_comments(text: &str) -> String {
    let c: Vec<char> = text.chars().collect();
    let mut out = String::with_capacity(text.len());
    let mut i = 0;
    while i < c.len() {
        match c[i] {
            '"' => {
                out.push('"');
                i += 1;
                while i < c.len() && c[i] != '"' {
                    if c[i] == '\\' && i + 1 < c.len() {
                        out.push(c[i]);
                        i += 1;
                    }
                    out.push(c[i]);
                    i += 1;
                }
                out.push('"');
                i += 1;
            }
            // A character literal such as '"' or '\\'' (not a lifetime: those have no closing quote).
            '\'' if c.get(i + 2) == Some(&'\'')
                || (c.get(i + 1) == Some(&'\\') && c.get(i + 3) == Some(&'\'')) =>
            {
                let len = if c[i + 1] == '\\' { 4 } else { 3 };
                out.extend(&c[i..i + len]);
                i += len;
            }
            '/' if c.get(i + 1) == Some(&'/') => {
                while i < c.len() && c[i] != '\n' {
                    i += 1;
                }
            }
            '/' if c.get(i + 1) == Some(&'*') => {
                i += 2;
                while i + 1 < c.len() && !(c[i] == '*' && c[i + 1] == '/') {
                    i += 1;
                }
                i += 2;
            }
            ch => {
                out.push(ch);
                i += 1;
            }
        }
    }
    out
}

fn module_of(rel: &str) -> Vec<String> {
    let mut parts: Vec<String> = rel.trim_end_matches(".rs").split('/').map(String::from).collect();
    if matches!(parts.last().map(String::as_str), Some("mod" | "lib" | "main")) {
        parts.pop();
    }
    parts
}

fn sources() -> Vec<SourceFile> {
    let src = root().join("src");
    let mut out = Vec::new();
    for e in walkdir::WalkDir::new(&src).into_iter().flatten() {
        let p = e.path();
        if p.extension().is_none_or(|x| x != "rs") {
            continue;
        }
        let rel = p.strip_prefix(&src).unwrap().to_string_lossy().replace('\\', "/");
        let name = rel.rsplit('/').next().unwrap_or_default();
        if name == "tests.rs" || name.ends_with("_tests.rs") {
            continue;
        }
        let mut code = strip_comments(&std::fs::read_to_string(p).unwrap());
        if let Some(i) = code.find("#[cfg(test)]\nmod ") {
            code.truncate(i);
        }
        out.push(SourceFile {
            module: module_of(&rel),
            rel,
            code,
        });
    }
    out
}

/// Every path a `use` names (braces expanded) and every `crate::`/`super::`/`self::` path in the code.
fn paths_used(code: &str, skip_reexports: bool) -> Vec<Vec<String>> {
    fn expand(prefix: &str, body: &str, out: &mut Vec<String>) {
        match body.find('{') {
            Some(i) if body.ends_with('}') => {
                let (pre, inner) = (&body[..i], &body[i + 1..body.len() - 1]);
                let (mut depth, mut cur) = (0, String::new());
                for ch in inner.chars() {
                    match ch {
                        '{' => depth += 1,
                        '}' => depth -= 1,
                        _ => {}
                    }
                    if ch == ',' && depth == 0 {
                        expand(&format!("{prefix}{pre}"), &std::mem::take(&mut cur), out);
                    } else {
                        cur.push(ch);
                    }
                }
                if !cur.is_empty() {
                    expand(&format!("{prefix}{pre}"), &cur, out);
                }
            }
            _ => out.push(format!("{prefix}{body}")),
        }
    }
    let mut flat = Vec::new();
    let mut rest = code;
    while let Some(i) = rest.find("use ") {
        let before = &code[..code.len() - rest.len() + i];
        let word_start = before
            .chars()
            .last()
            .is_none_or(|c| !c.is_alphanumeric() && c != '_');
        let after = &rest[i + 4..];
        let end = after.find(';').unwrap_or(after.len());
        if word_start {
            let is_reexport = before.trim_end().ends_with("pub") || before.trim_end().ends_with(')');
            if !(skip_reexports && is_reexport) {
                let body: String = after[..end].chars().filter(|c| !c.is_whitespace()).collect();
                expand("", &body, &mut flat);
            }
        }
        rest = &after[end.min(after.len())..];
    }
    for start in ["crate::", "super::", "self::"] {
        let mut from = 0;
        while let Some(i) = code[from..].find(start) {
            let at = from + i;
            let ok = code[..at]
                .chars()
                .last()
                .is_none_or(|c| !c.is_alphanumeric() && c != '_' && c != ':');
            let end = code[at..]
                .find(|c: char| !(c.is_alphanumeric() || c == '_' || c == ':'))
                .map_or(code.len(), |e| at + e);
            if ok {
                flat.push(code[at..end].trim_end_matches(':').to_string());
            }
            from = end.max(at + 1);
        }
    }
    flat.iter()
        .map(|p| {
            p.split("::")
                .map(|s| s.split(" as ").next().unwrap_or(s).to_string())
                .collect()
        })
        .collect()
}

/// File → the files it imports (resolved to the deepest module file a path names).
fn file_graph(files: &[SourceFile]) -> BTreeMap<String, BTreeSet<String>> {
    let modules: BTreeMap<Vec<String>, String> = files
        .iter()
        .filter(|f| f.rel != "main.rs")
        .map(|f| (f.module.clone(), f.rel.clone()))
        .collect();
    let mut graph = BTreeMap::new();
    for f in files
        .iter()
        .filter(|f| f.rel != "main.rs" && !f.rel.starts_with("cli/"))
    {
        let has_children = modules
            .keys()
            .any(|m| m.len() == f.module.len() + 1 && m.starts_with(&f.module));
        let mut to = BTreeSet::new();
        for path in paths_used(&f.code, has_children) {
            let Some(first) = path.first() else { continue };
            let (mut base, mut rest) = match first.as_str() {
                "crate" => (Vec::new(), path[1..].to_vec()),
                "super" | "self" => (f.module.clone(), path.clone()),
                _ => (f.module.clone(), path.clone()),
            };
            while let Some(seg) = rest.first().cloned() {
                match seg.as_str() {
                    "super" => {
                        base.pop();
                    }
                    "self" => {}
                    _ => break,
                }
                rest.remove(0);
            }
            if !matches!(first.as_str(), "crate" | "super" | "self") {
                let mut child = base.clone();
                child.push(first.clone());
                if !modules.contains_key(&child) {
                    continue;
                }
            }
            let target = (0..=rest.len()).rev().find_map(|k| {
                let mut m = base.clone();
                m.extend(rest[..k].iter().cloned());
                modules.get(&m).map(|file| (m, file))
            });
            if let Some((m, file)) = target {
                // A file may use its enclosing modules' items: that is how a Rust module shares them.
                let enclosing = m.len() < f.module.len() && f.module.starts_with(&m);
                if file != &f.rel && !enclosing {
                    to.insert(file.clone());
                }
            }
        }
        graph.insert(f.rel.clone(), to);
    }
    graph
}

fn find_cycle(graph: &BTreeMap<String, BTreeSet<String>>) -> Option<Vec<String>> {
    fn visit(
        n: &str,
        graph: &BTreeMap<String, BTreeSet<String>>,
        state: &mut BTreeMap<String, u8>,
        stack: &mut Vec<String>,
    ) -> Option<Vec<String>> {
        state.insert(n.to_string(), 1);
        stack.push(n.to_string());
        for m in graph.get(n).into_iter().flatten() {
            match state.get(m).copied().unwrap_or(0) {
                1 => {
                    let i = stack.iter().position(|s| s == m).unwrap_or(0);
                    let mut cycle = stack[i..].to_vec();
                    cycle.push(m.clone());
                    return Some(cycle);
                }
                0 => {
                    if let Some(c) = visit(m, graph, state, stack) {
                        return Some(c);
                    }
                }
                _ => {}
            }
        }
        stack.pop();
        state.insert(n.to_string(), 2);
        None
    }
    let mut state = BTreeMap::new();
    for n in graph.keys() {
        if state.get(n).copied().unwrap_or(0) == 0
            && let Some(c) = visit(n, graph, &mut state, &mut Vec::new())
        {
            return Some(c);
        }
    }
    None
}

/// The layers of docs/architecture.md's ```layers block: top-level module → layer number.
fn layers() -> BTreeMap<String, usize> {
    let doc = std::fs::read_to_string(root().join("docs/architecture.md")).expect("docs/architecture.md");
    let block = doc
        .split("```layers\n")
        .nth(1)
        .and_then(|b| b.split("```").next())
        .expect("docs/architecture.md has a ```layers block");
    let mut out = BTreeMap::new();
    for (i, line) in block.lines().filter(|l| !l.trim().is_empty()).enumerate() {
        let modules = line.split_once(':').map_or(line, |(_, m)| m);
        for m in modules.split_whitespace() {
            out.insert(m.trim_end_matches(',').to_string(), i);
        }
    }
    out
}

#[test]
fn no_file_imports_another_round_a_loop() {
    let graph = file_graph(&sources());
    assert!(graph.len() > 50, "the scan found too few files: {}", graph.len());
    // The scan does see imports: the executor uses the stage files.
    assert!(graph["pipeline/mod.rs"].contains("pipeline/stage/mod.rs"));
    if let Some(cycle) = find_cycle(&graph) {
        panic!("import loop: {}", cycle.join(" → "));
    }
}

#[test]
fn the_loop_check_finds_a_loop() {
    let file = |rel: &str, code: &str| SourceFile {
        rel: rel.into(),
        module: module_of(rel),
        code: code.into(),
    };
    let files = [
        file("lib.rs", "pub mod data;"),
        file("data/mod.rs", "pub mod a;\npub mod b;\npub use a::X;"),
        file("data/a.rs", "use super::b::Y;\npub struct X;"),
        file("data/b.rs", "use crate::data::a::X;\npub struct Y;"),
    ];
    let cycle = find_cycle(&file_graph(&files)).expect("a ⇄ b");
    assert!(cycle.contains(&"data/a.rs".to_string()) && cycle.contains(&"data/b.rs".to_string()));
    // A parent's re-export and a child's use of its parent are not loops.
    let files = [
        file("data/mod.rs", "pub mod a;\npub use a::X;\npub struct P;"),
        file("data/a.rs", "use super::P;\npub struct X;"),
    ];
    assert_eq!(find_cycle(&file_graph(&files)), None);
}

#[test]
fn modules_import_only_lower_layers() {
    let layers = layers();
    let mut wrong = Vec::new();
    for f in sources() {
        let Some(top) = f.module.first() else { continue };
        if top == "cli" {
            continue;
        }
        let Some(&mine) = layers.get(top.as_str()) else {
            wrong.push(format!(
                "src/{}: module `{top}` is not in docs/architecture.md's layers",
                f.rel
            ));
            continue;
        };
        for path in paths_used(&f.code, false) {
            if path.first().map(String::as_str) != Some("crate") {
                continue;
            }
            let Some(dep) = path.get(1) else { continue };
            if dep == top {
                continue;
            }
            match layers.get(dep.as_str()) {
                Some(&theirs) if theirs < mine => {}
                _ => wrong.push(format!("src/{} (layer {mine}) imports `{dep}`", f.rel)),
            }
        }
    }
    wrong.sort();
    wrong.dedup();
    assert!(
        wrong.is_empty(),
        "imports against the layering:\n{}",
        wrong.join("\n")
    );
}

#[test]
fn only_a_stage_spells_its_name_and_artifact_files() {
    let artifacts: BTreeSet<&str> = Stage::ALL
        .iter()
        .flat_map(|s| s.files().iter().copied())
        .collect();
    let names: Vec<&str> = Stage::ALL.iter().map(|s| s.name()).collect();
    // Where stage names used to be spelled; elsewhere `train`/`model` are YAML sections or split names.
    let name_checked = ["pipeline/", "cli/", "report/", "cache/"];
    let mut found = Vec::new();
    for f in sources() {
        if f.rel.starts_with("pipeline/stage/") {
            continue;
        }
        for lit in f.code.split('"').skip(1).step_by(2) {
            if artifacts.contains(lit) {
                found.push(format!("src/{}: artifact file name \"{lit}\"", f.rel));
            }
            if names.contains(&lit) && name_checked.iter().any(|d| f.rel.starts_with(d)) {
                found.push(format!("src/{}: stage name \"{lit}\"", f.rel));
            }
        }
    }
    assert!(
        found.is_empty(),
        "spelled outside their stage's file:\n{}",
        found.join("\n")
    );
}
