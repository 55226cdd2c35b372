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
    let format_err = |message: String| CheckpointError::Format {
        path: path.to_path_buf(),
        message,
    };
    let bytes = encode(tensors, metadata).map_err(|e| format_err(e.to_string()))?;
    std::fs::write(&tmp, bytes)
        .and_then(|()| std::fs::rename(&tmp, path))
        .map_err(|source| {
            let _ = std::fs::remove_file(&tmp);
            CheckpointError::Io {
                path: path.to_path_buf(),
                source,
            }
        })
}

/// The safetensors bytes of `tensors`, with the same bytes for the same content.
///
/// The `safetensors` crate writes its metadata from a `HashMap`, whose order changes from process to process;
/// labpipe writes the (simple, documented) format itself: an 8-byte little-endian header length, a JSON header
/// whose keys are sorted (`__metadata__` first, then the tensors by name), padded with spaces to 8 bytes, and
/// the tensors' little-endian data in the same order. The metadata holds `format: pt`, which Hugging Face's
/// loaders require of PyTorch checkpoints, and labpipe's own entries as one sorted-JSON string under
/// [`METADATA_KEY`].
fn encode(
    tensors: &HashMap<String, Tensor>,
    metadata: &BTreeMap<String, String>,
) -> candle_core::Result<Vec<u8>> {
    let mut names: Vec<&String> = tensors.keys().collect();
    names.sort();
    let mut header = serde_json::Map::new();
    let mut meta = serde_json::Map::new();
    meta.insert("format".into(), "pt".into());
    if !metadata.is_empty() {
        let json = serde_json::to_string(metadata).map_err(|e| candle_core::Error::Msg(e.to_string()))?;
        meta.insert(METADATA_KEY.into(), json.into());
    }
    header.insert("__metadata__".into(), meta.into());
    let mut data = Vec::new();
    for name in names {
        let t = tensors[name].to_device(&Device::Cpu)?.contiguous()?;
        let start = data.len();
        let dtype = append_le_bytes(&t, &mut data)?;
        header.insert(
            name.clone(),
            serde_json::json!({"dtype": dtype, "shape": t.dims(), "data_offsets": [start, data.len()]}),
        );
    }
    // serde_json's Map is a BTreeMap (no `preserve_order` feature): the keys come out sorted.
    let mut head = serde_json::to_vec(&header).map_err(|e| candle_core::Error::Msg(e.to_string()))?;
    head.resize(head.len().next_multiple_of(8), b' ');
    let mut out = Vec::with_capacity(8 + head.len() + data.len());
    out.extend_from_slice(&(head.len() as u64).to_le_bytes());
    out.extend_from_slice(&head);
    out.extend_from_slice(&data);
    Ok(out)
}

/// Append `t`'s elements (contiguous, on the CPU) as little-endian bytes; returns the safetensors dtype name.
fn append_le_bytes(t: &Tensor, out: &mut Vec<u8>) -> candle_core::Result<&'static str> {
    use candle_core::DType;
    let flat = t.flatten_all()?;
    macro_rules! put {
        ($ty:ty) => {
            out.extend(flat.to_vec1::<$ty>()?.iter().flat_map(|v| v.to_le_bytes()))
        };
    }
    Ok(match t.dtype() {
        DType::F32 => {
            put!(f32);
            "F32"
        }
        DType::F64 => {
            put!(f64);
            "F64"
        }
        DType::I64 => {
            put!(i64);
            "I64"
        }
        DType::U32 => {
            put!(u32);
            "U32"
        }
        DType::U8 => {
            put!(u8);
            "U8"
        }
        other => candle_core::bail!("checkpoint: tensors of dtype {other:?} are not supported"),
    })
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
        // The header the safetensors crate reads back: `format: pt` and labpipe's sorted metadata.
        let bytes = std::fs::read(&p1).unwrap();
        let (_, st_meta) = safetensors::SafeTensors::read_metadata(&bytes).unwrap();
        let m = st_meta.metadata().clone().unwrap();
        assert_eq!(m["format"], "pt");
        assert_eq!(m[METADATA_KEY], r#"{"a":"1","b":"2"}"#);
        let st = safetensors::SafeTensors::deserialize(&bytes).unwrap();
        assert_eq!(
            st.tensor("a.num_batches_tracked").unwrap().dtype(),
            safetensors::Dtype::I64
        );
        assert_eq!(st.tensor("b.weight").unwrap().shape(), &[2]);
    }

    #[test]
    fn unsupported_dtypes_are_errors_and_leave_no_file() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("half.safetensors");
        let t = Tensor::new(&[1f32, 2.0], &Device::Cpu).unwrap();
        let half = HashMap::from([("w".to_string(), t.to_dtype(candle_core::DType::BF16).unwrap())]);
        let e = save(&p, &half, &BTreeMap::new()).unwrap_err().to_string();
        assert!(e.contains("BF16") && e.contains("not supported"), "{e}");
        assert_eq!(
            std::fs::read_dir(dir.path()).unwrap().count(),
            0,
            "nothing written"
        );
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
