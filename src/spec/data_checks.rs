//! Checks of the `data:` fields that depend on the dataset: which fields apply to which dataset, and the
//! values `channels`, `image_size` and `test_split` may take. Each problem names its field.

use crate::data::config::{DataSpec, DatasetKind, ValSplit};

/// One problem: the field's path, the message, and the label under the field.
pub(super) type Problem = (&'static str, String, &'static str);

/// Every problem of `d`'s dataset-specific fields.
pub(super) fn check(d: &DataSpec) -> Vec<Problem> {
    let mut out: Vec<Problem> = Vec::new();
    let kind = d.dataset;
    let name = dataset_word(kind);
    let downloaded = matches!(
        kind,
        DatasetKind::Cifar10 | DatasetKind::Cifar100 | DatasetKind::Mnist | DatasetKind::FashionMnist
    );
    let mut misplaced = |field: &'static str, applies: &str| {
        out.push((
            field,
            format!("`{field}` does not apply to `dataset: {name}`; it applies to {applies}"),
            "remove it",
        ));
    };
    if kind == DatasetKind::Synthetic && d.root.is_some() {
        misplaced("data.root", "datasets read from files");
    }
    if !downloaded && d.url.is_some() {
        misplaced(
            "data.url",
            "downloaded datasets (cifar10, cifar100, mnist, fashion_mnist)",
        );
    }
    if !matches!(kind, DatasetKind::Cifar10 | DatasetKind::Cifar100) && d.md5.is_some() {
        misplaced(
            "data.md5",
            "the CIFAR archives (mnist and fashion_mnist are four files, each checked by its own MD5)",
        );
    }
    if kind != DatasetKind::Cifar100 && d.labels.is_some() {
        misplaced("data.labels", "`dataset: cifar100`");
    }
    if kind != DatasetKind::ImageFolder {
        for (field, set) in [
            ("data.image_size", d.image_size.is_some()),
            ("data.channels", d.channels.is_some()),
            ("data.test_split", d.test_split.is_some()),
        ] {
            if set {
                misplaced(field, "`dataset: image_folder`");
            }
        }
    }
    if let Some(c) = d.channels
        && c != 1
        && c != 3
    {
        out.push((
            "data.channels",
            format!("`data.channels: {c}` is not a number of channels labpipe can convert images to"),
            "expected 1 (greyscale, as PIL's convert(\"L\")) or 3 (RGB)",
        ));
    }
    if let Some(size) = d.image_size {
        let (h, w) = size.height_width();
        if h == 0 || w == 0 {
            out.push((
                "data.image_size",
                format!("`data.image_size` must be at least 1 pixel on each side, got {h}×{w}"),
                "expected e.g. 28 or [32, 48]",
            ));
        }
    }
    if let Some(ValSplit::Count(0)) | Some(ValSplit::Fraction(0.0)) = d.test_split {
        out.push((
            "data.test_split",
            "`data.test_split` holds out no test images".into(),
            "expected a count ≥ 1 or a fraction in (0, 1)",
        ));
    }
    if kind == DatasetKind::ImageFolder && d.root.is_none() {
        out.push((
            "data.dataset",
            "`dataset: image_folder` needs `data.root`, the folder that holds `train/<class>/…` (and `test/…`)"
                .into(),
            "add `root:` under `data:`",
        ));
    }
    out
}

/// The dataset as written in a pipeline file.
fn dataset_word(kind: DatasetKind) -> &'static str {
    match kind {
        DatasetKind::Synthetic => "synthetic",
        DatasetKind::Cifar10 => "cifar10",
        DatasetKind::Cifar100 => "cifar100",
        DatasetKind::Mnist => "mnist",
        DatasetKind::FashionMnist => "fashion_mnist",
        DatasetKind::ImageFolder => "image_folder",
    }
}
