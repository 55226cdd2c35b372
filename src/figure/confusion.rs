//! The test-set confusion matrix as a heat map: true class down, predicted class across, the count in every
//! cell, coloured by the share of the true class (so unbalanced classes compare fairly), with each class's
//! accuracy beside its row.
//!
//! Past `DENSE_CLASSES` classes (CIFAR-100) the numbers would not fit: the cells carry colour only, every
//! n-th class is labelled (with its index), and the report lists the most-confused pairs and per-class
//! accuracies as tables instead.

use std::path::Path;

use plotters::coord::Shift;
use plotters::prelude::*;
use plotters::style::FontTransform;
use plotters::style::text_anchor::{HPos, Pos, VPos};

use super::style::{self, INK, MUTED};
use super::{FigureError, Painting, write_svg_and_png};
use crate::figure::font;
use crate::train::evaluate::TestMetrics;

/// Draw `metrics.confusion` as a heat map with counts, class names on both axes, to `svg` and `png`.
pub fn draw_confusion(metrics: &TestMetrics, title: &str, svg: &Path, png: &Path) -> Result<(), FigureError> {
    let figure = Heatmap::lay_out(metrics, title).map_err(|message| FigureError::Draw {
        path: svg.to_path_buf(),
        message,
    })?;
    write_svg_and_png(&figure, svg, png)
}

/// matplotlib's "Blues" map (ColorBrewer, 9 classes), light to dark.
const BLUES: [(u8, u8, u8); 9] = [
    (0xf7, 0xfb, 0xff),
    (0xde, 0xeb, 0xf7),
    (0xc6, 0xdb, 0xef),
    (0x9e, 0xca, 0xe1),
    (0x6b, 0xae, 0xd6),
    (0x42, 0x92, 0xc6),
    (0x21, 0x71, 0xb5),
    (0x08, 0x51, 0x9c),
    (0x08, 0x30, 0x6b),
];

/// The Blues colour of a share in 0..=1 (linear between the map's stops).
fn blues(share: f64) -> RGBColor {
    let t = if share.is_finite() {
        share.clamp(0.0, 1.0)
    } else {
        0.0
    } * (BLUES.len() - 1) as f64;
    let i = (t.floor() as usize).min(BLUES.len() - 2);
    let f = t - i as f64;
    let mix = |a: u8, b: u8| (f64::from(a) + (f64::from(b) - f64::from(a)) * f).round() as u8;
    let (a, b) = (BLUES[i], BLUES[i + 1]);
    RGBColor(mix(a.0, b.0), mix(a.1, b.1), mix(a.2, b.2))
}

/// Pixel layout of the heat map, computed once so both backends paint the same picture.
struct Heatmap {
    title: String,
    subtitle: String,
    names: Vec<String>,
    /// The classes whose names are written along the axes, with the text written.
    labels: Vec<(usize, String)>,
    /// Whether each row's accuracy is written beside it.
    accuracy_column: bool,
    /// More than `DENSE_CLASSES` classes: cells are coloured in `DENSE_SHARE_STEP` steps.
    dense: bool,
    counts: Vec<Vec<u64>>,
    /// `counts[i][j]` over the row total (0 for an empty row).
    shares: Vec<Vec<f64>>,
    /// Per-row accuracy text.
    row_accuracy: Vec<String>,
    size: (u32, u32),
    cell: i32,
    /// Top-left corner of the grid.
    grid: (i32, i32),
    label_font: f64,
    count_font: Option<f64>,
    /// Predicted-class labels are turned upright when they are wider than a cell.
    x_upright: bool,
    x_label_height: i32,
}

const MARGIN: i32 = 16;
const TITLE_BAND: i32 = 58;
const DESC: i32 = 26;
const GAP: i32 = 8;
const ACCURACY_COLUMN: i32 = 74;
const BAR_WIDTH: i32 = 16;
const BAR_LABELS: i32 = 44;
/// Above this many classes the heat map is drawn without numbers and with sparse labels.
pub const DENSE_CLASSES: usize = 20;
/// A dense heat map colours shares rounded to this step: one image in a hundred still shows, while the
/// SVG is not a rectangle per cell for the near-empty ones.
const DENSE_SHARE_STEP: f64 = 0.01;
/// The smallest distance between two axis labels of a dense heat map.
const LABEL_SPACING: i32 = 16;

fn measure(text: &str, size: f64) -> Result<(i32, i32), String> {
    font::ensure_registered();
    let (w, h) = FontDesc::new(FontFamily::Name(font::FAMILY), size, FontStyle::Normal)
        .box_size(text)
        .map_err(style::msg)?;
    Ok((w as i32, h as i32))
}

impl Heatmap {
    fn lay_out(metrics: &TestMetrics, title: &str) -> Result<Self, String> {
        // Tolerate a matrix and a name list of different lengths: missing names are numbered, missing cells
        // are zero, so a malformed metrics file still gives a readable figure instead of a panic.
        let k = metrics.class_names.len().max(metrics.confusion.len());
        let names: Vec<String> = (0..k)
            .map(|i| {
                metrics
                    .class_names
                    .get(i)
                    .cloned()
                    .unwrap_or_else(|| format!("class {i}"))
            })
            .collect();
        let counts: Vec<Vec<u64>> = (0..k)
            .map(|i| {
                (0..k)
                    .map(|j| {
                        metrics
                            .confusion
                            .get(i)
                            .and_then(|r| r.get(j))
                            .copied()
                            .unwrap_or(0)
                    })
                    .collect()
            })
            .collect();
        let shares: Vec<Vec<f64>> = counts
            .iter()
            .map(|row| {
                let total: u64 = row.iter().sum();
                row.iter()
                    .map(|&c| if total == 0 { 0.0 } else { c as f64 / total as f64 })
                    .collect()
            })
            .collect();
        let row_accuracy = counts
            .iter()
            .enumerate()
            .map(|(i, row)| {
                let total: u64 = row.iter().sum();
                if total == 0 {
                    "–".to_string()
                } else {
                    format!("{:.1}%", row[i] as f64 / total as f64 * 100.0)
                }
            })
            .collect();
        let number = |v: f64, digits: usize| {
            if v.is_finite() {
                format!("{v:.digits$}")
            } else {
                "n/a".into()
            }
        };
        let subtitle = format!(
            "test accuracy {}% · loss {} · {} images · colour = share of the true class",
            number(metrics.accuracy * 100.0, 1),
            number(metrics.loss, 3),
            metrics.images
        );

        let dense = k > DENSE_CLASSES;
        let label_font = if k <= DENSE_CLASSES { 13.0 } else { 10.0 };
        // Ten names fit across cells of ~80 px; more classes get smaller cells and upright labels.
        let cell = if dense {
            (720 / k as i32).max(6)
        } else if k <= 12 {
            let mut widest = 0;
            for n in &names {
                widest = widest.max(measure(n, label_font)?.0);
            }
            (widest + 12).clamp(54, 84)
        } else {
            (640 / k as i32).max(12)
        };
        let stride = label_stride(cell);
        let labels: Vec<(usize, String)> = (0..k)
            .step_by(stride)
            .map(|i| {
                let text = if stride > 1 {
                    format!("{i} {}", names[i])
                } else {
                    names[i].clone()
                };
                (i, text)
            })
            .collect();
        let mut widest = 0;
        for (_, text) in &labels {
            widest = widest.max(measure(text, label_font)?.0);
        }
        let x_upright = widest + 6 > cell * stride as i32;
        let x_label_height = if x_upright { widest + 10 } else { 24 };
        let count_font = if dense {
            None
        } else if cell >= 44 {
            Some(13.0)
        } else if cell >= 24 {
            Some(f64::from(cell) * 0.36)
        } else {
            None
        };
        let accuracy_column = !dense;
        let accuracy_width = if accuracy_column { ACCURACY_COLUMN + GAP } else { 0 };
        let grid_side = cell * k as i32;
        let left = MARGIN + DESC + widest + GAP;
        let width = left + grid_side + GAP + accuracy_width + BAR_WIDTH + BAR_LABELS + MARGIN;
        let title_width = measure(title, 18.0)?.0.max(measure(&subtitle, 13.0)?.0) + 2 * MARGIN;
        let width = width.max(title_width);
        let top = TITLE_BAND + 22;
        let height = top + grid_side + 4 + x_label_height + DESC + MARGIN;
        Ok(Heatmap {
            title: title.to_string(),
            subtitle,
            names,
            labels,
            accuracy_column,
            dense,
            counts,
            shares,
            row_accuracy,
            size: (width as u32, height as u32),
            cell,
            grid: (left, top),
            label_font,
            count_font,
            x_upright,
            x_label_height,
        })
    }
}

impl Painting for Heatmap {
    fn size(&self) -> (u32, u32) {
        self.size
    }

    fn paint<DB: DrawingBackend>(&self, root: &DrawingArea<DB, Shift>) -> Result<(), String> {
        root.fill(&WHITE).map_err(style::msg)?;
        let (w, _) = self.size;
        let centre = |h, v| Pos::new(h, v);
        let title = style::text(18.0, true, &INK).pos(centre(HPos::Center, VPos::Center));
        let subtitle = style::text(13.0, false, &MUTED).pos(centre(HPos::Center, VPos::Center));
        root.draw_text(&self.title, &title, (w as i32 / 2, 20))
            .and_then(|()| root.draw_text(&self.subtitle, &subtitle, (w as i32 / 2, 44)))
            .map_err(style::msg)?;

        let k = self.names.len() as i32;
        let (gx, gy) = self.grid;
        let c = self.cell;
        let side = c * k;
        let label = |h, v| style::text(self.label_font, false, &INK).pos(centre(h, v));

        if k == 0 {
            let note = style::text(13.0, false, &MUTED).pos(centre(HPos::Left, VPos::Center));
            return root
                .draw_text("no classes to show", &note, (gx, gy + 10))
                .map_err(style::msg);
        }

        // The empty colour once under the whole grid, then each row's runs of one colour as one rectangle:
        // a 100-class matrix is mostly near-empty cells, and one element per cell would bloat the SVG.
        root.draw(&Rectangle::new(
            [(gx, gy), (gx + side, gy + side)],
            blues(0.0).filled(),
        ))
        .map_err(style::msg)?;
        for (i, row) in self.shares.iter().enumerate() {
            let y = gy + c * i as i32;
            let step = if self.dense { DENSE_SHARE_STEP } else { 0.0 };
            for (from, to, colour) in colour_runs(row, step) {
                if colour == blues(0.0) {
                    continue;
                }
                let (x0, x1) = (gx + c * from as i32, gx + c * to as i32);
                root.draw(&Rectangle::new([(x0, y), (x1, y + c)], colour.filled()))
                    .map_err(style::msg)?;
            }
        }
        for (i, row) in self.counts.iter().enumerate() {
            for (j, &count) in row.iter().enumerate() {
                let share = self.shares[i][j];
                let (x, y) = (gx + c * j as i32, gy + c * i as i32);
                if let Some(size) = self.count_font {
                    // Dark cells get white numbers, as matplotlib's ConfusionMatrixDisplay does.
                    let ink = if share > 0.55 { WHITE } else { INK };
                    let font = style::text(size, false, &ink).pos(centre(HPos::Center, VPos::Center));
                    root.draw_text(&count.to_string(), &font, (x + c / 2, y + c / 2))
                        .map_err(style::msg)?;
                }
            }
        }
        root.draw(&Rectangle::new(
            [(gx, gy), (gx + side, gy + side)],
            INK.stroke_width(1),
        ))
        .map_err(style::msg)?;

        // Row labels (true class) right-aligned against the grid, column labels under it.
        for (i, name) in &self.labels {
            let mid = c * *i as i32 + c / 2;
            root.draw_text(name, &label(HPos::Right, VPos::Center), (gx - GAP, gy + mid))
                .map_err(style::msg)?;
            let (x, y) = (gx + mid, gy + side + 6);
            let font = if self.x_upright {
                // Rotated a quarter turn counter-clockwise, reading upwards; its right end touches the grid.
                label(HPos::Right, VPos::Center).transform(FontTransform::Rotate270)
            } else {
                label(HPos::Center, VPos::Top)
            };
            root.draw_text(name, &font, (x, y)).map_err(style::msg)?;
        }
        let desc = style::text(14.0, true, &INK);
        let below = gy + side + 4 + self.x_label_height + DESC / 2;
        root.draw_text(
            "predicted class",
            &desc.clone().pos(centre(HPos::Center, VPos::Center)),
            (gx + side / 2, below),
        )
        .and_then(|()| {
            root.draw_text(
                "true class",
                &desc
                    .clone()
                    .pos(centre(HPos::Center, VPos::Center))
                    .transform(FontTransform::Rotate270),
                (MARGIN + DESC / 2, gy + side / 2),
            )
        })
        .map_err(style::msg)?;

        // Per-class accuracy beside each row.
        let mut bx = gx + side + GAP;
        if self.accuracy_column {
            let ax = bx + ACCURACY_COLUMN / 2;
            root.draw_text("accuracy", &label(HPos::Center, VPos::Bottom), (ax, gy - 6))
                .map_err(style::msg)?;
            for (i, text) in self.row_accuracy.iter().enumerate() {
                root.draw_text(
                    text,
                    &label(HPos::Center, VPos::Center),
                    (ax, gy + c * i as i32 + c / 2),
                )
                .map_err(style::msg)?;
            }
            bx += ACCURACY_COLUMN + GAP;
        }

        // Colour bar: 0 % at the bottom, 100 % at the top.
        const BANDS: i32 = 100;
        for b in 0..BANDS {
            let y0 = gy + side - side * (b + 1) / BANDS;
            let y1 = gy + side - side * b / BANDS;
            let share = (f64::from(b) + 0.5) / f64::from(BANDS);
            root.draw(&Rectangle::new(
                [(bx, y0), (bx + BAR_WIDTH, y1)],
                blues(share).filled(),
            ))
            .map_err(style::msg)?;
        }
        root.draw(&Rectangle::new(
            [(bx, gy), (bx + BAR_WIDTH, gy + side)],
            INK.stroke_width(1),
        ))
        .map_err(style::msg)?;
        let tick = style::text(12.0, false, &INK).pos(centre(HPos::Left, VPos::Center));
        for q in 0..=4 {
            let y = gy + side - side * q / 4;
            root.draw(&PathElement::new(
                vec![(bx + BAR_WIDTH, y), (bx + BAR_WIDTH + 4, y)],
                INK.stroke_width(1),
            ))
            .and_then(|()| root.draw_text(&format!("{}%", q * 25), &tick, (bx + BAR_WIDTH + 7, y)))
            .map_err(style::msg)?;
        }
        Ok(())
    }
}

/// Label every class, or every 2nd, 5th, 10th… so labels of `cell`-pixel rows stay `LABEL_SPACING` apart.
fn label_stride(cell: i32) -> usize {
    [1, 2, 5, 10, 20, 50, 100]
        .into_iter()
        .find(|&s| cell * s as i32 >= LABEL_SPACING)
        .unwrap_or(100)
}

/// `(from, to, colour)` for each run of equal colour along a row of shares (`to` exclusive), the shares
/// rounded to multiples of `step` first (0: not rounded).
fn colour_runs(shares: &[f64], step: f64) -> Vec<(usize, usize, RGBColor)> {
    let mut runs: Vec<(usize, usize, RGBColor)> = Vec::new();
    for (j, &share) in shares.iter().enumerate() {
        let rounded = if step > 0.0 {
            (share / step).round() * step
        } else {
            share
        };
        let colour = blues(rounded);
        match runs.last_mut() {
            Some(run) if run.2 == colour => run.1 = j + 1,
            _ => runs.push((j, j + 1, colour)),
        }
    }
    runs
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::figure::testing::{has_text, names_in, paths, read_checked, text_count};

    const CIFAR: [&str; 10] = [
        "airplane",
        "automobile",
        "bird",
        "cat",
        "deer",
        "dog",
        "frog",
        "horse",
        "ship",
        "truck",
    ];

    /// A CIFAR-like result: 1000 images per class, most on the diagonal, cats and dogs confused.
    fn metrics(k: usize) -> TestMetrics {
        let class_names: Vec<String> = (0..k)
            .map(|i| CIFAR.get(i).map_or(format!("c{i}"), |s| s.to_string()))
            .collect();
        let confusion: Vec<Vec<u64>> = (0..k)
            .map(|t| {
                (0..k)
                    .map(|p| {
                        if t == p {
                            700 + (t as u64 * 37) % 250
                        } else {
                            ((t * 7 + p * 3) % 11) as u64 + if (t, p) == (3, 5) { 140 } else { 0 }
                        }
                    })
                    .collect()
            })
            .collect();
        let per_class_accuracy = confusion
            .iter()
            .enumerate()
            .map(|(i, r)| r[i] as f64 / r.iter().sum::<u64>() as f64)
            .collect();
        let images = confusion.iter().flatten().sum::<u64>() as usize;
        let correct: u64 = (0..k).map(|i| confusion[i][i]).sum();
        TestMetrics {
            loss: 0.464,
            accuracy: correct as f64 / images.max(1) as f64,
            class_names,
            per_class_accuracy,
            confusion,
            images,
        }
    }

    #[test]
    fn cifar_confusion_is_written_decodable_and_deterministic() {
        let dir = tempfile::tempdir().unwrap();
        let m = metrics(10);
        let (svg_a, png_a) = paths(dir.path(), "a");
        let (svg_b, png_b) = paths(dir.path(), "b");
        draw_confusion(&m, "ResNet-18 confusion", &svg_a, &png_a).unwrap();
        draw_confusion(&m, "ResNet-18 confusion", &svg_b, &png_b).unwrap();
        let size = Heatmap::lay_out(&m, "ResNet-18 confusion").unwrap().size;
        let (text_a, bytes_a) = read_checked(&svg_a, &png_a, size);
        let (text_b, bytes_b) = read_checked(&svg_b, &png_b, size);
        assert!(
            text_a == text_b && bytes_a == bytes_b,
            "same metrics must give the same bytes"
        );
        for name in CIFAR {
            // Once as a row label and once as a column label.
            assert_eq!(text_count(&text_a, name), 2, "{name}");
        }
        for count in [m.confusion[3][5], m.confusion[0][0], m.confusion[9][9]] {
            assert!(has_text(&text_a, &count.to_string()), "SVG lacks count {count}");
        }
        assert!(has_text(&text_a, "true class") && has_text(&text_a, "predicted class"));
        let cat = format!("{:.1}%", m.per_class_accuracy[3] * 100.0);
        assert!(has_text(&text_a, &cat), "SVG lacks the cat row accuracy {cat}");
        // Readable at page width without being huge.
        assert!(size.0 >= 700 && size.0 <= 1300 && size.1 <= 1100, "{size:?}");
        assert_eq!(names_in(dir.path()), ["a.png", "a.svg", "b.png", "b.svg"]);
        if let Ok(out) = std::env::var("FIGURES_PREVIEW_DIR") {
            let out = std::path::Path::new(&out);
            draw_confusion(
                &m,
                "ResNet-18 confusion",
                &out.join("cm.svg"),
                &out.join("cm.png"),
            )
            .unwrap();
            draw_confusion(
                &metrics(40),
                "forty",
                &out.join("cm40.svg"),
                &out.join("cm40.png"),
            )
            .unwrap();
        }
    }

    #[test]
    fn twenty_classes_keep_their_numbers_and_a_hundred_drop_them() {
        let dir = tempfile::tempdir().unwrap();
        // 20 classes: every count and every name is still written.
        let m = metrics(20);
        let h = Heatmap::lay_out(&m, "twenty").unwrap();
        assert!(h.count_font.is_some() && h.accuracy_column);
        let (svg, png) = paths(dir.path(), "twenty");
        draw_confusion(&m, "twenty", &svg, &png).unwrap();
        let (text, _) = read_checked(&svg, &png, h.size);
        for name in &m.class_names {
            assert_eq!(text_count(&text, name), 2, "{name}");
        }
        assert!(has_text(&text, &m.confusion[3][5].to_string()));

        // 100 classes (CIFAR-100): colour only, every 5th class labelled with its index, a sane size.
        let m = metrics(100);
        let h = Heatmap::lay_out(&m, "hundred").unwrap();
        assert!(h.count_font.is_none() && !h.accuracy_column);
        let (svg, png) = paths(dir.path(), "hundred");
        draw_confusion(&m, "hundred", &svg, &png).unwrap();
        let (text, bytes) = read_checked(&svg, &png, h.size);
        let labelled: Vec<usize> = h.labels.iter().map(|(i, _)| *i).collect();
        assert_eq!(labelled, (0..100).step_by(5).collect::<Vec<_>>());
        assert_eq!(text_count(&text, "45 c45"), 2);
        assert_eq!(text_count(&text, "c46"), 0);
        // No per-cell numbers: the text elements are the labels, titles and colour-bar ticks only.
        let texts = text.matches("<text").count();
        assert!(texts <= 2 * 20 + 12, "{texts} text elements");
        assert!(
            h.size.0 <= 1200 && h.size.1 <= 1100,
            "{:?} is too big to read on a page",
            h.size
        );
        // Cells are painted as runs of one colour, so the files stay small.
        assert!(text.len() < 400_000, "SVG of {} bytes", text.len());
        assert!(bytes.len() < 300_000, "PNG of {} bytes", bytes.len());
        if let Ok(out) = std::env::var("FIGURES_PREVIEW_DIR") {
            let out = std::path::Path::new(&out);
            draw_confusion(&m, "hundred", &out.join("cm100.svg"), &out.join("cm100.png")).unwrap();
            eprintln!(
                "cm100: svg {} bytes, png {} bytes, {:?}",
                text.len(),
                bytes.len(),
                h.size
            );
        }
    }

    #[test]
    fn runs_of_one_colour_merge() {
        let runs = colour_runs(&[0.0, 0.0, 0.5, 0.5, 1.0], 0.0);
        let spans: Vec<(usize, usize)> = runs.iter().map(|r| (r.0, r.1)).collect();
        assert_eq!(spans, [(0, 2), (2, 4), (4, 5)]);
        assert_eq!(runs[1].2, blues(0.5));
        assert!(colour_runs(&[], 0.0).is_empty());
        // In 1% steps, 0.2% is empty and 0.6% one step; unrounded they differ from both.
        let runs = colour_runs(&[0.0, 0.002, 0.006, 0.01], DENSE_SHARE_STEP);
        let spans: Vec<(usize, usize)> = runs.iter().map(|r| (r.0, r.1)).collect();
        assert_eq!(spans, [(0, 2), (2, 4)]);
        assert_eq!(runs[1].2, blues(0.01));
        assert_eq!(label_stride(80), 1);
        assert_eq!(label_stride(8), 2);
        assert_eq!(label_stride(7), 5);
    }

    #[test]
    fn colours_follow_the_row_share() {
        assert_eq!(blues(0.0), RGBColor(0xf7, 0xfb, 0xff));
        assert_eq!(blues(1.0), RGBColor(0x08, 0x30, 0x6b));
        assert_eq!(blues(f64::NAN), blues(0.0));
        let m = metrics(10);
        let h = Heatmap::lay_out(&m, "t").unwrap();
        for (i, row) in h.shares.iter().enumerate() {
            assert!((row.iter().sum::<f64>() - 1.0).abs() < 1e-12);
            assert!((row[i] - m.per_class_accuracy[i]).abs() < 1e-12);
        }
    }

    #[test]
    fn odd_shapes_draw_without_panicking() {
        let dir = tempfile::tempdir().unwrap();
        // Many classes: smaller cells, upright labels, no counts once cells are tiny.
        let many = metrics(40);
        let h = Heatmap::lay_out(&many, "forty").unwrap();
        assert!(h.x_upright && h.count_font.is_none());
        let (svg, png) = paths(dir.path(), "many");
        draw_confusion(&many, "forty", &svg, &png).unwrap();
        read_checked(&svg, &png, h.size);

        // Names and matrix disagree, an empty row, NaN loss, no classes at all.
        let mut odd = metrics(3);
        odd.class_names.truncate(2);
        odd.confusion[1] = vec![0, 0];
        odd.loss = f64::NAN;
        let (svg, png) = paths(dir.path(), "odd");
        draw_confusion(&odd, "odd", &svg, &png).unwrap();
        let text = std::fs::read_to_string(&svg).unwrap();
        assert!(has_text(&text, "class 2") && text.contains("loss n/a"));

        let empty = TestMetrics {
            loss: 0.0,
            accuracy: 0.0,
            class_names: Vec::new(),
            per_class_accuracy: Vec::new(),
            confusion: Vec::new(),
            images: 0,
        };
        let (svg, png) = paths(dir.path(), "empty");
        draw_confusion(&empty, "empty", &svg, &png).unwrap();
        assert!(
            std::fs::read_to_string(&svg)
                .unwrap()
                .contains("no classes to show")
        );
        assert!(!std::fs::read(&png).unwrap().is_empty());
    }

    #[test]
    fn unwritable_target_is_reported_with_its_path() {
        let dir = tempfile::tempdir().unwrap();
        let blocker = dir.path().join("file");
        std::fs::write(&blocker, b"x").unwrap();
        let err = draw_confusion(
            &metrics(10),
            "t",
            &blocker.join("cm.svg"),
            &blocker.join("cm.png"),
        )
        .unwrap_err();
        assert!(err.to_string().contains("cm.svg"), "{err}");
    }
}
