//! The checked-in reference fixtures under tests/fixtures/, one directory per set (`state_dict`,
//! `train_parity`, ...), each with a README saying how it was made.

use super::files::read_json;
use candle_core::{Device, Tensor};
use std::collections::HashMap;
use std::path::{Path, PathBuf};

/// `tests/fixtures/SET/FILE`.
pub fn fixture_path(set: &str, file: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures")
        .join(set)
        .join(file)
}

/// The tensors of a safetensors fixture, read with Candle's own reader rather than labpipe's
/// `checkpoint::load`, which some of the tests check.
pub fn tensors(set: &str, file: &str) -> HashMap<String, Tensor> {
    let path = fixture_path(set, file);
    candle_core::safetensors::load(&path, &Device::Cpu)
        .unwrap_or_else(|e| panic!("reading fixture {}: {e}", path.display()))
}

/// The set's `manifest.json`.
pub fn manifest(set: &str) -> serde_json::Value {
    read_json(&fixture_path(set, "manifest.json"))
}
