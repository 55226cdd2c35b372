//! `--sweep PATH=V1,V2`: axes from the command line, added to every experiment's `matrix:` so that a sweep's
//! runs are named, keyed and reported exactly as the same matrix written in the file would be.

use super::diagnostic::Diagnostic;
use super::locate::Pos;
use super::overrides::{self, SweepAxis, overlap};
use super::{Ctx, SpecError};
use serde_json::{Map, Value};

/// The `--sweep` items parsed and checked against the file's fields and the `-S` overrides.
pub(super) fn parse(
    ctx: &Ctx,
    base: &Value,
    set: &[(String, Value)],
    items: &[String],
) -> Result<Vec<SweepAxis>, SpecError> {
    let invalid = |d: Diagnostic| SpecError::Invalid(vec![d]);
    let axes = overrides::parse_sweeps(items).map_err(|e| {
        invalid(ctx.diag(None, e).help(
            "write sweeps as `--sweep train.optimizer.lr=0.1,0.01` or `--sweep 'data.augment=[[], [random_horizontal_flip]]'`",
        ))
    })?;
    let mut diags = Vec::new();
    for (path, values) in &axes {
        let label = format!("in `--sweep {path}=...`");
        if let Some((k, _)) = set.iter().find(|(k, _)| overlap(k, path)) {
            diags.push(
                ctx.diag(None, format!("`--sweep {path}` and `-S {k}` set the same field"))
                    .label(label.clone())
                    .help("sweep it, or set it, not both"),
            );
            continue;
        }
        // Only whether the path exists is checked here; each value's type is checked with its run.
        if let Err(e) = overrides::apply(&mut base.clone(), path, values[0].clone()) {
            let mut d = ctx.diag(None, e.message).label(label);
            if let Some(h) = e.suggestion {
                d = d.help(format!("did you mean `{h}`?"));
            }
            diags.push(d);
        }
    }
    if diags.is_empty() {
        Ok(axes)
    } else {
        Err(SpecError::Invalid(diags))
    }
}

/// The experiments to expand: the file's, or with sweeps and none in the file, the one run as `baseline`.
pub(super) fn experiments(
    written: Option<&Map<String, Value>>,
    sweeps: &[SweepAxis],
) -> Option<Map<String, Value>> {
    match written.filter(|e| !e.is_empty()) {
        Some(e) => Some(e.clone()),
        None if !sweeps.is_empty() => {
            let mut m = Map::new();
            m.insert("baseline".into(), Value::Object(Map::new()));
            Some(m)
        }
        None => written.cloned(),
    }
}

/// A sweep may not touch a field that experiment `name` already sweeps in its matrix or sets itself: one of
/// the two settings would silently win.
pub(super) fn check_conflicts(
    ctx: &Ctx,
    name: &str,
    pos: Option<Pos>,
    matrix: &[SweepAxis],
    fixed: &[(String, Value)],
    sweeps: &[SweepAxis],
    diags: &mut Vec<Diagnostic>,
) {
    for (path, _) in sweeps {
        if let Some((axis, _)) = matrix.iter().find(|(a, _)| overlap(a, path)) {
            let at = ctx
                .index
                .find_key(&format!("experiments.{name}.matrix.{axis}"))
                .or(pos);
            diags.push(
                ctx.diag(
                    at,
                    format!("`--sweep {path}`: experiment `{name}` already sweeps `{axis}` in its matrix"),
                )
                .label("this matrix axis")
                .help("add the values to this axis, or select other runs with `--only`"),
            );
        } else if let Some((key, _)) = fixed.iter().find(|(k, _)| overlap(k, path)) {
            let at = ctx.index.find_key(&format!("experiments.{name}.{key}")).or(pos);
            diags.push(
                ctx.diag(at, format!("`--sweep {path}`: experiment `{name}` sets `{key}`"))
                    .label("the sweep would replace this value")
                    .help("sweep a field the experiment leaves alone, or write a `matrix:` in the file"),
            );
        }
    }
}
