//! The report's template context: every run's configuration, summary, history, test metrics, figures and
//! observations, loaded from the out directory's run records and cache (documented in docs/report-context.md).

use super::classes::ClassResults;
use super::observe::{Observations, observe};
use crate::cache::{Miss, StageDir, Store};
use crate::data::augment::Augment;
use crate::data::config::Normalize;
use crate::model::checkpoint::size_mb;
use crate::pipeline::record::{RunRecord, RunStatus};
use crate::pipeline::stage::{
    ArtifactError, DatasetArtifacts, DatasetInfo, EvaluateArtifacts, ModelArtifacts, PlotArtifacts, Stage,
    StageKeys, TrainArtifacts,
};
use crate::spec::file::ReportSpec;
use crate::spec::{Pipeline, RunSpec};
use crate::summary::ModelSummary;
use crate::train::config::Select;
use crate::train::evaluate::TestMetrics;
use crate::train::history::TrainHistory;
use crate::train::optim::OptimizerKind;
use crate::train::schedule::{SchedulerConfig, SchedulerKind};
use serde::Serialize;
use serde_json::Value;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// One line of the training-configuration list.
#[derive(Debug, Clone, Serialize)]
pub struct ConfigItem {
    /// What it is ("Batch size").
    pub label: String,
    /// Its value as text.
    pub value: String,
}

/// The model stage's results.
#[derive(Debug, Clone, Serialize)]
pub struct ModelView {
    /// Class name.
    pub class_name: String,
    /// The seed-format text: FLOPs, Params, torchsummary table.
    pub summary_text: String,
    /// thop MACs (the seed's "FLOPs").
    pub flops: u64,
    /// Parameters.
    pub params: usize,
    /// Everything else (rows, MB figures, other FLOP conventions).
    pub summary: ModelSummary,
}

/// The selected checkpoint file.
#[derive(Debug, Clone, Serialize)]
pub struct CheckpointView {
    /// Path as linked from the report.
    pub path: String,
    /// Size in MB (10^6 bytes).
    pub size_mb: f64,
}

/// Figure files of a run, as links from the report.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Figures {
    /// Loss/accuracy curves (PNG).
    pub curves: Option<String>,
    /// Confusion matrix (PNG).
    pub confusion: Option<String>,
    /// Model diagram (PNG).
    pub diagram: Option<String>,
}

/// How a run diverged (`train.divergence`, or a NaN/infinite loss).
#[derive(Debug, Clone, Serialize)]
pub struct DivergenceView {
    /// 1-based epoch it diverged in.
    pub epoch: usize,
    /// The learning rate then.
    pub lr: f64,
    /// What happened, in one sentence.
    pub what: String,
    /// What to try next.
    pub hint: String,
}

/// A stage whose cache entry or artifact is damaged.
#[derive(Debug, Clone, Serialize)]
pub struct DamagedStage {
    /// The stage (`train`).
    pub stage: Stage,
    /// What is wrong.
    pub why: String,
}

/// Everything a template can say about one run.
#[derive(Debug, Clone, Serialize)]
pub struct RunView {
    /// Pipeline name.
    pub pipeline: String,
    /// Run name.
    pub name: String,
    /// Content ID.
    pub id: String,
    /// Other variant names that are this same run.
    pub aliases: Vec<String>,
    /// True when every stage finished (diverged runs count as finished).
    pub done: bool,
    /// `done`, `diverged`, `failed`, `interrupted`, `damaged` or `not run`.
    pub status: String,
    /// Explanation for diverged, failed and damaged runs.
    pub status_message: Option<String>,
    /// How training diverged, when it did.
    pub divergence: Option<DivergenceView>,
    /// Stages whose cache entries are damaged (their results are not shown).
    pub damaged: Vec<DamagedStage>,
    /// The command that (re)makes this run's results.
    pub rerun: String,
    /// The caption of its training-curve figure from the pipeline's `report.captions`, if given.
    pub caption: Option<String>,
    /// The training configuration as a list.
    pub config: Vec<ConfigItem>,
    /// The dataset's display name: `dataset.json`'s `name` when it has one, else its `source`.
    pub dataset: Option<String>,
    /// Dataset facts.
    pub data: Option<DatasetInfo>,
    /// Model summary.
    pub model: Option<ModelView>,
    /// Per-epoch history.
    pub history: Option<TrainHistory>,
    /// Checkpoint policy, as words.
    pub select: String,
    /// Checkpoint policy as written: `best_val_accuracy`, `best_val_loss` or `last`.
    pub select_policy: Select,
    /// The epoch whose weights were kept.
    pub selected_epoch: Option<usize>,
    /// Early-stopping epoch.
    pub stopped_early_at: Option<usize>,
    /// Training wall time in seconds.
    pub train_seconds: Option<f64>,
    /// Test metrics of the kept checkpoint.
    pub test: Option<TestMetrics>,
    /// Per-class tables from the test confusion matrix (beside `test`).
    pub classes: Option<ClassResults>,
    /// The kept checkpoint.
    pub checkpoint: Option<CheckpointView>,
    /// Figure links.
    pub figures: Figures,
    /// Facts about the curves.
    pub observations: Option<Observations>,
}

/// A comparison table built from an experiment structure.
#[derive(Debug, Clone, Serialize)]
pub struct Comparison {
    /// The matrix experiment's name.
    pub experiment: String,
    /// Axis paths (row axis first).
    pub axes: Vec<String>,
    /// Row labels (values of the first axis).
    pub rows: Vec<String>,
    /// Column labels (values of the second axis; one empty label for a 1-axis matrix).
    pub cols: Vec<String>,
    /// Run names per cell (`cells[row][col]`), None when no run has those values.
    pub cells: Vec<Vec<Option<String>>>,
    /// Validation curves of every run in the table overlaid (PNG link), once they have histories.
    pub overlay: Option<String>,
}

/// A named variant compared with the baseline (the seed's tables 7a and 7b).
#[derive(Debug, Clone, Serialize)]
pub struct VariantComparison {
    /// The experiment's name (`no_normalization`).
    pub experiment: String,
    /// Its run's name.
    pub run: String,
    /// The overrides that define it, as `path = value` text.
    pub changes: Vec<String>,
    /// Baseline and variant validation curves overlaid (PNG link).
    pub overlay: Option<String>,
}

/// One pipeline's runs.
#[derive(Debug, Clone, Serialize)]
pub struct PipelineView {
    /// Name.
    pub name: String,
    /// `report.title`, when the pipeline gives one.
    pub title: Option<String>,
    /// The pipeline's `description:`.
    pub description: Option<String>,
    /// Runs in declaration order.
    pub runs: Vec<RunView>,
    /// Runs by name (aliases included).
    pub run: BTreeMap<String, RunView>,
    /// Matrix comparisons.
    pub comparisons: Vec<Comparison>,
    /// The baseline run's name: the run of the experiment named `baseline`, else the first run.
    pub baseline: Option<String>,
    /// Named variants other than the baseline, each to be compared with it.
    pub variants: Vec<VariantComparison>,
}

/// The whole context.
#[derive(Debug, Clone, Serialize)]
pub struct ReportContext {
    /// Pipelines by name.
    pub pipelines: BTreeMap<String, PipelineView>,
    /// Pipeline names in the order given (or sorted).
    pub order: Vec<String>,
    /// labpipe version.
    pub labpipe_version: String,
}

/// How figure files are linked.
pub enum FigureLinks {
    /// Link to the cache files, relative to the current directory.
    InPlace,
    /// Copy figures into `dir/figures/` and link `figures/...`.
    CopyTo(PathBuf),
}

fn schedule_text(s: &SchedulerConfig) -> String {
    let mut t = match s.name {
        SchedulerKind::Constant => "constant learning rate".to_string(),
        SchedulerKind::Step => {
            let g = s.gamma.unwrap_or(0.1);
            let n = s.step_size.unwrap_or(1);
            if (g - 0.5).abs() < 1e-12 {
                format!("halve every {n} epochs (StepLR)")
            } else {
                format!("×{g} every {n} epochs (StepLR)")
            }
        }
        _ => format!(
            "{} ({})",
            s.name.as_str(),
            crate::cache::canonical_json(&serde_json::to_value(s).unwrap_or_default())
        ),
    };
    if let Some(w) = s.warmup_epochs.filter(|w| *w > 0) {
        t.push_str(&format!(", after {w} warmup epochs"));
    }
    t
}

fn camel(s: &str) -> String {
    s.split('_')
        .map(|w| {
            let mut c = w.chars();
            c.next()
                .map(|f| f.to_uppercase().collect::<String>() + c.as_str())
                .unwrap_or_default()
        })
        .collect()
}

fn augment_text(a: &Augment) -> String {
    // Externally tagged: {"random_crop": {...}} → RandomCrop(size=32, padding=...).
    let v = serde_json::to_value(a).unwrap_or_default();
    let Some((name, params)) = v.as_object().and_then(|m| m.iter().next()) else {
        return format!("{v}");
    };
    let args: Vec<String> = params
        .as_object()
        .map(|m| {
            m.iter()
                .filter(|(_, v)| !v.is_null())
                .map(|(k, v)| format!("{k}={}", crate::cache::canonical_json(v)))
                .collect()
        })
        .unwrap_or_default();
    format!("{}({})", camel(name), args.join(", "))
}

fn normalize_text(n: &Normalize, info: Option<&DatasetInfo>) -> String {
    // One value per channel: three for colour images, one for greyscale (MNIST).
    let list = |v: &[f32]| v.iter().map(|x| format!("{x:.4}")).collect::<Vec<_>>().join(", ");
    let vals = info
        .map(|i| {
            format!(
                " (mean [{}], std [{}])",
                list(&i.stats.mean[..]),
                list(&i.stats.std[..])
            )
        })
        .unwrap_or_default();
    match n {
        Normalize::None => "none (pixels scaled to [0, 1])".into(),
        Normalize::FirstImage => {
            format!("mean and standard deviation calculated from the first image in the training set{vals}")
        }
        Normalize::TrainMeanStd => format!("mean and standard deviation of the training split{vals}"),
        Normalize::Fixed { .. } => format!("given mean and standard deviation{vals}"),
    }
}

fn select_text(s: Select) -> String {
    match s {
        Select::BestValAccuracy => "the checkpoint with the highest validation accuracy".into(),
        Select::BestValLoss => "the checkpoint with the lowest validation loss".into(),
        Select::Last => "the last epoch's checkpoint".into(),
    }
}

fn optimizer_text(run: &RunSpec) -> String {
    let name = match run.train.optimizer.name {
        OptimizerKind::Adam => "Adam",
        OptimizerKind::AdamW => "AdamW",
        OptimizerKind::Sgd => "SGD",
    }
    .to_string();
    let v = serde_json::to_value(&run.train.optimizer).unwrap_or_default();
    let extras: Vec<String> = v
        .as_object()
        .into_iter()
        .flatten()
        .filter(|(k, v)| *k != "name" && *k != "lr" && !v.is_null())
        .map(|(k, v)| format!("{k}={}", crate::cache::canonical_json(v)))
        .collect();
    if extras.is_empty() {
        name
    } else {
        format!("{name} ({})", extras.join(", "))
    }
}

/// The configuration list of a run, in the seed's wording.
pub fn config_items(run: &RunSpec, info: Option<&DatasetInfo>) -> Vec<ConfigItem> {
    let item = |l: &str, v: String| ConfigItem {
        label: l.to_string(),
        value: v,
    };
    let t = &run.train;
    let aug = if run.data.augment.is_empty() {
        "none".to_string()
    } else {
        run.data
            .augment
            .iter()
            .map(augment_text)
            .collect::<Vec<_>>()
            .join(", ")
    };
    let mut items = vec![
        item(
            "Dataset",
            info.map(|i| {
                format!(
                    "{} — {} train / {} validation / {} test images",
                    i.source, i.train_images, i.val_images, i.test_images
                )
            })
            .unwrap_or_else(|| crate::data::source::describe(&run.data)),
        ),
        item("Data normalization", normalize_text(&run.data.normalize, info)),
        item("Data augmentation", aug),
        item("Batch size", t.batch_size.to_string()),
        item("Optimizer", optimizer_text(run)),
        item("Base learning rate", format!("{}", t.optimizer.lr)),
        item("Learning rate update strategy", schedule_text(&t.scheduler)),
        item("Number of epochs", t.epochs.to_string()),
    ];
    if t.label_smoothing > 0.0 {
        items.push(item("Label smoothing", t.label_smoothing.to_string()));
    }
    if let Some(es) = &t.early_stopping {
        items.push(item(
            "Early stopping",
            format!(
                "{:?} patience {} min_delta {}",
                es.metric, es.patience, es.min_delta
            ),
        ));
    }
    items.push(item("Checkpoint selection", select_text(t.select)));
    items.push(item("Seed", t.seed.to_string()));
    items
}

/// A stage's artifacts as the report finds them.
enum Found<T> {
    /// Complete and readable.
    Ok(T),
    /// Not in the cache.
    Absent,
    /// In the cache but damaged: why.
    Damaged(String),
}

fn artifact_problem(e: &ArtifactError) -> String {
    let name = |p: &Path| {
        p.file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_else(|| p.display().to_string())
    };
    match e {
        ArtifactError::Missing { path } => format!("artifact {} is missing", name(path)),
        ArtifactError::Damaged { path, reason } => format!("artifact {} is damaged: {reason}", name(path)),
    }
}

fn find<T>(
    store: &Store,
    keys: &StageKeys,
    stage: Stage,
    read: fn(&StageDir) -> Result<T, ArtifactError>,
) -> Found<T> {
    match store.lookup(keys.get(stage), stage.files()) {
        Ok(dir) => match read(&dir) {
            Ok(a) => Found::Ok(a),
            Err(e) => Found::Damaged(artifact_problem(&e)),
        },
        Err(Miss::Absent) => Found::Absent,
        Err(Miss::Corrupt(why)) => Found::Damaged(why),
    }
}

/// The dataset's display name from its `dataset.json`: the `name` field when present (datasets that carry
/// one), else `source`. Read from the raw JSON so a file with or without the field works alike.
fn dataset_name(dir: &StageDir, info: &DatasetInfo) -> String {
    // The stage lists its description file first (`dataset.json`, then the split).
    match Stage::Dataset.files().first() {
        Some(file) => dataset_name_in(&dir.path.join(file), &info.source),
        None => info.source.clone(),
    }
}

/// `dataset_name` for the `dataset.json` at `file`, whose `source` is known.
fn dataset_name_in(file: &Path, source: &str) -> String {
    let name = std::fs::read(file)
        .ok()
        .and_then(|bytes| serde_json::from_slice::<Value>(&bytes).ok())
        .and_then(|v| v.get("name").and_then(Value::as_str).map(str::to_string))
        .filter(|n| !n.trim().is_empty());
    name.unwrap_or_else(|| source.to_string())
}

/// A word for a shell command line, quoted when it needs to be.
fn shell_word(s: &str) -> String {
    if !s.is_empty()
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || "-_./=,:@+".contains(c))
    {
        s.to_string()
    } else {
        format!("'{}'", s.replace('\'', r"'\''"))
    }
}

/// `labpipe run FILE --only NAME [-S …] [--out OUT]`: the command that makes `spec`'s results.
pub fn rerun_command(file: &Path, spec: &RunSpec, out: &Path) -> String {
    let variant = spec
        .memberships
        .first()
        .map(|m| m.name.as_str())
        .unwrap_or(&spec.name);
    let mut cmd = format!(
        "labpipe run {} --only {}",
        shell_word(&file.to_string_lossy()),
        shell_word(variant)
    );
    for s in &spec.set {
        cmd.push_str(&format!(" -S {}", shell_word(s)));
    }
    if out != Path::new("out") {
        cmd.push_str(&format!(" --out {}", shell_word(&out.to_string_lossy())));
    }
    cmd
}

/// One pipeline's runs: the record (if any), the run, the pipeline file.
type Group = Vec<(Option<RunRecord>, RunSpec, PathBuf)>;
/// A pipeline's `report:` section and `description:`.
type Settings = (Option<ReportSpec>, Option<String>);

/// Builds the context; `link` turns an artifact path into the text used in the report.
pub struct ContextBuilder<'a> {
    /// The out directory.
    pub out: &'a Path,
    /// How figures are linked.
    pub links: FigureLinks,
    /// Warnings for stderr (runs not yet run).
    pub warnings: Vec<String>,
}

impl ContextBuilder<'_> {
    fn link(&self, src: &Path, pipeline: &str, run: &str, what: &str) -> Option<String> {
        if !src.exists() {
            return None;
        }
        match &self.links {
            FigureLinks::InPlace => Some(src.to_string_lossy().replace('\\', "/")),
            FigureLinks::CopyTo(dir) => {
                let name = crate::out_dir::path_component(&format!("{pipeline}__{run}__{what}"));
                let ext = src.extension().and_then(|e| e.to_str()).unwrap_or("png");
                let rel = format!("figures/{name}.{ext}");
                let dst = dir.join(&rel);
                std::fs::create_dir_all(dst.parent()?).ok()?;
                std::fs::copy(src, &dst).ok()?;
                Some(rel)
            }
        }
    }

    /// Draw the validation curves of `runs` in one figure (when at least two have histories).
    fn overlay(
        &self,
        pipeline: &str,
        what: &str,
        runs: &[String],
        views: &BTreeMap<String, RunView>,
    ) -> Option<String> {
        let series: Vec<(String, &TrainHistory)> = runs
            .iter()
            .filter_map(|r| Some((r.clone(), views.get(r)?.history.as_ref()?)))
            .collect();
        if series.len() < 2 {
            return None;
        }
        let base = crate::out_dir::path_component(&format!("{pipeline}__{what}__overlay"));
        let (dir, rel_prefix) = match &self.links {
            FigureLinks::InPlace => (
                self.out.join("figures"),
                format!("{}/figures/", self.out.to_string_lossy().replace('\\', "/")),
            ),
            FigureLinks::CopyTo(d) => (d.join("figures"), "figures/".to_string()),
        };
        std::fs::create_dir_all(&dir).ok()?;
        let title = format!("{pipeline}: {what} — validation curves");
        crate::figure::draw_overlay(
            &series,
            &title,
            &dir.join(format!("{base}.svg")),
            &dir.join(format!("{base}.png")),
        )
        .ok()?;
        Some(format!("{rel_prefix}{base}.png"))
    }

    fn run_view(
        &mut self,
        rec: Option<&RunRecord>,
        spec: &RunSpec,
        file: &Path,
        caption: Option<String>,
    ) -> RunView {
        let store = Store::new(self.out);
        let mut view = RunView {
            pipeline: spec.pipeline.clone(),
            name: spec.name.clone(),
            id: spec.id.clone(),
            aliases: spec.aliases.clone(),
            done: false,
            status: "not run".into(),
            status_message: None,
            divergence: None,
            damaged: Vec::new(),
            rerun: rerun_command(file, spec, self.out),
            caption,
            config: config_items(spec, None),
            dataset: None,
            data: None,
            model: None,
            history: None,
            select: select_text(spec.train.select),
            select_policy: spec.train.select,
            selected_epoch: None,
            stopped_early_at: None,
            train_seconds: None,
            test: None,
            classes: None,
            checkpoint: None,
            figures: Figures::default(),
            observations: None,
        };
        let Some(rec) = rec else {
            self.warnings
                .push(format!("{}/{}: not run yet", spec.pipeline, spec.name));
            return view;
        };
        (view.status, view.status_message) = match &rec.status {
            RunStatus::Done => ("done".into(), None),
            RunStatus::Diverged { message } => ("diverged".into(), Some(message.clone())),
            RunStatus::Failed { stage, message } => ("failed".into(), Some(format!("{stage}: {message}"))),
            RunStatus::Interrupted => (
                "interrupted".into(),
                Some(format!(
                    "interrupted: `{}` continues from the last epoch",
                    view.rerun
                )),
            ),
        };
        let k = &rec.keys;
        let mut broken = Vec::new();
        let read_dataset = |d: &StageDir| DatasetArtifacts::read(d).map(|a| (dataset_name(d, &a.info), a));
        match find(&store, k, Stage::Dataset, read_dataset) {
            Found::Ok((name, a)) => {
                view.dataset = Some(name);
                view.data = Some(a.info);
                view.config = config_items(spec, view.data.as_ref());
            }
            Found::Damaged(why) => broken.push(DamagedStage {
                stage: Stage::Dataset,
                why,
            }),
            Found::Absent => {}
        }
        match find(&store, k, Stage::Model, ModelArtifacts::read) {
            Found::Ok(ModelArtifacts {
                summary: s,
                diagram_png,
            }) => {
                view.model = Some(ModelView {
                    class_name: s.class_name.clone(),
                    summary_text: crate::summary::render_seed_text(&s),
                    flops: s.flops.thop_macs,
                    params: s.total_params,
                    summary: s,
                });
                view.figures.diagram = self.link(&diagram_png, &spec.pipeline, &spec.name, "diagram");
            }
            Found::Damaged(why) => broken.push(DamagedStage {
                stage: Stage::Model,
                why,
            }),
            Found::Absent => {}
        }
        match find(&store, k, Stage::Train, TrainArtifacts::read) {
            Found::Ok(TrainArtifacts {
                outcome: o,
                model_file,
                ..
            }) => {
                view.observations = observe(&o.history);
                view.selected_epoch = o.selected_epoch;
                view.stopped_early_at = o.stopped_early_at;
                view.train_seconds = Some(o.seconds);
                view.divergence = o.diverged.as_ref().map(|d| DivergenceView {
                    epoch: d.epoch,
                    lr: d.lr,
                    what: d.what(),
                    hint: crate::train::trainer::Divergence::HINT.to_string(),
                });
                view.history = Some(o.history);
                view.checkpoint = size_mb(&model_file).ok().map(|mb| CheckpointView {
                    path: model_file.to_string_lossy().replace('\\', "/"),
                    size_mb: mb,
                });
            }
            Found::Damaged(why) => broken.push(DamagedStage {
                stage: Stage::Train,
                why,
            }),
            Found::Absent => {}
        }
        match find(&store, k, Stage::Evaluate, EvaluateArtifacts::read) {
            Found::Ok(e) => view.test = Some(e.metrics),
            Found::Damaged(why) => broken.push(DamagedStage {
                stage: Stage::Evaluate,
                why,
            }),
            Found::Absent => {}
        }
        match find(&store, k, Stage::Plot, PlotArtifacts::read) {
            Found::Ok(plots) => {
                view.figures.curves = self.link(&plots.curves_png, &spec.pipeline, &spec.name, "curves");
                view.figures.confusion =
                    self.link(&plots.confusion_png, &spec.pipeline, &spec.name, "confusion");
            }
            Found::Damaged(why) => broken.push(DamagedStage {
                stage: Stage::Plot,
                why,
            }),
            Found::Absent => {}
        }
        // The test numbers are only shown beside the checkpoint they belong to.
        if view.checkpoint.is_none() {
            view.test = None;
        }
        if let Some(test) = &view.test {
            let classes = ClassResults::of(test);
            if let Some(o) = view.observations.as_mut() {
                o.note_test(test.accuracy, classes.count);
            }
            view.classes = Some(classes);
        }
        if !broken.is_empty() {
            let stages: Vec<String> = broken
                .iter()
                .map(|d| format!("{} stage: {}", d.stage.name(), d.why))
                .collect();
            view.status = "damaged".into();
            view.status_message = Some(format!(
                "damaged ({}): re-run `{}`",
                stages.join("; "),
                view.rerun
            ));
            view.damaged = broken;
        }
        view.done = view.test.is_some()
            && view.damaged.is_empty()
            && matches!(rec.status, RunStatus::Done | RunStatus::Diverged { .. });
        if !view.done {
            self.warnings.push(format!(
                "{}/{}: results incomplete ({})",
                spec.pipeline, spec.name, view.status
            ));
        }
        view
    }

    /// Context for `pipelines` (their declared runs, marked "not run" where no results exist), or for every
    /// pipeline with results when none is given.
    pub fn build(&mut self, pipelines: &[Pipeline]) -> ReportContext {
        if pipelines.is_empty() {
            return self.build_from_records(RunRecord::all(self.out, None));
        }
        let mut groups: BTreeMap<String, Group> = BTreeMap::new();
        let mut order = Vec::new();
        let mut settings: BTreeMap<String, Settings> = BTreeMap::new();
        for p in pipelines {
            order.push(p.name.clone());
            settings.insert(p.name.clone(), (p.report.clone(), p.description.clone()));
            for r in &p.runs {
                let rec = RunRecord::load(self.out, &p.name, &r.name).filter(|rec| rec.spec.id == r.id);
                groups
                    .entry(p.name.clone())
                    .or_default()
                    .push((rec, r.clone(), p.path.clone()));
            }
        }
        self.assemble(order, groups, settings)
    }

    /// Context for the given run records (pipelines sorted by name).
    pub fn build_from_records(&mut self, records: Vec<RunRecord>) -> ReportContext {
        let mut groups: BTreeMap<String, Group> = BTreeMap::new();
        let mut order = Vec::new();
        let mut settings: BTreeMap<String, Settings> = BTreeMap::new();
        for rec in records {
            if !order.contains(&rec.spec.pipeline) {
                order.push(rec.spec.pipeline.clone());
                // The file the runs came from, if it is still there and still this pipeline.
                if let Ok(p) = crate::spec::load(&rec.pipeline_file, &rec.spec.set)
                    && p.name == rec.spec.pipeline
                {
                    settings.insert(p.name.clone(), (p.report.clone(), p.description.clone()));
                }
            }
            let spec = rec.spec.clone();
            let file = rec.pipeline_file.clone();
            groups
                .entry(spec.pipeline.clone())
                .or_default()
                .push((Some(rec), spec, file));
        }
        order.sort();
        self.assemble(order, groups, settings)
    }

    fn assemble(
        &mut self,
        order: Vec<String>,
        groups: BTreeMap<String, Group>,
        mut settings: BTreeMap<String, Settings>,
    ) -> ReportContext {
        let mut out = BTreeMap::new();
        for (name, runs) in groups {
            let (report, description) = settings.remove(&name).unwrap_or_default();
            let report = report.unwrap_or_default();
            let views: Vec<RunView> = runs
                .iter()
                .map(|(rec, spec, file)| {
                    let caption = std::iter::once(&spec.name)
                        .chain(spec.memberships.iter().map(|m| &m.name))
                        .chain(spec.memberships.iter().map(|m| &m.experiment))
                        .find_map(|n| report.captions.get(n).cloned());
                    self.run_view(rec.as_ref(), spec, file, caption)
                })
                .collect();
            let mut by_name = BTreeMap::new();
            for v in &views {
                by_name.insert(v.name.clone(), v.clone());
                for a in &v.aliases {
                    by_name.insert(a.clone(), v.clone());
                }
            }
            let specs: Vec<&RunSpec> = runs.iter().map(|(_, s, _)| s).collect();
            let baseline = specs
                .iter()
                .find(|s| s.memberships.iter().any(|m| m.experiment == "baseline"))
                .or(specs.first())
                .map(|s| s.name.clone());
            let mut comps = comparisons(&specs);
            for c in &mut comps {
                let names: Vec<String> = c.cells.iter().flatten().flatten().cloned().collect();
                c.overlay = self.overlay(&name, &c.experiment, &names, &by_name);
            }
            let mut variants = Vec::new();
            for s in &specs {
                if Some(&s.name) == baseline.as_ref() {
                    continue;
                }
                for m in s
                    .memberships
                    .iter()
                    .filter(|m| m.axes.is_empty() && m.experiment != "baseline")
                {
                    let names: Vec<String> = baseline.iter().cloned().chain([s.name.clone()]).collect();
                    variants.push(VariantComparison {
                        experiment: m.experiment.clone(),
                        run: s.name.clone(),
                        changes: s
                            .overrides
                            .iter()
                            .map(|(k, v)| format!("{k} = {}", crate::cache::canonical_json(v)))
                            .collect(),
                        overlay: self.overlay(&name, &m.experiment, &names, &by_name),
                    });
                }
            }
            out.insert(
                name.clone(),
                PipelineView {
                    name,
                    title: report.title.clone(),
                    description,
                    runs: views,
                    run: by_name,
                    comparisons: comps,
                    baseline,
                    variants,
                },
            );
        }
        ReportContext {
            pipelines: out,
            order,
            labpipe_version: env!("CARGO_PKG_VERSION").into(),
        }
    }
}

/// Matrix comparisons from the runs' memberships: rows from the first axis, columns from the second.
pub fn comparisons(runs: &[&RunSpec]) -> Vec<Comparison> {
    type Entries = Vec<(usize, Vec<(String, Value)>, String)>;
    let mut by_exp: BTreeMap<String, Entries> = BTreeMap::new();
    let mut exp_order = Vec::new();
    for r in runs {
        for m in &r.memberships {
            if m.axes.is_empty() {
                continue;
            }
            if !exp_order.contains(&m.experiment) {
                exp_order.push(m.experiment.clone());
            }
            by_exp
                .entry(m.experiment.clone())
                .or_default()
                .push((m.order, m.axes.clone(), r.name.clone()));
        }
    }
    let mut out = Vec::new();
    for exp in exp_order {
        let mut sorted = by_exp[&exp].clone();
        sorted.sort_by_key(|e| e.0);
        let entries: Vec<(Vec<(String, Value)>, String)> =
            sorted.into_iter().map(|(_, a, r)| (a, r)).collect();
        let entries = &entries;
        let axes: Vec<String> = entries[0].0.iter().map(|(k, _)| k.clone()).collect();
        let mut rows: Vec<String> = Vec::new();
        let mut cols: Vec<String> = Vec::new();
        for (vals, _) in entries {
            let r = crate::spec::value_label(&vals[0].1);
            if !rows.contains(&r) {
                rows.push(r);
            }
            let c = vals
                .get(1)
                .map(|v| crate::spec::value_label(&v.1))
                .unwrap_or_default();
            if !cols.contains(&c) {
                cols.push(c);
            }
        }
        let mut cells = vec![vec![None; cols.len()]; rows.len()];
        for (vals, run) in entries {
            let r = rows
                .iter()
                .position(|x| *x == crate::spec::value_label(&vals[0].1));
            let c = cols.iter().position(|x| {
                *x == vals
                    .get(1)
                    .map(|v| crate::spec::value_label(&v.1))
                    .unwrap_or_default()
            });
            if let (Some(r), Some(c)) = (r, c) {
                cells[r][c] = Some(run.clone());
            }
        }
        out.push(Comparison {
            experiment: exp,
            axes,
            rows,
            cols,
            cells,
            overlay: None,
        });
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_dataset_is_called_by_its_name_when_it_has_one() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("info.json");
        let source = "CIFAR-100 (data/cifar100)";
        // Written before datasets had display names: the source.
        std::fs::write(
            &file,
            r#"{"source": "CIFAR-100 (data/cifar100)", "class_names": []}"#,
        )
        .unwrap();
        assert_eq!(dataset_name_in(&file, source), source);
        std::fs::write(&file, r#"{"name": "CIFAR-100", "source": "x"}"#).unwrap();
        assert_eq!(dataset_name_in(&file, source), "CIFAR-100");
        // A blank or non-text name, unreadable JSON or no file: the source.
        for bad in [r#"{"name": "  "}"#, r#"{"name": 3}"#, "{not json"] {
            std::fs::write(&file, bad).unwrap();
            assert_eq!(dataset_name_in(&file, source), source, "{bad}");
        }
        assert_eq!(dataset_name_in(&dir.path().join("none.json"), source), source);
        // `dataset_name` reads the stage's first file: its description, named after the stage.
        let first = Stage::Dataset.files()[0];
        assert!(
            first.starts_with(Stage::Dataset.name()) && first.ends_with(".json"),
            "{first}"
        );
    }

    #[test]
    fn normalization_values_follow_the_channel_count() {
        let info: DatasetInfo = serde_json::from_value(serde_json::json!({
            "source": "s", "class_names": ["a"], "train_images": 1, "val_images": 1, "test_images": 1,
            "normalize": "train_mean_std",
            "stats": {"mean": [0.5, 0.25, 0.125], "std": [0.5, 0.5, 0.5]}
        }))
        .unwrap();
        let text = normalize_text(&Normalize::TrainMeanStd, Some(&info));
        assert!(
            text.ends_with("(mean [0.5000, 0.2500, 0.1250], std [0.5000, 0.5000, 0.5000])"),
            "{text}"
        );
    }
}
