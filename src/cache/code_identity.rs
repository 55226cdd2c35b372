//! The identity of labpipe's own code in a cache key: blake3 hashes of the source files, taken when labpipe is
//! built, combined per stage over the sources that stage's output depends on. A changed optimizer then changes
//! the train key (and everything downstream), while a changed report template changes no key.
//!
//! build.rs includes this file (`#[path]`) to hash the tree it compiles, so it may use only std and blake3.

use std::path::Path;

/// The files whose hashes make up code identities: the sources, the lock file (every dependency's version),
/// the build script (it compiles the CUDA kernels) and the vendored, patched Candle (a path dependency, so
/// Cargo.lock does not change when its code does; its backward pass decides the gradients).
pub const HASHED_ROOTS: &[&str] = &["src", "Cargo.lock", "build.rs", "vendor/candle-core/src"];

/// `(path relative to the crate root with `/` separators, blake3 hex of its bytes)` for every file under
/// `root`'s [`HASHED_ROOTS`], sorted by path. Hidden files and editor backups (`.x.swp`, `x~`) are skipped:
/// they are not code, and an open editor must not change a key.
pub fn hash_tree(root: &Path) -> std::io::Result<Vec<(String, String)>> {
    let mut out = Vec::new();
    for top in HASHED_ROOTS {
        let path = root.join(top);
        if path.is_dir() {
            walk(root, &path, &mut out)?;
        } else if path.is_file() {
            out.push((top.to_string(), hash_file(&path)?));
        }
    }
    out.sort();
    Ok(out)
}

fn walk(root: &Path, dir: &Path, out: &mut Vec<(String, String)>) -> std::io::Result<()> {
    for entry in std::fs::read_dir(dir)? {
        let entry = entry?;
        let name = entry.file_name().to_string_lossy().into_owned();
        if name.starts_with('.') || name.ends_with('~') {
            continue;
        }
        let path = entry.path();
        let kind = entry.file_type()?;
        if kind.is_dir() {
            walk(root, &path, out)?;
        } else if kind.is_file() {
            let rel = path
                .strip_prefix(root)
                .unwrap_or(&path)
                .components()
                .map(|c| c.as_os_str().to_string_lossy().into_owned())
                .collect::<Vec<_>>()
                .join("/");
            out.push((rel, hash_file(&path)?));
        }
    }
    Ok(())
}

fn hash_file(path: &Path) -> std::io::Result<String> {
    Ok(blake3::hash(&std::fs::read(path)?).to_hex().to_string())
}

/// Whether `path` is one of `sources`: a file named exactly, or a file under a directory named with a
/// trailing `/`.
pub fn covers(sources: &[&str], path: &str) -> bool {
    sources
        .iter()
        .any(|s| path == *s || (s.ends_with('/') && path.starts_with(s)))
}

/// The identity of the code in `sources` (see [`covers`]): 16 hex characters of blake3 over the sorted
/// `(path, hash)` pairs of `table` that the sources cover. Any change to one of those files, or a file
/// added to or removed from them, changes it; files outside them do not.
pub fn identity<'a>(table: impl IntoIterator<Item = (&'a str, &'a str)>, sources: &[&str]) -> String {
    let mut pairs: Vec<(&str, &str)> = table.into_iter().filter(|(p, _)| covers(sources, p)).collect();
    pairs.sort();
    let mut h = blake3::Hasher::new();
    for (path, hash) in pairs {
        h.update(path.as_bytes());
        h.update(b"\0");
        h.update(hash.as_bytes());
        h.update(b"\n");
    }
    h.finalize().to_hex()[..16].to_string()
}

/// `table` as Rust source: the slice expression build.rs writes, which `cache::key` embeds.
pub fn to_rust(table: &[(String, String)]) -> String {
    let mut s = String::from("&[\n");
    for (path, hash) in table {
        s.push_str(&format!("    ({path:?}, {hash:?}),\n"));
    }
    s.push(']');
    s
}

/// The version of `package` that `Cargo.lock`'s text pins (the first one listed).
pub fn locked_version(lock: &str, package: &str) -> Option<String> {
    let wanted = format!("name = \"{package}\"");
    let mut lines = lock.lines();
    while let Some(line) = lines.next() {
        if line.trim() == wanted {
            let version = lines
                .next()?
                .trim()
                .strip_prefix("version = \"")?
                .strip_suffix('"')?;
            return Some(version.to_string());
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    fn write(root: &Path, rel: &str, text: &str) {
        let p = root.join(rel);
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(p, text).unwrap();
    }

    #[test]
    fn an_identity_changes_with_its_sources_only() {
        let tmp = tempfile::tempdir().unwrap();
        let root = tmp.path();
        write(root, "Cargo.lock", "lock");
        write(root, "src/train/optim.rs", "fn step() {}");
        write(root, "src/report/render.rs", "fn render() {}");
        write(root, "src/train/.optim.rs.swp", "editor state");
        write(root, "notes/todo.md", "not hashed");
        let sources = ["src/train/", "Cargo.lock"];
        let id = |root: &Path| {
            let t = hash_tree(root).unwrap();
            identity(t.iter().map(|(p, h)| (p.as_str(), h.as_str())), &sources)
        };
        let table = hash_tree(root).unwrap();
        let paths: Vec<&str> = table.iter().map(|(p, _)| p.as_str()).collect();
        assert_eq!(
            paths,
            ["Cargo.lock", "src/report/render.rs", "src/train/optim.rs"]
        );
        let before = id(root);
        assert_eq!(before.len(), 16);

        write(root, "src/report/render.rs", "fn render() { /* new */ }");
        write(root, "src/train/.optim.rs.swp", "other editor state");
        assert_eq!(id(root), before, "files outside the sources changed it");
        write(root, "src/train/optim.rs", "fn step() { /* new */ }");
        let edited = id(root);
        assert_ne!(edited, before);
        write(root, "src/train/schedule.rs", "");
        assert_ne!(id(root), edited, "a new file under a source directory");
        write(root, "Cargo.lock", "lock 2");
        assert_ne!(id(root), edited);
    }

    #[test]
    fn directories_cover_only_what_is_under_them() {
        assert!(covers(&["src/train/"], "src/train/optim.rs"));
        assert!(!covers(&["src/train/"], "src/trainer.rs"));
        assert!(covers(&["src/rng.rs"], "src/rng.rs"));
        assert!(!covers(&["src/rng.rs"], "src/rng.rs.bak"));
    }

    #[test]
    fn reads_a_locked_version() {
        let lock = "[[package]]\nname = \"candle-core\"\nversion = \"0.11.1\"\n";
        assert_eq!(locked_version(lock, "candle-core").as_deref(), Some("0.11.1"));
        assert_eq!(locked_version(lock, "torch"), None);
        let rust = to_rust(&[("src/a.rs".into(), "ab".into())]);
        assert_eq!(rust, "&[\n    (\"src/a.rs\", \"ab\"),\n]");
    }
}
