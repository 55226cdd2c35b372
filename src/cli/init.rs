//! `labpipe init [DIR]`: a commented starter pipeline for a chosen dataset and model, and with `--templates` a
//! copy of the report templates to edit. It never overwrites: an existing file is an error naming it.

use super::Exit;
use anyhow::Context;
use labpipe::data::config::DatasetKind;
use std::path::{Path, PathBuf};

/// The report templates, as `labpipe report` has them built in (file name, text).
pub const REPORT_TEMPLATES: &[(&str, &str)] = &[
    ("lab2.md.j2", include_str!("../../report_templates/lab2.md.j2")),
    (
        "report.md.j2",
        include_str!("../../report_templates/report.md.j2"),
    ),
];

/// The file `init` writes in DIR.
pub const PIPELINE_FILE: &str = "pipeline.yaml";

/// The JSON Schema beside it, named by the starter's `yaml-language-server` line.
pub const SCHEMA_FILE: &str = "labpipe.schema.json";

/// Options of `labpipe init`.
#[derive(clap::Args)]
pub struct InitArgs {
    /// Where to write pipeline.yaml and labpipe.schema.json (created when missing).
    #[arg(default_value = ".")]
    dir: PathBuf,
    /// The dataset the starter reads.
    #[arg(long, value_enum, default_value = "synthetic")]
    dataset: StarterDataset,
    /// The network: a built-in (simple_cnn, resnet18) or LeNet-5 written out as `layers`.
    #[arg(long, value_enum, default_value = "simple_cnn")]
    model: StarterModel,
    /// Also copy the report templates to DIR/report_templates/ (`labpipe report` uses them from there).
    #[arg(long)]
    templates: bool,
}

/// Datasets a starter can be written for.
#[derive(Clone, Copy, clap::ValueEnum)]
#[value(rename_all = "snake_case")]
enum StarterDataset {
    Synthetic,
    Cifar10,
    Cifar100,
    Mnist,
    FashionMnist,
    ImageFolder,
}

impl StarterDataset {
    fn kind(self) -> DatasetKind {
        match self {
            StarterDataset::Synthetic => DatasetKind::Synthetic,
            StarterDataset::Cifar10 => DatasetKind::Cifar10,
            StarterDataset::Cifar100 => DatasetKind::Cifar100,
            StarterDataset::Mnist => DatasetKind::Mnist,
            StarterDataset::FashionMnist => DatasetKind::FashionMnist,
            StarterDataset::ImageFolder => DatasetKind::ImageFolder,
        }
    }
}

/// Networks a starter can use.
#[derive(Clone, Copy, clap::ValueEnum)]
#[value(rename_all = "snake_case")]
enum StarterModel {
    SimpleCnn,
    Resnet18,
    Lenet5,
}

/// `labpipe init`.
pub fn init(args: &InitArgs) -> Result<i32, Exit> {
    let pipeline = args.dir.join(PIPELINE_FILE);
    let mut writes = vec![(pipeline.clone(), starter(args.dataset, args.model))];
    if args.templates {
        let folder = args.dir.join("report_templates");
        writes.extend(
            REPORT_TEMPLATES
                .iter()
                .map(|(name, text)| (folder.join(name), text.to_string())),
        );
    }
    // Check everything first, so that a refusal leaves nothing half-written.
    if let Some((existing, _)) = writes.iter().find(|(path, _)| path.exists()) {
        return Err(Exit::BadInput(format!(
            "error: `{}` already exists; labpipe init does not overwrite files\n  = help: move it away, or \
             give another directory: `labpipe init DIR`",
            existing.display()
        )));
    }
    // The schema that the starter's first line names, so that an editor checks it at once; one already there
    // (from an earlier `init` or `labpipe schema`) is kept.
    let schema = args.dir.join(SCHEMA_FILE);
    if schema.exists() {
        eprintln!("kept {}", schema.display());
    } else {
        writes.push((schema, labpipe::spec::schema::pipeline_schema_text()));
    }
    for (path, text) in &writes {
        write_new(path, text)?;
        eprintln!("wrote {}", path.display());
    }
    eprintln!(
        "next: `labpipe run {}`, then `labpipe report`",
        shown(&pipeline).display()
    );
    Ok(0)
}

/// The path as the user would type it from here (without a leading `./`).
fn shown(path: &Path) -> &Path {
    path.strip_prefix(".").unwrap_or(path)
}

fn write_new(path: &Path, text: &str) -> Result<(), Exit> {
    if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
        std::fs::create_dir_all(parent).with_context(|| format!("creating `{}`", parent.display()))?;
    }
    // create_new: a file that appeared since the check is still not overwritten.
    use std::io::Write;
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(path)
        .with_context(|| format!("creating `{}`", path.display()))?;
    file.write_all(text.as_bytes())
        .with_context(|| format!("writing `{}`", path.display()))?;
    Ok(())
}

/// The starter pipeline's text.
fn starter(dataset: StarterDataset, model: StarterModel) -> String {
    let kind = dataset.kind();
    let side = match kind {
        DatasetKind::Mnist | DatasetKind::FashionMnist => 28,
        _ => 32,
    };
    let classes = match kind {
        DatasetKind::Cifar100 => 100,
        _ => 10,
    };
    let mut text = String::from(
        "# yaml-language-server: $schema=labpipe.schema.json\n\
         # A labpipe pipeline. With labpipe.schema.json beside it (after an upgrade: `labpipe schema >\n\
         # labpipe.schema.json`), VS Code's YAML extension completes and checks this file; every field is listed\n\
         # in docs/pipeline-reference.md (`labpipe schema --markdown`).\n\
         #   labpipe plan pipeline.yaml     what would run, and why\n\
         #   labpipe run pipeline.yaml      train and evaluate (cached: a second run does nothing)\n\
         #   labpipe report                 the lab report of the results\n\
         name: starter\n\
         description: A starter pipeline written by labpipe init.\n\n",
    );
    text.push_str(&data_section(kind));
    text.push_str(&model_section(model, side, classes));
    // The synthetic starter is sized to finish in seconds on a CPU; real datasets get a real schedule.
    let epochs = if kind == DatasetKind::Synthetic { 2 } else { 20 };
    text.push_str(&train_section(model, epochs));
    text.push_str(
        "\n# Variants of the above, each a run of its own (the base pipeline is `baseline`).\n\
         # experiments:\n\
         #   baseline: {}\n\
         #   no_augmentation: {data.augment: []}\n\
         #   lr:\n\
         #     matrix:\n\
         #       train.optimizer.lr: [0.01, 0.001, 0.0001]\n",
    );
    text
}

fn data_section(kind: DatasetKind) -> String {
    // (what it is, the lines that choose it, validation images, whether flips and shifted crops suit it)
    let (about, choice, val_split, augment) = match kind {
        DatasetKind::Synthetic => (
            "labpipe's embedded synthetic images: no download. Small, so that this runs in seconds on a CPU:\n  # raise train_size and epochs for results worth reading.",
            "dataset: synthetic\n  train_size: 1000\n  test_size: 200",
            "100",
            true,
        ),
        DatasetKind::Cifar10 => (
            "CIFAR-10, downloaded into `root` when missing.",
            "dataset: cifar10\n  root: data/cifar10",
            "5000",
            true,
        ),
        DatasetKind::Cifar100 => (
            "CIFAR-100, downloaded into `root` when missing; `labels: coarse` for the 20 superclasses.",
            "dataset: cifar100\n  root: data/cifar100\n  labels: fine",
            "5000",
            true,
        ),
        DatasetKind::Mnist => (
            "MNIST digits (1×28×28), downloaded into `root` when missing.",
            "dataset: mnist\n  root: data/mnist",
            "5000",
            false,
        ),
        DatasetKind::FashionMnist => (
            "Fashion-MNIST (1×28×28), downloaded into `root` when missing.",
            "dataset: fashion_mnist\n  root: data/fashion_mnist",
            "5000",
            false,
        ),
        DatasetKind::ImageFolder => (
            "Your own images: root/train/<class>/<image> and root/test/<class>/<image> (or `test_split`).\n  \
             # Every image is resized to `image_size` (or [height, width]); channels 1 (grey) or 3 (RGB).",
            "dataset: image_folder\n  root: data/my_images\n  image_size: 32\n  channels: 3",
            "0.1",
            false,
        ),
    };
    let mut text = format!(
        "data:\n  # {about}\n  {choice}\n  \
         # Validation images taken from the training set: a count, or a fraction below 1.\n  \
         val_split: {val_split}\n  \
         # none, first_image, train_mean_std or {{mean: [...], std: [...]}} with one value per channel.\n  \
         normalize: train_mean_std\n"
    );
    if augment {
        text.push_str(
            "  augment:\n    - random_crop: {size: 32, padding: 4}\n    - random_horizontal_flip: {p: 0.5}\n",
        );
    }
    text
}

fn model_section(model: StarterModel, side: usize, classes: usize) -> String {
    match model {
        StarterModel::SimpleCnn => format!(
            "model:\n\
             \x20 # The seed's SimpleCNN; resnet18 is the other built-in, or write `layers:` of your own.\n\
             \x20 arch: simple_cnn\n\
             \x20 num_classes: {classes}\n\
             \x20 dropout: 0.5\n"
        ),
        StarterModel::Resnet18 => format!(
            "model:\n\
             \x20 # torchvision's ResNet-18; `stem: cifar` (3×3 conv, no max-pool) suits small images better.\n\
             \x20 arch: resnet18\n\
             \x20 stem: imagenet\n\
             \x20 num_classes: {classes}\n"
        ),
        StarterModel::Lenet5 => {
            // LeNet-5 pads 28×28 digits to 32×32 in its first convolution, so the 5×5 feature maps match.
            let padding = if side == 28 { 2 } else { 0 };
            format!(
                "model:\n\
                 \x20 # LeNet-5 written out layer by layer; input channels and features are inferred.\n\
                 \x20 class_name: LeNet5\n\
                 \x20 layers:\n\
                 \x20   - conv2d: {{out_channels: 6, kernel: 5, padding: {padding}}}\n\
                 \x20   - relu\n\
                 \x20   - max_pool2d: {{kernel: 2}}\n\
                 \x20   - conv2d: {{out_channels: 16, kernel: 5}}\n\
                 \x20   - relu\n\
                 \x20   - max_pool2d: {{kernel: 2}}\n\
                 \x20   - flatten\n\
                 \x20   - linear: {{out_features: 120}}\n\
                 \x20   - relu\n\
                 \x20   - linear: {{out_features: 84}}\n\
                 \x20   - relu\n\
                 \x20   - linear: {{out_features: {classes}}}\n"
            )
        }
    }
}

fn train_section(model: StarterModel, epochs: usize) -> String {
    // ResNet-18 follows the seed's Task 2 recipe (Adam with step decay); the small networks keep the rate.
    let scheduler = match model {
        StarterModel::Resnet18 => "{name: step, step_size: 10, gamma: 0.5}",
        StarterModel::SimpleCnn | StarterModel::Lenet5 => "{name: constant}",
    };
    format!(
        "train:\n  \
         epochs: {epochs}\n  \
         batch_size: 64\n  \
         # adam, adamw or sgd (with momentum, nesterov); unset options take torch.optim's defaults.\n  \
         optimizer: {{name: adam, lr: 0.001}}\n  \
         # constant, step, multistep, exponential, cosine or onecycle.\n  \
         scheduler: {scheduler}\n  \
         # best_val_accuracy, best_val_loss or last.\n  \
         select: best_val_accuracy\n  \
         # Stop when validation accuracy has not improved for `patience` epochs.\n  \
         # early_stopping: {{metric: val_accuracy, patience: 3}}\n  \
         seed: 0\n"
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::ValueEnum;

    #[test]
    fn every_starter_is_a_valid_pipeline() {
        for dataset in StarterDataset::value_variants() {
            for model in StarterModel::value_variants() {
                let text = starter(*dataset, *model);
                let loaded = labpipe::spec::load_str(Path::new("pipeline.yaml"), &text, &[]);
                assert!(
                    loaded.is_ok(),
                    "{text}\n{}",
                    loaded.err().map(|e| e.to_string()).unwrap_or_default()
                );
            }
        }
    }

    #[test]
    fn every_report_template_is_embedded() {
        let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("report_templates");
        let mut on_disk: Vec<String> = std::fs::read_dir(&root)
            .expect("report_templates/")
            .filter_map(|e| e.ok()?.file_name().into_string().ok())
            .collect();
        on_disk.sort();
        let embedded: Vec<&str> = REPORT_TEMPLATES.iter().map(|(name, _)| *name).collect();
        assert_eq!(on_disk, embedded);
    }
}
