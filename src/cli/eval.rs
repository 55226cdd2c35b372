//! `labpipe eval`: a checkpoint's test loss and accuracy, as the seed prints them, plus per-class results.

use super::Exit;
use labpipe::model::checkpoint::size_mb;
use labpipe::pipeline::{Executor, Options};
use labpipe::spec::RunSpec;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::AtomicBool;

pub fn eval(
    run: &RunSpec,
    checkpoint: Option<&Path>,
    out: &Path,
    device: &candle_core::Device,
    json: bool,
) -> Result<i32, Exit> {
    let workers = std::thread::available_parallelism().map(|n| n.get()).unwrap_or(2);
    let opts = Options {
        out: out.to_path_buf(),
        device: device.clone(),
        workers,
        quiet: true,
        interrupt: Arc::new(AtomicBool::new(false)),
    };
    let mut exec = Executor::new(&opts);
    let (path, m) = exec
        .evaluate_run(run, checkpoint)
        .map_err(|e| Exit::Failed(e.into()))?;
    let mb = size_mb(&path).map_err(|e| Exit::Failed(e.into()))?;
    if json {
        let v = serde_json::json!({"checkpoint": path, "size_mb": mb, "metrics": m});
        println!("{}", serde_json::to_string_pretty(&v).unwrap_or_default());
        return Ok(0);
    }
    println!("Model loaded from {} ({mb:.5} MB)", path.display());
    println!("Test loss: {:.3}, Test accuracy: {:.3}", m.loss, m.accuracy);
    println!();
    println!("{:<14} {:>8}", "class", "accuracy");
    for (name, acc) in m.class_names.iter().zip(&m.per_class_accuracy) {
        println!("{name:<14} {acc:>8.3}");
    }
    println!();
    println!("confusion matrix (rows: true class, columns: predicted)");
    print!("{}", confusion_table(&m.class_names, &m.confusion));
    Ok(0)
}

/// Class names longer than this make the columns too wide: they are headed by class index instead.
const LONGEST_COLUMN_NAME: usize = 10;

/// The confusion matrix as text with a header row and a label column: "true \ predicted" in the corner,
/// predicted classes across (by name, or by index when names are long; the rows then show the index too).
fn confusion_table(names: &[String], confusion: &[Vec<u64>]) -> String {
    let k = confusion.len().max(names.len());
    let name = |i: usize| names.get(i).cloned().unwrap_or_else(|| format!("class {i}"));
    let by_index = (0..k).any(|i| name(i).chars().count() > LONGEST_COLUMN_NAME);
    let columns: Vec<String> = (0..k)
        .map(|i| if by_index { i.to_string() } else { name(i) })
        .collect();
    let rows: Vec<String> = (0..k)
        .map(|i| {
            if by_index {
                format!("{i:>3} {}", name(i))
            } else {
                name(i)
            }
        })
        .collect();
    let count = |i: usize, j: usize| confusion.get(i).and_then(|r| r.get(j)).copied().unwrap_or(0);
    let corner = "true \\ predicted";
    let label_w = rows
        .iter()
        .map(|r| r.chars().count())
        .chain([corner.chars().count()])
        .max()
        .unwrap_or(0);
    let width = (0..k)
        .flat_map(|i| (0..k).map(move |j| (i, j)))
        .map(|(i, j)| count(i, j).to_string().len())
        .chain(columns.iter().map(|c| c.chars().count()))
        .max()
        .unwrap_or(1)
        .max(3);
    let pad = |s: &str, w: usize| format!("{s}{}", " ".repeat(w.saturating_sub(s.chars().count())));
    let right = |s: &str, w: usize| format!("{}{s}", " ".repeat(w.saturating_sub(s.chars().count())));
    let mut out = pad(corner, label_w);
    for c in &columns {
        out.push(' ');
        out.push_str(&right(c, width));
    }
    out.push('\n');
    for (i, r) in rows.iter().enumerate() {
        out.push_str(&pad(r, label_w));
        for j in 0..k {
            out.push(' ');
            out.push_str(&right(&count(i, j).to_string(), width));
        }
        out.push('\n');
    }
    if by_index {
        out.push_str("(columns: predicted class by the index shown beside each row)\n");
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn names(v: &[&str]) -> Vec<String> {
        v.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn headers_name_the_classes_both_ways() {
        let t = confusion_table(&names(&["cat", "dog"]), &[vec![9, 1], vec![12, 3]]);
        assert_eq!(
            t,
            "true \\ predicted cat dog\n\
             cat                9   1\n\
             dog               12   3\n"
        );
    }

    #[test]
    fn long_names_head_columns_by_index() {
        let t = confusion_table(
            &names(&["T-shirt/top", "Trouser", "Ankle boot"]),
            &[vec![1000, 0, 0], vec![0, 7, 0], vec![0, 0, 5]],
        );
        let lines: Vec<&str> = t.lines().collect();
        assert_eq!(lines[0], "true \\ predicted    0    1    2");
        assert_eq!(lines[1], "  0 T-shirt/top  1000    0    0");
        assert_eq!(lines[3], "  2 Ankle boot      0    0    5");
        assert!(lines[4].contains("index"), "{t}");
        // Every line is as wide as the header, so the columns line up.
        assert!(lines[..4].iter().all(|l| l.len() == lines[0].len()), "{t}");
    }

    #[test]
    fn a_matrix_without_names_is_numbered() {
        let t = confusion_table(&[], &[vec![2, 0], vec![0, 2]]);
        assert!(t.contains("class 1"), "{t}");
    }
}
