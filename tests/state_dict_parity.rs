//! labpipe's models are PyTorch's, name for name and number for number: each built-in network loads a
//! state_dict saved by PyTorch, reproduces PyTorch's eval and train-mode forward passes and BatchNorm running
//! statistics, and writes checkpoints that round-trip exactly. Fixtures: tests/fixtures/state_dict/ (made by
//! scripts/fixtures/state_dict_fixtures.py, see the README there).

use crate::util::fixtures;
use candle_core::{DType, Device, Tensor};
use labpipe::model::builtins::{Stem, resnet18, simple_cnn};
use labpipe::model::checkpoint;
use labpipe::model::decl::ModelDecl;
use labpipe::model::net::{Mode, Net};
use std::collections::{BTreeMap, HashMap};
use std::path::Path;

/// The fixture set: tests/fixtures/state_dict/.
const FIXTURES: &str = "state_dict";

/// Largest absolute difference allowed between labpipe's and PyTorch's float32 results.
const TOL: f32 = 1e-4;
/// Running statistics are O(1) values one BatchNorm step from PyTorch's (observed ~1e-7 apart); a tighter bound
/// than `TOL` so that, e.g., the biased batch variance (off by 1e-4 in SimpleCNN's bn3) cannot pass.
const STATS_TOL: f32 = 1e-5;

/// One fixture model: `decl` is the declaration PyTorch's model corresponds to; `train_decl` is the same
/// network with dropout off, used for the train-mode comparison (dropout masks come from different RNGs).
struct Case {
    name: &'static str,
    decl: ModelDecl,
    train_decl: ModelDecl,
}

fn cases() -> Vec<Case> {
    vec![
        Case {
            name: "simple_cnn",
            decl: simple_cnn(10, 0.5),
            train_decl: simple_cnn(10, 0.0),
        },
        Case {
            name: "resnet18_imagenet_w8",
            decl: resnet18(10, Stem::Imagenet, 8),
            train_decl: resnet18(10, Stem::Imagenet, 8),
        },
        Case {
            name: "resnet18_cifar_w8",
            decl: resnet18(10, Stem::Cifar, 8),
            train_decl: resnet18(10, Stem::Cifar, 8),
        },
    ]
}

/// Fixtures are read with Candle's own safetensors reader, not labpipe's `checkpoint::load` under test.
fn fixture(file: &str) -> HashMap<String, Tensor> {
    fixtures::tensors(FIXTURES, file)
}

fn input() -> Tensor {
    fixture("input.safetensors")
        .remove("x")
        .expect("input.safetensors holds `x`")
}

fn net_with(decl: &ModelDecl, state: &HashMap<String, Tensor>) -> Net {
    // A seed different from anything PyTorch used: every number must come from the loaded state.
    let net = Net::new(decl, &Device::Cpu, 12345).expect("built-in model builds");
    net.load_state_dict(state)
        .expect("PyTorch's state_dict loads strictly");
    net
}

fn signature(state: &HashMap<String, Tensor>) -> BTreeMap<String, (Vec<usize>, DType)> {
    state
        .iter()
        .map(|(k, t)| (k.clone(), (t.dims().to_vec(), t.dtype())))
        .collect()
}

/// The exact bits of a float32 or int64 tensor, so equality means bit-for-bit equality.
fn bits(t: &Tensor) -> Vec<u64> {
    let flat = t.flatten_all().unwrap();
    match t.dtype() {
        DType::F32 => flat
            .to_vec1::<f32>()
            .unwrap()
            .into_iter()
            .map(|v| v.to_bits() as u64)
            .collect(),
        DType::I64 => flat
            .to_vec1::<i64>()
            .unwrap()
            .into_iter()
            .map(|v| v as u64)
            .collect(),
        other => panic!("unexpected dtype {other:?} in a state_dict"),
    }
}

fn max_abs_diff(what: &str, ours: &Tensor, theirs: &Tensor) -> f32 {
    assert_eq!(ours.dims(), theirs.dims(), "{what}: shapes differ");
    let a = ours.flatten_all().unwrap().to_vec1::<f32>().unwrap();
    let b = theirs.flatten_all().unwrap().to_vec1::<f32>().unwrap();
    a.iter().zip(&b).map(|(x, y)| (x - y).abs()).fold(0.0, f32::max)
}

fn scalar_i64(t: &Tensor) -> i64 {
    t.to_scalar::<i64>().unwrap()
}

#[test]
fn state_dict_names_shapes_dtypes_and_order_are_pytorchs() {
    let manifest = fixtures::manifest(FIXTURES);
    for case in cases() {
        let pytorch = fixture(&format!("{}.safetensors", case.name));
        let fresh = Net::new(&case.decl, &Device::Cpu, 0)
            .unwrap()
            .state_dict()
            .unwrap();
        assert_eq!(
            signature(&fresh),
            signature(&pytorch),
            "{}: a fresh labpipe state_dict's (name, shape, dtype) set differs from PyTorch's",
            case.name
        );
        for (k, t) in &fresh {
            let expected = if k.ends_with(".num_batches_tracked") {
                DType::I64
            } else {
                DType::F32
            };
            assert_eq!(t.dtype(), expected, "{}: {k}", case.name);
        }
        let order: Vec<String> = case.decl.tensors().unwrap().into_iter().map(|t| t.name).collect();
        let torch_order: Vec<String> =
            serde_json::from_value(manifest["models"][case.name]["state_dict_order"].clone())
                .expect("manifest lists the state_dict order");
        assert_eq!(
            order, torch_order,
            "{}: registration order differs from PyTorch's",
            case.name
        );

        // Loading then dumping gives back PyTorch's numbers bit for bit, buffers and counters included.
        let loaded = net_with(&case.decl, &pytorch).state_dict().unwrap();
        for (k, t) in &pytorch {
            assert_eq!(bits(&loaded[k]), bits(t), "{}: {k} changed on load", case.name);
        }
    }
}

#[test]
fn strict_load_rejects_another_models_state_dict() {
    let cnn = fixture("simple_cnn.safetensors");
    let resnet = Net::new(&resnet18(10, Stem::Cifar, 8), &Device::Cpu, 0).unwrap();
    let err = resnet.load_state_dict(&cnn).unwrap_err();
    assert!(err.contains("missing `layer1.0.conv1.weight`"), "{err}");
    assert!(err.contains("unexpected `conv1.bias`"), "{err}");
    // The two ResNet stems share names but not conv1's shape.
    let imagenet = fixture("resnet18_imagenet_w8.safetensors");
    let err = resnet.load_state_dict(&imagenet).unwrap_err();
    assert!(
        err.contains("`conv1.weight` has shape [8, 3, 7, 7], expected [8, 3, 3, 3]"),
        "{err}"
    );
}

#[test]
fn eval_logits_match_pytorch() {
    let x = input();
    for case in cases() {
        let net = net_with(&case.decl, &fixture(&format!("{}.safetensors", case.name)));
        let expected = fixture(&format!("{}_expected.safetensors", case.name));
        let ours = net.forward(&x, Mode::Eval).unwrap();
        let d = max_abs_diff("eval logits", &ours, &expected["eval_logits"]);
        eprintln!("{}: eval logits max abs diff {d:.3e}", case.name);
        assert!(
            d <= TOL,
            "{}: eval logits differ from PyTorch's by {d}",
            case.name
        );
    }
}

#[test]
fn train_forward_matches_pytorch_and_updates_running_stats() {
    let x = input();
    for case in cases() {
        let start = fixture(&format!("{}.safetensors", case.name));
        let expected = fixture(&format!("{}_expected.safetensors", case.name));
        let net = net_with(&case.train_decl, &start);
        let ours = net.forward(&x, Mode::Train).unwrap();
        let d = max_abs_diff("train logits", &ours, &expected["train_logits"]);
        assert!(
            d <= TOL,
            "{}: train-mode logits differ from PyTorch's by {d}",
            case.name
        );

        let after = net.state_dict().unwrap();
        let mut stats_diff = 0f32;
        let mut buffers = 0;
        for (k, t) in &after {
            let Some(owner) = k
                .strip_suffix(".running_mean")
                .or_else(|| k.strip_suffix(".running_var"))
                .or_else(|| k.strip_suffix(".num_batches_tracked"))
            else {
                // One forward pass must leave every trainable parameter untouched.
                assert_eq!(
                    bits(t),
                    bits(&start[k]),
                    "{}: {k} changed in a forward pass",
                    case.name
                );
                continue;
            };
            buffers += 1;
            let theirs = &expected[&format!("after.{k}")];
            if k.ends_with(".num_batches_tracked") {
                assert_eq!(t.dtype(), DType::I64, "{}: {k}", case.name);
                assert_eq!(scalar_i64(t), scalar_i64(theirs), "{}: {k}", case.name);
                assert_eq!(
                    scalar_i64(t),
                    scalar_i64(&start[k]) + 1,
                    "{}: {owner} counted",
                    case.name
                );
            } else {
                let d = max_abs_diff(k, t, theirs);
                assert!(d <= STATS_TOL, "{}: {k} differs from PyTorch's by {d}", case.name);
                stats_diff = stats_diff.max(d);
            }
        }
        // Every `after.*` buffer PyTorch recorded was compared (the other two entries are the logits).
        assert_eq!(
            buffers,
            expected.len() - 2,
            "{}: BatchNorm buffer count",
            case.name
        );
        eprintln!(
            "{}: train logits max abs diff {d:.3e}, running stats max abs diff {stats_diff:.3e}",
            case.name
        );

        if case.decl != case.train_decl {
            // The real model (dropout p=0.5) updates the same statistics: dropout follows the last BatchNorm.
            let with_dropout = net_with(&case.decl, &start);
            with_dropout.forward(&x, Mode::Train).unwrap();
            let dropped = with_dropout.state_dict().unwrap();
            for k in after
                .keys()
                .filter(|k| k.contains("running_") || k.ends_with("num_batches_tracked"))
            {
                assert_eq!(
                    bits(&dropped[k]),
                    bits(&after[k]),
                    "{}: {k} depends on dropout",
                    case.name
                );
            }
        }
    }
}

#[test]
fn checkpoint_save_load_round_trip_is_exact() {
    let x = input();
    // A known place, so scripts/fixtures/state_dict_fixtures.py --verify can load these in PyTorch.
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join("state_dict_parity");
    std::fs::create_dir_all(&dir).unwrap();
    for case in cases() {
        let net = net_with(&case.train_decl, &fixture(&format!("{}.safetensors", case.name)));
        net.forward(&x, Mode::Train).unwrap();
        let state = net.state_dict().unwrap();
        let path = dir.join(format!("{}.safetensors", case.name));
        let meta = BTreeMap::from([("model".to_string(), case.name.to_string())]);
        checkpoint::save(&path, &state, &meta).unwrap();

        let back = checkpoint::load(&path, &Device::Cpu).unwrap();
        assert_eq!(
            signature(&back),
            signature(&state),
            "{}: names, shapes or dtypes changed",
            case.name
        );
        for (k, t) in &state {
            assert_eq!(
                bits(&back[k]),
                bits(t),
                "{}: {k} changed in the round trip",
                case.name
            );
        }
        let reloaded = net_with(&case.decl, &back);
        assert_eq!(
            bits(&reloaded.forward(&x, Mode::Eval).unwrap()),
            bits(&net.forward(&x, Mode::Eval).unwrap()),
            "{}: eval logits changed after save → load",
            case.name
        );
    }
}
