//! `labpipe report`: render the lab report from the results.

use super::select::selected_records;
use super::{Exit, Select};
use labpipe::report::context::{ContextBuilder, FigureLinks};
use labpipe::report::render::render;
use labpipe::spec::Pipeline;
use std::path::{Path, PathBuf};

/// The built-in templates, used when `report_templates/` is not in the working directory.
const LAB2: &str = include_str!("../../report_templates/lab2.md.j2");
const GENERIC: &str = include_str!("../../report_templates/report.md.j2");

fn template(explicit: Option<&Path>, names: &[String]) -> Result<(String, String), Exit> {
    if let Some(p) = explicit {
        let text = std::fs::read_to_string(p)
            .map_err(|e| Exit::BadInput(format!("error: cannot read template `{}`: {e}", p.display())))?;
        return Ok((p.display().to_string(), text));
    }
    // The seed's lab report needs both tasks; anything else gets the generic report.
    let lab = names.iter().any(|n| n == "task1") && names.iter().any(|n| n == "task2");
    let (file, builtin) = if lab {
        ("lab2.md.j2", LAB2)
    } else {
        ("report.md.j2", GENERIC)
    };
    let local = PathBuf::from("report_templates").join(file);
    match std::fs::read_to_string(&local) {
        Ok(text) => Ok((local.display().to_string(), text)),
        Err(_) => Ok((format!("(built-in) {file}"), builtin.to_string())),
    }
}

/// `pipelines` hold only the selected runs (see `super::select`); with none, every record `sel` picks.
/// `results` is the out directory; `out_dir` (`--to`) where the rendered report goes.
pub fn report(
    pipelines: &[Pipeline],
    sel: &Select,
    template_path: Option<&Path>,
    results: &Path,
    out_dir: Option<&Path>,
    check: Option<&Path>,
    format: &str,
) -> Result<i32, Exit> {
    if format != "md" && format != "html" {
        return Err(Exit::BadInput(format!(
            "error: unknown --format `{format}`: expected md or html"
        )));
    }
    let links = match out_dir {
        Some(d) => FigureLinks::CopyTo(d.to_path_buf()),
        None => FigureLinks::InPlace,
    };
    let mut builder = ContextBuilder {
        out: results,
        links,
        warnings: Vec::new(),
    };
    let ctx = if pipelines.is_empty() && sel.only.is_some() {
        builder.build_from_records(selected_records(pipelines, sel, results))
    } else {
        builder.build(pipelines)
    };
    if ctx.pipelines.is_empty() {
        return Err(Exit::Failed(super::anyhow_msg(format!(
            "no results in `{}`: run `labpipe run <pipeline.yaml>` first",
            results.display()
        ))));
    }
    for w in &builder.warnings {
        eprintln!("warning: {w}");
    }
    let (name, text) = template(template_path, &ctx.order)?;
    let md = render(&name, &text, &ctx).map_err(|e| Exit::BadInput(e.to_string()))?;
    let doc = if format == "html" {
        labpipe::report::html::to_html(&md, out_dir.unwrap_or(Path::new(".")))
    } else {
        md
    };
    if let Some(f) = check {
        let existing = std::fs::read_to_string(f)
            .map_err(|e| Exit::Failed(super::anyhow_msg(format!("cannot read `{}`: {e}", f.display()))))?;
        if existing == doc {
            eprintln!("{} is up to date", f.display());
            return Ok(0);
        }
        let line = existing
            .lines()
            .zip(doc.lines())
            .position(|(a, b)| a != b)
            .unwrap_or(existing.lines().count().min(doc.lines().count()));
        eprintln!(
            "{} differs from what the results give (first difference at line {})",
            f.display(),
            line + 1
        );
        return Ok(1);
    }
    match out_dir {
        Some(d) if check.is_none() => {
            std::fs::create_dir_all(d).map_err(|e| Exit::Failed(e.into()))?;
            let file = d.join(if format == "html" {
                "report.html"
            } else {
                "report.md"
            });
            let tmp = file.with_extension("tmp");
            std::fs::write(&tmp, &doc).map_err(|e| Exit::Failed(e.into()))?;
            std::fs::rename(&tmp, &file).map_err(|e| Exit::Failed(e.into()))?;
            eprintln!("wrote {}", file.display());
        }
        _ => print!("{doc}"),
    }
    Ok(0)
}
