//! A matplotlib-like legend box: a short sample of each line (solid, dashed or dotted) or marker, then its
//! label, one entry per row.

use plotters::coord::Shift;
use plotters::element::DashedPathElement;
use plotters::prelude::*;

use super::style::{self, FRAME, INK};

/// How a series is stroked.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stroke {
    /// A continuous line.
    Solid,
    /// Long dashes (validation curves).
    Dashed,
    /// Short dots (the early-stop marker).
    Dotted,
}

impl Stroke {
    /// Dash and gap lengths in pixels, `None` for a continuous line.
    pub fn pattern(self) -> Option<(u32, u32)> {
        match self {
            Stroke::Solid => None,
            Stroke::Dashed => Some((7, 4)),
            Stroke::Dotted => Some((2, 3)),
        }
    }
}

/// What an entry's sample shows.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Sample {
    /// A line segment.
    Line {
        /// Colour.
        color: RGBColor,
        /// Dash pattern.
        stroke: Stroke,
        /// Width in pixels.
        width: u32,
    },
    /// A filled dot.
    Dot {
        /// Colour.
        color: RGBColor,
    },
}

/// One legend row.
#[derive(Debug, Clone, PartialEq)]
pub struct Entry {
    /// The sample.
    pub sample: Sample,
    /// The text.
    pub label: String,
}

const FONT: f64 = 13.0;
const ROW: i32 = 19;
const SAMPLE: i32 = 26;
const PAD: i32 = 7;

/// Width and height of the legend box for `entries`.
pub fn measure<DB: DrawingBackend>(
    area: &DrawingArea<DB, Shift>,
    entries: &[Entry],
) -> Result<(i32, i32), String> {
    let font = style::text(FONT, false, &INK);
    let mut widest = 0;
    for e in entries {
        let (w, _) = area.estimate_text_size(&e.label, &font).map_err(style::msg)?;
        widest = widest.max(w as i32);
    }
    Ok((
        PAD + SAMPLE + 6 + widest + PAD,
        PAD + ROW * entries.len() as i32 + PAD - 4,
    ))
}

/// Draw a stroked polyline in pixel coordinates.
pub fn stroke_path<DB: DrawingBackend>(
    area: &DrawingArea<DB, Shift>,
    points: &[(i32, i32)],
    color: &RGBColor,
    stroke: Stroke,
    width: u32,
) -> Result<(), String> {
    let style = color.stroke_width(width);
    match stroke.pattern() {
        None => area.draw(&PathElement::new(points.to_vec(), style)),
        Some((dash, gap)) => area.draw(&DashedPathElement::new(points.iter().copied(), dash, gap, style)),
    }
    .map_err(style::msg)
}

/// Draw the legend with its top-left corner at `at`.
pub fn draw<DB: DrawingBackend>(
    area: &DrawingArea<DB, Shift>,
    entries: &[Entry],
    at: (i32, i32),
) -> Result<(), String> {
    if entries.is_empty() {
        return Ok(());
    }
    let (w, h) = measure(area, entries)?;
    let (x, y) = at;
    let corners = [(x, y), (x + w, y + h)];
    area.draw(&Rectangle::new(corners, WHITE.mix(0.88).filled()))
        .and_then(|()| area.draw(&Rectangle::new(corners, FRAME.stroke_width(1))))
        .map_err(style::msg)?;
    let font = style::text(FONT, false, &INK).pos(plotters::style::text_anchor::Pos::new(
        plotters::style::text_anchor::HPos::Left,
        plotters::style::text_anchor::VPos::Center,
    ));
    for (i, e) in entries.iter().enumerate() {
        let cy = y + PAD + ROW * i as i32 + ROW / 2 - 2;
        let x0 = x + PAD;
        match e.sample {
            Sample::Line { color, stroke, width } => {
                stroke_path(area, &[(x0, cy), (x0 + SAMPLE, cy)], &color, stroke, width)?;
            }
            Sample::Dot { color } => {
                area.draw(&Circle::new((x0 + SAMPLE / 2, cy), 4, color.filled()))
                    .map_err(style::msg)?;
            }
        }
        area.draw_text(&e.label, &font, (x0 + SAMPLE + 6, cy))
            .map_err(style::msg)?;
    }
    Ok(())
}
