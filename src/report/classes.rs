//! Per-class results a report can show as tables: the most-confused pairs of classes and the per-class
//! accuracies, cut to the worst and best few when there are too many classes to list (CIFAR-100).

use crate::train::evaluate::TestMetrics;
use serde::Serialize;

/// How many most-confused pairs are listed.
pub const TOP_PAIRS: usize = 10;
/// Above this many classes the per-class table shows only the worst and best `EXTREMES`.
pub const MANY_CLASSES: usize = 20;
/// How many classes the worst and best lists hold when there are many classes.
pub const EXTREMES: usize = 10;

/// One off-diagonal cell of the confusion matrix.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ConfusedPair {
    /// The true class.
    pub true_class: String,
    /// The class it was taken for.
    pub predicted: String,
    /// Test images of `true_class` predicted as `predicted`.
    pub count: u64,
    /// `count` over the test images of `true_class`.
    pub share: f64,
}

/// One class's test accuracy.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ClassAccuracy {
    /// 0-based label.
    pub index: usize,
    /// Its name.
    pub name: String,
    /// Share of its test images predicted correctly (0 when it has none).
    pub accuracy: f64,
    /// Its test images.
    pub images: u64,
}

/// The per-class tables of one run.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ClassResults {
    /// Classes in the matrix.
    pub count: usize,
    /// True when there are more than `MANY_CLASSES`: templates show `worst` and `best`, not `per_class`.
    pub many: bool,
    /// The most-confused pairs, most images first (at most `TOP_PAIRS`, none with a zero count).
    pub confused_pairs: Vec<ConfusedPair>,
    /// Every class in label order.
    pub per_class: Vec<ClassAccuracy>,
    /// The `EXTREMES` lowest accuracies, lowest first.
    pub worst: Vec<ClassAccuracy>,
    /// The `EXTREMES` highest accuracies, highest first.
    pub best: Vec<ClassAccuracy>,
}

impl ClassResults {
    /// The tables for `m`; a matrix shorter than its names (or ragged) counts missing cells as zero.
    pub fn of(m: &TestMetrics) -> ClassResults {
        let k = m.confusion.len().max(m.class_names.len());
        let name = |i: usize| {
            m.class_names
                .get(i)
                .cloned()
                .unwrap_or_else(|| format!("class {i}"))
        };
        let cell = |i: usize, j: usize| m.confusion.get(i).and_then(|r| r.get(j)).copied().unwrap_or(0);
        let totals: Vec<u64> = (0..k).map(|i| (0..k).map(|j| cell(i, j)).sum()).collect();
        let share = |count: u64, total: u64| {
            if total == 0 {
                0.0
            } else {
                count as f64 / total as f64
            }
        };

        let mut pairs: Vec<(usize, usize, u64)> = (0..k)
            .flat_map(|i| (0..k).map(move |j| (i, j)))
            .filter(|&(i, j)| i != j)
            .map(|(i, j)| (i, j, cell(i, j)))
            .filter(|p| p.2 > 0)
            .collect();
        // Most images first; ties by the larger share of the true class, then by label, so the order is fixed.
        pairs.sort_by(|a, b| {
            b.2.cmp(&a.2)
                .then(share(b.2, totals[b.0]).total_cmp(&share(a.2, totals[a.0])))
                .then((a.0, a.1).cmp(&(b.0, b.1)))
        });
        let confused_pairs = pairs
            .into_iter()
            .take(TOP_PAIRS)
            .map(|(i, j, count)| ConfusedPair {
                true_class: name(i),
                predicted: name(j),
                count,
                share: share(count, totals[i]),
            })
            .collect();

        let per_class: Vec<ClassAccuracy> = (0..k)
            .map(|i| ClassAccuracy {
                index: i,
                name: name(i),
                accuracy: share(cell(i, i), totals[i]),
                images: totals[i],
            })
            .collect();
        let mut ranked = per_class.clone();
        ranked.sort_by(|a, b| a.accuracy.total_cmp(&b.accuracy).then(a.index.cmp(&b.index)));
        let worst = ranked.iter().take(EXTREMES).cloned().collect();
        ranked.sort_by(|a, b| b.accuracy.total_cmp(&a.accuracy).then(a.index.cmp(&b.index)));
        let best = ranked.iter().take(EXTREMES).cloned().collect();
        ClassResults {
            count: k,
            many: k > MANY_CLASSES,
            confused_pairs,
            per_class,
            worst,
            best,
        }
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// A `k`-class result with 100 test images per class: class `i` is right `100 - i % 50` times, and its
    /// errors go to the next class, except that class 3 loses 40 more images to class 5.
    pub(crate) fn metrics(k: usize) -> TestMetrics {
        let mut confusion = vec![vec![0u64; k]; k];
        for (i, row) in confusion.iter_mut().enumerate() {
            let wrong = (i % 50) as u64;
            row[i] = 100 - wrong;
            row[(i + 1) % k] += wrong;
        }
        if k > 5 {
            confusion[3][3] -= 40;
            confusion[3][5] += 40;
        }
        let images = 100 * k;
        let correct: u64 = (0..k).map(|i| confusion[i][i]).sum();
        TestMetrics {
            loss: 1.0,
            accuracy: correct as f64 / images as f64,
            class_names: (0..k).map(|i| format!("c{i}")).collect(),
            per_class_accuracy: (0..k).map(|i| confusion[i][i] as f64 / 100.0).collect(),
            confusion,
            images,
        }
    }

    #[test]
    fn ten_classes_list_every_class_and_the_worst_pairs_first() {
        let r = ClassResults::of(&metrics(10));
        assert!(!r.many);
        assert_eq!(r.per_class.len(), 10);
        let top = &r.confused_pairs[0];
        assert_eq!(
            (top.true_class.as_str(), top.predicted.as_str(), top.count),
            ("c3", "c5", 40)
        );
        assert!((top.share - 0.40).abs() < 1e-12);
        // Then class 9 → 0 (9 images), 8 → 9 (8), …; class 0 makes no error and gives no pair.
        let rest: Vec<(String, u64)> = r.confused_pairs[1..]
            .iter()
            .map(|p| (format!("{}>{}", p.true_class, p.predicted), p.count))
            .collect();
        assert_eq!(rest[0], ("c9>c0".to_string(), 9));
        assert_eq!(rest[1], ("c8>c9".to_string(), 8));
        assert_eq!(rest.last(), Some(&("c1>c2".to_string(), 1)));
        assert_eq!(r.confused_pairs.len(), TOP_PAIRS);
        assert!(r.confused_pairs.iter().all(|p| p.count > 0));
        assert_eq!(r.worst[0].name, "c3");
        assert_eq!(r.best[0].name, "c0");
    }

    #[test]
    fn twenty_classes_are_still_listed_whole() {
        let r = ClassResults::of(&metrics(20));
        assert!(!r.many);
        assert_eq!(r.per_class.len(), 20);
        assert_eq!(r.confused_pairs.len(), TOP_PAIRS);
        let counts: Vec<u64> = r.confused_pairs.iter().map(|p| p.count).collect();
        assert!(counts.windows(2).all(|w| w[0] >= w[1]), "{counts:?}");
    }

    #[test]
    fn a_hundred_classes_keep_the_worst_and_best_ten() {
        let r = ClassResults::of(&metrics(100));
        assert!(r.many);
        assert_eq!((r.worst.len(), r.best.len()), (EXTREMES, EXTREMES));
        // Classes 49 and 99 are right 51 times, the lowest after class 3 (100 - 3 - 40 = 57 is higher).
        assert_eq!(
            r.worst.iter().map(|c| c.index).take(2).collect::<Vec<_>>(),
            [49, 99]
        );
        assert!((r.worst[0].accuracy - 0.51).abs() < 1e-12);
        assert_eq!(r.best[0].index, 0);
        assert_eq!(r.best[1].index, 50);
        assert!(r.worst.windows(2).all(|w| w[0].accuracy <= w[1].accuracy));
        assert!(r.best.windows(2).all(|w| w[0].accuracy >= w[1].accuracy));
        let top: Vec<(usize, u64)> = r
            .confused_pairs
            .iter()
            .map(|p| (p.true_class[1..].parse().unwrap(), p.count))
            .collect();
        assert_eq!(top[..3], [(49, 49), (99, 49), (48, 48)]);
        assert_eq!(top.len(), TOP_PAIRS);
    }

    #[test]
    fn ragged_or_empty_matrices_do_not_panic() {
        let mut m = metrics(3);
        m.confusion[1] = vec![0];
        m.class_names.truncate(2);
        let r = ClassResults::of(&m);
        assert_eq!(r.per_class[2].name, "class 2");
        assert_eq!(r.per_class[1].accuracy, 0.0);
        let empty = TestMetrics {
            loss: 0.0,
            accuracy: 0.0,
            class_names: Vec::new(),
            per_class_accuracy: Vec::new(),
            confusion: Vec::new(),
            images: 0,
        };
        let r = ClassResults::of(&empty);
        assert!(r.confused_pairs.is_empty() && r.worst.is_empty());
    }
}

#[cfg(test)]
mod template_tests {
    //! The shipped templates' per-class sections, rendered from a context with a 10- and a 100-class run
    //! (the end-to-end tests only have the 10-class synthetic dataset).

    use super::tests::metrics;
    use super::*;
    use crate::report::context::{CheckpointView, Figures, PipelineView, ReportContext, RunView};
    use crate::report::render::render;
    use crate::train::config::Select;
    use std::collections::BTreeMap;

    const GENERIC: &str = include_str!("../../report_templates/report.md.j2");
    const LAB2: &str = include_str!("../../report_templates/lab2.md.j2");

    fn context(classes: usize) -> ReportContext {
        let test = metrics(classes);
        let run = RunView {
            pipeline: "p".into(),
            name: "baseline".into(),
            id: "0".into(),
            aliases: Vec::new(),
            done: true,
            status: "done".into(),
            status_message: None,
            divergence: None,
            damaged: Vec::new(),
            rerun: "labpipe run p.yaml --only baseline".into(),
            caption: None,
            config: Vec::new(),
            dataset: Some("CIFAR-100".into()),
            data: None,
            model: None,
            history: None,
            select: "the last epoch's checkpoint".into(),
            select_policy: Select::Last,
            selected_epoch: None,
            stopped_early_at: None,
            train_seconds: None,
            classes: Some(ClassResults::of(&test)),
            test: Some(test),
            checkpoint: Some(CheckpointView {
                path: "m.safetensors".into(),
                size_mb: 1.0,
            }),
            figures: Figures {
                curves: None,
                confusion: Some("figures/confusion.png".into()),
                diagram: None,
            },
            observations: None,
        };
        let pipeline = PipelineView {
            name: "p".into(),
            title: None,
            description: None,
            runs: vec![run.clone()],
            run: BTreeMap::from([(run.name.clone(), run)]),
            comparisons: Vec::new(),
            baseline: Some("baseline".into()),
            variants: Vec::new(),
        };
        ReportContext {
            pipelines: BTreeMap::from([("p".to_string(), pipeline)]),
            order: vec!["p".into()],
            labpipe_version: "0".into(),
        }
    }

    #[test]
    fn many_classes_show_the_worst_and_best_ten_in_both_templates() {
        for (file, source) in [("report.md.j2", GENERIC), ("lab2.md.j2", LAB2)] {
            let md = render(file, source, &context(100)).unwrap();
            assert!(md.contains("](figures/confusion.png)"), "{file}:\n{md}");
            assert!(md.contains("on CIFAR-100"), "{file}:\n{md}");
            assert!(
                md.contains("Per-class accuracy, the 10 lowest and highest of 100 classes:"),
                "{file}:\n{md}"
            );
            // Worst 49 and 99 (51%) beside best 0 and 50 (100%).
            assert!(md.contains("| c49 | 51.0% | c0 | 100.0% |"), "{file}:\n{md}");
            assert!(md.contains("| c99 | 51.0% | c50 | 100.0% |"), "{file}:\n{md}");
            assert!(md.contains("| c49 | c50 | 49 | 49.0% |"), "{file}:\n{md}");
            let pair_rows = md
                .lines()
                .skip_while(|l| !l.starts_with("| true class |"))
                .skip(2)
                .take_while(|l| l.starts_with('|'));
            assert_eq!(pair_rows.count(), TOP_PAIRS, "{file}:\n{md}");
            assert!(!md.contains("| class | accuracy | test images |"), "{file}");

            let md = render(file, source, &context(10)).unwrap();
            assert!(md.contains("| class | accuracy | test images |"), "{file}:\n{md}");
            assert!(md.contains("| c3 | 57.0% | 100 |"), "{file}:\n{md}");
            assert!(!md.contains("lowest and highest"), "{file}");
        }
    }
}
