//! Renders a minijinja template against the report context, with formatting filters and figure numbering.
//!
//! Figures are numbered in the order the template shows them. A table may refer to a figure shown later
//! (the seed's comparison tables do), so the template is rendered twice: the first pass records the order in
//! which `figure()` is called, the second fills `fig_no()` references from it.

use super::context::ReportContext;
use minijinja::value::{Serde, Value};
use minijinja::{Environment, Error, ErrorKind};
use std::collections::HashMap;
use std::path::Path;
use std::sync::{Arc, Mutex};

/// A template that could not be rendered: the file, line and what went wrong.
#[derive(Debug, thiserror::Error)]
#[error("error: template `{file}`{}: {message}", line.map(|l| format!(" line {l}")).unwrap_or_default())]
pub struct TemplateError {
    /// The template file.
    pub file: String,
    /// 1-based line, when known.
    pub line: Option<usize>,
    /// What went wrong.
    pub message: String,
}

/// `11181642` → `11,181,642`.
pub fn thousands(v: f64) -> String {
    // `{:.0}` rounds as the report always has (half to even), then Python's `{:,}` grouping.
    let whole: u64 = format!("{:.0}", v.abs()).parse().unwrap_or(u64::MAX);
    let digits = crate::summary::table::thousands(whole);
    if v < 0.0 && digits != "0" {
        format!("-{digits}")
    } else {
        digits
    }
}

/// `0.8532` → `85.3%` (with `digits` decimals).
pub fn percent(v: f64, digits: Option<usize>) -> String {
    format!("{:.*}%", digits.unwrap_or(1), v * 100.0)
}

/// Fixed decimals.
pub fn fixed(v: f64, digits: Option<usize>) -> String {
    format!("{:.*}", digits.unwrap_or(3), v)
}

/// A size in MB with two decimals.
pub fn mb(v: f64) -> String {
    format!("{v:.2} MB")
}

/// Seconds as `1h 02m`, `3m 05s` or `12.3s`.
pub fn duration(secs: f64) -> String {
    if !secs.is_finite() || secs < 0.0 {
        return "?".into();
    }
    let s = secs.round() as u64;
    if secs < 60.0 {
        format!("{secs:.1}s")
    } else if s < 3600 {
        format!("{}m {:02}s", s / 60, s % 60)
    } else {
        format!("{}h {:02}m", s / 3600, (s % 3600) / 60)
    }
}

/// What a filter prints for a number that is not there.
pub const NOT_AVAILABLE: &str = "n/a";

/// `format(v)` for a number, `n/a` for none, an error for anything else (undefined included).
fn number(v: Value, format: &dyn Fn(f64) -> String) -> Result<String, Error> {
    if v.is_none() {
        return Ok(NOT_AVAILABLE.to_string());
    }
    if v.is_undefined() {
        return Err(Error::new(
            ErrorKind::UndefinedError,
            "a number filter was given an undefined value",
        ));
    }
    f64::try_from(v.clone())
        .map(format)
        .map_err(|_| Error::new(ErrorKind::InvalidOperation, format!("`{v}` is not a number")))
}

#[derive(Default)]
struct Figures {
    /// key → number, from the previous pass.
    known: HashMap<String, usize>,
    /// keys in the order `figure()` was called in this pass.
    order: Vec<String>,
}

fn environment(figs: Arc<Mutex<Figures>>) -> Environment<'static> {
    let mut env = Environment::new();
    env.set_undefined_behavior(minijinja::UndefinedBehavior::Strict);
    // A number the results do not have (a diverged model's NaN loss is stored as none) prints as `n/a`
    // instead of failing the whole report; an undefined one is still an error (a typo in the template).
    env.add_filter("thousands", |v: Value| number(v, &thousands));
    env.add_filter("percent", |v: Value, d: Option<usize>| {
        number(v, &|x| percent(x, d))
    });
    env.add_filter("fixed", |v: Value, d: Option<usize>| number(v, &|x| fixed(x, d)));
    env.add_filter("mb", |v: Value| number(v, &mb));
    env.add_filter("duration", |v: Value| number(v, &duration));
    // `train.optimizer.lr` → `lr`.
    env.add_filter("leaf", |v: String| {
        v.rsplit('.').next().unwrap_or_default().to_string()
    });
    let f = figs.clone();
    // figure(key) → its number, assigned in the order figures are shown.
    env.add_function("figure", move |key: String| -> Result<usize, Error> {
        let mut g = f
            .lock()
            .map_err(|_| Error::new(ErrorKind::InvalidOperation, "figure registry poisoned"))?;
        if let Some(i) = g.order.iter().position(|k| *k == key) {
            return Ok(i + 1);
        }
        g.order.push(key);
        Ok(g.order.len())
    });
    let f = figs;
    // fig_no(key) → the number `figure(key)` gets anywhere in the document, or "?" if never shown.
    env.add_function("fig_no", move |key: String| -> Result<Value, Error> {
        let g = f
            .lock()
            .map_err(|_| Error::new(ErrorKind::InvalidOperation, "figure registry poisoned"))?;
        Ok(match g.known.get(&key) {
            Some(n) => Value::from(*n),
            None => Value::from("?"),
        })
    });
    env
}

/// Render template `source` (named `file` in errors) with `ctx`.
pub fn render(file: &str, source: &str, ctx: &ReportContext) -> Result<String, TemplateError> {
    let figs = Arc::new(Mutex::new(Figures::default()));
    let mut env = environment(figs.clone());
    let terr = |e: Error| {
        let mut message = e.to_string();
        // minijinja appends "(in name:line)"; the file and line are shown separately.
        if let Some(i) = message.rfind(" (in ") {
            message.truncate(i);
        }
        // minijinja names what was undefined; say how a template guards a value that may be missing.
        if e.kind() == ErrorKind::UndefinedError {
            message.push_str("; test a value that may be missing first: `{% if x is not none %}`");
        }
        TemplateError {
            file: file.to_string(),
            line: e.line(),
            message,
        }
    };
    env.add_template_owned(file.to_string(), source.to_string())
        .map_err(terr)?;
    let tmpl = env.get_template(file).map_err(terr)?;
    let value = Value::from(Serde(ctx));
    let first = tmpl.render(&value).map_err(terr)?;
    {
        let mut g = figs.lock().map_err(|_| TemplateError {
            file: file.into(),
            line: None,
            message: "poisoned".into(),
        })?;
        let order = std::mem::take(&mut g.order);
        g.known = order
            .iter()
            .enumerate()
            .map(|(i, k)| (k.clone(), i + 1))
            .collect();
        if g.known.is_empty() {
            return Ok(first);
        }
    }
    tmpl.render(&value).map_err(terr)
}

/// Render the template file at `path`.
pub fn render_file(path: &Path, ctx: &ReportContext) -> Result<String, TemplateError> {
    let source = std::fs::read_to_string(path).map_err(|e| TemplateError {
        file: path.display().to_string(),
        line: None,
        message: format!("cannot read the template: {e}"),
    })?;
    render(&path.display().to_string(), &source, ctx)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeMap;

    fn empty() -> ReportContext {
        ReportContext {
            pipelines: BTreeMap::new(),
            order: vec![],
            labpipe_version: "0".into(),
        }
    }

    #[test]
    fn filters_format_numbers() {
        assert_eq!(thousands(11181642.0), "11,181,642");
        assert_eq!(thousands(896.0), "896");
        assert_eq!(percent(0.853, None), "85.3%");
        assert_eq!(fixed(0.85349, Some(3)), "0.853");
        assert_eq!(mb(44.80703), "44.81 MB");
        assert_eq!(duration(12.34), "12.3s");
        assert_eq!(duration(185.0), "3m 05s");
        assert_eq!(duration(3725.0), "1h 02m");
    }

    #[test]
    fn figures_are_numbered_in_display_order_even_when_referenced_first() {
        let t = "see figure {{ fig_no('b') }} and {{ fig_no('a') }}\nFigure {{ figure('a') }}\nFigure {{ figure('b') }}\n";
        assert_eq!(
            render("t.j2", t, &empty()).unwrap(),
            "see figure 2 and 1\nFigure 1\nFigure 2"
        );
    }

    #[test]
    fn template_errors_name_file_and_line() {
        let e = render("lab.md.j2", "line one\n{{ nothing.here }}\n", &empty()).unwrap_err();
        assert_eq!(e.line, Some(2));
        assert!(
            e.to_string().starts_with("error: template `lab.md.j2` line 2:"),
            "{e}"
        );
        let e = render("lab.md.j2", "ok\n{% for x in %}\n", &empty()).unwrap_err();
        assert_eq!(e.line, Some(2), "{e}");
    }

    #[test]
    fn an_undefined_value_is_named_and_a_missing_number_does_not_fail() {
        let e = render("lab.md.j2", "a\n{{ pipelines.task1.run.x }}\n", &empty()).unwrap_err();
        assert!(e.to_string().contains("`pipelines.task1` is undefined"), "{e}");
        let e = render(
            "lab.md.j2",
            "{% set r = {'a': none} %}\n\n{{ r.a.checkpoint.path }}\n",
            &empty(),
        )
        .unwrap_err();
        assert_eq!(e.line, Some(3), "{e}");
        assert!(e.to_string().contains("`r.a.checkpoint` is undefined"), "{e}");
        assert!(e.to_string().contains("is not none"), "{e}");
        let t = "{{ none | fixed(3) }} {{ none | percent }} {{ none | thousands }} {{ 0.5 | percent }} {{ 3 | fixed(1) }}";
        assert_eq!(render("t", t, &empty()).unwrap(), "n/a n/a n/a 50.0% 3.0");
        // A misspelt field is still an error, not `n/a`.
        let e = render("t", "{% set r = {'a': 1} %}{{ r.b | fixed }}", &empty()).unwrap_err();
        assert!(e.to_string().contains("undefined"), "{e}");
        assert!(render("t", "{{ 'x' | fixed }}", &empty()).is_err());
    }

    #[test]
    fn rendering_is_deterministic() {
        let t = "{{ figure('x') }} {{ 1234567 | thousands }}";
        assert_eq!(
            render("t", t, &empty()).unwrap(),
            render("t", t, &empty()).unwrap()
        );
    }
}
