//! One plot panel: per-epoch series against the epoch axis, with grid, framed axes, vertical markers and a
//! legend placed in the corner where it hides the least ink (matplotlib's `loc="best"`).

use plotters::coord::Shift;
use plotters::prelude::*;
use plotters::style::text_anchor::{HPos, Pos, VPos};

use super::legend::{self, Entry, Stroke};
use super::style::{self, GRID, INK, MUTED};

/// How the y values are shown.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scale {
    /// Plain numbers (loss), never padded below 0 when all values are non-negative; drawn on a log axis
    /// when they span more than `LOG_SCALE_RATIO`.
    Loss,
    /// Shares in 0..1, labelled as percentages.
    Accuracy,
    /// Loss on a log axis: the series hold log10 of the loss, the ticks are labelled with the loss itself.
    LogLoss,
}

/// Loss panels switch to a log axis when the largest plotted value is more than this many times the
/// smallest: one diverging run would otherwise flatten every other curve against the bottom.
pub const LOG_SCALE_RATIO: f64 = 100.0;

/// A per-epoch series; non-finite values are gaps.
#[derive(Debug, Clone)]
pub struct Series {
    /// Colour.
    pub color: RGBColor,
    /// Dash pattern.
    pub stroke: Stroke,
    /// `(epoch, value)` in epoch order.
    pub points: Vec<(f64, f64)>,
    /// A point to emphasise with a dot (the run's best epoch).
    pub highlight: Option<(f64, f64)>,
}

/// A vertical marker at an epoch.
#[derive(Debug, Clone, Copy)]
pub struct Marker {
    /// The epoch.
    pub epoch: f64,
    /// Colour.
    pub color: RGBColor,
    /// Dash pattern.
    pub stroke: Stroke,
}

/// Everything one panel shows.
#[derive(Debug, Clone)]
pub struct Panel {
    /// Caption above the plot.
    pub title: String,
    /// y-axis description.
    pub y_desc: String,
    /// How y is scaled and labelled.
    pub scale: Scale,
    /// The curves.
    pub series: Vec<Series>,
    /// Vertical markers.
    pub markers: Vec<Marker>,
    /// Legend rows (none: no legend).
    pub legend: Vec<Entry>,
}

const LINE_WIDTH: u32 = 2;

/// A linear f64 axis with ticks chosen here rather than by plotters (integer epochs, percent steps).
/// plotters' own `with_key_points` wrapper cannot be used with a mesh on f64 axes: it lacks a formatter.
struct Ticked {
    inner: plotters::coord::types::RangedCoordf64,
    ticks: Vec<f64>,
}

impl Ticked {
    fn new((lo, hi): (f64, f64), ticks: Vec<f64>) -> Self {
        Ticked {
            inner: (lo..hi).into(),
            ticks,
        }
    }
}

impl plotters::coord::ranged1d::Ranged for Ticked {
    type FormatOption = plotters::coord::ranged1d::DefaultFormatting;
    type ValueType = f64;

    fn map(&self, value: &f64, limit: (i32, i32)) -> i32 {
        self.inner.map(value, limit)
    }

    fn key_points<Hint: plotters::coord::ranged1d::KeyPointHint>(&self, hint: Hint) -> Vec<f64> {
        // Only bold grid lines, as matplotlib's default grid has no minor lines.
        if hint.weight().allow_light_points() {
            Vec::new()
        } else {
            self.ticks.clone()
        }
    }

    fn range(&self) -> std::ops::Range<f64> {
        self.inner.range()
    }
}

/// Consecutive finite points of a series: each run is drawn as one polyline, so NaN and infinity split a
/// curve the way matplotlib does instead of being drawn or crashing the range computation.
pub fn finite_runs(points: &[(f64, f64)]) -> Vec<&[(f64, f64)]> {
    points
        .split(|(x, y)| !(x.is_finite() && y.is_finite()))
        .filter(|run| !run.is_empty())
        .collect()
}

impl Panel {
    /// Whether this loss panel's finite values span more than `LOG_SCALE_RATIO` (all positive).
    pub fn wants_log_scale(&self) -> bool {
        if self.scale != Scale::Loss {
            return false;
        }
        match self.y_extent() {
            Some((lo, hi)) => lo > 0.0 && hi / lo > LOG_SCALE_RATIO,
            None => false,
        }
    }

    /// The same panel on a log axis: every value (and highlight) replaced by its log10.
    fn in_log_space(&self) -> Panel {
        let log = |(x, y): (f64, f64)| (x, if y > 0.0 { y.log10() } else { f64::NAN });
        let mut p = self.clone();
        p.scale = Scale::LogLoss;
        p.y_desc = format!("{} (log scale)", self.y_desc);
        for s in &mut p.series {
            s.points = s.points.iter().copied().map(log).collect();
            s.highlight = s.highlight.map(log);
        }
        p
    }

    fn x_extent(&self) -> Option<(f64, f64)> {
        let xs = self
            .series
            .iter()
            .flat_map(|s| s.points.iter().map(|p| p.0))
            .chain(self.markers.iter().map(|m| m.epoch))
            .filter(|x| x.is_finite());
        xs.fold(None, |acc, x| match acc {
            None => Some((x, x)),
            Some((a, b)) => Some((a.min(x), b.max(x))),
        })
    }

    fn y_extent(&self) -> Option<(f64, f64)> {
        let ys = self
            .series
            .iter()
            .flat_map(|s| s.points.iter())
            .filter(|(x, y)| x.is_finite() && y.is_finite())
            .map(|p| p.1);
        ys.fold(None, |acc, y| match acc {
            None => Some((y, y)),
            Some((a, b)) => Some((a.min(y), b.max(y))),
        })
    }

    /// Paint the panel into `cell`, a part of `root`; every pixel coordinate used is `root`'s.
    pub fn paint<DB: DrawingBackend>(
        &self,
        root: &DrawingArea<DB, Shift>,
        cell: &DrawingArea<DB, Shift>,
    ) -> Result<(), String> {
        if self.wants_log_scale() {
            return self.in_log_space().paint(root, cell);
        }
        let (x_lo, x_hi) = self.x_extent().unwrap_or((1.0, 1.0));
        let x_range = if x_hi > x_lo {
            let pad = 0.03 * (x_hi - x_lo);
            (x_lo - pad, x_hi + pad)
        } else {
            (x_lo - 1.0, x_hi + 1.0)
        };
        let x_ticks = style::epoch_ticks(x_lo.max(0.0) as usize, x_hi.max(0.0) as usize, 10);
        let y_data = self.y_extent();
        let y_bounds = match self.scale {
            Scale::Loss => (0.0, f64::INFINITY),
            Scale::Accuracy => (0.0, 1.0),
            Scale::LogLoss => (f64::NEG_INFINITY, f64::INFINITY),
        };
        let y_range = match y_data {
            Some((lo, hi)) => {
                let min_span = match self.scale {
                    Scale::Loss => 0.05 * hi.abs().max(lo.abs()),
                    Scale::Accuracy => 0.05,
                    Scale::LogLoss => 0.1,
                };
                style::padded_range(lo, hi, y_bounds, min_span)
            }
            None => (0.0, 1.0),
        };
        let (y_ticks, y_step) = match self.scale {
            Scale::LogLoss => (log_ticks(y_range), 1.0),
            _ => style::nice_ticks(y_range.0, y_range.1, 7),
        };
        let y_decimals = match self.scale {
            Scale::Loss | Scale::LogLoss => style::decimals_for(y_step),
            Scale::Accuracy => style::decimals_for(y_step * 100.0),
        };
        let scale = self.scale;
        let y_format = move |v: &f64| match scale {
            Scale::Loss => format!("{v:.y_decimals$}"),
            Scale::Accuracy => format!("{:.y_decimals$}%", v * 100.0),
            Scale::LogLoss => log_label(*v),
        };
        let x_format = |v: &f64| format!("{v:.0}");

        let mut chart = ChartBuilder::on(cell)
            .caption(&self.title, style::text(15.0, true, &INK))
            .margin_top(6)
            .margin_right(18)
            .margin_left(6)
            .x_label_area_size(44)
            .y_label_area_size(64)
            .build_cartesian_2d(Ticked::new(x_range, x_ticks), Ticked::new(y_range, y_ticks))
            .map_err(style::msg)?;
        chart
            .configure_mesh()
            .bold_line_style(GRID.stroke_width(1))
            .axis_style(INK.stroke_width(1))
            .label_style(style::text(13.0, false, &INK))
            .axis_desc_style(style::text(14.0, false, &INK))
            .x_desc("epoch")
            .y_desc(&self.y_desc)
            .x_label_formatter(&x_format)
            .y_label_formatter(&y_format)
            .draw()
            .map_err(style::msg)?;

        let (px, py) = chart.plotting_area().get_pixel_range();
        let to_px = |x: f64, y: f64| chart.backend_coord(&(x, y));

        let mut ink: Vec<(i32, i32)> = Vec::new();
        for m in &self.markers {
            if !m.epoch.is_finite() {
                continue;
            }
            let (x, _) = to_px(m.epoch, y_range.0);
            let path = [(x, py.start), (x, py.end - 1)];
            legend::stroke_path(root, &path, &m.color, m.stroke, 2)?;
            sample_path(&path, &mut ink);
        }
        for s in &self.series {
            for run in finite_runs(&s.points) {
                let path: Vec<(i32, i32)> = run.iter().map(|&(x, y)| to_px(x, y)).collect();
                if path.len() == 1 {
                    root.draw(&Circle::new(path[0], 3, s.color.filled()))
                        .map_err(style::msg)?;
                } else {
                    legend::stroke_path(root, &path, &s.color, s.stroke, LINE_WIDTH)?;
                }
                sample_path(&path, &mut ink);
            }
            if let Some((x, y)) = s.highlight.filter(|(x, y)| x.is_finite() && y.is_finite()) {
                let at = to_px(x, y);
                root.draw(&Circle::new(at, 5, s.color.filled()))
                    .and_then(|()| root.draw(&Circle::new(at, 5, WHITE.stroke_width(1))))
                    .map_err(style::msg)?;
            }
        }
        // matplotlib frames the plot on all four sides.
        root.draw(&Rectangle::new(
            [(px.start, py.start), (px.end - 1, py.end - 1)],
            INK.stroke_width(1),
        ))
        .map_err(style::msg)?;

        if y_data.is_none() {
            let note = style::text(13.0, false, &MUTED).pos(Pos::new(HPos::Center, VPos::Center));
            let centre = ((px.start + px.end) / 2, (py.start + py.end) / 2);
            root.draw_text("no finite values to plot", &note, centre)
                .map_err(style::msg)?;
        }
        if !self.legend.is_empty() {
            let size = legend::measure(root, &self.legend)?;
            let at = best_corner((px.clone(), py.clone()), size, &ink);
            legend::draw(root, &self.legend, at)?;
        }
        Ok(())
    }
}

/// Tick positions (log10 of the loss) on a log axis covering `range`: every decade, with 2× and 5× between
/// them when the range spans few decades, or every n-th decade when it spans many.
fn log_ticks((lo, hi): (f64, f64)) -> Vec<f64> {
    let (first, last) = (lo.floor() as i32, hi.ceil() as i32);
    let decades = last - first;
    let within = |t: &f64| *t >= lo && *t <= hi;
    if decades <= 3 {
        (first..=last)
            .flat_map(|d| [1.0, 2.0, 5.0].map(|m: f64| f64::from(d) + m.log10()))
            .filter(within)
            .collect()
    } else {
        let step = (decades + 6) / 7;
        (first..=last)
            .filter(|d| d.rem_euclid(step) == 0)
            .map(f64::from)
            .filter(within)
            .collect()
    }
}

/// The loss at log10 position `v`, written plainly (`0.01`, `2`, `500`, `1e+06` past a million).
fn log_label(v: f64) -> String {
    let value = 10f64.powf(v);
    let exponent = v.floor() as i32;
    if !(-4..6).contains(&exponent) {
        let mantissa = value / 10f64.powi(exponent);
        format!("{}e{exponent:+03}", mantissa.round())
    } else {
        let decimals = (-exponent).max(0) as usize;
        format!("{value:.decimals$}")
    }
}

/// Points every few pixels along a polyline, to count how much of it a legend box would cover.
fn sample_path(path: &[(i32, i32)], out: &mut Vec<(i32, i32)>) {
    out.extend(path.first().copied());
    for w in path.windows(2) {
        let ((x0, y0), (x1, y1)) = (w[0], w[1]);
        let steps = ((x1 - x0).abs().max((y1 - y0).abs()) / 3).max(1);
        for i in 1..=steps {
            out.push((x0 + (x1 - x0) * i / steps, y0 + (y1 - y0) * i / steps));
        }
    }
}

/// The top-left corner of a `size` box inside the plot area that covers the fewest `ink` points, trying
/// matplotlib's order (upper right first) so ties resolve the way readers expect.
fn best_corner(
    (px, py): (std::ops::Range<i32>, std::ops::Range<i32>),
    (w, h): (i32, i32),
    ink: &[(i32, i32)],
) -> (i32, i32) {
    const INSET: i32 = 8;
    let (left, right) = (px.start + INSET, px.end - INSET - w);
    let (top, bottom) = (py.start + INSET, py.end - INSET - h);
    let (mid_x, mid_y) = ((px.start + px.end - w) / 2, (py.start + py.end - h) / 2);
    let candidates = [
        (right, top),
        (left, top),
        (left, bottom),
        (right, bottom),
        (right, mid_y),
        (left, mid_y),
        (mid_x, bottom),
        (mid_x, top),
    ];
    let covered = |&(x, y): &(i32, i32)| {
        ink.iter()
            .filter(|&&(a, b)| a >= x - 2 && a <= x + w + 2 && b >= y - 2 && b <= y + h + 2)
            .count()
    };
    let mut best = candidates[0];
    let mut best_count = covered(&best);
    for c in &candidates[1..] {
        let n = covered(c);
        if n < best_count {
            best = *c;
            best_count = n;
        }
    }
    best
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn runs_split_at_non_finite_values() {
        let p = [
            (1.0, 1.0),
            (2.0, f64::NAN),
            (3.0, 2.0),
            (4.0, 3.0),
            (5.0, f64::INFINITY),
        ];
        let runs = finite_runs(&p);
        assert_eq!(runs, vec![&p[0..1], &p[2..4]]);
        assert!(finite_runs(&[(1.0, f64::NEG_INFINITY)]).is_empty());
    }

    fn loss_panel(values: &[f64]) -> Panel {
        Panel {
            title: "Loss".into(),
            y_desc: "cross-entropy loss".into(),
            scale: Scale::Loss,
            series: vec![Series {
                color: BLACK,
                stroke: Stroke::Solid,
                points: values
                    .iter()
                    .enumerate()
                    .map(|(i, &v)| (i as f64 + 1.0, v))
                    .collect(),
                highlight: None,
            }],
            markers: Vec::new(),
            legend: Vec::new(),
        }
    }

    #[test]
    fn loss_axes_turn_logarithmic_past_two_orders_of_magnitude() {
        // 2.3 → 0.4 spans less than 10×; 0.5 → 60 spans 120×; infinity and NaN do not count.
        assert!(!loss_panel(&[2.3, 1.1, 0.4, f64::INFINITY, f64::NAN]).wants_log_scale());
        assert!(!loss_panel(&[0.5, 50.0]).wants_log_scale());
        assert!(loss_panel(&[0.5, 60.0, 1.0]).wants_log_scale());
        // A zero loss cannot be on a log axis; accuracy never is.
        assert!(!loss_panel(&[0.0, 1000.0]).wants_log_scale());
        let mut acc = loss_panel(&[0.001, 1.0]);
        acc.scale = Scale::Accuracy;
        assert!(!acc.wants_log_scale());
        let log = loss_panel(&[0.5, 60.0]).in_log_space();
        assert_eq!(log.scale, Scale::LogLoss);
        assert!((log.series[0].points[1].1 - 60f64.log10()).abs() < 1e-12);
        assert!(log.y_desc.ends_with("(log scale)"));
    }

    #[test]
    fn log_ticks_are_decades_labelled_with_the_loss() {
        let ticks = log_ticks((-0.4, 1.8));
        let labels: Vec<String> = ticks.iter().map(|&t| log_label(t)).collect();
        assert_eq!(labels, ["0.5", "1", "2", "5", "10", "20", "50"]);
        let wide: Vec<String> = log_ticks((-2.2, 7.5)).iter().map(|&t| log_label(t)).collect();
        assert_eq!(wide, ["0.01", "1", "100", "10000", "1e+06"]);
    }

    #[test]
    fn legend_avoids_the_curve() {
        // A curve falling from the upper left to the lower right: the upper right corner is free.
        let mut ink = Vec::new();
        sample_path(&[(0, 0), (400, 300)], &mut ink);
        assert_eq!(best_corner((0..400, 0..300), (100, 50), &ink), (292, 8));
        // A curve along the top edge pushes the legend to the bottom.
        let mut ink = Vec::new();
        sample_path(&[(0, 20), (400, 20)], &mut ink);
        assert_eq!(best_corner((0..400, 0..300), (100, 50), &ink), (8, 242));
    }
}
