//! Parity with torchvision 0.29 / Pillow 13 on fixed parameters, against the outputs that
//! `scripts/fixtures/augment_fixtures.py` stored in `tests/fixtures/augment/`.

use std::path::PathBuf;

use serde::Deserialize;

use super::*;

const RGB: InputShape = InputShape::CIFAR;
const IMAGE_BYTES: usize = RGB.values();
const IMAGE_SIDE: usize = RGB.width;

#[derive(Deserialize)]
struct Fixtures {
    cases: Vec<Case>,
}

#[derive(Deserialize)]
struct Case {
    op: String,
    input: usize,
    out: usize,
    #[serde(default)]
    padding: Option<serde_json::Value>,
    #[serde(default)]
    padding_mode: Option<PaddingMode>,
    #[serde(default)]
    fill: Option<serde_json::Value>,
    #[serde(default)]
    top: usize,
    #[serde(default)]
    left: usize,
    #[serde(default)]
    angle: f64,
    #[serde(default)]
    interpolation: Option<Interpolation>,
    #[serde(default)]
    center: Option<[f64; 2]>,
    #[serde(default)]
    mean: [f32; 3],
    #[serde(default)]
    std: [f32; 3],
    #[serde(default)]
    height: usize,
    #[serde(default)]
    width: usize,
    #[serde(default)]
    value: Vec<f32>,
}

struct Loaded {
    cases: Vec<Case>,
    inputs: Vec<u8>,
    u8_out: Vec<u8>,
    f32_out: Vec<f32>,
}

impl Loaded {
    fn input(&self, i: usize) -> &[u8] {
        &self.inputs[i * IMAGE_BYTES..(i + 1) * IMAGE_BYTES]
    }
    fn expected_u8(&self, case: &Case) -> &[u8] {
        &self.u8_out[case.out * IMAGE_BYTES..(case.out + 1) * IMAGE_BYTES]
    }
    fn expected_f32(&self, case: &Case) -> &[f32] {
        &self.f32_out[case.out * IMAGE_BYTES..(case.out + 1) * IMAGE_BYTES]
    }
    fn of(&self, op: &str) -> impl Iterator<Item = &Case> {
        let op = op.to_string();
        self.cases.iter().filter(move |c| c.op == op)
    }
}

fn load() -> Loaded {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/augment");
    let read = |name: &str| std::fs::read(dir.join(name)).unwrap_or_else(|e| panic!("{name}: {e}"));
    let fixtures: Fixtures = serde_json::from_slice(&read("cases.json")).expect("cases.json");
    let f32_out = read("f32.bin")
        .chunks_exact(4)
        .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
        .collect();
    Loaded {
        cases: fixtures.cases,
        inputs: read("inputs.bin"),
        u8_out: read("u8.bin"),
        f32_out,
    }
}

fn json_to<T: serde::de::DeserializeOwned>(v: &Option<serde_json::Value>) -> T {
    serde_json::from_value(v.clone().expect("parameter present")).expect("parameter parses")
}

fn pixels_equal(a: &[u8], b: &[u8]) -> usize {
    let plane = IMAGE_SIDE * IMAGE_SIDE;
    (0..plane)
        .filter(|&i| (0..3).all(|c| a[c * plane + i] == b[c * plane + i]))
        .count()
}

#[test]
fn crop_after_padding_is_identical_in_every_mode() {
    let fx = load();
    let mut out = vec![0u8; IMAGE_BYTES];
    let mut n = 0;
    for case in fx.of("crop") {
        let padding: Padding = json_to(&case.padding);
        let fill: Fill = json_to(&case.fill);
        let mode = case.padding_mode.expect("padding_mode");
        crop_with(
            RGB,
            fx.input(case.input),
            case.top,
            case.left,
            padding,
            fill,
            mode,
            &mut out,
        );
        assert_eq!(
            out,
            fx.expected_u8(case),
            "crop {padding:?} {mode:?} at ({}, {})",
            case.top,
            case.left
        );
        n += 1;
    }
    assert_eq!(n, 32);
}

#[test]
fn hflip_is_identical() {
    let fx = load();
    let mut out = vec![0u8; IMAGE_BYTES];
    for case in fx.of("hflip") {
        hflip(RGB, fx.input(case.input), &mut out);
        assert_eq!(out, fx.expected_u8(case));
    }
}

/// Every rotation, nearest and bilinear, quarter turns and arbitrary angles, must match pixel for pixel.
#[test]
fn rotation_is_identical_at_every_angle() {
    let fx = load();
    let mut out = vec![0u8; IMAGE_BYTES];
    let (mut pixels, mut equal, mut cases) = (0, 0, 0);
    let mut report = Vec::new();
    for case in fx.of("rotate") {
        let fill: Fill = json_to(&case.fill);
        let interpolation = case.interpolation.expect("interpolation");
        rotate_with(
            RGB,
            fx.input(case.input),
            case.angle,
            interpolation,
            fill,
            case.center,
            &mut out,
        );
        let same = pixels_equal(&out, fx.expected_u8(case));
        pixels += IMAGE_SIDE * IMAGE_SIDE;
        equal += same;
        cases += 1;
        if same != IMAGE_SIDE * IMAGE_SIDE {
            report.push(format!(
                "image {} angle {} {interpolation:?} center {:?}: {same}/1024 pixels equal",
                case.input, case.angle, case.center
            ));
        }
    }
    assert_eq!(cases, 40);
    assert!(
        report.is_empty(),
        "{equal}/{pixels} pixels equal:\n{}",
        report.join("\n")
    );
}

#[test]
fn normalization_and_erasing_are_bit_identical() {
    let fx = load();
    let mut out = vec![0f32; IMAGE_BYTES];
    let mut n = 0;
    for case in fx.cases.iter().filter(|c| c.op == "normalize" || c.op == "erase") {
        to_normalized(RGB, fx.input(case.input), &case.mean, &case.std, &mut out);
        if case.op == "erase" {
            let value = match case.value[..] {
                [v] => [v; 3],
                [r, g, b] => [r, g, b],
                _ => panic!("erase value {:?}", case.value),
            };
            erase_with(
                RGB,
                &mut out,
                [case.top, case.left],
                [case.height, case.width],
                &value,
            );
        }
        let expected = fx.expected_f32(case);
        let differing = (0..IMAGE_BYTES)
            .filter(|&i| out[i].to_bits() != expected[i].to_bits())
            .count();
        assert_eq!(
            differing, 0,
            "{} case {}: {differing} floats differ",
            case.op, case.out
        );
        n += 1;
    }
    assert_eq!(n, 4);
}
