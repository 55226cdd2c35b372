//! Where every box, frame and arrow of the model diagram goes, as a list of pixel-space primitives.
//!
//! The layout is computed once and painted on both the SVG and the PNG backend, so the two files always
//! show the same picture. Layers flow top to bottom in a main lane; a residual block's shortcut runs in a
//! lane to the right of its body and joins at a `+` node. Tall models are cut into columns at top-level
//! items (a ResNet's `layerN` each get one), joined by a connector routed through the gutters.

use plotters::style::{FontDesc, FontFamily, FontStyle};

use super::super::{Call, ModelSummary, table::thousands};
use crate::figure::font::FAMILY;
use crate::model::decl::{ModelDecl, Node, Op, state_dict_path};

/// Colour as 8-bit RGB.
pub type Rgb = (u8, u8, u8);

/// How text is anchored horizontally at its x coordinate (it is always centred vertically).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Align {
    /// x is the left end.
    Left,
    /// x is the middle.
    Center,
}

/// One thing to paint, in pixels from the top-left corner.
#[derive(Debug, Clone, PartialEq)]
pub enum Prim {
    /// A filled, outlined rectangle.
    Rect {
        /// Top-left corner.
        from: (i32, i32),
        /// Bottom-right corner.
        to: (i32, i32),
        /// Fill colour.
        fill: Rgb,
        /// Outline colour.
        stroke: Rgb,
    },
    /// A filled, outlined circle.
    Circle {
        /// Centre.
        at: (i32, i32),
        /// Radius.
        radius: i32,
        /// Fill colour.
        fill: Rgb,
        /// Outline colour.
        stroke: Rgb,
    },
    /// A polyline ending in an arrowhead (when `head`), solid or dashed.
    Arrow {
        /// Points in order; the head is at the last one.
        points: Vec<(i32, i32)>,
        /// Dashed (an identity shortcut) or solid.
        dashed: bool,
        /// Whether to draw an arrowhead at the end.
        head: bool,
    },
    /// One line of text.
    Text {
        /// Anchor point.
        at: (i32, i32),
        /// The text.
        text: String,
        /// Pixel size.
        size: u32,
        /// Bold or normal.
        bold: bool,
        /// Colour.
        color: Rgb,
        /// Horizontal anchoring.
        align: Align,
    },
}

/// The finished layout: canvas size and what to paint, back to front.
#[derive(Debug, Clone, PartialEq)]
pub struct Drawing {
    /// Canvas width in pixels.
    pub width: u32,
    /// Canvas height in pixels.
    pub height: u32,
    /// Primitives in painting order.
    pub prims: Vec<Prim>,
}

/// Why measuring text failed (the embedded font could not be used).
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("measuring text {text:?}: {message}")]
pub struct MeasureError {
    /// The text being measured.
    pub text: String,
    /// The font library's message.
    pub message: String,
}

const BOX_H: i32 = 34;
/// A narrow box (in a shortcut lane) puts its name, type and output on three lines.
const NARROW_BOX_H: i32 = 48;
const GAP: i32 = 12;
const PAD: i32 = 10;
const HEADER: i32 = 22;
const BOTTOM: i32 = 10;
const SPLIT: i32 = 14;
const LANE_GAP: i32 = 18;
const IDENTITY_LANE: i32 = 24;
const ADD_R: i32 = 9;
const COL_GAP: i32 = 44;
const MARGIN: i32 = 20;
const TITLE_H: i32 = 56;
/// Columns are cut so that none is taller than this (unless one item alone is).
const COLUMN_LIMIT: i32 = 1000;

const BOX_TITLE_PX: u32 = 13;
const BOX_DETAIL_PX: u32 = 11;
const FRAME_TITLE_PX: u32 = 12;

const INK: Rgb = (30, 41, 59);
const MUTED: Rgb = (71, 85, 105);
const LINE: Rgb = (51, 65, 85);

/// Colour family of a layer box.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Conv,
    Norm,
    Activation,
    Pool,
    Linear,
    Other,
    Io,
}

impl Kind {
    fn of(op: &Op) -> Kind {
        match op {
            Op::Conv2d { .. } => Kind::Conv,
            Op::BatchNorm2d => Kind::Norm,
            Op::Relu | Op::LeakyRelu { .. } | Op::Gelu => Kind::Activation,
            Op::MaxPool2d(_) | Op::AvgPool2d(_) | Op::AdaptiveAvgPool2d { .. } => Kind::Pool,
            Op::Linear { .. } => Kind::Linear,
            _ => Kind::Other,
        }
    }

    /// (fill, outline).
    fn colors(self) -> (Rgb, Rgb) {
        match self {
            Kind::Conv => ((219, 234, 254), (37, 99, 235)),
            Kind::Norm => ((220, 252, 231), (22, 163, 74)),
            Kind::Activation => ((254, 243, 199), (217, 119, 6)),
            Kind::Pool => ((237, 233, 254), (124, 58, 237)),
            Kind::Linear => ((254, 226, 226), (220, 38, 38)),
            Kind::Other => ((241, 245, 249), (100, 116, 139)),
            Kind::Io => ((255, 255, 255), (30, 41, 59)),
        }
    }

    fn legend(self) -> &'static str {
        match self {
            Kind::Conv => "convolution",
            Kind::Norm => "normalization",
            Kind::Activation => "activation",
            Kind::Pool => "pooling",
            Kind::Linear => "linear",
            Kind::Other => "dropout / reshape",
            Kind::Io => "input / output",
        }
    }
}

/// A layer box's text: `name: what` over `detail`, or all three on their own lines when narrow.
#[derive(Debug, Clone)]
struct LayerBox {
    name: String,
    what: String,
    detail: String,
    kind: Kind,
    narrow: bool,
}

impl LayerBox {
    /// The lines drawn, with their pixel sizes.
    fn lines(&self) -> Vec<(String, u32)> {
        if self.narrow {
            vec![
                (self.name.clone(), BOX_TITLE_PX),
                (self.what.clone(), BOX_DETAIL_PX),
                (self.detail.clone(), BOX_DETAIL_PX),
            ]
        } else if self.name.is_empty() {
            vec![
                (self.what.clone(), BOX_TITLE_PX),
                (self.detail.clone(), BOX_DETAIL_PX),
            ]
        } else {
            vec![
                (format!("{}: {}", self.name, self.what), BOX_TITLE_PX),
                (self.detail.clone(), BOX_DETAIL_PX),
            ]
        }
    }

    fn width(&self, m: &Metrics) -> i32 {
        if self.narrow { m.narrow_w } else { m.box_w }
    }
}

/// A node of the diagram tree.
#[derive(Debug, Clone)]
enum Item {
    Layer(LayerBox),
    Group {
        title: String,
        children: Vec<Item>,
    },
    Residual {
        title: String,
        body: Vec<Item>,
        /// The projection's layers, or `None` for an identity shortcut.
        shortcut: Option<Vec<Item>>,
        activation: Option<Box<Item>>,
    },
}

/// Sizes that depend on the text of this model.
struct Metrics {
    box_w: i32,
    narrow_w: i32,
    title_w: Vec<(String, i32)>,
}

impl Metrics {
    fn title_width(&self, title: &str) -> i32 {
        self.title_w
            .iter()
            .find(|(t, _)| t == title)
            .map_or(0, |(_, w)| *w)
    }
}

fn measure(text: &str, size: u32, bold: bool) -> Result<i32, MeasureError> {
    let style = if bold { FontStyle::Bold } else { FontStyle::Normal };
    FontDesc::new(FontFamily::Name(FAMILY), f64::from(size), style)
        .box_size(text)
        .map(|(w, _)| w as i32)
        .map_err(|e| MeasureError {
            text: text.to_string(),
            message: e.to_string(),
        })
}

fn dims(shape: &[usize]) -> String {
    shape.iter().map(|d| d.to_string()).collect::<Vec<_>>().join("×")
}

/// What a layer does, in the words a PyTorch user would use.
fn describe(op: &Op, input: &[usize]) -> String {
    let cin = input.first().copied().unwrap_or(0);
    let stride = |s: usize| if s == 1 { String::new() } else { format!(" /{s}") };
    match op {
        Op::Conv2d {
            kernel, stride: s, ..
        } => format!("Conv2d {kernel}×{kernel}{}", stride(*s)),
        Op::MaxPool2d(w) => format!("MaxPool2d {0}×{0}{1}", w.kernel, stride(w.stride)),
        Op::AvgPool2d(w) => format!("AvgPool2d {0}×{0}{1}", w.kernel, stride(w.stride)),
        Op::AdaptiveAvgPool2d { output } => format!("AdaptiveAvgPool2d {output}×{output}"),
        Op::Linear { out_features, .. } => format!("Linear {cin}→{out_features}"),
        Op::Dropout { p } => format!("Dropout p={p}"),
        Op::LeakyRelu { negative_slope } => format!("LeakyReLU {negative_slope}"),
        Op::View => "flatten (view)".to_string(),
        other => other.type_name().to_string(),
    }
}

/// Turns the declaration tree into diagram items, taking each layer's shapes from the walk's calls.
struct Builder<'a> {
    calls: std::slice::Iter<'a, Call>,
}

impl Builder<'_> {
    fn next_call(&mut self, path: &str) -> Option<&Call> {
        let call = self.calls.next()?;
        // The walk visits layers in exactly the order this builder recurses; a mismatch is a defect.
        debug_assert_eq!(call.path, path);
        Some(call)
    }

    fn node(&mut self, node: &Node, prefix: &str, frame: &str, narrow: bool) -> Vec<Item> {
        let path = state_dict_path(prefix, &node.name);
        match &node.op {
            Op::Sequential(children) => {
                let items = children
                    .iter()
                    .flat_map(|c| self.node(c, &path, &path, narrow))
                    .collect();
                vec![Item::Group {
                    title: path.clone(),
                    children: items,
                }]
            }
            Op::Residual {
                class_name,
                body,
                shortcut,
                activation,
            } => {
                let body: Vec<Item> = body
                    .iter()
                    .flat_map(|n| self.node(n, &path, &path, false))
                    .collect();
                let shortcut = shortcut.as_ref().map(|s| match &s.op {
                    // The projection's own Sequential is drawn as the lane, not as another frame.
                    Op::Sequential(children) => {
                        let inner = state_dict_path(&path, &s.name);
                        children
                            .iter()
                            .flat_map(|c| self.node(c, &inner, &path, true))
                            .collect()
                    }
                    _ => self.node(s, &path, &path, true),
                });
                let activation = activation
                    .as_ref()
                    .and_then(|a| self.node(a, &path, &path, false).into_iter().next())
                    .map(Box::new);
                let _own = self.next_call(&path);
                let title = if shortcut.is_none() {
                    format!("{path} · {class_name} (identity shortcut)")
                } else {
                    format!("{path} · {class_name}")
                };
                vec![Item::Residual {
                    title,
                    body,
                    shortcut,
                    activation,
                }]
            }
            op => {
                let Some(call) = self.next_call(&path) else {
                    return Vec::new();
                };
                let name = relative(&path, frame);
                let what = describe(op, &call.input);
                let params = super::super::rules::count(op, &call.input, &call.output).summary_params;
                let mut detail = format!("out {}", dims(&call.output));
                if params > 0 {
                    detail.push_str(&format!(" · {} params", thousands(params as u64)));
                }
                vec![Item::Layer(LayerBox {
                    name,
                    what,
                    detail,
                    kind: Kind::of(op),
                    narrow,
                })]
            }
        }
    }
}

fn relative(path: &str, frame: &str) -> String {
    if frame.is_empty() {
        return path.to_string();
    }
    path.strip_prefix(frame)
        .and_then(|rest| rest.strip_prefix('.'))
        .unwrap_or(path)
        .to_string()
}

impl Item {
    fn boxes(&self, out: &mut Vec<LayerBox>) {
        match self {
            Item::Layer(b) => out.push(b.clone()),
            Item::Group { children, .. } => children.iter().for_each(|c| c.boxes(out)),
            Item::Residual {
                body,
                shortcut,
                activation,
                ..
            } => {
                body.iter().for_each(|c| c.boxes(out));
                shortcut.iter().flatten().for_each(|c| c.boxes(out));
                activation.iter().for_each(|c| c.boxes(out));
            }
        }
    }

    fn titles(&self, out: &mut Vec<String>) {
        match self {
            Item::Layer(_) => {}
            Item::Group { title, children } => {
                out.push(title.clone());
                children.iter().for_each(|c| c.titles(out));
            }
            Item::Residual {
                title,
                body,
                shortcut,
                activation,
            } => {
                out.push(title.clone());
                body.iter().for_each(|c| c.titles(out));
                shortcut.iter().flatten().for_each(|c| c.titles(out));
                activation.iter().for_each(|c| c.titles(out));
            }
        }
    }

    /// Distance from the left edge to the main lane's centre line.
    fn lead(&self, m: &Metrics) -> i32 {
        match self {
            Item::Layer(b) => b.width(m) / 2,
            Item::Group { children, .. } => PAD + max_of(children, m.box_w / 2, |c| c.lead(m)),
            Item::Residual { body, activation, .. } => {
                PAD + max_of(main_lane(body, activation), m.box_w / 2, |c| c.lead(m))
            }
        }
    }

    /// Distance from the main lane's centre line to the right edge.
    fn tail(&self, m: &Metrics) -> i32 {
        match self {
            Item::Layer(b) => b.width(m) - b.width(m) / 2,
            Item::Group { title, children } => {
                let content = max_of(children, m.box_w - m.box_w / 2, |c| c.tail(m)) + PAD;
                content.max(title_room(m, title))
            }
            Item::Residual {
                title,
                body,
                shortcut,
                activation,
            } => {
                let main = max_of(main_lane(body, activation), m.box_w - m.box_w / 2, |c| c.tail(m));
                let content = main + LANE_GAP + lane_width(shortcut, m) + PAD;
                content.max(title_room(m, title))
            }
        }
    }

    fn height(&self, m: &Metrics) -> i32 {
        match self {
            Item::Layer(b) if b.narrow => NARROW_BOX_H,
            Item::Layer(_) => BOX_H,
            Item::Group { children, .. } => HEADER + stack_height(children, m) + BOTTOM,
            Item::Residual {
                body,
                shortcut,
                activation,
                ..
            } => {
                let lane = shortcut.as_ref().map_or(0, |s| stack_height(s, m));
                let region = stack_height(body, m).max(lane);
                let act = activation.as_ref().map_or(0, |a| GAP + a.height(m));
                HEADER + SPLIT + region + GAP + 2 * ADD_R + act + BOTTOM
            }
        }
    }
}

/// A frame's title sits just right of the main lane's arrow, so the frame must reach past it.
fn title_room(m: &Metrics, title: &str) -> i32 {
    8 + m.title_width(title) + PAD
}

fn main_lane<'a>(
    body: &'a [Item],
    activation: &'a Option<Box<Item>>,
) -> impl Iterator<Item = &'a Item> + Clone {
    body.iter().chain(activation.iter().map(|a| a.as_ref()))
}

fn max_of<'a, I>(items: I, default: i32, f: impl Fn(&Item) -> i32) -> i32
where
    I: IntoIterator<Item = &'a Item>,
{
    items.into_iter().map(f).max().unwrap_or(default)
}

fn lane_width(shortcut: &Option<Vec<Item>>, m: &Metrics) -> i32 {
    match shortcut {
        Some(items) if !items.is_empty() => {
            max_of(items, m.box_w / 2, |c| c.lead(m)) + max_of(items, m.box_w / 2, |c| c.tail(m))
        }
        _ => IDENTITY_LANE,
    }
}

fn stack_height(items: &[Item], m: &Metrics) -> i32 {
    if items.is_empty() {
        return 0;
    }
    items.iter().map(|i| i.height(m)).sum::<i32>() + GAP * (items.len() as i32 - 1)
}

/// Paints items; collects primitives into back-to-front layers so frames never cover boxes or arrows.
#[derive(Default)]
struct Canvas {
    frames: Vec<Prim>,
    arrows: Vec<Prim>,
    shapes: Vec<Prim>,
    texts: Vec<Prim>,
}

impl Canvas {
    fn arrow(&mut self, points: Vec<(i32, i32)>, dashed: bool, head: bool) {
        self.arrows.push(Prim::Arrow { points, dashed, head });
    }

    fn text(&mut self, at: (i32, i32), text: &str, size: u32, bold: bool, color: Rgb, align: Align) {
        self.texts.push(Prim::Text {
            at,
            text: text.to_string(),
            size,
            bold,
            color,
            align,
        });
    }

    fn frame(&mut self, from: (i32, i32), to: (i32, i32), depth: usize, title: &str, cx: i32) {
        let shade = [(248, 250, 252), (236, 241, 247), (226, 232, 240)][depth.min(2)];
        self.frames.push(Prim::Rect {
            from,
            to,
            fill: shade,
            stroke: (148, 163, 184),
        });
        self.text(
            (cx + 8, from.1 + HEADER / 2),
            title,
            FRAME_TITLE_PX,
            true,
            MUTED,
            Align::Left,
        );
    }

    /// Stack items downward from `top` on centre line `cx`, joined by arrows; returns (entry, exit).
    fn stack(&mut self, items: &[Item], cx: i32, top: i32, depth: usize, m: &Metrics) -> Option<Ends> {
        let mut y = top;
        let mut ends: Option<Ends> = None;
        for item in items {
            let e = self.place(item, cx, y, depth, m);
            if let Some(prev) = ends {
                self.arrow(vec![prev.exit, e.entry], false, true);
            }
            ends = Some(match ends {
                Some(prev) => Ends {
                    entry: prev.entry,
                    exit: e.exit,
                },
                None => e,
            });
            y += item.height(m) + GAP;
        }
        ends
    }

    fn place(&mut self, item: &Item, cx: i32, top: i32, depth: usize, m: &Metrics) -> Ends {
        let left = cx - item.lead(m);
        let right = cx + item.tail(m);
        let bottom = top + item.height(m);
        match item {
            Item::Layer(b) => {
                let (fill, stroke) = b.kind.colors();
                self.shapes.push(Prim::Rect {
                    from: (left, top),
                    to: (right, bottom),
                    fill,
                    stroke,
                });
                let x = left + 8;
                for (i, (line, size)) in b.lines().into_iter().enumerate() {
                    let color = if i == 0 { INK } else { MUTED };
                    self.text(
                        (x, top + 11 + 14 * i as i32),
                        &line,
                        size,
                        false,
                        color,
                        Align::Left,
                    );
                }
                Ends {
                    entry: (cx, top),
                    exit: (cx, bottom),
                }
            }
            Item::Group { title, children } => {
                self.frame((left, top), (right, bottom), depth, title, cx);
                let inner = top + HEADER;
                self.stack(children, cx, inner, depth + 1, m).unwrap_or(Ends {
                    entry: (cx, inner),
                    exit: (cx, inner),
                })
            }
            Item::Residual {
                title,
                body,
                shortcut,
                activation,
            } => {
                self.frame((left, top), (right, bottom), depth, title, cx);
                let split = (cx, top + HEADER + 4);
                let body_top = top + HEADER + SPLIT;
                let main_tail = max_of(main_lane(body, activation), m.box_w - m.box_w / 2, |c| c.tail(m));
                let lane_left = cx + main_tail + LANE_GAP;
                let lane_items = shortcut.as_deref().unwrap_or(&[]);
                let lane_cx = if lane_items.is_empty() {
                    lane_left + IDENTITY_LANE / 2
                } else {
                    lane_left + max_of(lane_items, m.box_w / 2, |c| c.lead(m))
                };
                let region = stack_height(body, m).max(stack_height(lane_items, m));
                let add = (cx, body_top + region + GAP + ADD_R);
                let join_at = (cx + ADD_R, add.1);

                let body_ends = self.stack(body, cx, body_top, depth + 1, m);
                match &body_ends {
                    Some(e) => self.arrow(vec![e.exit, (cx, add.1 - ADD_R)], false, true),
                    None => self.arrow(vec![split, (cx, add.1 - ADD_R)], false, true),
                }
                match self.stack(lane_items, lane_cx, body_top, depth + 1, m) {
                    Some(e) => {
                        self.arrow(vec![split, (lane_cx, split.1), e.entry], false, true);
                        self.arrow(vec![e.exit, (lane_cx, add.1), join_at], false, true);
                    }
                    None => self.arrow(
                        vec![split, (lane_cx, split.1), (lane_cx, add.1), join_at],
                        true,
                        true,
                    ),
                }
                self.shapes.push(Prim::Circle {
                    at: add,
                    radius: ADD_R,
                    fill: (255, 255, 255),
                    stroke: LINE,
                });
                self.text(add, "+", 14, true, INK, Align::Center);

                let entry = body_ends.map_or(split, |e| e.entry);
                let exit = match activation {
                    Some(a) => {
                        let a_top = add.1 + ADD_R + GAP;
                        let e = self.place(a, cx, a_top, depth + 1, m);
                        self.arrow(vec![(cx, add.1 + ADD_R), e.entry], false, true);
                        e.exit
                    }
                    None => (cx, add.1 + ADD_R),
                };
                Ends { entry, exit }
            }
        }
    }
}

#[derive(Debug, Clone, Copy)]
struct Ends {
    entry: (i32, i32),
    exit: (i32, i32),
}

/// Cut a frame that is taller than a column into pieces that fit, continuing its title.
fn split_tall(item: Item, m: &Metrics) -> Vec<Item> {
    let Item::Group { title, children } = item else {
        return vec![item];
    };
    let whole = Item::Group {
        title: title.clone(),
        children,
    };
    if whole.height(m) <= COLUMN_LIMIT {
        return vec![whole];
    }
    let Item::Group { children, .. } = whole else {
        unreachable!("just built as a group")
    };
    let mut pieces: Vec<Vec<Item>> = vec![Vec::new()];
    for child in children {
        let current = pieces.last_mut().expect("pieces starts non-empty");
        let mut trial = current.clone();
        trial.push(child.clone());
        if !current.is_empty() && HEADER + stack_height(&trial, m) + BOTTOM > COLUMN_LIMIT {
            pieces.push(vec![child]);
        } else {
            current.push(child);
        }
    }
    pieces
        .into_iter()
        .enumerate()
        .map(|(i, children)| Item::Group {
            title: if i == 0 {
                title.clone()
            } else {
                format!("{title} (cont.)")
            },
            children,
        })
        .collect()
}

/// Split `heights` into at most `k` contiguous columns minimising the tallest; returns the cut points.
fn partition(heights: &[i32], k: usize) -> (i32, Vec<usize>) {
    let n = heights.len();
    let span = |a: usize, b: usize| heights[a..b].iter().sum::<i32>() + GAP * (b - a) as i32 - GAP;
    // best[j][i]: the smallest tallest column when the first i items go into j columns.
    let mut best = vec![vec![i32::MAX; n + 1]; k + 1];
    let mut cut = vec![vec![0usize; n + 1]; k + 1];
    best[0][0] = 0;
    for j in 1..=k {
        for i in 1..=n {
            for s in (j - 1)..i {
                if best[j - 1][s] == i32::MAX {
                    continue;
                }
                let cost = best[j - 1][s].max(span(s, i));
                if cost < best[j][i] {
                    best[j][i] = cost;
                    cut[j][i] = s;
                }
            }
        }
    }
    // Fewer columns are better when they are no taller.
    let cols = (1..=k).find(|&j| best[j][n] <= best[k][n]).unwrap_or(k);
    let tallest = best[cols][n];
    let mut bounds = vec![n];
    let mut i = n;
    for j in (1..=cols).rev() {
        i = cut[j][i];
        bounds.push(i);
    }
    bounds.reverse();
    (tallest, bounds)
}

/// The legend's kinds, in the order shown.
const KINDS: [Kind; 6] = [
    Kind::Conv,
    Kind::Norm,
    Kind::Activation,
    Kind::Pool,
    Kind::Linear,
    Kind::Other,
];

/// Width of the canvas the columns cut at `bounds` need, margins included.
fn columns_width(units: &[Item], bounds: &[usize], m: &Metrics) -> i32 {
    let widths = bounds.windows(2).map(|w| {
        let col = &units[w[0]..w[1]];
        col.iter().map(|i| i.lead(m)).max().unwrap_or(0) + col.iter().map(|i| i.tail(m)).max().unwrap_or(0)
    });
    let n = bounds.len().saturating_sub(1) as i32;
    2 * MARGIN + widths.sum::<i32>() + COL_GAP * (n - 1).max(0)
}

/// Lay out the whole diagram for `decl`, whose walk produced `calls`.
pub(in crate::summary) fn lay_out(
    decl: &ModelDecl,
    calls: &[Call],
    summary: &ModelSummary,
) -> Result<Drawing, MeasureError> {
    let mut builder = Builder { calls: calls.iter() };
    let io = |what: &str, shape: &[usize]| {
        Item::Layer(LayerBox {
            name: String::new(),
            what: what.to_string(),
            detail: dims(shape),
            kind: Kind::Io,
            narrow: false,
        })
    };
    let mut items = vec![io("input", &decl.input)];
    for node in &decl.layers {
        items.extend(builder.node(node, "", "", false));
    }
    let out_shape = calls.last().map_or(decl.input.clone(), |c| c.output.clone());
    items.push(io("output", &out_shape));

    let mut boxes = Vec::new();
    let mut titles = Vec::new();
    items.iter().for_each(|i| {
        i.boxes(&mut boxes);
        i.titles(&mut titles);
    });
    let (mut box_w, mut narrow_w) = (170, 120);
    for b in &boxes {
        let w = if b.narrow { &mut narrow_w } else { &mut box_w };
        for (line, size) in b.lines() {
            *w = (*w).max(measure(&line, size, false)? + 16);
        }
    }
    let mut title_w = Vec::new();
    for t in titles.iter().chain(
        titles
            .iter()
            .map(|t| format!("{t} (cont.)"))
            .collect::<Vec<_>>()
            .iter(),
    ) {
        title_w.push((t.clone(), measure(t, FRAME_TITLE_PX, true)?));
    }
    let m = Metrics {
        box_w,
        narrow_w,
        title_w,
    };

    let units: Vec<Item> = items.into_iter().flat_map(|i| split_tall(i, &m)).collect();
    let heights: Vec<i32> = units.iter().map(|u| u.height(&m)).collect();
    // The fewest columns that keep every column under the limit (a single oversized item sets its own).
    let limit = COLUMN_LIMIT.max(heights.iter().copied().max().unwrap_or(0));
    let (mut tallest, mut bounds) = partition(&heights, 1);
    let mut k = 2;
    while tallest > limit && k <= units.len() {
        (tallest, bounds) = partition(&heights, k);
        k += 1;
    }
    let heading = format!(
        "{} · input {} · {} parameters · {} MACs (thop)",
        summary.class_name,
        dims(&summary.input),
        thousands(summary.total_params as u64),
        thousands(summary.flops.thop_macs),
    );
    let legend_w = KINDS.iter().try_fold(0, |w, k| {
        measure(k.legend(), BOX_DETAIL_PX, false).map(|t| w + 20 + t + 22)
    })?;
    // The heading and legend set the canvas width anyway: a short chain (SimpleCNN) fills it with more,
    // shorter columns instead of one tall column beside empty space.
    let header_w = (2 * MARGIN + measure(&heading, 17, true)?).max(MARGIN + legend_w);
    while k <= units.len() {
        let (t, b) = partition(&heights, k);
        if t >= tallest || columns_width(&units, &b, &m) > header_w {
            break;
        }
        (tallest, bounds) = (t, b);
        k += 1;
    }

    let mut canvas = Canvas::default();
    let header_h = MARGIN + TITLE_H;
    let top = header_h + 14;
    let mut x = MARGIN;
    let mut columns: Vec<(i32, i32, Ends)> = Vec::new(); // (centre x, right edge, ends)
    let mut content_bottom = top;
    for w in bounds.windows(2) {
        let col = &units[w[0]..w[1]];
        let lead = col.iter().map(|i| i.lead(&m)).max().unwrap_or(0);
        let tail = col.iter().map(|i| i.tail(&m)).max().unwrap_or(0);
        let cx = x + lead;
        if let Some(ends) = canvas.stack(col, cx, top, 0, &m) {
            columns.push((cx, cx + tail, ends));
        }
        content_bottom = content_bottom.max(top + stack_height(col, &m));
        x = cx + tail + COL_GAP;
    }
    let route_bottom = content_bottom + 14;
    let route_top = top - 10;
    for pair in columns.windows(2) {
        let (cx, right, a) = pair[0];
        let (next_cx, _, b) = pair[1];
        let gutter = right + COL_GAP / 2;
        canvas.arrow(
            vec![
                a.exit,
                (cx, route_bottom),
                (gutter, route_bottom),
                (gutter, route_top),
                (next_cx, route_top),
                b.entry,
            ],
            false,
            true,
        );
    }

    let width = (x - COL_GAP + MARGIN).max(header_w);
    let height = route_bottom + MARGIN;
    canvas.text((MARGIN, MARGIN + 10), &heading, 17, true, INK, Align::Left);
    let mut lx = MARGIN;
    let ly = MARGIN + 40;
    for kind in KINDS {
        let (fill, stroke) = kind.colors();
        canvas.shapes.push(Prim::Rect {
            from: (lx, ly - 7),
            to: (lx + 14, ly + 7),
            fill,
            stroke,
        });
        canvas.text(
            (lx + 20, ly),
            kind.legend(),
            BOX_DETAIL_PX,
            false,
            MUTED,
            Align::Left,
        );
        lx += 20 + measure(kind.legend(), BOX_DETAIL_PX, false)? + 22;
    }
    let has_identity = canvas
        .arrows
        .iter()
        .any(|p| matches!(p, Prim::Arrow { dashed: true, .. }));
    let mut width = width.max(lx + MARGIN);
    if has_identity {
        canvas.arrow(vec![(lx, ly), (lx + 36, ly)], true, true);
        canvas.text(
            (lx + 44, ly),
            "identity shortcut",
            BOX_DETAIL_PX,
            false,
            MUTED,
            Align::Left,
        );
        width = width.max(lx + 44 + measure("identity shortcut", BOX_DETAIL_PX, false)? + MARGIN);
    }

    let mut prims = canvas.frames;
    prims.extend(canvas.arrows);
    prims.extend(canvas.shapes);
    prims.extend(canvas.texts);
    Ok(Drawing {
        width: width as u32,
        height: height as u32,
        prims,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn partition_balances_columns() {
        // 5 items of 100 px: two columns of 2 + 3 beat 1 + 4.
        let (tallest, bounds) = partition(&[100; 5], 2);
        assert_eq!(bounds, vec![0, 2, 5]);
        assert_eq!(tallest, 300 + 2 * GAP);
        // One column needs no cut.
        assert_eq!(partition(&[100; 3], 1).1, vec![0, 3]);
    }

    #[test]
    fn relative_names_drop_the_frame_prefix() {
        assert_eq!(relative("layer2.0.downsample.0", "layer2.0"), "downsample.0");
        assert_eq!(relative("conv1", ""), "conv1");
        assert_eq!(relative("layer20.conv", "layer2"), "layer20.conv");
    }
}
