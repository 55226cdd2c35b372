//! Loss and accuracy against epoch: one run's train and validation curves (the seed report's Figures 1-9),
//! and several runs' validation curves overlaid for the comparison tables.

use std::path::Path;

use plotters::coord::Shift;
use plotters::prelude::*;
use plotters::style::text_anchor::{HPos, Pos, VPos};

use super::legend::{self, Entry, Sample, Stroke};
use super::panel::{Marker, Panel, Scale, Series};
use super::style::{self, INK, TAB10};
use super::{FigureError, Painting, write_svg_and_png};
use crate::train::history::TrainHistory;

/// Canvas of both curve figures: two panels side by side, readable at Markdown page width.
const SIZE: (u32, u32) = (1200, 450);
const TITLE_BAND: u32 = 38;

/// Colour of training curves (matplotlib's first colour).
const TRAIN: RGBColor = TAB10[0];
/// Colour of validation curves.
const VALIDATION: RGBColor = TAB10[1];
/// The chosen checkpoint's marker.
const SELECTED: RGBColor = RGBColor(0x44, 0x44, 0x44);
/// The early-stop marker.
const STOPPED: RGBColor = TAB10[3];

/// Epochs to mark on a run's curves.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct CurveMarks {
    /// The epoch whose checkpoint was kept (1-based).
    pub selected_epoch: Option<usize>,
    /// The epoch after which early stopping ended training (1-based).
    pub stopped_early_at: Option<usize>,
}

/// Draw one run's loss and accuracy (train solid, validation dashed) against epoch, with `marks`, to `svg`
/// and `png`.
pub fn draw_curves(
    history: &TrainHistory,
    title: &str,
    marks: &CurveMarks,
    svg: &Path,
    png: &Path,
) -> Result<(), FigureError> {
    let epochs = &history.epochs;
    let series = |pick: fn(&crate::train::history::EpochRecord) -> f64, color, stroke| Series {
        color,
        stroke,
        points: epochs.iter().map(|e| (e.epoch as f64, pick(e))).collect(),
        highlight: None,
    };
    let within = |epoch: usize| epochs.iter().any(|e| e.epoch == epoch);
    let mut markers = Vec::new();
    let mut mark_entries = Vec::new();
    if let Some(epoch) = marks.selected_epoch.filter(|&e| within(e)) {
        markers.push(Marker {
            epoch: epoch as f64,
            color: SELECTED,
            stroke: Stroke::Dashed,
        });
        let best = history.best_val_accuracy().map(|b| b.epoch);
        let what = if best == Some(epoch) {
            "best val acc"
        } else {
            "selected checkpoint"
        };
        mark_entries.push(Entry {
            sample: Sample::Line {
                color: SELECTED,
                stroke: Stroke::Dashed,
                width: 2,
            },
            label: format!("{what}, epoch {epoch}"),
        });
    }
    if let Some(epoch) = marks.stopped_early_at.filter(|&e| within(e)) {
        markers.push(Marker {
            epoch: epoch as f64,
            color: STOPPED,
            stroke: Stroke::Dotted,
        });
        mark_entries.push(Entry {
            sample: Sample::Line {
                color: STOPPED,
                stroke: Stroke::Dotted,
                width: 2,
            },
            label: format!("stopped early, epoch {epoch}"),
        });
    }
    let mut entries = vec![
        Entry {
            sample: Sample::Line {
                color: TRAIN,
                stroke: Stroke::Solid,
                width: 2,
            },
            label: "train".into(),
        },
        Entry {
            sample: Sample::Line {
                color: VALIDATION,
                stroke: Stroke::Dashed,
                width: 2,
            },
            label: "validation".into(),
        },
    ];
    entries.extend(mark_entries);
    let panels = [
        Panel {
            title: "Loss".into(),
            y_desc: "cross-entropy loss".into(),
            scale: Scale::Loss,
            series: vec![
                series(|e| e.train_loss, TRAIN, Stroke::Solid),
                series(|e| e.val_loss, VALIDATION, Stroke::Dashed),
            ],
            markers: markers.clone(),
            legend: entries.clone(),
        },
        Panel {
            title: "Accuracy".into(),
            y_desc: "accuracy".into(),
            scale: Scale::Accuracy,
            series: vec![
                series(|e| e.train_accuracy, TRAIN, Stroke::Solid),
                series(|e| e.val_accuracy, VALIDATION, Stroke::Dashed),
            ],
            markers,
            legend: entries,
        },
    ];
    let figure = TwoPanels {
        title: title.to_string(),
        panels,
        side_legend: Vec::new(),
    };
    write_svg_and_png(&figure, svg, png)
}

/// Draw the validation loss and validation accuracy of several runs (one colour each, each run's best epoch marked with a dot) to
/// `svg` and `png`.
pub fn draw_overlay(
    series: &[(String, &TrainHistory)],
    title: &str,
    svg: &Path,
    png: &Path,
) -> Result<(), FigureError> {
    let mut loss = Vec::new();
    let mut accuracy = Vec::new();
    let mut entries = Vec::new();
    for (i, (name, history)) in series.iter().enumerate() {
        let color = TAB10[i % TAB10.len()];
        // Past ten runs the colours repeat, so the repeats are dashed to stay distinguishable.
        let stroke = if i < TAB10.len() {
            Stroke::Solid
        } else {
            Stroke::Dashed
        };
        let points = |pick: fn(&crate::train::history::EpochRecord) -> f64| {
            history.epochs.iter().map(|e| (e.epoch as f64, pick(e))).collect()
        };
        let best = history
            .epochs
            .iter()
            .filter(|e| e.val_accuracy.is_finite())
            .fold(
                None,
                |best: Option<&crate::train::history::EpochRecord>, e| match best {
                    Some(b) if b.val_accuracy >= e.val_accuracy => Some(b),
                    _ => Some(e),
                },
            )
            .map(|e| (e.epoch as f64, e.val_accuracy));
        loss.push(Series {
            color,
            stroke,
            points: points(|e| e.val_loss),
            highlight: None,
        });
        accuracy.push(Series {
            color,
            stroke,
            points: points(|e| e.val_accuracy),
            highlight: best,
        });
        let best_text = best.map_or(String::new(), |(epoch, acc)| {
            format!(" (best {:.1}% @ {epoch:.0})", acc * 100.0)
        });
        entries.push(Entry {
            sample: Sample::Line {
                color,
                stroke,
                width: 2,
            },
            label: format!("{name}{best_text}"),
        });
    }
    if accuracy.iter().any(|s| s.highlight.is_some()) {
        entries.push(Entry {
            sample: Sample::Dot {
                color: RGBColor(0x88, 0x88, 0x88),
            },
            label: "best validation accuracy".into(),
        });
    }
    let panels = [
        Panel {
            title: "Validation loss".into(),
            y_desc: "cross-entropy loss".into(),
            scale: Scale::Loss,
            series: loss,
            markers: Vec::new(),
            legend: Vec::new(),
        },
        Panel {
            title: "Validation accuracy".into(),
            y_desc: "accuracy".into(),
            scale: Scale::Accuracy,
            series: accuracy,
            markers: Vec::new(),
            legend: Vec::new(),
        },
    ];
    let figure = TwoPanels {
        title: title.to_string(),
        panels,
        side_legend: entries,
    };
    write_svg_and_png(&figure, svg, png)
}

/// A titled figure with two panels side by side and, optionally, a legend column to their right.
struct TwoPanels {
    title: String,
    panels: [Panel; 2],
    side_legend: Vec<Entry>,
}

impl Painting for TwoPanels {
    fn size(&self) -> (u32, u32) {
        SIZE
    }

    fn paint<DB: DrawingBackend>(&self, root: &DrawingArea<DB, Shift>) -> Result<(), String> {
        root.fill(&WHITE).map_err(style::msg)?;
        let title = style::text(18.0, true, &INK).pos(Pos::new(HPos::Center, VPos::Center));
        root.draw_text(
            &self.title,
            &title,
            (SIZE.0 as i32 / 2, TITLE_BAND as i32 / 2 + 2),
        )
        .map_err(style::msg)?;
        let (_, body) = root.split_vertically(TITLE_BAND);
        let body = body.margin(0, 8, 6, 4);
        let plots = if self.side_legend.is_empty() {
            body
        } else {
            let (w, h) = legend::measure(root, &self.side_legend)?;
            let column = (w + 16).min(SIZE.0 as i32 / 3);
            let (plots, side) = body.split_horizontally(SIZE.0 as i32 - 12 - column);
            let (sx, sy) = side.get_base_pixel();
            let (_, side_h) = side.dim_in_pixel();
            // Centre the legend on the plots' height (they end 44 px above the bottom, at the x labels).
            let top = sy + ((side_h as i32 - 44 - h) / 2).max(0);
            legend::draw(root, &self.side_legend, (sx + 8, top))?;
            plots
        };
        let cells = plots.split_evenly((1, 2));
        for (panel, cell) in self.panels.iter().zip(&cells) {
            panel.paint(root, cell)?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::figure::testing::{has_text, names_in, paths, read_checked};
    use crate::train::history::EpochRecord;

    /// A plausible 80-epoch run: loss falls and accuracy rises with a little deterministic wobble.
    pub(crate) fn history(epochs: usize, lr: f64) -> TrainHistory {
        let epochs = (1..=epochs)
            .map(|e| {
                let t = e as f64;
                let wobble = ((t * 1.7).sin() * 0.015) * (lr * 1000.0).min(3.0);
                EpochRecord {
                    epoch: e,
                    lr,
                    train_loss: 1.9 * (-t / 14.0).exp() + 0.15,
                    train_accuracy: 0.95 - 0.6 * (-t / 12.0).exp(),
                    val_loss: 1.7 * (-t / 10.0).exp() + 0.45 + 0.002 * t + wobble,
                    val_accuracy: 0.86 - 0.5 * (-t / 9.0).exp() - wobble,
                    seconds: 30.0,
                    data_wait_seconds: 0.5,
                    images_per_second: 1500.0,
                }
            })
            .collect();
        TrainHistory { epochs }
    }

    fn marks(h: &TrainHistory) -> CurveMarks {
        CurveMarks {
            selected_epoch: h.best_val_accuracy().map(|e| e.epoch),
            stopped_early_at: None,
        }
    }

    #[test]
    fn curves_are_written_decodable_and_deterministic() {
        let dir = tempfile::tempdir().unwrap();
        let h = history(80, 0.001);
        let m = marks(&h);
        let (svg_a, png_a) = paths(dir.path(), "a");
        let (svg_b, png_b) = paths(dir.path(), "b");
        draw_curves(&h, "ResNet-18 baseline", &m, &svg_a, &png_a).unwrap();
        draw_curves(&h, "ResNet-18 baseline", &m, &svg_b, &png_b).unwrap();
        let (text_a, bytes_a) = read_checked(&svg_a, &png_a, SIZE);
        let (text_b, bytes_b) = read_checked(&svg_b, &png_b, SIZE);
        assert_eq!(text_a, text_b, "same history must give the same SVG");
        assert!(bytes_a == bytes_b, "same history must give the same PNG bytes");
        let best = m.selected_epoch.unwrap();
        for label in [
            "ResNet-18 baseline",
            "Loss",
            "Accuracy",
            "epoch",
            "train",
            "validation",
            &format!("best val acc, epoch {best}"),
        ] {
            assert!(has_text(&text_a, label), "SVG lacks {label:?}");
        }
        assert_eq!(names_in(dir.path()), ["a.png", "a.svg", "b.png", "b.svg"]);
    }

    #[test]
    fn marks_are_labelled_by_what_they_are() {
        let dir = tempfile::tempdir().unwrap();
        let h = history(30, 0.001);
        let m = CurveMarks {
            selected_epoch: Some(12),
            stopped_early_at: Some(30),
        };
        let (svg, png) = paths(dir.path(), "m");
        draw_curves(&h, "marks", &m, &svg, &png).unwrap();
        let (text, _) = read_checked(&svg, &png, SIZE);
        assert!(has_text(&text, "selected checkpoint, epoch 12"));
        assert!(has_text(&text, "stopped early, epoch 30"));
        // A mark outside the history is not drawn (it would stretch the axis to a point with no data).
        let far = CurveMarks {
            selected_epoch: Some(500),
            stopped_early_at: None,
        };
        draw_curves(&h, "marks", &far, &svg, &png).unwrap();
        let (text, _) = read_checked(&svg, &png, SIZE);
        assert!(!text.contains("epoch 500"));
    }

    #[test]
    fn one_epoch_nan_inf_and_empty_histories_draw() {
        let dir = tempfile::tempdir().unwrap();
        let mut one = history(1, 0.001);
        let (svg, png) = paths(dir.path(), "one");
        draw_curves(&one, "one epoch", &marks(&one), &svg, &png).unwrap();
        let (text, _) = read_checked(&svg, &png, SIZE);
        assert!(has_text(&text, "best val acc, epoch 1"));

        let mut bad = history(20, 0.01);
        bad.epochs[3].val_loss = f64::NAN;
        bad.epochs[4].train_loss = f64::INFINITY;
        bad.epochs[7].val_accuracy = f64::NEG_INFINITY;
        bad.epochs[19].train_accuracy = f64::NAN;
        bad.epochs[10].train_loss = f64::MAX;
        bad.epochs[11].val_loss = -f64::MAX;
        let (svg, png) = paths(dir.path(), "bad");
        draw_curves(&bad, "diverged", &marks(&bad), &svg, &png).unwrap();
        read_checked(&svg, &png, SIZE);

        one.epochs[0].train_loss = f64::NAN;
        one.epochs[0].val_loss = f64::NAN;
        let all_bad = TrainHistory {
            epochs: vec![one.epochs[0].clone()],
        };
        let (svg, png) = paths(dir.path(), "nan");
        draw_curves(&all_bad, "nan loss", &CurveMarks::default(), &svg, &png).unwrap();
        let (text, _) = read_checked(&svg, &png, SIZE);
        assert!(has_text(&text, "no finite values to plot"));

        let (svg, png) = paths(dir.path(), "empty");
        draw_curves(
            &TrainHistory::default(),
            "empty",
            &CurveMarks::default(),
            &svg,
            &png,
        )
        .unwrap();
        read_checked(&svg, &png, SIZE);
    }

    #[test]
    fn overlay_lists_every_run_and_is_deterministic() {
        let dir = tempfile::tempdir().unwrap();
        let runs: Vec<(String, TrainHistory)> = [0.01, 0.001, 0.0001]
            .iter()
            .flat_map(|&lr| {
                [("step", 80), ("constant", 60)].map(|(kind, n)| (format!("lr={lr}, {kind}"), history(n, lr)))
            })
            .collect();
        let series: Vec<(String, &TrainHistory)> = runs.iter().map(|(n, h)| (n.clone(), h)).collect();
        let (svg_a, png_a) = paths(dir.path(), "a");
        let (svg_b, png_b) = paths(dir.path(), "b");
        draw_overlay(&series, "Learning rate", &svg_a, &png_a).unwrap();
        draw_overlay(&series, "Learning rate", &svg_b, &png_b).unwrap();
        let (text_a, bytes_a) = read_checked(&svg_a, &png_a, SIZE);
        let (text_b, bytes_b) = read_checked(&svg_b, &png_b, SIZE);
        assert!(
            text_a == text_b && bytes_a == bytes_b,
            "same runs must give the same bytes"
        );
        for (name, h) in &series {
            let best = h.best_val_accuracy().unwrap();
            let label = format!("{name} (best {:.1}% @ {})", best.val_accuracy * 100.0, best.epoch);
            assert!(has_text(&text_a, &label), "SVG lacks {label:?}");
        }
        // Six runs in six distinct colours.
        for c in &TAB10[..6] {
            let hex = format!("#{:02X}{:02X}{:02X}", c.0, c.1, c.2);
            assert!(text_a.contains(&hex), "SVG lacks colour {hex}");
        }
        if let Ok(out) = std::env::var("FIGURES_PREVIEW_DIR") {
            let out = std::path::Path::new(&out);
            draw_overlay(
                &series,
                "Learning rate",
                &out.join("overlay.svg"),
                &out.join("overlay.png"),
            )
            .unwrap();
            let h = history(80, 0.001);
            let m = CurveMarks {
                selected_epoch: Some(37),
                stopped_early_at: Some(70),
            };
            draw_curves(
                &h,
                "ResNet-18 baseline",
                &m,
                &out.join("curves.svg"),
                &out.join("curves.png"),
            )
            .unwrap();
            let h1 = history(1, 0.001);
            draw_curves(
                &h1,
                "one",
                &marks(&h1),
                &out.join("one.svg"),
                &out.join("one.png"),
            )
            .unwrap();
            let mut bad = history(20, 0.01);
            bad.epochs[3].val_loss = f64::NAN;
            bad.epochs[4].train_loss = f64::INFINITY;
            bad.epochs[7].val_accuracy = f64::NEG_INFINITY;
            draw_curves(
                &bad,
                "bad",
                &marks(&bad),
                &out.join("bad.svg"),
                &out.join("bad.png"),
            )
            .unwrap();
        }
        let (svg, png) = paths(dir.path(), "none");
        draw_overlay(&[], "nothing", &svg, &png).unwrap();
        read_checked(&svg, &png, SIZE);
    }

    #[test]
    fn a_diverging_run_puts_the_loss_on_a_log_axis() {
        let dir = tempfile::tempdir().unwrap();
        let calm = history(20, 0.001);
        let mut wild = history(20, 0.1);
        for (i, e) in wild.epochs.iter_mut().enumerate() {
            e.val_loss = 2.0 * 10f64.powf(i as f64 / 4.0);
        }
        let (svg, png) = paths(dir.path(), "log");
        draw_overlay(
            &[("calm".into(), &calm), ("wild".into(), &wild)],
            "lr",
            &svg,
            &png,
        )
        .unwrap();
        let (text, _) = read_checked(&svg, &png, SIZE);
        assert!(has_text(&text, "cross-entropy loss (log scale)"), "no log axis");
        // Ticks are labelled with the loss, a decade apart at most (2 … 2·10^4.75 spans five decades).
        for tick in ["1", "10", "100", "1000"] {
            assert!(has_text(&text, tick), "no tick {tick}");
        }
        // The calm runs alone stay linear.
        let (svg, png) = paths(dir.path(), "linear");
        draw_overlay(&[("calm".into(), &calm)], "lr", &svg, &png).unwrap();
        let text = std::fs::read_to_string(&svg).unwrap();
        assert!(has_text(&text, "cross-entropy loss") && !text.contains("(log scale)"));
        if let Ok(out) = std::env::var("FIGURES_PREVIEW_DIR") {
            let out = std::path::Path::new(&out);
            draw_overlay(
                &[("calm".into(), &calm), ("wild".into(), &wild)],
                "lr",
                &out.join("overlay_log.svg"),
                &out.join("overlay_log.png"),
            )
            .unwrap();
        }
    }

    #[test]
    fn unwritable_target_is_reported_with_its_path() {
        let dir = tempfile::tempdir().unwrap();
        let blocker = dir.path().join("file");
        std::fs::write(&blocker, b"x").unwrap();
        let h = history(3, 0.001);
        let err = draw_curves(
            &h,
            "t",
            &CurveMarks::default(),
            &blocker.join("c.svg"),
            &blocker.join("c.png"),
        )
        .unwrap_err();
        assert!(matches!(err, FigureError::Io { .. }));
        assert!(err.to_string().contains("c.svg"), "{err}");
        let err = draw_overlay(
            &[("a".into(), &h)],
            "t",
            &blocker.join("o.svg"),
            &blocker.join("o.png"),
        )
        .unwrap_err();
        assert!(err.to_string().contains("o.svg"), "{err}");
        assert_eq!(names_in(dir.path()), ["file"]);
    }
}
