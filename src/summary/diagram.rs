//! The "plot model" figure: one box per layer call, residual shortcuts beside their blocks, blocks framed.
//!
//! The layout (see `layout`) is computed once from the declaration and painted identically as SVG and PNG
//! with the embedded font, so the same model always gives the same bytes on every machine. The files are
//! written by the report figures' shared writer (`write_svg_and_png`), which also sets the PNG's text.

mod layout;

use std::path::Path;

use plotters::coord::Shift;
use plotters::prelude::*;
use plotters::style::text_anchor::{HPos, Pos, VPos};

use self::layout::{Align, Drawing, Prim};
use super::{Calls, ModelSummary};
use crate::figure::font;
use crate::figure::{FigureError, Painting, write_svg_and_png};
use crate::model::decl::{ModelDecl, ShapeError};

/// Why the model diagram could not be made.
#[derive(Debug, thiserror::Error)]
pub enum DiagramError {
    /// The declaration itself is inconsistent.
    #[error("cannot draw the model: {0}")]
    Shape(#[from] ShapeError),
    /// The embedded font could not measure a label.
    #[error("cannot lay out the model diagram: {0}")]
    Measure(#[from] layout::MeasureError),
    /// Painting or writing the SVG/PNG files failed.
    #[error("model diagram: {0}")]
    Figure(#[from] FigureError),
}

/// Draw the model diagram of `decl` (titled with `summary`'s totals) to `svg` and `png`, atomically.
pub fn draw_diagram(
    decl: &ModelDecl,
    summary: &ModelSummary,
    svg: &Path,
    png: &Path,
) -> Result<(), DiagramError> {
    let drawing = lay_out(decl, summary)?;
    write_svg_and_png(&drawing, svg, png)?;
    Ok(())
}

fn lay_out(decl: &ModelDecl, summary: &ModelSummary) -> Result<Drawing, DiagramError> {
    // Text is measured with the embedded font during layout, so it must be registered first.
    font::ensure_registered();
    let mut calls = Calls(Vec::new());
    decl.walk(&mut calls)?;
    Ok(layout::lay_out(decl, &calls.0, summary)?)
}

impl Painting for Drawing {
    fn size(&self) -> (u32, u32) {
        (self.width, self.height)
    }

    fn paint<DB: DrawingBackend>(&self, area: &DrawingArea<DB, Shift>) -> Result<(), String> {
        paint(area, self)
    }
}

fn rgb((r, g, b): layout::Rgb) -> RGBColor {
    RGBColor(r, g, b)
}

fn paint<DB: DrawingBackend>(area: &DrawingArea<DB, Shift>, d: &Drawing) -> Result<(), String> {
    area.fill(&WHITE).map_err(|e| e.to_string())?;
    for p in &d.prims {
        let drawn = match p {
            Prim::Rect {
                from,
                to,
                fill,
                stroke,
            } => area
                .draw(&Rectangle::new([*from, *to], rgb(*fill).filled()))
                .and_then(|()| area.draw(&Rectangle::new([*from, *to], rgb(*stroke).stroke_width(1)))),
            Prim::Circle {
                at,
                radius,
                fill,
                stroke,
            } => area
                .draw(&Circle::new(*at, *radius, rgb(*fill).filled()))
                .and_then(|()| area.draw(&Circle::new(*at, *radius, rgb(*stroke).stroke_width(1)))),
            Prim::Arrow { points, dashed, head } => {
                let style = rgb((51, 65, 85)).stroke_width(1);
                let line = if *dashed {
                    area.draw(&plotters::element::DashedPathElement::new(
                        points.iter().copied(),
                        5,
                        4,
                        style,
                    ))
                } else {
                    area.draw(&PathElement::new(points.clone(), style))
                };
                line.and_then(|()| match (head, arrowhead(points)) {
                    (true, Some(tri)) => area.draw(&Polygon::new(tri, rgb((51, 65, 85)).filled())),
                    _ => Ok(()),
                })
            }
            Prim::Text {
                at,
                text,
                size,
                bold,
                color,
                align,
            } => {
                let style = if *bold { FontStyle::Bold } else { FontStyle::Normal };
                let h = match align {
                    Align::Left => HPos::Left,
                    Align::Center => HPos::Center,
                };
                let font = FontDesc::new(FontFamily::Name(font::FAMILY), f64::from(*size), style)
                    .color(&rgb(*color))
                    .pos(Pos::new(h, VPos::Center));
                area.draw_text(text, &font, *at)
            }
        };
        drawn.map_err(|e| e.to_string())?;
    }
    Ok(())
}

/// A small filled triangle at the end of the last segment, pointing along it.
fn arrowhead(points: &[(i32, i32)]) -> Option<Vec<(i32, i32)>> {
    let n = points.len();
    if n < 2 {
        return None;
    }
    let (x1, y1) = points[n - 1];
    let (x0, y0) = points[n - 2];
    let (dx, dy) = ((x1 - x0) as f64, (y1 - y0) as f64);
    let len = (dx * dx + dy * dy).sqrt();
    if len == 0.0 {
        return None;
    }
    let (ux, uy) = (dx / len, dy / len);
    let (back, half) = (7.0, 4.0);
    let bx = x1 as f64 - ux * back;
    let by = y1 as f64 - uy * back;
    let corner = |s: f64| {
        (
            (bx - uy * half * s).round() as i32,
            (by + ux * half * s).round() as i32,
        )
    };
    Some(vec![(x1, y1), corner(1.0), corner(-1.0)])
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::builtins::{Stem, resnet18, simple_cnn};
    use crate::summary::summarize;

    fn draw(decl: &ModelDecl, dir: &Path, stem: &str) -> (Vec<u8>, Vec<u8>) {
        let s = summarize(decl).unwrap();
        let svg = dir.join(format!("{stem}.svg"));
        let png = dir.join(format!("{stem}.png"));
        draw_diagram(decl, &s, &svg, &png).unwrap();
        (std::fs::read(svg).unwrap(), std::fs::read(png).unwrap())
    }

    fn decode(png: &[u8]) -> (u32, u32, Vec<u8>) {
        let decoder = png::Decoder::new(std::io::Cursor::new(png));
        let mut reader = decoder.read_info().expect("PNG header decodes");
        let mut buf = vec![0; reader.output_buffer_size()];
        let info = reader.next_frame(&mut buf).expect("PNG pixels decode");
        buf.truncate(info.buffer_size());
        (info.width, info.height, buf)
    }

    #[test]
    fn resnet18_diagram_is_written_decodes_and_is_deterministic() {
        let dir = tempfile::tempdir().unwrap();
        let decl = resnet18(10, Stem::Imagenet, 64);
        let (svg, png) = draw(&decl, dir.path(), "a");
        let (svg2, png2) = draw(&decl, dir.path(), "b");
        assert!(svg == svg2 && png == png2, "same model must give the same bytes");
        let text = String::from_utf8(svg).unwrap();
        assert!(text.starts_with("<svg"));
        for label in [
            "\nlayer4.0 · ResBlock\n",
            "\nlayer4.1 · ResBlock (identity shortcut)\n",
            "\ndownsample.0\n",
            "\nConv2d 1×1 /2\n",
            "\nfc: Linear 512→10\n",
        ] {
            assert!(text.contains(label), "SVG lacks {label:?}");
        }
        let (w, h, pixels) = decode(&png);
        let d = lay_out(&decl, &summarize(&decl).unwrap()).unwrap();
        assert_eq!((w, h), (d.width, d.height));
        // ResNet-18 is laid out in several columns, wider than tall, small enough to read unzoomed.
        assert!(w > h && h < 1400, "{w}×{h}");
        assert!(pixels.iter().any(|&p| p < 64), "the PNG has dark ink");
        // No temporary files are left behind.
        let left: Vec<_> = std::fs::read_dir(dir.path()).unwrap().collect();
        assert_eq!(left.len(), 4);
        // To look at the diagrams, run with FIGURES_PREVIEW_DIR=/some/dir (as the figure tests).
        if let Ok(out) = std::env::var("FIGURES_PREVIEW_DIR") {
            draw(&decl, Path::new(&out), "resnet18_diagram");
            draw(&simple_cnn(10, 0.5), Path::new(&out), "simplecnn_diagram");
        }
    }

    /// Share of `size`-pixel tiles of an RGB(A) image that hold no ink at all, and the inked bounding box
    /// as (left, top, right margin, bottom margin).
    fn emptiness(w: u32, h: u32, pixels: &[u8], size: u32) -> (f64, (u32, u32, u32, u32)) {
        let channels = pixels.len() / (w * h) as usize;
        let inked = |x: u32, y: u32| {
            let i = (y * w + x) as usize * channels;
            pixels[i..i + 3].iter().any(|&c| c < 245)
        };
        let (mut tiles, mut empty) = (0, 0);
        let (mut left, mut top, mut right, mut bottom) = (w, h, 0, 0);
        for ty in (0..h).step_by(size as usize) {
            for tx in (0..w).step_by(size as usize) {
                let mut any = false;
                for y in ty..(ty + size).min(h) {
                    for x in tx..(tx + size).min(w) {
                        if inked(x, y) {
                            any = true;
                            (left, top) = (left.min(x), top.min(y));
                            (right, bottom) = (right.max(x), bottom.max(y));
                        }
                    }
                }
                tiles += 1;
                empty += usize::from(!any);
            }
        }
        (
            empty as f64 / tiles as f64,
            (left, top, w - 1 - right, h - 1 - bottom),
        )
    }

    #[test]
    fn a_short_chain_fills_its_canvas() {
        // SimpleCNN used to be one tall column beside a canvas as wide as its heading: 65% of 32 px tiles
        // were blank. Its columns now share that width.
        let dir = tempfile::tempdir().unwrap();
        for (decl, most_empty) in [
            (simple_cnn(10, 0.5), 0.35),
            (resnet18(10, Stem::Imagenet, 64), 0.35),
        ] {
            let (_, png) = draw(&decl, dir.path(), "fit");
            let (w, h, pixels) = decode(&png);
            let (empty, (left, top, right, bottom)) = emptiness(w, h, &pixels, 32);
            assert!(
                empty < most_empty,
                "{}: {:.0}% of the {w}×{h} canvas is empty",
                decl.class_name,
                empty * 100.0
            );
            // Content reaches every edge up to the margin (20 px) and a little rounding.
            for (side, m) in [("left", left), ("top", top), ("right", right), ("bottom", bottom)] {
                assert!(m <= 60, "{}: {m} px blank at the {side}", decl.class_name);
            }
        }
    }

    #[test]
    fn every_layer_call_gets_a_box() {
        let decl = simple_cnn(10, 0.5);
        let s = summarize(&decl).unwrap();
        let d = lay_out(&decl, &s).unwrap();
        let boxes = d
            .prims
            .iter()
            .filter(|p| matches!(p, Prim::Text { size: 13, .. }))
            .count();
        // 14 table rows, the functional view, input and output.
        assert_eq!(boxes, s.rows.len() + 3);
    }

    #[test]
    fn identity_shortcuts_are_dashed_and_projections_are_not() {
        let decl = resnet18(10, Stem::Cifar, 8);
        let d = lay_out(&decl, &summarize(&decl).unwrap()).unwrap();
        let dashed = d
            .prims
            .iter()
            .filter(|p| matches!(p, Prim::Arrow { dashed: true, .. }))
            .count();
        // 5 identity blocks (layer1.0 keeps width 8 with stride 1) plus the legend's sample.
        assert_eq!(dashed, 5 + 1);
        // A plain chain has no shortcut, so no dashed line and no legend entry for one.
        let plain = simple_cnn(10, 0.5);
        let d = lay_out(&plain, &summarize(&plain).unwrap()).unwrap();
        assert!(
            !d.prims
                .iter()
                .any(|p| matches!(p, Prim::Arrow { dashed: true, .. }))
        );
    }

    #[test]
    fn other_layer_types_and_a_bare_model_draw() {
        let dir = tempfile::tempdir().unwrap();
        let (svg, png) = draw(&crate::summary::tests::mixed(), dir.path(), "mixed");
        let text = String::from_utf8(svg).unwrap();
        for label in [
            "\nblock · Block (identity shortcut)\n",
            "\ngap: AdaptiveAvgPool2d 2×2\n",
            "\nact1: LeakyReLU 0.1\n",
            "\nflatten: Flatten\n",
        ] {
            assert!(text.contains(label), "SVG lacks {label:?}");
        }
        assert!(decode(&png).0 > 0);
        let bare = ModelDecl {
            class_name: "Empty".into(),
            input: vec![3, 8, 8],
            layers: Vec::new(),
        };
        let (_, png) = draw(&bare, dir.path(), "bare");
        assert!(decode(&png).1 > 0);
    }

    #[test]
    fn unwritable_target_is_reported_with_its_path() {
        let dir = tempfile::tempdir().unwrap();
        let blocker = dir.path().join("file");
        std::fs::write(&blocker, b"x").unwrap();
        let decl = simple_cnn(10, 0.5);
        let s = summarize(&decl).unwrap();
        let err = draw_diagram(&decl, &s, &blocker.join("m.svg"), &blocker.join("m.png")).unwrap_err();
        assert!(err.to_string().contains("m.svg"), "{err}");
    }
}
