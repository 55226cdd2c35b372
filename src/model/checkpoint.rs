//! Checkpoints: safetensors files holding a PyTorch-style state_dict (loadable with `load_state_dict`),
//! written atomically, with labpipe's metadata in the safetensors header.

use candle_core::{Device, Tensor};
use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};

/// A checkpoint that could not be written or read.
#[derive(Debug, thiserror::Error)]
pub enum CheckpointError {
    /// Filesystem trouble.
    #[error("checkpoint `{path}`: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The OS error.
        source: std::io::Error,
    },
    /// Not a readable safetensors file.
    #[error("checkpoint `{path}` is not a valid safetensors file: {message}")]
    Format {
        /// The file.
        path: PathBuf,
        /// What the parser said.
        message: String,
    },
}

/// The safetensors header key under which labpipe's metadata (sorted JSON) is stored.
pub const METADATA_KEY: &str = "labpipe";

/// Write `tensors` (and `metadata`) to `path` via a temporary file and a rename, so a crash never leaves a
/// half-written checkpoint under the final name.
pub fn save(
    path: &Path,
    tensors: &HashMap<String, Tensor>,
    metadata: &BTreeMap<String, String>,
) -> Result<(), CheckpointError> {
    let tmp = path.with_extension(format!("tmp-{}", std::process::id()));
    let io = |source| CheckpointError::Io {
        path: path.to_path_buf(),
        source,
    };
    // Sorted names make the file bytes deterministic.
    let mut entries: Vec<(&String, &Tensor)> = tensors.iter().collect();
    entries.sort_by(|a, b| a.0.cmp(b.0));
    // safetensors writes its metadata from a HashMap, whose order changes from process to process; one entry
    // holding sorted JSON keeps checkpoint bytes identical for identical content.
    let meta: HashMap<String, String> = if metadata.is_empty() {
        HashMap::new()
    } else {
        HashMap::from([(
            METADATA_KEY.to_string(),
            serde_json::to_string(metadata).unwrap_or_default(),
        )])
    };
    let cpu: Vec<(String, Tensor)> = entries
        .into_iter()
        .map(|(k, t)| Ok((k.clone(), t.to_device(&Device::Cpu)?.contiguous()?)))
        .collect::<candle_core::Result<_>>()
        .map_err(|e| CheckpointError::Format {
            path: path.to_path_buf(),
            message: e.to_string(),
        })?;
    safetensors::serialize_to_file(cpu, Some(meta), &tmp).map_err(|e| CheckpointError::Format {
        path: path.to_path_buf(),
        message: e.to_string(),
    })?;
    std::fs::rename(&tmp, path).map_err(io)?;
    Ok(())
}

/// Read every tensor of a checkpoint onto `device`.
pub fn load(path: &Path, device: &Device) -> Result<HashMap<String, Tensor>, CheckpointError> {
    if !path.exists() {
        return Err(CheckpointError::Io {
            path: path.to_path_buf(),
            source: std::io::Error::new(std::io::ErrorKind::NotFound, "no such file"),
        });
    }
    candle_core::safetensors::load(path, device).map_err(|e| CheckpointError::Format {
        path: path.to_path_buf(),
        message: e.to_string(),
    })
}

/// Size in MB (10^6 bytes), as the seed's `Model loaded from … (44.80703 MB)` line prints it.
pub fn size_mb(path: &Path) -> Result<f64, CheckpointError> {
    let len = std::fs::metadata(path)
        .map_err(|source| CheckpointError::Io {
            path: path.to_path_buf(),
            source,
        })?
        .len();
    Ok(len as f64 / 1e6)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_and_deterministic_bytes() {
        let dir = tempfile::tempdir().unwrap();
        let mut t = HashMap::new();
        t.insert(
            "b.weight".to_string(),
            Tensor::new(&[1f32, 2.0], &Device::Cpu).unwrap(),
        );
        t.insert(
            "a.num_batches_tracked".to_string(),
            Tensor::new(3i64, &Device::Cpu).unwrap(),
        );
        let meta = BTreeMap::from([
            ("format".to_string(), "pt".to_string()),
            ("b".to_string(), "2".to_string()),
            ("a".to_string(), "1".to_string()),
        ]);
        let (p1, p2) = (dir.path().join("1.safetensors"), dir.path().join("2.safetensors"));
        save(&p1, &t, &meta).unwrap();
        save(&p2, &t, &meta).unwrap();
        let back = load(&p1, &Device::Cpu).unwrap();
        assert_eq!(back["b.weight"].to_vec1::<f32>().unwrap(), vec![1.0, 2.0]);
        assert_eq!(back["a.num_batches_tracked"].to_scalar::<i64>().unwrap(), 3);
        assert!(size_mb(&p1).unwrap() > 0.0);
        assert_eq!(std::fs::read(&p1).unwrap(), std::fs::read(&p2).unwrap());
    }

    #[test]
    fn garbage_and_missing_files_are_errors() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("x.safetensors");
        std::fs::write(&p, b"not a checkpoint").unwrap();
        assert!(
            load(&p, &Device::Cpu)
                .unwrap_err()
                .to_string()
                .contains("not a valid safetensors")
        );
        assert!(
            load(&dir.path().join("none"), &Device::Cpu)
                .unwrap_err()
                .to_string()
                .contains("no such file")
        );
    }
}
