//! The word chart for `poet words`: the most frequent words of a run's generated poems,
//! each with its share in the poems beside its share in the training set.
//!
//! The point of the chart is the gap between the two bars (the reference experiment's
//! model wrote "sun" far more often than its poets did), so every row also states the
//! ratio, which stays readable when both bars are short.

use super::axis::Axis;
use super::curves::PALETTE;
use super::svg::{Anchor, GRID, INK, MUTED, Svg, TextStyle, fit_text, text_width};

const WIDTH: f64 = 900.0;
const PAD: f64 = 16.0;
const TITLE_SIZE: f64 = 17.0;
const SIZE: f64 = 12.0;
const BAR_H: f64 = 11.0;
const ROW_H: f64 = 32.0;
const POEMS: &str = PALETTE[0];
const TRAINING: &str = PALETTE[1];
/// Background of every other row.
const STRIPE: &str = "#f5f5f5";
/// Ratio colour for words the model over- or under-uses by at least [`STRIKING_RATIO`].
const STRIKING: &str = PALETTE[3];
const STRIKING_RATIO: f64 = 2.0;
/// Room right of the plot for the "× training" ratio column.
const RATIO_W: f64 = 92.0;
/// Room right of the longest bar for its value label.
const VALUE_W: f64 = 50.0;

/// Renders `rows` (word, share in generated poems, share in the training set; shares are
/// fractions of all words, NaN when unknown) as horizontal bar pairs in the given order.
pub fn render_word_bars_svg(rows: &[(String, f64, f64)], title: &str) -> String {
    let top = PAD + TITLE_SIZE + 12.0 + 24.0;
    let height = top + ROW_H * rows.len().max(1) as f64 + 8.0 + 6.0 + SIZE + 10.0 + 13.0 + PAD;
    let mut svg = Svg::new(WIDTH, height);

    let title = fit_text(title, TITLE_SIZE * 1.1, WIDTH - 2.0 * PAD);
    let title_style = TextStyle::new(TITLE_SIZE, Anchor::Middle, INK, "title").bold();
    svg.text(WIDTH / 2.0, PAD + TITLE_SIZE, &title, &title_style);

    let label_w = rows
        .iter()
        .map(|(w, ..)| text_width(w, SIZE, false))
        .fold(40.0, f64::max)
        .min(180.0);
    let left = PAD + label_w + 10.0;
    let right = WIDTH - PAD - RATIO_W - VALUE_W;
    let bottom = top + ROW_H * rows.len().max(1) as f64 + 4.0;

    draw_key(&mut svg, left, PAD + TITLE_SIZE + 12.0 + 8.0);

    let pct = |v: f64| {
        if v.is_finite() {
            v.max(0.0) * 100.0
        } else {
            0.0
        }
    };
    let max = rows
        .iter()
        .flat_map(|(_, p, t)| [pct(*p), pct(*t)])
        .fold(0.0, f64::max);
    let axis = Axis::linear(
        0.0,
        if max > 0.0 { max } else { 1.0 },
        ((right - left) / 80.0) as usize,
    );
    let x_of = |v: f64| left + axis.frac(v) * (right - left);

    // Stripes carry the eye from a word across to its ratio on the far right.
    for i in (1..rows.len()).step_by(2) {
        svg.rect(
            PAD,
            top + ROW_H * i as f64,
            WIDTH - 2.0 * PAD,
            ROW_H,
            STRIPE,
            None,
        );
    }
    let tick_style = TextStyle::new(SIZE, Anchor::Middle, INK, "tick-label x");
    for t in &axis.ticks {
        let x = x_of(t.value);
        svg.line((x, top - 4.0), (x, bottom), GRID, 1.0, None);
        svg.line((x, bottom), (x, bottom + 5.0), INK, 1.0, None);
        svg.text(x, bottom + 8.0 + SIZE, &t.label, &tick_style);
    }
    svg.line((left, bottom), (right, bottom), INK, 1.0, None);
    let axis_title = TextStyle::new(13.0, Anchor::Middle, INK, "axis-title x");
    svg.text(
        (left + right) / 2.0,
        bottom + 8.0 + SIZE + 10.0 + 13.0,
        "share of all words (%)",
        &axis_title,
    );

    let ratio_x = WIDTH - PAD;
    let header = TextStyle::new(SIZE, Anchor::End, MUTED, "ratio-header");
    svg.text(ratio_x, top - 8.0, "poems / training", &header);

    for (i, (word, poems, training)) in rows.iter().enumerate() {
        let y = top + ROW_H * i as f64 + (ROW_H - 2.0 * BAR_H - 2.0) / 2.0;
        let word_style = TextStyle::new(SIZE, Anchor::End, INK, "word");
        svg.text(
            left - 8.0,
            y + BAR_H + 1.0 + SIZE * 0.36,
            &fit_text(word, SIZE, label_w),
            &word_style,
        );
        for (j, (share, fill, class)) in [(poems, POEMS, "poems"), (training, TRAINING, "training")]
            .into_iter()
            .enumerate()
        {
            let bar_y = y + j as f64 * (BAR_H + 2.0);
            let end = x_of(pct(*share));
            svg.raw(&format!(
                r#"<rect class="bar {class}" x="{}" y="{}" width="{}" height="{BAR_H}" fill="{fill}"/>"#,
                super::svg::num(left),
                super::svg::num(bar_y),
                // A hairline for a zero share: renderers drop zero-width rects with a warning.
                super::svg::num((end - left).max(0.5)),
            ));
            let value = TextStyle::new(10.5, Anchor::Start, MUTED, "value");
            svg.text(
                end + 4.0,
                bar_y + BAR_H - 2.0,
                &format_share(*share),
                &value,
            );
        }
        let fill = if is_striking(*poems, *training) {
            STRIKING
        } else {
            INK
        };
        let ratio = TextStyle::new(SIZE, Anchor::End, fill, "ratio").bold();
        svg.text(
            ratio_x,
            y + BAR_H + 1.0 + SIZE * 0.36,
            &format_ratio(*poems, *training),
            &ratio,
        );
    }
    if rows.is_empty() {
        svg.no_data((left + right) / 2.0, top + ROW_H * 0.6, "no words to plot");
    }
    svg.finish()
}

fn draw_key(svg: &mut Svg, x: f64, y: f64) {
    let style = TextStyle::new(SIZE, Anchor::Start, INK, "legend-label");
    let mut x = x;
    for (name, fill) in [("generated poems", POEMS), ("training set", TRAINING)] {
        svg.rect(x, y - BAR_H / 2.0, 18.0, BAR_H, fill, None);
        svg.text(x + 24.0, y + SIZE * 0.36, name, &style);
        x += 24.0 + text_width(name, SIZE, false) + 24.0;
    }
}

/// A share as a percentage with enough digits to tell small shares apart.
fn format_share(share: f64) -> String {
    if !share.is_finite() {
        return "n/a".to_string();
    }
    let pct = share * 100.0;
    if pct >= 10.0 {
        format!("{pct:.1}%")
    } else if pct >= 0.1 || pct == 0.0 {
        format!("{pct:.2}%")
    } else {
        format!("{pct:.3}%")
    }
}

/// Whether the poems use a word at least [`STRIKING_RATIO`] times more or less often
/// than the training set (or use a word it never has).
fn is_striking(poems: f64, training: f64) -> bool {
    if !(poems.is_finite() && training.is_finite()) || poems <= 0.0 {
        return false;
    }
    training <= 0.0 || poems / training >= STRIKING_RATIO || training / poems >= STRIKING_RATIO
}

fn format_ratio(poems: f64, training: f64) -> String {
    if !(poems.is_finite() && training.is_finite()) {
        "n/a".to_string()
    } else if training <= 0.0 {
        if poems > 0.0 {
            "new".to_string()
        } else {
            "–".to_string()
        }
    } else {
        let r = poems / training;
        if r >= 10.0 {
            format!("×{r:.0}")
        } else {
            format!("×{r:.1}")
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shares_and_ratios_read_well() {
        assert_eq!(format_share(0.123), "12.3%");
        assert_eq!(format_share(0.0123), "1.23%");
        assert_eq!(format_share(0.000123), "0.012%");
        assert_eq!(format_share(f64::NAN), "n/a");
        assert_eq!(format_ratio(0.04, 0.002), "×20");
        assert_eq!(format_ratio(0.01, 0.008), "×1.2");
        assert_eq!(format_ratio(0.01, 0.0), "new");
    }
}
