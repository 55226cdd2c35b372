//! The augmentation declarations as written in the pipeline YAML, with torchvision's names and defaults.
//!
//! Parameters that torchvision accepts in several shapes (`padding: 4` or `[2, 6]` or `[1, 2, 3, 4]`,
//! `fill: 0` or `[r, g, b]`, `degrees: 15` or `[-5, 20]`, erasing `value: 0`, `[r, g, b]` or `random`) keep
//! those shapes here, through small hand-written visitors so that serde-saphyr can still point at the value.

use std::fmt;
use std::marker::PhantomData;

use serde::de::{self, Deserializer, IntoDeserializer, SeqAccess, Visitor};
use serde::ser::{SerializeSeq, Serializer};
use serde::{Deserialize, Serialize};

use crate::data::shape::InputShape;

/// One training augmentation, in the YAML as `- random_crop: {size: 32, padding: 4}` and so on.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Augment {
    /// torchvision `RandomCrop`: pad, then cut a `size`×`size` window at a uniformly drawn position.
    RandomCrop(RandomCrop),
    /// torchvision `RandomHorizontalFlip`: mirror left-right with probability `p`.
    RandomHorizontalFlip(RandomHorizontalFlip),
    /// torchvision `RandomRotation`: rotate by an angle drawn uniformly from `degrees` (PIL `Image.rotate`).
    RandomRotation(RandomRotation),
    /// torchvision `RandomErasing`: blank a random rectangle of the normalized tensor with probability `p`.
    RandomErasing(RandomErasing),
}

/// torchvision `RandomCrop(size, padding, fill=0, padding_mode="constant")`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RandomCrop {
    /// Side of the square crop; must be the image side (labpipe has no resize after augmentation).
    pub size: usize,
    /// Padding added before cropping: one number, `[left/right, top/bottom]` or `[left, top, right, bottom]`.
    #[serde(default)]
    pub padding: Padding,
    /// Colour of the padding in `constant` mode.
    #[serde(default)]
    pub fill: Fill,
    /// How the border is filled: `constant`, `edge`, `reflect` or `symmetric` (numpy's `np.pad` modes).
    #[serde(default)]
    pub padding_mode: PaddingMode,
}

/// torchvision `RandomHorizontalFlip(p=0.5)`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RandomHorizontalFlip {
    /// Probability of flipping.
    #[serde(default = "half")]
    pub p: f64,
}

impl Default for RandomHorizontalFlip {
    fn default() -> Self {
        RandomHorizontalFlip { p: 0.5 }
    }
}

/// torchvision `RandomRotation(degrees, interpolation=NEAREST, expand=False, center=None, fill=0)`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RandomRotation {
    /// Angle range in degrees, counter-clockwise: `d` means `[-d, d]`.
    pub degrees: Degrees,
    /// Resampling filter.
    #[serde(default)]
    pub interpolation: Interpolation,
    /// Colour of the area that the rotation uncovers.
    #[serde(default)]
    pub fill: Fill,
    /// Centre of rotation in pixel coordinates (origin at the top-left corner); default: the image centre.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub center: Option<[f64; 2]>,
}

/// torchvision `RandomErasing(p=0.5, scale=(0.02, 0.33), ratio=(0.3, 3.3), value=0)`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RandomErasing {
    /// Probability of erasing.
    #[serde(default = "half")]
    pub p: f64,
    /// Range of the erased area as a fraction of the image area.
    #[serde(default = "default_erase_scale")]
    pub scale: [f64; 2],
    /// Range of the erased rectangle's aspect ratio (height / width), drawn log-uniformly.
    #[serde(default = "default_erase_ratio")]
    pub ratio: [f64; 2],
    /// What the rectangle is filled with, in normalized units.
    #[serde(default)]
    pub value: EraseValue,
}

impl Default for RandomErasing {
    fn default() -> Self {
        RandomErasing {
            p: 0.5,
            scale: default_erase_scale(),
            ratio: default_erase_ratio(),
            value: EraseValue::default(),
        }
    }
}

fn half() -> f64 {
    0.5
}

fn default_erase_scale() -> [f64; 2] {
    [0.02, 0.33]
}

fn default_erase_ratio() -> [f64; 2] {
    [0.3, 3.3]
}

/// Border filling for `random_crop`, as numpy's `np.pad` (which torchvision uses for PIL images).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum PaddingMode {
    /// A constant colour (`fill`).
    #[default]
    Constant,
    /// Repeat the edge pixel.
    Edge,
    /// Mirror without repeating the edge pixel (`d c b | a b c d | c b a`).
    Reflect,
    /// Mirror repeating the edge pixel (`c b a | a b c d | d c b`).
    Symmetric,
}

/// Resampling filter for `random_rotation` (PIL's `NEAREST` or `BILINEAR`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Interpolation {
    /// Nearest neighbour (torchvision's default).
    #[default]
    Nearest,
    /// Linear in a 2×2 neighbourhood.
    Bilinear,
}

/// Padding on each side in pixels; written as one number, `[left/right, top/bottom]` or four numbers.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Padding {
    /// Columns added on the left.
    pub left: usize,
    /// Rows added on the top.
    pub top: usize,
    /// Columns added on the right.
    pub right: usize,
    /// Rows added on the bottom.
    pub bottom: usize,
}

impl Padding {
    /// The same padding on all four sides.
    pub fn uniform(n: usize) -> Self {
        Padding {
            left: n,
            top: n,
            right: n,
            bottom: n,
        }
    }
}

/// A fill colour as written: one level for every channel (`0`, `[0]`), or `[r, g, b]` for RGB images only
/// (torchvision refuses three values for a greyscale image).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fill {
    /// The same level in every channel.
    Grey(u8),
    /// One level per channel of an RGB image.
    Colour([u8; 3]),
}

impl Default for Fill {
    fn default() -> Self {
        Fill::Grey(0)
    }
}

impl Fill {
    /// The level of `channel`.
    pub fn level(self, channel: usize) -> u8 {
        match self {
            Fill::Grey(g) => g,
            Fill::Colour(rgb) => rgb[channel],
        }
    }
}

/// The angle range of `random_rotation`, as written.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Degrees {
    /// `d`: angles in `[-d, d]`.
    Symmetric(f64),
    /// `[min, max]`.
    Range([f64; 2]),
}

impl Degrees {
    /// The `(min, max)` range the angle is drawn from.
    pub fn range(&self) -> (f64, f64) {
        match *self {
            Degrees::Symmetric(d) => (-d, d),
            Degrees::Range([lo, hi]) => (lo, hi),
        }
    }
}

/// What `random_erasing` writes into the rectangle (in normalized units, as torchvision erases after Normalize).
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum EraseValue {
    /// The same value in every channel (written as one number or `[v]`).
    Constant(f32),
    /// One value per channel of an RGB image (`[r, g, b]`).
    PerChannel([f32; 3]),
    /// `random`: independent standard-normal values per element.
    Random,
}

impl Default for EraseValue {
    fn default() -> Self {
        EraseValue::Constant(0.0)
    }
}

impl Augment {
    /// The name used in the YAML (`random_crop`, ...).
    pub fn name(&self) -> &'static str {
        match self {
            Augment::RandomCrop(_) => "random_crop",
            Augment::RandomHorizontalFlip(_) => "random_horizontal_flip",
            Augment::RandomRotation(_) => "random_rotation",
            Augment::RandomErasing(_) => "random_erasing",
        }
    }

    /// Checks the parameters as torchvision's constructors and transforms do for images of `shape` (the
    /// output must keep that shape; a per-channel colour needs RGB images); the message names the field,
    /// e.g. `random_crop.size: ...`.
    pub fn validate(&self, shape: InputShape) -> Result<(), String> {
        match self {
            Augment::RandomCrop(c) => {
                c.validate(shape)?;
                check_colour("random_crop.fill", matches!(c.fill, Fill::Colour(_)), shape)
            }
            Augment::RandomHorizontalFlip(f) => check_probability("random_horizontal_flip.p", f.p),
            Augment::RandomRotation(r) => {
                r.validate()?;
                check_colour("random_rotation.fill", matches!(r.fill, Fill::Colour(_)), shape)
            }
            Augment::RandomErasing(e) => {
                e.validate()?;
                let per_channel = matches!(e.value, EraseValue::PerChannel(_));
                check_colour("random_erasing.value", per_channel, shape)
            }
        }
    }
}

impl RandomCrop {
    fn validate(&self, shape: InputShape) -> Result<(), String> {
        let (h, w) = (shape.height, shape.width);
        if h != w {
            return Err(format!(
                "random_crop.size: the images are {h}×{w} (not square) and a square crop cannot keep that \
                 shape; remove random_crop, or set data.image_size to one side"
            ));
        }
        if self.size != h {
            return Err(format!(
                "random_crop.size: expected {h} (images are {h}×{w} and a crop must keep that shape; use \
                 padding to crop with a shift), found {}",
                self.size
            ));
        }
        Ok(())
    }
}

impl RandomRotation {
    fn validate(&self) -> Result<(), String> {
        match self.degrees {
            Degrees::Symmetric(d) if !(d.is_finite() && d >= 0.0) => Err(format!(
                "random_rotation.degrees: a single number must be finite and non-negative (angles are drawn \
                 from [-degrees, degrees]); found {d}; write [min, max] for an asymmetric range"
            )),
            Degrees::Range([lo, hi]) if !(lo.is_finite() && hi.is_finite() && lo <= hi) => Err(format!(
                "random_rotation.degrees: expected [min, max] with finite min <= max, found [{lo}, {hi}]"
            )),
            _ => match self.center {
                Some([x, y]) if !(x.is_finite() && y.is_finite()) => Err(format!(
                    "random_rotation.center: expected finite pixel coordinates [x, y], found [{x}, {y}]"
                )),
                _ => Ok(()),
            },
        }
    }
}

impl RandomErasing {
    fn validate(&self) -> Result<(), String> {
        check_probability("random_erasing.p", self.p)?;
        let [s0, s1] = self.scale;
        if !(0.0..=1.0).contains(&s0) || !(0.0..=1.0).contains(&s1) || s0 > s1 {
            return Err(format!(
                "random_erasing.scale: expected [min, max] area fractions with 0 <= min <= max <= 1, \
                 found [{s0}, {s1}]"
            ));
        }
        let [r0, r1] = self.ratio;
        if !(r0 > 0.0 && r1.is_finite() && r0 <= r1) {
            return Err(format!(
                "random_erasing.ratio: expected [min, max] aspect ratios with 0 < min <= max, found [{r0}, {r1}]"
            ));
        }
        let values = match self.value {
            EraseValue::Constant(v) => vec![v],
            EraseValue::PerChannel(v) => v.to_vec(),
            EraseValue::Random => Vec::new(),
        };
        if values.iter().any(|x| !x.is_finite()) {
            return Err(format!(
                "random_erasing.value: expected finite numbers or \"random\", found {values:?}"
            ));
        }
        Ok(())
    }
}

/// Three per-channel values fit RGB images only; torchvision refuses them for other channel counts.
fn check_colour(field: &str, per_channel: bool, shape: InputShape) -> Result<(), String> {
    let c = shape.channels;
    if !per_channel || c == 3 {
        return Ok(());
    }
    let images = if c == 1 {
        format!("greyscale ({shape})")
    } else {
        format!("{shape}")
    };
    Err(format!(
        "{field}: three values [r, g, b] are for RGB images, but the images are {images}; give one number, \
         used for every channel"
    ))
}

fn check_probability(field: &str, p: f64) -> Result<(), String> {
    if (0.0..=1.0).contains(&p) {
        Ok(())
    } else {
        Err(format!(
            "{field}: expected a probability between 0 and 1, found {p}"
        ))
    }
}

/// A YAML value that is one item or a list of items; `expecting` says which shapes are allowed.
enum OneOrList<T> {
    One(T),
    List(Vec<T>),
}

impl<T> OneOrList<T> {
    fn deserialize<'de, D>(d: D, expecting: &'static str) -> Result<Self, D::Error>
    where
        D: Deserializer<'de>,
        T: Deserialize<'de>,
    {
        d.deserialize_any(OneOrListVisitor {
            expecting,
            item: PhantomData,
        })
    }
}

struct OneOrListVisitor<T> {
    expecting: &'static str,
    item: PhantomData<T>,
}

impl<'de, T: Deserialize<'de>> Visitor<'de> for OneOrListVisitor<T> {
    type Value = OneOrList<T>;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str(self.expecting)
    }

    fn visit_u64<E: de::Error>(self, v: u64) -> Result<Self::Value, E> {
        T::deserialize(v.into_deserializer()).map(OneOrList::One)
    }

    fn visit_i64<E: de::Error>(self, v: i64) -> Result<Self::Value, E> {
        T::deserialize(v.into_deserializer()).map(OneOrList::One)
    }

    fn visit_f64<E: de::Error>(self, v: f64) -> Result<Self::Value, E> {
        T::deserialize(v.into_deserializer()).map(OneOrList::One)
    }

    fn visit_str<E: de::Error>(self, v: &str) -> Result<Self::Value, E> {
        T::deserialize(v.into_deserializer()).map(OneOrList::One)
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
        let mut items = Vec::new();
        while let Some(item) = seq.next_element()? {
            items.push(item);
        }
        Ok(OneOrList::List(items))
    }
}

impl<'de> Deserialize<'de> for Padding {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        const EXPECTING: &str = "a non-negative number of pixels, [left/right, top/bottom] or \
                                 [left, top, right, bottom]";
        match OneOrList::<usize>::deserialize(d, EXPECTING)? {
            OneOrList::One(n) => Ok(Padding::uniform(n)),
            OneOrList::List(v) => match v[..] {
                [n] => Ok(Padding::uniform(n)),
                [lr, tb] => Ok(Padding {
                    left: lr,
                    top: tb,
                    right: lr,
                    bottom: tb,
                }),
                [left, top, right, bottom] => Ok(Padding {
                    left,
                    top,
                    right,
                    bottom,
                }),
                _ => Err(de::Error::invalid_length(v.len(), &EXPECTING)),
            },
        }
    }
}

impl Serialize for Padding {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let Padding {
            left,
            top,
            right,
            bottom,
        } = *self;
        if left == top && top == right && right == bottom {
            s.serialize_u64(left as u64)
        } else {
            let mut seq = s.serialize_seq(Some(4))?;
            for v in [left, top, right, bottom] {
                seq.serialize_element(&v)?;
            }
            seq.end()
        }
    }
}

impl<'de> Deserialize<'de> for Fill {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        const EXPECTING: &str = "a grey level 0..=255 or an [r, g, b] colour of levels 0..=255";
        let level = |v: i64| {
            u8::try_from(v).map_err(|_| de::Error::invalid_value(de::Unexpected::Signed(v), &EXPECTING))
        };
        match OneOrList::<i64>::deserialize(d, EXPECTING)? {
            OneOrList::One(g) => Ok(Fill::Grey(level(g)?)),
            OneOrList::List(v) => match v[..] {
                [g] => Ok(Fill::Grey(level(g)?)),
                [r, g, b] => Ok(Fill::Colour([level(r)?, level(g)?, level(b)?])),
                _ => Err(de::Error::invalid_length(v.len(), &EXPECTING)),
            },
        }
    }
}

impl Serialize for Fill {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        // An RGB colour of three equal levels is written as that level, so both spellings key the same.
        match *self {
            Fill::Grey(g) => s.serialize_u8(g),
            Fill::Colour([r, g, b]) if r == g && g == b => s.serialize_u8(r),
            Fill::Colour(rgb) => rgb.serialize(s),
        }
    }
}

impl<'de> Deserialize<'de> for Degrees {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        const EXPECTING: &str = "a number of degrees d (meaning [-d, d]) or [min, max]";
        match OneOrList::<f64>::deserialize(d, EXPECTING)? {
            OneOrList::One(v) => Ok(Degrees::Symmetric(v)),
            OneOrList::List(v) => match v[..] {
                [lo, hi] => Ok(Degrees::Range([lo, hi])),
                _ => Err(de::Error::invalid_length(v.len(), &EXPECTING)),
            },
        }
    }
}

impl Serialize for Degrees {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match self {
            Degrees::Symmetric(d) => s.serialize_f64(*d),
            Degrees::Range(r) => r.serialize(s),
        }
    }
}

/// One element of an erasing `value`: a number, or the word `random`.
enum ValueItem {
    Number(f32),
    Random,
}

impl<'de> Deserialize<'de> for ValueItem {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl Visitor<'_> for V {
            type Value = ValueItem;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a number or \"random\"")
            }
            fn visit_u64<E: de::Error>(self, v: u64) -> Result<ValueItem, E> {
                Ok(ValueItem::Number(v as f32))
            }
            fn visit_i64<E: de::Error>(self, v: i64) -> Result<ValueItem, E> {
                Ok(ValueItem::Number(v as f32))
            }
            fn visit_f64<E: de::Error>(self, v: f64) -> Result<ValueItem, E> {
                Ok(ValueItem::Number(v as f32))
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<ValueItem, E> {
                if v == "random" {
                    Ok(ValueItem::Random)
                } else {
                    Err(de::Error::invalid_value(de::Unexpected::Str(v), &self))
                }
            }
        }
        d.deserialize_any(V)
    }
}

impl<'de> Deserialize<'de> for EraseValue {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        const EXPECTING: &str = "a number, an [r, g, b] list of numbers or \"random\"";
        let number = |item: &ValueItem| match item {
            ValueItem::Number(v) => Ok(*v),
            ValueItem::Random => Err(de::Error::invalid_value(
                de::Unexpected::Str("random"),
                &EXPECTING,
            )),
        };
        match OneOrList::<ValueItem>::deserialize(d, EXPECTING)? {
            OneOrList::One(ValueItem::Random) => Ok(EraseValue::Random),
            OneOrList::One(ValueItem::Number(v)) => Ok(EraseValue::Constant(v)),
            OneOrList::List(v) => match &v[..] {
                [g] => Ok(EraseValue::Constant(number(g)?)),
                [r, g, b] => Ok(EraseValue::PerChannel([number(r)?, number(g)?, number(b)?])),
                _ => Err(de::Error::invalid_length(v.len(), &EXPECTING)),
            },
        }
    }
}

impl Serialize for EraseValue {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match self {
            EraseValue::Random => s.serialize_str("random"),
            EraseValue::Constant(v) => s.serialize_f32(*v),
            EraseValue::PerChannel([r, g, b]) if r == g && g == b => s.serialize_f32(*r),
            EraseValue::PerChannel(v) => v.serialize(s),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(yaml: &str) -> Vec<Augment> {
        serde_saphyr::from_str(yaml).unwrap_or_else(|e| panic!("{yaml}: {e}"))
    }

    #[test]
    fn the_documented_example_parses_with_torchvision_defaults() {
        let augs = parse(
            "- random_crop: {size: 32, padding: 4}\n\
             - random_horizontal_flip: {p: 0.5}\n\
             - random_rotation: {degrees: 15}\n\
             - random_erasing: {p: 0.5, scale: [0.02, 0.33], ratio: [0.3, 3.3], value: 0}\n",
        );
        assert_eq!(
            augs,
            vec![
                Augment::RandomCrop(RandomCrop {
                    size: 32,
                    padding: Padding::uniform(4),
                    fill: Fill::Grey(0),
                    padding_mode: PaddingMode::Constant
                }),
                Augment::RandomHorizontalFlip(RandomHorizontalFlip { p: 0.5 }),
                Augment::RandomRotation(RandomRotation {
                    degrees: Degrees::Symmetric(15.0),
                    interpolation: Interpolation::Nearest,
                    fill: Fill::Grey(0),
                    center: None
                }),
                Augment::RandomErasing(RandomErasing::default()),
            ]
        );
        assert!(augs.iter().all(|a| a.validate(InputShape::CIFAR).is_ok()));
        assert_eq!(
            parse("- random_horizontal_flip: {}\n- random_erasing: {}\n").len(),
            2
        );
    }

    #[test]
    fn every_parameter_shape_torchvision_accepts_parses() {
        let augs = parse(
            "- random_crop: {size: 32, padding: [2, 6], fill: [255, 128, 7], padding_mode: reflect}\n\
             - random_crop: {size: 32, padding: [1, 2, 3, 4], fill: 9, padding_mode: symmetric}\n\
             - random_rotation: {degrees: [-5, 20.5], interpolation: bilinear, fill: [1, 2, 3], center: [3, 4.5]}\n\
             - random_erasing: {value: random}\n\
             - random_erasing: {value: [0.5, -1, 2]}\n",
        );
        let Augment::RandomCrop(c) = &augs[0] else {
            panic!()
        };
        assert_eq!(
            c.padding,
            Padding {
                left: 2,
                top: 6,
                right: 2,
                bottom: 6
            }
        );
        assert_eq!(
            (c.fill, c.padding_mode),
            (Fill::Colour([255, 128, 7]), PaddingMode::Reflect)
        );
        let Augment::RandomCrop(c) = &augs[1] else {
            panic!()
        };
        assert_eq!(
            c.padding,
            Padding {
                left: 1,
                top: 2,
                right: 3,
                bottom: 4
            }
        );
        assert_eq!(c.fill, Fill::Grey(9));
        let Augment::RandomRotation(r) = &augs[2] else {
            panic!()
        };
        assert_eq!(r.degrees.range(), (-5.0, 20.5));
        assert_eq!(
            (r.interpolation, r.fill, r.center),
            (Interpolation::Bilinear, Fill::Colour([1, 2, 3]), Some([3.0, 4.5]))
        );
        let Augment::RandomErasing(e) = &augs[3] else {
            panic!()
        };
        assert_eq!(e.value, EraseValue::Random);
        let Augment::RandomErasing(e) = &augs[4] else {
            panic!()
        };
        assert_eq!(e.value, EraseValue::PerChannel([0.5, -1.0, 2.0]));
    }

    #[test]
    fn serializing_and_parsing_again_gives_the_same_list() {
        let augs = parse(
            "- random_crop: {size: 32, padding: [1, 2, 3, 4], fill: [1, 2, 3], padding_mode: edge}\n\
             - random_crop: {size: 32, padding: 4}\n\
             - random_horizontal_flip: {p: 0.25}\n\
             - random_rotation: {degrees: [-5, 20.5], interpolation: bilinear, center: [3, 4.5]}\n\
             - random_rotation: {degrees: 15}\n\
             - random_erasing: {value: random, scale: [0.1, 0.2]}\n\
             - random_erasing: {value: [0.5, -1, 2]}\n",
        );
        let yaml = serde_saphyr::to_string(&augs).unwrap();
        assert_eq!(parse(&yaml), augs, "{yaml}");
        let json = serde_json::to_string(&augs).unwrap();
        assert_eq!(
            serde_json::from_str::<Vec<Augment>>(&json).unwrap(),
            augs,
            "{json}"
        );
    }

    #[test]
    fn malformed_yaml_is_rejected_with_the_reason() {
        for (yaml, needle) in [
            ("- random_crop: {size: 32, pading: 4}", "pading"),
            ("- random_flip: {p: 0.5}", "random_flip"),
            (
                "- random_crop: {size: 32, padding: [1, 2, 3]}",
                "left, top, right, bottom",
            ),
            ("- random_crop: {size: 32, padding: -1}", "-1"),
            (
                "- random_crop: {size: 32, fill: 256}",
                "integer `256`, expected a grey level 0..=255",
            ),
            (
                "- random_crop: {size: 32, fill: [0, 0, -1]}",
                "integer `-1`, expected a grey level",
            ),
            ("- random_crop: {size: 32, padding_mode: wrap}", "wrap"),
            ("- random_rotation: {degrees: [1, 2, 3]}", "min, max"),
            (
                "- random_rotation: {degrees: 5, interpolation: bicubic}",
                "bicubic",
            ),
            ("- random_erasing: {value: noise}", "noise"),
            ("- random_erasing: {value: [1, random, 2]}", "random"),
        ] {
            let err = serde_saphyr::from_str::<Vec<Augment>>(yaml)
                .expect_err(yaml)
                .to_string();
            assert!(err.contains(needle), "{yaml}: {err}");
        }
    }

    #[test]
    fn each_invalid_parameter_is_named_in_the_error() {
        let crop = |size| {
            Augment::RandomCrop(RandomCrop {
                size,
                padding: Padding::uniform(4),
                fill: Fill::default(),
                padding_mode: PaddingMode::Constant,
            })
        };
        let rotation = |degrees, center| {
            Augment::RandomRotation(RandomRotation {
                degrees,
                interpolation: Interpolation::Nearest,
                fill: Fill::default(),
                center,
            })
        };
        let erasing = |p, scale, ratio, value| {
            Augment::RandomErasing(RandomErasing {
                p,
                scale,
                ratio,
                value,
            })
        };
        let ok = RandomErasing::default();
        let cases = [
            (crop(28), "random_crop.size"),
            (crop(40), "random_crop.size"),
            (
                Augment::RandomHorizontalFlip(RandomHorizontalFlip { p: 1.5 }),
                "random_horizontal_flip.p",
            ),
            (
                Augment::RandomHorizontalFlip(RandomHorizontalFlip { p: f64::NAN }),
                "random_horizontal_flip.p",
            ),
            (
                rotation(Degrees::Symmetric(-15.0), None),
                "random_rotation.degrees",
            ),
            (
                rotation(Degrees::Symmetric(f64::INFINITY), None),
                "random_rotation.degrees",
            ),
            (
                rotation(Degrees::Range([10.0, -10.0]), None),
                "random_rotation.degrees",
            ),
            (
                rotation(Degrees::Symmetric(15.0), Some([f64::NAN, 1.0])),
                "random_rotation.center",
            ),
            (erasing(-0.1, ok.scale, ok.ratio, ok.value), "random_erasing.p"),
            (
                erasing(0.5, [0.4, 0.1], ok.ratio, ok.value),
                "random_erasing.scale",
            ),
            (
                erasing(0.5, [0.1, 1.5], ok.ratio, ok.value),
                "random_erasing.scale",
            ),
            (
                erasing(0.5, ok.scale, [3.3, 0.3], ok.value),
                "random_erasing.ratio",
            ),
            (
                erasing(0.5, ok.scale, [0.0, 3.3], ok.value),
                "random_erasing.ratio",
            ),
            (
                erasing(
                    0.5,
                    ok.scale,
                    ok.ratio,
                    EraseValue::PerChannel([0.0, f32::NAN, 0.0]),
                ),
                "random_erasing.value",
            ),
        ];
        for (aug, field) in cases {
            let err = aug.validate(InputShape::CIFAR).expect_err(field);
            assert!(err.starts_with(&format!("{field}: ")), "{aug:?}: {err}");
        }
        assert!(crop(32).validate(InputShape::CIFAR).is_ok());
        assert!(crop(28).validate(InputShape::MNIST).is_ok());
        let err = crop(32).validate(InputShape::MNIST).unwrap_err();
        assert!(err.starts_with("random_crop.size: expected 28"), "{err}");
        let err = crop(32).validate(InputShape::new(3, 32, 40)).unwrap_err();
        assert!(err.contains("32×40 (not square)"), "{err}");
        assert!(
            rotation(Degrees::Range([-3.0, -3.0]), Some([0.0, 40.0]))
                .validate(InputShape::CIFAR)
                .is_ok()
        );
        assert!(
            erasing(1.0, [0.0, 1.0], [1.0, 1.0], EraseValue::Random)
                .validate(InputShape::CIFAR)
                .is_ok()
        );
    }

    #[test]
    fn per_channel_colours_are_refused_for_greyscale_images() {
        let augs = parse(
            "- random_crop: {size: 28, fill: [1, 2, 3]}\n\
             - random_rotation: {degrees: 5, fill: [0, 0, 0]}\n\
             - random_erasing: {value: [1, 2, 3]}\n\
             - random_crop: {size: 28, fill: [7], padding: 2}\n\
             - random_rotation: {degrees: 5, fill: 9}\n\
             - random_erasing: {value: random}\n\
             - random_erasing: {value: [0.5]}\n\
             - random_horizontal_flip: {}\n",
        );
        let rgb = InputShape::new(3, 28, 28);
        let fields = ["random_crop.fill", "random_rotation.fill", "random_erasing.value"];
        for (aug, field) in augs.iter().zip(fields) {
            let err = aug.validate(InputShape::MNIST).unwrap_err();
            assert!(
                err.starts_with(&format!("{field}: three values [r, g, b] are for RGB images")),
                "{err}"
            );
            assert!(
                err.contains("the images are greyscale (1×28×28); give one number"),
                "{err}"
            );
            assert_eq!(aug.validate(rgb), Ok(()));
        }
        for aug in &augs[3..] {
            assert_eq!(aug.validate(InputShape::MNIST), Ok(()), "{aug:?}");
            assert_eq!(aug.validate(rgb), Ok(()), "{aug:?}");
        }
        // Three equal levels key like one: the spelling does not change a stage key.
        assert_eq!(serde_json::to_string(&Fill::Colour([5; 3])).unwrap(), "5");
        assert_eq!(serde_json::to_string(&Fill::Grey(5)).unwrap(), "5");
        assert_eq!(
            serde_json::to_string(&EraseValue::PerChannel([0.5; 3])).unwrap(),
            "0.5"
        );
    }
}
