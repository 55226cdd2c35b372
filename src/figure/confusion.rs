//! The test-set confusion matrix as a heat map: true class down, predicted class across, the count in every
//! cell, coloured by the share of the true class (so unbalanced classes compare fairly), with each class's
//! accuracy beside its row.

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

        let label_font = if k <= 20 { 13.0 } else { 10.0 };
        let mut widest = 0;
        for n in &names {
            widest = widest.max(measure(n, label_font)?.0);
        }
        // Ten CIFAR names fit across cells of ~80 px; more classes get smaller cells and upright labels.
        let cell = if k <= 12 {
            (widest + 12).clamp(54, 84)
        } else {
            (640 / k as i32).max(12)
        };
        let x_upright = widest + 6 > cell;
        let x_label_height = if x_upright { widest + 10 } else { 24 };
        let count_font = if cell >= 44 {
            Some(13.0)
        } else if cell >= 24 {
            Some(f64::from(cell) * 0.36)
        } else {
            None
        };
        let grid_side = cell * k as i32;
        let left = MARGIN + DESC + widest + GAP;
        let width = left + grid_side + GAP + ACCURACY_COLUMN + GAP + BAR_WIDTH + BAR_LABELS + MARGIN;
        let title_width = measure(title, 18.0)?.0.max(measure(&subtitle, 13.0)?.0) + 2 * MARGIN;
        let width = width.max(title_width);
        let top = TITLE_BAND + 22;
        let height = top + grid_side + 4 + x_label_height + DESC + MARGIN;
        Ok(Heatmap {
            title: title.to_string(),
            subtitle,
            names,
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

        for (i, row) in self.counts.iter().enumerate() {
            for (j, &count) in row.iter().enumerate() {
                let share = self.shares[i][j];
                let (x, y) = (gx + c * j as i32, gy + c * i as i32);
                root.draw(&Rectangle::new([(x, y), (x + c, y + c)], blues(share).filled()))
                    .map_err(style::msg)?;
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
        for (i, name) in self.names.iter().enumerate() {
            let mid = c * i as i32 + c / 2;
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
        let ax = gx + side + GAP + ACCURACY_COLUMN / 2;
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

        // Colour bar: 0 % at the bottom, 100 % at the top.
        let bx = gx + side + GAP + ACCURACY_COLUMN + GAP;
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
