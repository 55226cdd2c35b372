//! Parity with torchvision 0.29 / Pillow 13 on fixed parameters, against the outputs that
//! `scripts/fixtures/augment_fixtures.py` stored in `tests/fixtures/augment*/`: 3×32×32 RGB (`augment`),
//! 1×28×28 greyscale (`augment_grey`, PIL mode `L`) and 3×20×28 RGB (`augment_oblong`, not square).

use std::path::PathBuf;

use serde::Deserialize;

use super::*;

/// Every fixture set; each holds the same 78 cases for its image shape.
const SETS: [&str; 3] = ["augment", "augment_grey", "augment_oblong"];

#[derive(Deserialize)]
struct Fixtures {
    shape: [usize; 3],
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
    mean: Vec<f32>,
    #[serde(default)]
    std: Vec<f32>,
    #[serde(default)]
    height: usize,
    #[serde(default)]
    width: usize,
    #[serde(default)]
    value: Vec<f32>,
}

struct Loaded {
    name: &'static str,
    shape: InputShape,
    cases: Vec<Case>,
    inputs: Vec<u8>,
    u8_out: Vec<u8>,
    f32_out: Vec<f32>,
}

impl Loaded {
    fn bytes(&self) -> usize {
        self.shape.values()
    }
    fn input(&self, i: usize) -> &[u8] {
        &self.inputs[i * self.bytes()..(i + 1) * self.bytes()]
    }
    fn expected_u8(&self, case: &Case) -> &[u8] {
        &self.u8_out[case.out * self.bytes()..(case.out + 1) * self.bytes()]
    }
    fn expected_f32(&self, case: &Case) -> &[f32] {
        &self.f32_out[case.out * self.bytes()..(case.out + 1) * self.bytes()]
    }
    fn of(&self, op: &str) -> impl Iterator<Item = &Case> {
        let op = op.to_string();
        self.cases.iter().filter(move |c| c.op == op)
    }
}

fn load(name: &'static str) -> Loaded {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures")
        .join(name);
    let read = |file: &str| std::fs::read(dir.join(file)).unwrap_or_else(|e| panic!("{name}/{file}: {e}"));
    let fixtures: Fixtures = serde_json::from_slice(&read("cases.json")).expect("cases.json");
    let f32_out = read("f32.bin")
        .chunks_exact(4)
        .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
        .collect();
    let [c, h, w] = fixtures.shape;
    Loaded {
        name,
        shape: InputShape::new(c, h, w),
        cases: fixtures.cases,
        inputs: read("inputs.bin"),
        u8_out: read("u8.bin"),
        f32_out,
    }
}

fn every_set() -> impl Iterator<Item = Loaded> {
    SETS.into_iter().map(load)
}

fn json_to<T: serde::de::DeserializeOwned>(v: &Option<serde_json::Value>) -> T {
    serde_json::from_value(v.clone().expect("parameter present")).expect("parameter parses")
}

/// Pixels whose every channel is equal.
fn pixels_equal(shape: InputShape, a: &[u8], b: &[u8]) -> usize {
    let plane = shape.plane();
    (0..plane)
        .filter(|&i| (0..shape.channels).all(|c| a[c * plane + i] == b[c * plane + i]))
        .count()
}

#[test]
fn the_fixture_sets_have_the_shapes_they_are_named_for() {
    let shapes: Vec<InputShape> = every_set().map(|fx| fx.shape).collect();
    assert_eq!(
        shapes,
        [InputShape::CIFAR, InputShape::MNIST, InputShape::new(3, 20, 28)]
    );
}

#[test]
fn crop_after_padding_is_identical_in_every_mode() {
    for fx in every_set() {
        let mut out = vec![0u8; fx.bytes()];
        let mut n = 0;
        for case in fx.of("crop") {
            let padding: Padding = json_to(&case.padding);
            let fill: Fill = json_to(&case.fill);
            let mode = case.padding_mode.expect("padding_mode");
            let (top, left) = (case.top, case.left);
            crop_with(
                fx.shape,
                fx.input(case.input),
                top,
                left,
                padding,
                fill,
                mode,
                &mut out,
            );
            assert_eq!(
                out,
                fx.expected_u8(case),
                "{}: crop {padding:?} {mode:?} at ({top}, {left})",
                fx.name
            );
            n += 1;
        }
        assert_eq!(n, 32, "{}", fx.name);
    }
}

#[test]
fn hflip_is_identical() {
    for fx in every_set() {
        let mut out = vec![0u8; fx.bytes()];
        for case in fx.of("hflip") {
            hflip(fx.shape, fx.input(case.input), &mut out);
            assert_eq!(out, fx.expected_u8(case), "{}", fx.name);
        }
    }
}

/// Every rotation, nearest and bilinear, quarter turns and arbitrary angles, must match pixel for pixel.
#[test]
fn rotation_is_identical_at_every_angle() {
    for fx in every_set() {
        let mut out = vec![0u8; fx.bytes()];
        let plane = fx.shape.plane();
        let (mut pixels, mut equal, mut cases) = (0, 0, 0);
        let mut report = Vec::new();
        for case in fx.of("rotate") {
            let fill: Fill = json_to(&case.fill);
            let interpolation = case.interpolation.expect("interpolation");
            let src = fx.input(case.input);
            rotate_with(
                fx.shape,
                src,
                case.angle,
                interpolation,
                fill,
                case.center,
                &mut out,
            );
            let same = pixels_equal(fx.shape, &out, fx.expected_u8(case));
            pixels += plane;
            equal += same;
            cases += 1;
            if same != plane {
                report.push(format!(
                    "image {} angle {} {interpolation:?} center {:?}: {same}/{plane} pixels equal",
                    case.input, case.angle, case.center
                ));
            }
        }
        assert_eq!(cases, 40, "{}", fx.name);
        assert!(
            report.is_empty(),
            "{}: {equal}/{pixels} pixels equal:\n{}",
            fx.name,
            report.join("\n")
        );
    }
}

#[test]
fn normalization_and_erasing_are_bit_identical() {
    for fx in every_set() {
        let mut out = vec![0f32; fx.bytes()];
        let mut n = 0;
        for case in fx.cases.iter().filter(|c| c.op == "normalize" || c.op == "erase") {
            to_normalized(fx.shape, fx.input(case.input), &case.mean, &case.std, &mut out);
            if case.op == "erase" {
                let value = match case.value[..] {
                    [v] => vec![v; fx.shape.channels],
                    _ => case.value.clone(),
                };
                let (at, size) = ([case.top, case.left], [case.height, case.width]);
                erase_with(fx.shape, &mut out, at, size, &value);
            }
            let expected = fx.expected_f32(case);
            let differing = (0..fx.bytes())
                .filter(|&i| out[i].to_bits() != expected[i].to_bits())
                .count();
            assert_eq!(
                differing, 0,
                "{}: {} case {}: {differing} floats differ",
                fx.name, case.op, case.out
            );
            n += 1;
        }
        assert_eq!(n, 4, "{}", fx.name);
    }
}
