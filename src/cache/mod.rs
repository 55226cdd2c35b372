//! The stage cache: `out/cache/<stage>/<key>/` holds a stage's artifacts and a manifest of what produced
//! them. A stage is built in `.partial-<key>/` (kept across crashes so training can resume) and renamed into
//! place when complete, under a per-stage lock so concurrent runs never corrupt each other.

pub mod key;

pub use key::StageKey;

use serde::{Deserialize, Serialize};
use std::fs::File;
use std::path::{Path, PathBuf};

/// Bump when the layout of any stage's artifacts changes: every key changes with it.
pub const FORMAT_VERSION: u32 = 1;

/// Cache trouble.
#[derive(Debug, thiserror::Error)]
pub enum CacheError {
    /// Filesystem trouble.
    #[error("cache `{path}`: {source}")]
    Io {
        /// Where.
        path: PathBuf,
        /// The OS error.
        source: std::io::Error,
    },
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> CacheError + '_ {
    move |source| CacheError::Io {
        path: path.to_path_buf(),
        source,
    }
}

/// One file a stage produced.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Artifact {
    /// File name inside the stage directory.
    pub name: String,
    /// Size in bytes.
    pub bytes: u64,
    /// blake3 of the content.
    pub blake3: String,
}

/// `manifest.json`: what a stage directory holds and what produced it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Manifest {
    /// Stage name.
    pub stage: String,
    /// The key (directory name).
    pub key: String,
    /// Everything the key was computed from.
    pub key_input: serde_json::Value,
    /// The files, with sizes and hashes.
    pub artifacts: Vec<Artifact>,
    /// Seconds the stage took.
    pub seconds: f64,
    /// labpipe version that wrote it.
    pub labpipe_version: String,
}

/// The cache under an out directory.
#[derive(Debug, Clone)]
pub struct Store {
    root: PathBuf,
}

/// A complete, verified stage directory.
#[derive(Debug, Clone)]
pub struct StageDir {
    /// The directory.
    pub path: PathBuf,
    /// Its manifest.
    pub manifest: Manifest,
}

impl StageDir {
    /// Path of an artifact.
    pub fn file(&self, name: &str) -> PathBuf {
        self.path.join(name)
    }
}

/// Why a stage is not in the cache.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Miss {
    /// No directory for the key.
    Absent,
    /// The directory exists but an artifact is missing, truncated or altered (the reason says which).
    Corrupt(String),
}

/// A held lock on a stage key, released on drop (and by the OS if the process dies).
pub struct StageLock {
    _file: File,
}

/// A stage being built.
pub struct StageBuild {
    dir: PathBuf,
    final_dir: PathBuf,
    key: StageKey,
    _lock: StageLock,
}

fn hash_file(path: &Path) -> std::io::Result<(u64, String)> {
    let mut h = blake3::Hasher::new();
    let mut f = File::open(path)?;
    let n = std::io::copy(&mut f, &mut h)?;
    Ok((n, h.finalize().to_hex().to_string()))
}

impl Store {
    /// The cache in `out/cache`.
    pub fn new(out: &Path) -> Self {
        Store {
            root: out.join("cache"),
        }
    }

    /// The cache root.
    pub fn root(&self) -> &Path {
        &self.root
    }

    fn dir(&self, key: &StageKey) -> PathBuf {
        self.root.join(&key.stage).join(&key.key)
    }

    /// The complete stage for `key`, verified against its manifest.
    pub fn lookup(&self, key: &StageKey) -> Result<StageDir, Miss> {
        let dir = self.dir(key);
        let text = match std::fs::read_to_string(dir.join("manifest.json")) {
            Ok(t) => t,
            Err(_) if !dir.exists() => return Err(Miss::Absent),
            Err(_) => return Err(Miss::Corrupt("manifest.json is missing".into())),
        };
        let manifest: Manifest = serde_json::from_str(&text)
            .map_err(|e| Miss::Corrupt(format!("manifest.json is unreadable: {e}")))?;
        for a in &manifest.artifacts {
            let p = dir.join(&a.name);
            let meta = std::fs::metadata(&p)
                .map_err(|_| Miss::Corrupt(format!("artifact {} is missing", a.name)))?;
            if meta.len() != a.bytes {
                return Err(Miss::Corrupt(format!(
                    "artifact {} is {} bytes, the manifest says {}",
                    a.name,
                    meta.len(),
                    a.bytes
                )));
            }
            let (_, h) = hash_file(&p).map_err(|e| Miss::Corrupt(format!("artifact {}: {e}", a.name)))?;
            if h != a.blake3 {
                return Err(Miss::Corrupt(format!(
                    "artifact {} was altered (hash differs)",
                    a.name
                )));
            }
        }
        Ok(StageDir { path: dir, manifest })
    }

    /// Take the lock for `key`, waiting while another process holds it.
    pub fn lock(&self, key: &StageKey) -> Result<StageLock, CacheError> {
        let dir = self.root.join(&key.stage);
        std::fs::create_dir_all(&dir).map_err(io(&dir))?;
        let path = dir.join(format!(".{}.lock", key.key));
        let file = File::options()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&path)
            .map_err(io(&path))?;
        file.lock().map_err(io(&path))?;
        Ok(StageLock { _file: file })
    }

    /// Start building `key` (its lock must be held, and passed in); the work directory keeps whatever an
    /// interrupted earlier build left (so training can resume).
    pub fn begin(&self, key: &StageKey, lock: StageLock) -> Result<StageBuild, CacheError> {
        let final_dir = self.dir(key);
        let dir = self.root.join(&key.stage).join(format!(".partial-{}", key.key));
        std::fs::create_dir_all(&dir).map_err(io(&dir))?;
        Ok(StageBuild {
            dir,
            final_dir,
            key: key.clone(),
            _lock: lock,
        })
    }

    /// Every complete stage directory as (stage, key, path).
    pub fn entries(&self) -> Vec<(String, String, PathBuf)> {
        let mut out = Vec::new();
        let Ok(stages) = std::fs::read_dir(&self.root) else {
            return out;
        };
        for s in stages.flatten() {
            let stage = s.file_name().to_string_lossy().to_string();
            let Ok(keys) = std::fs::read_dir(s.path()) else {
                continue;
            };
            for k in keys.flatten() {
                let name = k.file_name().to_string_lossy().to_string();
                if k.path().is_dir() {
                    out.push((stage.clone(), name, k.path()));
                }
            }
        }
        out.sort();
        out
    }
}

impl StageBuild {
    /// The directory to write artifacts into.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Hash every file, write the manifest, and move the directory into place.
    pub fn commit(self, seconds: f64, skip: &[&str]) -> Result<StageDir, CacheError> {
        let mut artifacts = Vec::new();
        let mut names: Vec<String> = std::fs::read_dir(&self.dir)
            .map_err(io(&self.dir))?
            .flatten()
            .filter(|e| e.path().is_file())
            .map(|e| e.file_name().to_string_lossy().to_string())
            .filter(|n| n != "manifest.json" && !skip.contains(&n.as_str()))
            .collect();
        names.sort();
        for name in &names {
            let p = self.dir.join(name);
            let (bytes, blake3) = hash_file(&p).map_err(io(&p))?;
            artifacts.push(Artifact {
                name: name.clone(),
                bytes,
                blake3,
            });
        }
        for s in skip {
            let _ = std::fs::remove_file(self.dir.join(s));
        }
        let manifest = Manifest {
            stage: self.key.stage.clone(),
            key: self.key.key.clone(),
            key_input: self.key.input.clone(),
            artifacts,
            seconds,
            labpipe_version: env!("CARGO_PKG_VERSION").to_string(),
        };
        let mpath = self.dir.join("manifest.json");
        std::fs::write(&mpath, serde_json::to_vec_pretty(&manifest).unwrap_or_default())
            .map_err(io(&mpath))?;
        // A corrupt old directory under the final name is replaced.
        if self.final_dir.exists() {
            std::fs::remove_dir_all(&self.final_dir).map_err(io(&self.final_dir))?;
        }
        std::fs::rename(&self.dir, &self.final_dir).map_err(io(&self.final_dir))?;
        Ok(StageDir {
            path: self.final_dir.clone(),
            manifest,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn key(stage: &str, v: serde_json::Value) -> StageKey {
        StageKey::new(stage, v, &[])
    }

    #[test]
    fn commit_then_lookup_then_detect_damage() {
        let out = tempfile::tempdir().unwrap();
        let store = Store::new(out.path());
        let k = key("train", json!({"lr": 0.1}));
        assert_eq!(store.lookup(&k).unwrap_err(), Miss::Absent);
        let b = store.begin(&k, store.lock(&k).unwrap()).unwrap();
        std::fs::write(b.dir().join("a.json"), b"{\"x\": 1}").unwrap();
        std::fs::write(b.dir().join("scratch"), b"x").unwrap();
        let done = b.commit(1.0, &["scratch"]).unwrap();
        assert_eq!(done.manifest.artifacts.len(), 1);
        assert!(store.lookup(&k).is_ok());
        assert!(
            !out.path()
                .join("cache/train")
                .join(format!(".partial-{}", k.key))
                .exists()
        );

        std::fs::write(done.file("a.json"), b"{\"x\": 2}").unwrap();
        assert!(matches!(store.lookup(&k), Err(Miss::Corrupt(m)) if m.contains("altered")));
        std::fs::write(done.file("a.json"), b"{").unwrap();
        assert!(matches!(store.lookup(&k), Err(Miss::Corrupt(m)) if m.contains("1 bytes")));
        std::fs::remove_file(done.file("a.json")).unwrap();
        assert!(matches!(store.lookup(&k), Err(Miss::Corrupt(m)) if m.contains("missing")));
    }

    #[test]
    fn rebuilding_a_corrupt_entry_replaces_it() {
        let out = tempfile::tempdir().unwrap();
        let store = Store::new(out.path());
        let k = key("plot", json!(1));
        for content in ["one", "two"] {
            let b = store.begin(&k, store.lock(&k).unwrap()).unwrap();
            std::fs::write(b.dir().join("f"), content).unwrap();
            b.commit(0.0, &[]).unwrap();
        }
        assert_eq!(
            std::fs::read_to_string(store.lookup(&k).unwrap().file("f")).unwrap(),
            "two"
        );
    }
}
