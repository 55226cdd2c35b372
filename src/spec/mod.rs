//! Pipeline files: parsing with locations, validation, experiment and matrix expansion, `-S` overrides, and the
//! resolved, content-identified `RunSpec`s the executor works from (it never sees the raw file).

mod data_checks;
pub mod diagnostic;
pub mod file;
pub mod layers;
pub mod locate;
pub mod names;
pub mod overrides;
pub mod schema;
mod sweep;
mod syntax;

use crate::cache::canonical_json;
use crate::data::config::{DataSpec, Normalize};
use crate::data::shape::InputShape;
use crate::data::source::{class_count, input_shape};
use crate::model::builtins;
use crate::model::decl::ModelDecl;
use crate::train::config::TrainSpec;
use diagnostic::{Diagnostic, closest};
use file::{Arch, PipelineFile};
use locate::{LocationIndex, Pos};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use std::fmt;
use std::path::{Path, PathBuf};

/// Why a pipeline could not be loaded: every problem found, each with its place in the file.
#[derive(Debug)]
pub enum SpecError {
    /// The file could not be read.
    Io {
        /// The path given.
        path: PathBuf,
        /// The OS error.
        source: std::io::Error,
    },
    /// The file was read but is not a valid pipeline.
    Invalid(Vec<Diagnostic>),
}

impl fmt::Display for SpecError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SpecError::Io { path, source } => {
                write!(
                    f,
                    "error: cannot read pipeline file `{}`: {source}",
                    path.display()
                )?;
                if source.kind() == std::io::ErrorKind::NotFound {
                    write!(
                        f,
                        "\n  = help: give the path of a pipeline YAML file, e.g. `labpipe run pipelines/quickstart.yaml`"
                    )?;
                }
                Ok(())
            }
            SpecError::Invalid(ds) => {
                for (i, d) in ds.iter().enumerate() {
                    if i > 0 {
                        writeln!(f)?;
                    }
                    write!(f, "{d}")?;
                }
                if ds.len() > 1 {
                    write!(f, "\n{} errors in the pipeline file", ds.len())?;
                }
                Ok(())
            }
        }
    }
}

impl std::error::Error for SpecError {}

/// One fully resolved run: base pipeline + its experiment's overrides + command-line overrides.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RunSpec {
    /// Pipeline name.
    pub pipeline: String,
    /// Readable run name (`baseline`, `no_augmentation`, `lr[lr=0.01,scheduler=step]`).
    pub name: String,
    /// Other experiment names that resolved to the same content (trained once).
    pub aliases: Vec<String>,
    /// Content ID: a hash of the resolved data, model and train sections.
    pub id: String,
    /// The overrides that make this run differ from the base, as (dotted path, value).
    pub overrides: Vec<(String, Value)>,
    /// The experiment this run came from.
    pub experiment: Option<String>,
    /// Every experiment entry that resolved to this run (several when variants coincide), with matrix axes.
    pub memberships: Vec<Membership>,
    /// Resolved data section.
    pub data: DataSpec,
    /// Resolved model section.
    pub model: file::ModelSpec,
    /// The model declaration built from it.
    pub decl: ModelDecl,
    /// Resolved train section.
    pub train: TrainSpec,
    /// The command-line overrides (`-S path=value`) it was loaded with, as written; its name shows them.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub set: Vec<String>,
}

impl RunSpec {
    /// The run's identity as training records it in checkpoints.
    pub fn label(&self) -> crate::train::trainer::RunLabel {
        crate::train::trainer::RunLabel {
            pipeline: self.pipeline.clone(),
            name: self.name.clone(),
            id: self.id.clone(),
        }
    }
}

/// One experiment entry that a run stands for.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Membership {
    /// The experiment's name (`lr`, `no_augmentation`; `baseline` when there are no experiments).
    pub experiment: String,
    /// The variant's run name.
    pub name: String,
    /// For matrix experiments, each axis path and this variant's value on it.
    pub axes: Vec<(String, Value)>,
    /// Position of the variant in the expansion (declaration order), so tables keep the file's order.
    pub order: usize,
}

/// A loaded pipeline: its file, its runs in declaration order.
#[derive(Debug, Clone)]
pub struct Pipeline {
    /// The file it came from.
    pub path: PathBuf,
    /// Its name.
    pub name: String,
    /// Where `name:` is written.
    pub name_pos: Option<Pos>,
    /// Its description.
    pub description: Option<String>,
    /// Report settings.
    pub report: Option<file::ReportSpec>,
    /// The `slurm:` section (sbatch options for `run --executor slurm`), if any.
    pub slurm: Option<crate::slurm::SlurmOptions>,
    /// The runs, deduplicated by content.
    pub runs: Vec<RunSpec>,
    /// Experiment structure: (experiment name, axis paths) for matrix experiments, used by comparison tables.
    pub matrices: Vec<(String, Vec<String>)>,
}

/// What the command line adds to the pipeline files: `-S` overrides for every run and `--sweep` axes.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct CommandLine {
    /// `-S PATH=VALUE` items, applied to every run (a run with them is a run of its own).
    pub set: Vec<String>,
    /// `--sweep PATH=V1,V2` items: axes added to every experiment's matrix (a file without experiments is
    /// one experiment, `baseline`), so the runs are named and cached as that `matrix:` written in the file.
    pub sweep: Vec<String>,
}

/// Read, validate and expand a pipeline file, applying `overrides` (`key=value`) to every run.
pub fn load(path: &Path, overrides: &[String]) -> Result<Pipeline, SpecError> {
    load_with(
        path,
        &CommandLine {
            set: overrides.to_vec(),
            sweep: Vec::new(),
        },
    )
}

/// Like [`load`], with `--sweep` axes as well.
pub fn load_with(path: &Path, cli: &CommandLine) -> Result<Pipeline, SpecError> {
    let bytes = std::fs::read(path).map_err(|source| SpecError::Io {
        path: path.to_path_buf(),
        source,
    })?;
    let text = String::from_utf8(bytes).map_err(|e| SpecError::Invalid(vec![syntax::not_utf8(path, &e)]))?;
    load_str_with(path, &text, cli)
}

/// Load every file of one command (a file given twice is loaded once); two pipelines whose runs would share
/// `runs/<name>/` are an error naming both.
pub fn load_all(paths: &[PathBuf], overrides: &[String]) -> Result<Vec<Pipeline>, SpecError> {
    load_all_with(
        paths,
        &CommandLine {
            set: overrides.to_vec(),
            sweep: Vec::new(),
        },
    )
}

/// Like [`load_all`], with `--sweep` axes as well.
pub fn load_all_with(paths: &[PathBuf], cli: &CommandLine) -> Result<Vec<Pipeline>, SpecError> {
    let mut seen: Vec<PathBuf> = Vec::new();
    let mut out = Vec::new();
    for path in paths {
        let same = std::fs::canonicalize(path).unwrap_or_else(|_| path.clone());
        if seen.contains(&same) {
            continue;
        }
        seen.push(same);
        out.push(load_with(path, cli)?);
    }
    names::check_distinct_pipelines(&out)?;
    Ok(out)
}

/// Like `load`, from text already read.
pub fn load_str(path: &Path, text: &str, cli_overrides: &[String]) -> Result<Pipeline, SpecError> {
    load_str_with(
        path,
        text,
        &CommandLine {
            set: cli_overrides.to_vec(),
            sweep: Vec::new(),
        },
    )
}

/// Like [`load_str`], with `--sweep` axes as well.
pub fn load_str_with(path: &Path, text: &str, command_line: &CommandLine) -> Result<Pipeline, SpecError> {
    let cli_overrides = &command_line.set;
    let index = LocationIndex::build(text);
    let file: PipelineFile = serde_saphyr::from_str(text).map_err(|e| {
        SpecError::Invalid(vec![
            syntax::explain(path, text).unwrap_or_else(|| saphyr_diagnostic(path, text, &e)),
        ])
    })?;
    let mut diags = Vec::new();
    let name_pos = index.find("name");
    if let Err(why) = names::check(&file.name) {
        diags.push(
            Diagnostic::at(
                path,
                text,
                name_pos,
                format!("the pipeline name {}", quoted(&file.name, &why)),
            )
            .label(format!("a name may contain {}", names::ALLOWED))
            .help("the name is the folder of the pipeline's runs under `out/runs/`"),
        );
    }
    let ctx = Ctx {
        path,
        text,
        index: &index,
    };

    let cli = match overrides::parse_all(cli_overrides) {
        Ok(v) => v,
        Err(e) => {
            return Err(SpecError::Invalid(vec![
                Diagnostic::at(path, text, None, e)
                    .help("write overrides as `-S train.epochs=5` or `-S 'data.augment=[]'`"),
            ]));
        }
    };

    let mut base = serde_json::to_value(&file).unwrap_or(Value::Null);
    if let Value::Object(m) = &mut base {
        m.remove("experiments");
        m.remove("report");
        m.remove("name");
        m.remove("description");
    }
    let sweeps = sweep::parse(&ctx, &base, &cli, &command_line.sweep)?;
    // Sweeping a file without experiments sweeps its one run, as `experiments: {baseline: {matrix: …}}`.
    let experiments = sweep::experiments(file.experiments.as_ref(), &sweeps);
    let variants = expand_experiments(&ctx, experiments.as_ref(), &sweeps, &mut diags);
    // A run with command-line overrides is a run of its own, recorded beside the plain one.
    let suffix = if cli.is_empty() {
        String::new()
    } else {
        let items: Vec<String> = cli
            .iter()
            .map(|(k, v)| format!("{k}={}", value_label(v)))
            .collect();
        format!("[{}]", items.join(","))
    };

    let mut runs: Vec<RunSpec> = Vec::new();
    // Where each run's experiment is written, for name collisions.
    let mut places: Vec<(String, Option<Pos>)> = Vec::new();
    for (order, variant) in variants.into_iter().enumerate() {
        let mut value = base.clone();
        let mut ok = true;
        for (key, v) in variant.overrides.iter().chain(cli.iter()) {
            if let Err(msg) = overrides::apply(&mut value, key, v.clone()) {
                let pos = variant.pos.or_else(|| index.find_key("experiments"));
                let from_cli = cli.iter().any(|(k, _)| k == key);
                let mut d = Diagnostic::at(path, text, if from_cli { None } else { pos }, msg.message);
                if from_cli {
                    d = d.label(format!("in command-line override `-S {key}=...`"));
                }
                if let Some(h) = msg.suggestion {
                    d = d.help(format!("did you mean `{h}`?"));
                }
                diags.push(d);
                ok = false;
            }
        }
        if !ok {
            continue;
        }
        let resolved: Resolved = match serde_json::from_value(value) {
            Ok(r) => r,
            Err(e) => {
                let msg = e.to_string();
                let mut d = Diagnostic::at(path, text, variant.pos, format!("run `{}`: {msg}", variant.name))
                    .label("after applying the overrides");
                if let (Some(found), Some(expected)) = (
                    between(&msg, "`", "`"),
                    msg.split_once("expected one of ").map(|x| x.1.to_string()),
                ) {
                    let choices: Vec<&str> =
                        expected.split(',').map(|c| c.trim().trim_matches('`')).collect();
                    if let Some(best) = closest(&found, choices.iter().copied()) {
                        // Name the whole path the user wrote, e.g. `train.epochs` for `-S train.epoch=5`.
                        let written = variant
                            .overrides
                            .iter()
                            .chain(cli.iter())
                            .map(|(k, _)| k.as_str());
                        let full = written
                            .filter_map(|k| k.strip_suffix(found.as_str()).and_then(|p| p.strip_suffix('.')))
                            .map(|parent| format!("{parent}.{best}"))
                            .next()
                            .unwrap_or_else(|| best.to_string());
                        d = d.help(format!("did you mean `{full}`?"));
                    }
                }
                diags.push(d);
                continue;
            }
        };
        let before = diags.len();
        let at = |p: &str| {
            if variant.overrides.iter().any(|(k, _)| p.starts_with(k.as_str())) {
                variant.pos
            } else {
                index.find(p)
            }
        };
        validate(&ctx, &resolved, &at, &variant.name, &mut diags);
        let decl = match run_decl(&ctx, &resolved, &at) {
            Ok(d) => Some(d),
            Err(d) => {
                diags.push(d);
                None
            }
        };
        if diags.len() > before {
            continue;
        }
        let Some(decl) = decl else { continue };
        let run_name = format!("{}{suffix}", variant.name);
        if let Err(why) = names::check_generated(&run_name) {
            diags.push(
                ctx.diag(variant.pos, format!("the run name {}", quoted(&run_name, &why)))
                    .label("a run's name is made of its experiment's name and its matrix values"),
            );
            continue;
        }
        let id = content_id(&resolved);
        let membership = Membership {
            experiment: variant.experiment.clone().unwrap_or_else(|| variant.name.clone()),
            name: variant.name.clone(),
            axes: variant.axes.clone(),
            order,
        };
        if let Some(existing) = runs.iter_mut().find(|r| r.id == id) {
            existing.aliases.push(run_name);
            existing.memberships.push(membership);
            continue;
        }
        places.push((
            variant
                .experiment
                .as_ref()
                .map(|e| format!("experiment `{e}`"))
                .unwrap_or_else(|| "the pipeline".into()),
            variant.pos,
        ));
        runs.push(RunSpec {
            pipeline: file.name.clone(),
            name: run_name,
            aliases: Vec::new(),
            id,
            overrides: variant.overrides,
            experiment: variant.experiment,
            memberships: vec![membership],
            data: resolved.data,
            model: resolved.model,
            decl,
            train: resolved.train,
            set: cli_overrides.to_vec(),
        });
    }
    let named: Vec<names::Named> = runs
        .iter()
        .zip(&places)
        .map(|(r, (what, pos))| names::Named {
            name: &r.name,
            what: what.clone(),
            pos: *pos,
        })
        .collect();
    for (i, j) in names::collisions(&named) {
        diags.push(names::run_collision(path, text, &file.name, &named[i], &named[j]));
    }
    if let Some(report) = &file.report {
        check_report(&ctx, report, &runs, experiments.as_ref(), &mut diags);
    }
    // A diagnostic produced by every run (a base-file error) is shown once.
    diags.dedup_by(|a, b| {
        a.message.split_once(": ").map(|x| x.1) == b.message.split_once(": ").map(|x| x.1) && a.pos == b.pos
    });
    if !diags.is_empty() {
        return Err(SpecError::Invalid(diags));
    }
    let matrices = matrix_axes(experiments.as_ref(), &sweeps);
    Ok(Pipeline {
        path: path.to_path_buf(),
        name: file.name,
        name_pos,
        description: file.description,
        report: file.report,
        slurm: file.slurm,
        runs,
        matrices,
    })
}

/// The three resolved sections.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct Resolved {
    data: DataSpec,
    model: file::ModelSpec,
    train: TrainSpec,
}

struct Ctx<'a> {
    path: &'a Path,
    text: &'a str,
    index: &'a LocationIndex,
}

impl Ctx<'_> {
    fn diag(&self, pos: Option<Pos>, msg: impl Into<String>) -> Diagnostic {
        Diagnostic::at(self.path, self.text, pos, msg)
    }
}

/// A hash of what determines a run's results; names, worker counts and comments do not count.
fn content_id(r: &Resolved) -> String {
    let mut v = serde_json::to_value(r).unwrap_or(Value::Null);
    if let Some(d) = v.get_mut("data").and_then(Value::as_object_mut) {
        d.remove("workers");
    }
    if let Some(t) = v.get_mut("train").and_then(Value::as_object_mut) {
        t.remove("eval_batch_size");
    }
    let canon = canonical_json(&v);
    blake3::hash(canon.as_bytes()).to_hex()[..12].to_string()
}

struct Variant {
    name: String,
    experiment: Option<String>,
    overrides: Vec<(String, Value)>,
    axes: Vec<(String, Value)>,
    pos: Option<Pos>,
}

/// A value as a short label in run names and report tables: a string as is, an object by its `name`, an
/// empty list as `none`.
pub fn value_label(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        Value::Object(m) => match m.get("name") {
            Some(Value::String(s)) => s.clone(),
            _ => canonical_json(v),
        },
        Value::Array(a) if a.is_empty() => "none".into(),
        other => other.to_string(),
    }
}

fn leaf(path: &str) -> &str {
    path.rsplit('.').next().unwrap_or(path)
}

fn expand_experiments(
    ctx: &Ctx,
    experiments: Option<&serde_json::Map<String, Value>>,
    sweeps: &[overrides::SweepAxis],
    diags: &mut Vec<Diagnostic>,
) -> Vec<Variant> {
    let Some(exps) = experiments.filter(|e| !e.is_empty()) else {
        return vec![Variant {
            name: "baseline".into(),
            experiment: None,
            overrides: Vec::new(),
            axes: Vec::new(),
            pos: None,
        }];
    };
    let mut out = Vec::new();
    for (name, body) in exps {
        let pos = ctx.index.find_key(&format!("experiments.{name}"));
        if let Err(why) = names::check(name) {
            diags.push(
                ctx.diag(pos, format!("the experiment name {}", quoted(name, &why)))
                    .label(format!("a name may contain {}", names::ALLOWED))
                    .help("the experiment's name is its runs' name and their record's file name"),
            );
            continue;
        }
        let Some(obj) = body
            .as_object()
            .cloned()
            .or_else(|| body.is_null().then(serde_json::Map::new))
        else {
            diags.push(
                ctx.diag(pos, format!("experiment `{name}` must be a map of overrides"))
                    .label("expected e.g. `{data.normalize: none}` or `{matrix: {train.optimizer.lr: [0.01, 0.001]}}`"),
            );
            continue;
        };
        let mut fixed = Vec::new();
        let mut matrix: Option<Vec<(String, Vec<Value>)>> = None;
        for (k, v) in obj {
            if k == "matrix" {
                let Some(axes) = v.as_object() else {
                    diags.push(ctx.diag(
                        pos,
                        format!("`experiments.{name}.matrix` must map dotted paths to lists of values"),
                    ));
                    continue;
                };
                let mut list = Vec::new();
                for (axis, values) in axes {
                    match values.as_array() {
                        Some(vals) if !vals.is_empty() => list.push((axis.clone(), vals.clone())),
                        _ => diags.push(
                            ctx.diag(
                                ctx.index
                                    .find(&format!("experiments.{name}.matrix.{axis}"))
                                    .or(pos),
                                format!("matrix axis `{axis}` needs a non-empty list of values"),
                            )
                            .label("e.g. `train.optimizer.lr: [0.01, 0.001]`"),
                        ),
                    }
                }
                matrix = Some(list);
            } else {
                fixed.push((k, v));
            }
        }
        if !sweeps.is_empty() {
            let before = diags.len();
            sweep::check_conflicts(
                ctx,
                name,
                pos,
                matrix.as_deref().unwrap_or(&[]),
                &fixed,
                sweeps,
                diags,
            );
            if diags.len() > before {
                continue;
            }
            matrix.get_or_insert_with(Vec::new).extend(sweeps.iter().cloned());
        }
        match matrix {
            None => out.push(Variant {
                name: name.clone(),
                experiment: Some(name.clone()),
                overrides: fixed,
                axes: Vec::new(),
                pos,
            }),
            Some(axes) => {
                let mut combos: Vec<Vec<(String, Value)>> = vec![Vec::new()];
                for (axis, values) in &axes {
                    combos = combos
                        .into_iter()
                        .flat_map(|c| {
                            values.iter().map(move |v| {
                                let mut c = c.clone();
                                c.push((axis.clone(), v.clone()));
                                c
                            })
                        })
                        .collect();
                }
                for combo in combos {
                    let label = combo
                        .iter()
                        .map(|(k, v)| format!("{}={}", leaf(k), value_label(v)))
                        .collect::<Vec<_>>()
                        .join(",");
                    let mut overrides = fixed.clone();
                    overrides.extend(combo.iter().cloned());
                    out.push(Variant {
                        name: format!("{name}[{label}]"),
                        experiment: Some(name.clone()),
                        overrides,
                        axes: combo,
                        pos,
                    });
                }
            }
        }
    }
    out
}

fn matrix_axes(
    experiments: Option<&serde_json::Map<String, Value>>,
    sweeps: &[overrides::SweepAxis],
) -> Vec<(String, Vec<String>)> {
    experiments
        .into_iter()
        .flatten()
        .filter_map(|(name, body)| {
            let written = body.get("matrix").and_then(Value::as_object);
            if written.is_none() && sweeps.is_empty() {
                return None;
            }
            let axes = written.into_iter().flat_map(|m| m.keys().cloned());
            Some((
                name.clone(),
                axes.chain(sweeps.iter().map(|(k, _)| k.clone())).collect(),
            ))
        })
        .collect()
}

fn validate(
    ctx: &Ctx,
    r: &Resolved,
    at: &dyn Fn(&str) -> Option<Pos>,
    run: &str,
    diags: &mut Vec<Diagnostic>,
) {
    let mut bad = |path: &str, msg: String, label: &str| {
        diags.push(
            ctx.diag(at(path), format!("run `{run}`: {msg}"))
                .label(label.to_string()),
        );
    };
    let t = &r.train;
    if t.epochs == 0 {
        bad(
            "train.epochs",
            "`train.epochs` must be at least 1".into(),
            "expected a whole number ≥ 1",
        );
    }
    if t.batch_size == 0 {
        bad(
            "train.batch_size",
            "`train.batch_size` must be at least 1".into(),
            "expected a whole number ≥ 1",
        );
    }
    if t.eval_batch_size == Some(0) {
        bad(
            "train.eval_batch_size",
            "`train.eval_batch_size` must be at least 1".into(),
            "expected a whole number ≥ 1",
        );
    }
    if !(0.0..1.0).contains(&t.label_smoothing) {
        bad(
            "train.label_smoothing",
            format!(
                "`train.label_smoothing` must be in [0, 1), got {}",
                t.label_smoothing
            ),
            "expected e.g. 0.1",
        );
    }
    if let Err(m) = t.optimizer.validate() {
        bad("train.optimizer", m, "in `train.optimizer`");
    }
    if let Err(m) = t.scheduler.validate() {
        bad("train.scheduler", m, "in `train.scheduler`");
    }
    if let Err(m) = t.divergence.validate() {
        bad("train.divergence", m, "in `train.divergence`");
    }
    if let Some(es) = &t.early_stopping
        && es.patience == 0
    {
        bad(
            "train.early_stopping.patience",
            "`early_stopping.patience` must be at least 1".into(),
            "epochs without improvement before stopping",
        );
    }
    let d = &r.data;
    // A shape that cannot be known here is reported where the model's input is built from it.
    if let Ok(shape) = input_shape(d) {
        for (i, a) in d.augment.iter().enumerate() {
            if let Err(m) = a.validate(shape) {
                bad(&format!("data.augment.{i}"), m, "in this augmentation");
            }
        }
        if let Normalize::Fixed { mean, std } = &d.normalize {
            let c = shape.channels;
            if mean.len() != c || std.len() != c {
                bad(
                    "data.normalize",
                    format!(
                        "`data.normalize` gives {} mean and {} std values, but the images ({shape}) have {c} \
                         channel{}: give {c} of each",
                        mean.len(),
                        std.len(),
                        if c == 1 { "" } else { "s" }
                    ),
                    "expected one mean and one std per channel",
                );
            }
        }
    }
    if let Some(m) = &d.md5
        && (m.len() != 32 || !m.chars().all(|c| c.is_ascii_hexdigit()))
    {
        bad(
            "data.md5",
            format!("`data.md5` must be 32 hexadecimal digits, got `{m}`"),
            "an MD5 checksum",
        );
    }
    for (path, msg, label) in data_checks::check(d) {
        bad(path, msg, label);
    }
    if d.train_size == Some(0) || d.test_size == Some(0) {
        bad(
            "data.train_size",
            "`data.train_size` and `data.test_size` must be at least 1".into(),
            "expected a whole number ≥ 1",
        );
    }
    if let Some(train_len) = d.train_size.or(d.dataset.default_train_size()) {
        let val = d.val_split.count(train_len);
        if val == 0 || val >= train_len {
            bad(
                "data.val_split",
                format!("`data.val_split` gives {val} validation images out of {train_len} training images"),
                "expected at least 1 and fewer than the training images",
            );
        }
    }
    if d.workers == Some(0) {
        bad(
            "data.workers",
            "`data.workers` must be at least 1".into(),
            "expected a whole number ≥ 1",
        );
    }
}

/// The run's model, built for the dataset's input shape and checked against its class count.
#[allow(clippy::result_large_err)]
fn run_decl(ctx: &Ctx, r: &Resolved, at: &dyn Fn(&str) -> Option<Pos>) -> Result<ModelDecl, Diagnostic> {
    let shape = model_input(ctx, &r.data, at)?;
    let decl = model_decl(ctx, &r.model, shape, at)?;
    check_class_count(ctx, r, decl, at)
}

/// The shape of the model's input, as the dataset decides it.
// Diagnostics are built once per bad file, never in a loop: their size does not matter.
#[allow(clippy::result_large_err)]
fn model_input(
    ctx: &Ctx,
    data: &DataSpec,
    at: &dyn Fn(&str) -> Option<Pos>,
) -> Result<InputShape, Diagnostic> {
    input_shape(data).map_err(|e| {
        ctx.diag(
            at("data").or_else(|| at("data.dataset")),
            format!("the model's input shape cannot be known from `data`: {e}"),
        )
        .label("the images' channels, height and width come from here")
    })
}

/// The model's class count (its output size) must be the dataset's, when the dataset's is known before
/// loading; otherwise (an image folder) the trainer checks it against the loaded class names.
#[allow(clippy::result_large_err)]
fn check_class_count(
    ctx: &Ctx,
    r: &Resolved,
    decl: ModelDecl,
    at: &dyn Fn(&str) -> Option<Pos>,
) -> Result<ModelDecl, Diagnostic> {
    let (Ok(classes), Ok(out)) = (class_count(&r.data), decl.output_shape()) else {
        return Ok(decl);
    };
    let model = out.iter().product::<usize>();
    if model == classes {
        return Ok(decl);
    }
    let (pos, what, fix) = match &r.model.layers {
        Some(layers) => {
            let last_linear = layers
                .iter()
                .rposition(|l| matches!(l, layers::LayerSpec::Linear(_)))
                .map(|i| format!("model.layers.{i}.linear.out_features"));
            (
                last_linear
                    .and_then(|p| at(&p))
                    .map(|pos| value_in_flow(ctx.text, pos, "out_features"))
                    .or_else(|| at("model.layers")),
                "the last linear's `out_features`",
                format!("set the last linear's `out_features: {classes}`"),
            )
        }
        None => (
            at("model.num_classes").or_else(|| at("model.arch")),
            if r.model.num_classes.is_some() {
                "`model.num_classes`"
            } else {
                "`model.num_classes`, 10 when not written"
            },
            format!("set `model.num_classes: {classes}`"),
        ),
    };
    let dataset = serde_json::to_value(r.data.dataset)
        .ok()
        .and_then(|v| v.as_str().map(str::to_string))
        .unwrap_or_default();
    Err(ctx
        .diag(
            pos,
            format!("the model predicts {model} classes ({what}) but the dataset `{dataset}` has {classes}"),
        )
        .label(format!("expected {classes}"))
        .help(fix))
}

/// The position of `key`'s value when it is written in a flow mapping (`{key: value}`) on `pos`'s line, which
/// the location index does not enter; `pos` itself otherwise.
fn value_in_flow(text: &str, pos: Pos, key: &str) -> Pos {
    let Some(line) = text.lines().nth(pos.line.saturating_sub(1)) else {
        return pos;
    };
    let pattern = format!("{key}:");
    match line.find(&pattern) {
        Some(i) => {
            let after = &line[i + pattern.len()..];
            let value = i + pattern.len() + (after.len() - after.trim_start().len());
            Pos {
                line: pos.line,
                column: line[..value].chars().count() + 1,
            }
        }
        None => pos,
    }
}

#[allow(clippy::result_large_err)]
fn model_decl(
    ctx: &Ctx,
    m: &file::ModelSpec,
    shape: InputShape,
    at: &dyn Fn(&str) -> Option<Pos>,
) -> Result<ModelDecl, Diagnostic> {
    let misplaced = |field: &str, applies: &str| {
        ctx.diag(
            at(&format!("model.{field}")),
            format!("`model.{field}` does not apply here"),
        )
        .label(format!("it applies to {applies}"))
        .help(format!("remove `{field}`"))
    };
    let decl = match (&m.arch, &m.layers) {
        (Some(_), Some(_)) => {
            return Err(ctx
                .diag(at("model.layers"), "`model` has both `arch` and `layers`")
                .label("expected one of them")
                .help(
                    "use `arch: simple_cnn` / `arch: resnet18`, or declare `layers:` for your own network",
                ));
        }
        (None, None) => {
            return Err(ctx
                .diag(at("model"), "`model` needs `arch` or `layers`")
                .label("expected `arch: simple_cnn`, `arch: resnet18`, or a `layers:` list"));
        }
        (Some(Arch::SimpleCnn), None) => {
            for (f, set) in [
                ("stem", m.stem.is_some()),
                ("width", m.width.is_some()),
                ("class_name", m.class_name.is_some()),
            ] {
                if set {
                    return Err(misplaced(
                        f,
                        "`arch: resnet18` (stem, width) or `layers` (class_name)",
                    ));
                }
            }
            let p = m.dropout.unwrap_or(0.5);
            if !(0.0..1.0).contains(&p) {
                return Err(ctx.diag(
                    at("model.dropout"),
                    format!("`model.dropout` must be in [0, 1), got {p}"),
                ));
            }
            builtins::simple_cnn_for(shape, m.num_classes.unwrap_or(10), p).map_err(|why| {
                ctx.diag(at("model.arch"), why)
                    .label("the images come from `data`")
                    .help("use `arch: resnet18`, or declare `layers:` that fit the images")
            })?
        }
        (Some(Arch::Resnet18), None) => {
            for (f, set) in [
                ("dropout", m.dropout.is_some()),
                ("class_name", m.class_name.is_some()),
            ] {
                if set {
                    return Err(misplaced(
                        f,
                        "`arch: simple_cnn` (dropout) or `layers` (class_name)",
                    ));
                }
            }
            let width = m.width.unwrap_or(64);
            if width == 0 {
                return Err(ctx.diag(at("model.width"), "`model.width` must be at least 1"));
            }
            builtins::resnet18_for(
                shape,
                m.num_classes.unwrap_or(10),
                m.stem.unwrap_or(builtins::Stem::Imagenet),
                width,
            )
        }
        (None, Some(layers)) => {
            for (f, set) in [
                ("num_classes", m.num_classes.is_some()),
                ("dropout", m.dropout.is_some()),
                ("stem", m.stem.is_some()),
                ("width", m.width.is_some()),
            ] {
                if set {
                    return Err(misplaced(
                        f,
                        "the built-in architectures; in `layers` the last linear's out_features sets the classes",
                    ));
                }
            }
            if layers.is_empty() {
                return Err(ctx
                    .diag(at("model.layers"), "`model.layers` is empty")
                    .label("expected at least one layer"));
            }
            let line_of = |p: &str| ctx.index.find(&format!("model.layers.{p}")).map(|pos| pos.line);
            let nodes = layers::to_nodes(layers, "", &line_of)
                .map_err(|e| ctx.diag(at(&format!("model.layers.{}", e.path)), e.message.clone()))?;
            ModelDecl {
                class_name: m.class_name.clone().unwrap_or_else(|| "Net".into()),
                input: shape.dims(),
                layers: nodes,
            }
        }
    };
    match decl.output_shape() {
        Ok(s) if s.len() == 1 => Ok(decl),
        Ok(s) => Err(ctx
            .diag(
                at("model.layers"),
                format!(
                    "the model's output has shape {} but must be class scores [N]",
                    crate::model::decl::fmt_shape(&s)
                ),
            )
            .help("end the model with `flatten` and a `linear: {out_features: 10}`")),
        Err(e) => {
            let pos = e.line.map(|line| {
                let column = ctx
                    .text
                    .lines()
                    .nth(line - 1)
                    .map(|l| l.find(|c: char| c != ' ' && c != '-').unwrap_or(0) + 1)
                    .unwrap_or(1);
                Pos { line, column }
            });
            Err(ctx
                .diag(pos.or_else(|| at("model")), format!("shape mismatch at {e}"))
                .label("this layer"))
        }
    }
}

/// A name for a message: in backquotes, or escaped when it holds what backquotes cannot show; cut when long.
fn quoted(name: &str, why: &str) -> String {
    let short: String = name.chars().take(60).collect();
    let cut = if short.len() < name.len() { "…" } else { "" };
    if name.is_empty() || name.chars().any(|c| c.is_control() || c == '`') {
        format!("{short:?}{cut} {why}")
    } else {
        format!("`{short}{cut}` {why}")
    }
}

/// The `report:` section names runs and experiments that exist.
fn check_report(
    ctx: &Ctx,
    report: &file::ReportSpec,
    runs: &[RunSpec],
    experiments: Option<&serde_json::Map<String, Value>>,
    diags: &mut Vec<Diagnostic>,
) {
    let mut known: Vec<&str> = runs
        .iter()
        .flat_map(|r| {
            std::iter::once(r.name.as_str())
                .chain(r.aliases.iter().map(String::as_str))
                .chain(r.memberships.iter().map(|m| m.name.as_str()))
        })
        .collect();
    known.extend(experiments.into_iter().flat_map(|e| e.keys().map(String::as_str)));
    let mut seen = std::collections::HashSet::new();
    known.retain(|n| seen.insert(*n));
    for key in report.captions.keys() {
        if !known.contains(&key.as_str()) {
            let mut d = ctx
                .diag(
                    ctx.index.find_key(&format!("report.captions.{key}")),
                    format!(
                        "`report.captions` names `{key}`, which is no run or experiment of this pipeline"
                    ),
                )
                .label(format!("runs and experiments: {}", known.join(", ")));
            if let Some(best) = closest(key, known.iter().copied()) {
                d = d.help(format!("did you mean `{best}`?"));
            }
            diags.push(d);
        }
    }
}

/// Turn a serde-saphyr error into a diagnostic with a "did you mean" where the error lists choices.
fn saphyr_diagnostic(path: &Path, text: &str, e: &serde_saphyr::Error) -> Diagnostic {
    let pos = e.location().map(|l| Pos {
        line: l.line() as usize,
        column: l.column() as usize,
    });
    let full = e.to_string();
    // The first line is "error: line L column C: message".
    let first = full
        .lines()
        .next()
        .unwrap_or("")
        .trim_start_matches("error: ")
        .to_string();
    let message = match first.split_once(": ") {
        Some((loc, msg)) if loc.starts_with("line ") => msg.to_string(),
        _ => first,
    };
    if let Some(d) = syntax::duplicate_key(path, text, pos, &message) {
        return d;
    }
    let mut d = Diagnostic::at(path, text, pos, message.clone());
    let (found, expected) = (
        between(&message, "`", "`"),
        message.split_once("expected one of ").map(|x| x.1.to_string()),
    );
    if let (Some(found), Some(expected)) = (found, expected) {
        let choices: Vec<&str> = expected.split(',').map(|s| s.trim().trim_matches('`')).collect();
        d = d.label(format!("expected one of: {}", choices.join(", ")));
        if let Some(best) = closest(&found, choices.iter().copied()) {
            d = d.help(format!("did you mean `{best}`?"));
        }
    }
    d
}

fn between(s: &str, open: &str, close: &str) -> Option<String> {
    let start = s.find(open)? + open.len();
    let end = s[start..].find(close)? + start;
    Some(s[start..end].to_string())
}

#[cfg(test)]
mod tests;
