//! Loss curves: training (dashed) and validation (solid) loss per epoch for many runs on
//! one chart, one colour per run, a legend by run label on the right.
//!
//! Every run keeps its colour across both curves so a sweep reads as "which
//! configuration overfits" at a glance; the line style, not the colour, says which loss
//! a curve is. Runs without a single finite loss are left out and named in a note under
//! the chart rather than silently dropped.

use super::axis::Axis;
use super::svg::{Anchor, GRID, INK, MUTED, Svg, TextStyle, fit_text, num, text_width};
use super::{PlotOptions, Point, Series};

/// Okabe–Ito colours, told apart with the common colour-vision deficiencies; its yellow
/// is left out because it vanishes on white. Runs beyond the seventh reuse colours and
/// are told apart by the legend order.
pub const PALETTE: [&str; 7] = [
    "#0072B2", "#E69F00", "#009E73", "#D55E00", "#CC79A7", "#56B4E9", "#000000",
];

const PAD: f64 = 16.0;
const TITLE_SIZE: f64 = 17.0;
const AXIS_TITLE_SIZE: f64 = 13.0;
const TICK_SIZE: f64 = 12.0;
const TICK_LEN: f64 = 5.0;
const TRAIN_DASH: &str = "6 4";
/// Most points for which validation points also get a marker; beyond it they clutter.
const MARKER_MAX_POINTS: usize = 30;

/// Renders the loss chart as a standalone SVG document.
///
/// Paths carry `class="train"` or `class="val"` and `data-series` (the index into
/// `series`); legend labels `class="legend-label"`; tick labels `class="tick-label x"` or
/// `"tick-label y"`; so tools and tests can find them without parsing geometry.
pub fn render_svg(series: &[Series], opts: &PlotOptions) -> String {
    let (w, h) = (
        f64::from(opts.width.max(320)),
        f64::from(opts.height.max(240)),
    );
    let runs: Vec<Run<'_>> = series
        .iter()
        .enumerate()
        .map(|(i, s)| Run::new(i, s, opts.log_y))
        .collect();
    let (drawn, skipped): (Vec<&Run<'_>>, Vec<&Run<'_>>) = runs.iter().partition(|r| r.has_data());

    // Vertical layout, top to bottom: title, plot, x tick labels, x axis title, note.
    let top = if opts.title.is_empty() {
        PAD + 6.0
    } else {
        PAD + TITLE_SIZE + 14.0
    };
    let note_h = if skipped.is_empty() { 0.0 } else { 20.0 };
    let bottom = h - PAD - note_h - AXIS_TITLE_SIZE - 10.0 - TICK_SIZE - TICK_LEN - 6.0;

    let y_axis = y_axis(
        &drawn,
        opts.log_y,
        ((bottom - top) / 42.0).round().max(2.0) as usize,
    );
    let y_label_w = y_axis
        .ticks
        .iter()
        .map(|t| text_width(&t.label, TICK_SIZE, false))
        .fold(0.0, f64::max);
    let left = PAD + AXIS_TITLE_SIZE + 10.0 + y_label_w + TICK_LEN + 6.0;

    let legend = Legend::layout(&drawn, w, bottom - top);
    let right = w - PAD - legend.width - if legend.width > 0.0 { 18.0 } else { 0.0 };
    let x_axis = x_axis(&drawn, ((right - left) / 70.0).round().max(2.0) as usize);

    let frame = Frame {
        left,
        right,
        top,
        bottom,
        x: x_axis,
        y: y_axis,
    };
    let mut svg = Svg::new(w, h);
    frame.draw_axes(&mut svg);
    for run in &drawn {
        run.draw(&mut svg, &frame, drawn.len());
    }
    if drawn.is_empty() {
        svg.no_data(
            (left + right) / 2.0,
            (top + bottom) / 2.0,
            "no losses to plot",
        );
    }
    legend.draw(&mut svg, &drawn, right + 18.0, top);

    if !opts.title.is_empty() {
        let title = fit_text(&opts.title, TITLE_SIZE * 1.1, w - 2.0 * PAD);
        let style = TextStyle::new(TITLE_SIZE, Anchor::Middle, INK, "title").bold();
        svg.text(w / 2.0, PAD + TITLE_SIZE, &title, &style);
    }
    if !skipped.is_empty() {
        let names: Vec<&str> = skipped.iter().map(|r| r.series.label.as_str()).collect();
        let note = format!("not drawn, no losses recorded: {}", names.join(", "));
        let style = TextStyle::new(12.0, Anchor::Start, MUTED, "note");
        svg.text(PAD, h - PAD, &fit_text(&note, 12.0, w - 2.0 * PAD), &style);
    }
    svg.finish()
}

/// One series prepared for drawing: points in epoch order, its colour.
struct Run<'a> {
    /// Position in the caller's slice: picks the colour and names the paths, so a run
    /// keeps its colour when others are skipped.
    index: usize,
    series: &'a Series,
    /// The series' points sorted by epoch, so lines never double back.
    points: Vec<Point>,
    /// Non-positive values cannot be placed on a log axis and count as missing.
    log_y: bool,
}

impl<'a> Run<'a> {
    fn new(index: usize, series: &'a Series, log_y: bool) -> Run<'a> {
        let mut points = series.points.clone();
        points.sort_by_key(|p| p.epoch);
        Run {
            index,
            series,
            points,
            log_y,
        }
    }

    fn colour(&self) -> &'static str {
        PALETTE[self.index % PALETTE.len()]
    }

    /// Whether `v` can be placed on the y axis (finite, and positive on a log axis).
    fn usable(&self, v: f64) -> bool {
        v.is_finite() && (!self.log_y || v > 0.0)
    }

    fn values(&self) -> impl Iterator<Item = f64> + '_ {
        self.points
            .iter()
            .flat_map(|p| [p.train_loss, p.val_loss])
            .filter(|v| self.usable(*v))
    }

    fn has_data(&self) -> bool {
        self.values().next().is_some()
    }

    fn draw(&self, svg: &mut Svg, frame: &Frame, runs_drawn: usize) {
        let colour = self.colour();
        let few = self.points.len() <= MARKER_MAX_POINTS && runs_drawn <= PALETTE.len();
        // Thinner lines once many runs overlap, or the chart turns into a solid band.
        let scale = if runs_drawn > 12 { 0.65 } else { 1.0 };
        for (kind, dash, width) in [
            ("train", Some(TRAIN_DASH), 1.6 * scale),
            ("val", None, 2.2 * scale),
        ] {
            let pick = |p: &Point| {
                if kind == "train" {
                    p.train_loss
                } else {
                    p.val_loss
                }
            };
            let pts: Vec<Option<(f64, f64)>> = self
                .points
                .iter()
                .map(|p| {
                    let v = pick(p);
                    self.usable(v).then(|| frame.at(f64::from(p.epoch), v))
                })
                .collect();
            if pts.iter().all(Option::is_none) {
                continue;
            }
            let mut d = String::new();
            let mut isolated = Vec::new();
            for (i, pt) in pts.iter().enumerate() {
                let Some((x, y)) = pt else { continue };
                let after_gap = i == 0 || pts[i - 1].is_none();
                let before_gap = i + 1 == pts.len() || pts[i + 1].is_none();
                d.push_str(&format!(
                    "{}{} {} ",
                    if after_gap { "M" } else { "L" },
                    num(*x),
                    num(*y)
                ));
                // A point with no neighbour draws no line, so it needs a marker to be seen.
                if (after_gap && before_gap) || (kind == "val" && few) {
                    isolated.push((*x, *y));
                }
            }
            let dash = dash
                .map(|d| format!(r#" stroke-dasharray="{d}""#))
                .unwrap_or_default();
            svg.raw(&format!(
                r#"<path class="{kind}" data-series="{}" d="{}" fill="none" stroke="{colour}" stroke-width="{}" stroke-linejoin="round" stroke-linecap="round"{dash}><title>{} ({})</title></path>"#,
                self.index,
                d.trim_end(),
                num(width),
                super::svg::escape(&self.series.label),
                if kind == "train" { "train" } else { "validation" },
            ));
            for (x, y) in isolated {
                let fill = if kind == "val" { colour } else { "#ffffff" };
                svg.raw(&format!(
                    r#"<circle class="marker {kind}" cx="{}" cy="{}" r="2.8" fill="{fill}" stroke="{colour}" stroke-width="1.4"/>"#,
                    num(x),
                    num(y),
                ));
            }
        }
    }
}

fn y_axis(drawn: &[&Run<'_>], log_y: bool, target: usize) -> Axis {
    let (min, max) = drawn
        .iter()
        .flat_map(|r| r.values())
        .fold((f64::INFINITY, f64::NEG_INFINITY), |(lo, hi), v| {
            (lo.min(v), hi.max(v))
        });
    match (min.is_finite(), log_y) {
        (false, true) => Axis::log(1.0, 10.0, target),
        (false, false) => Axis::linear(0.0, 1.0, target),
        (true, true) => Axis::log(min, max, target),
        // A little headroom so markers on the extremes do not sit on the x axis.
        (true, false) => Axis::linear(min - (max - min) * 0.02, max + (max - min) * 0.02, target),
    }
}

fn x_axis(drawn: &[&Run<'_>], target: usize) -> Axis {
    let epochs = drawn
        .iter()
        .flat_map(|r| r.points.iter())
        .filter(|p| p.train_loss.is_finite() || p.val_loss.is_finite());
    let (min, max) = epochs.fold((u32::MAX, 0), |(lo, hi), p| {
        (lo.min(p.epoch), hi.max(p.epoch))
    });
    if min > max {
        Axis::integer(1, 10, target)
    } else {
        Axis::integer(min, max, target)
    }
}

/// The plot area in user units and the axes that map data into it.
struct Frame {
    /// Edges of the plot area in user units.
    left: f64,
    right: f64,
    top: f64,
    bottom: f64,
    /// Epochs.
    x: Axis,
    /// Losses.
    y: Axis,
}

impl Frame {
    fn at(&self, x: f64, y: f64) -> (f64, f64) {
        (
            self.left + self.x.frac(x) * (self.right - self.left),
            self.bottom - self.y.frac(y) * (self.bottom - self.top),
        )
    }

    fn draw_axes(&self, svg: &mut Svg) {
        let tick_style = |anchor, class| TextStyle::new(TICK_SIZE, anchor, INK, class);
        for &v in &self.y.minor {
            let (_, y) = self.at(self.x.lo, v);
            svg.line((self.left, y), (self.right, y), "#f2f2f2", 1.0, None);
            svg.line((self.left - 3.0, y), (self.left, y), INK, 1.0, None);
        }
        for t in &self.y.ticks {
            let (_, y) = self.at(self.x.lo, t.value);
            svg.line((self.left, y), (self.right, y), GRID, 1.0, None);
            svg.line((self.left - TICK_LEN, y), (self.left, y), INK, 1.0, None);
            let style = tick_style(Anchor::End, "tick-label y");
            svg.text(
                self.left - TICK_LEN - 4.0,
                y + TICK_SIZE * 0.36,
                &t.label,
                &style,
            );
        }
        for t in &self.x.ticks {
            let (x, _) = self.at(t.value, self.y.lo);
            svg.line((x, self.top), (x, self.bottom), GRID, 1.0, None);
            svg.line(
                (x, self.bottom),
                (x, self.bottom + TICK_LEN),
                INK,
                1.0,
                None,
            );
            let style = tick_style(Anchor::Middle, "tick-label x");
            svg.text(
                x,
                self.bottom + TICK_LEN + 3.0 + TICK_SIZE,
                &t.label,
                &style,
            );
        }
        svg.line(
            (self.left, self.top),
            (self.left, self.bottom),
            INK,
            1.0,
            None,
        );
        svg.line(
            (self.left, self.bottom),
            (self.right, self.bottom),
            INK,
            1.0,
            None,
        );

        let title = |class| TextStyle::new(AXIS_TITLE_SIZE, Anchor::Middle, INK, class);
        let x_title_y = self.bottom + TICK_LEN + 3.0 + TICK_SIZE + 10.0 + AXIS_TITLE_SIZE;
        svg.text(
            (self.left + self.right) / 2.0,
            x_title_y,
            "epoch",
            &title("axis-title x"),
        );
        let y_mid = (self.top + self.bottom) / 2.0;
        svg.text_rotated(
            PAD + AXIS_TITLE_SIZE,
            y_mid,
            "loss (nats/char)",
            &title("axis-title y"),
            -90.0,
        );
    }
}

/// The legend's geometry: a key for the two line styles, then one row per run, in as
/// many columns as the plot height requires.
struct Legend {
    /// Total width, taken from the plot area; 0 when there is nothing to list.
    width: f64,
    /// Font size: smaller when many runs need several columns.
    size: f64,
    row_h: f64,
    rows_per_col: usize,
    col_w: f64,
    /// Labels longer than this are cut with an ellipsis.
    label_w: f64,
}

const SAMPLE_W: f64 = 26.0;
const SAMPLE_GAP: f64 = 7.0;
const COL_GAP: f64 = 14.0;

impl Legend {
    fn layout(drawn: &[&Run<'_>], w: f64, plot_h: f64) -> Legend {
        if drawn.is_empty() {
            return Legend {
                width: 0.0,
                size: 12.0,
                row_h: 18.0,
                rows_per_col: 1,
                col_w: 0.0,
                label_w: 0.0,
            };
        }
        // Roomy rows while one column holds everyone, tighter ones when it cannot.
        let mut best = None;
        for (size, row_h) in [(12.0, 19.0), (11.0, 15.0), (10.0, 13.0)] {
            let rows_per_col = (((plot_h - 2.0 * row_h - 8.0) / row_h).floor() as usize).max(1);
            let cols = drawn.len().div_ceil(rows_per_col);
            // The plot keeps at least about 60% of the width, whatever the labels.
            let share = if cols == 1 { 0.3 } else { 0.42 };
            let budget = (w * share) / cols as f64 - SAMPLE_W - SAMPLE_GAP - COL_GAP;
            let widest = drawn
                .iter()
                .map(|r| text_width(&r.series.label, size, false))
                .fold(0.0, f64::max);
            let key_w = text_width("validation", size, false);
            let label_w = widest.min(budget.max(40.0)).max(key_w);
            let col_w = SAMPLE_W + SAMPLE_GAP + label_w + COL_GAP;
            let legend = Legend {
                width: cols as f64 * col_w - COL_GAP,
                size,
                row_h,
                rows_per_col,
                col_w,
                label_w,
            };
            let fits = cols == 1 || size <= 10.0;
            if fits {
                return legend;
            }
            best.get_or_insert(legend);
        }
        best.expect("the smallest size always fits")
    }

    fn draw(&self, svg: &mut Svg, drawn: &[&Run<'_>], x: f64, top: f64) {
        if drawn.is_empty() {
            return;
        }
        let text_dy = self.size * 0.36;
        let style = |fill, class| TextStyle::new(self.size, Anchor::Start, fill, class);
        svg.raw(r#"<g class="legend">"#);
        let key = [("validation", None, 2.2), ("train", Some(TRAIN_DASH), 1.6)];
        for (row, (name, dash, width)) in key.into_iter().enumerate() {
            let y = top + self.row_h * (row as f64 + 0.5);
            svg.line((x, y), (x + SAMPLE_W, y), MUTED, width, dash);
            svg.text(
                x + SAMPLE_W + SAMPLE_GAP,
                y + text_dy,
                name,
                &style(MUTED, "legend-key"),
            );
        }
        let runs_top = top + 2.0 * self.row_h + 8.0;
        for (i, run) in drawn.iter().enumerate() {
            let col = i / self.rows_per_col;
            let row = i % self.rows_per_col;
            let cx = x + col as f64 * self.col_w;
            let y = runs_top + self.row_h * (row as f64 + 0.5);
            svg.line((cx, y), (cx + SAMPLE_W, y), run.colour(), 3.0, None);
            let label = fit_text(&run.series.label, self.size, self.label_w);
            svg.text(
                cx + SAMPLE_W + SAMPLE_GAP,
                y + text_dy,
                &label,
                &style(INK, "legend-label"),
            );
        }
        svg.raw("</g>");
    }
}
