//! Sparklines: a series in one line of block characters, for `poet runs show`.

const BARS: [char; 8] = ['▁', '▂', '▃', '▄', '▅', '▆', '▇', '█'];

/// One block character per value, scaled between the smallest and largest finite value;
/// missing values (NaN, ±∞) are spaces and a constant series is a row of mid-height bars.
pub fn sparkline(values: &[f64]) -> String {
    let finite = values.iter().copied().filter(|v| v.is_finite());
    let (min, max) = finite.fold((f64::INFINITY, f64::NEG_INFINITY), |(lo, hi), v| {
        (lo.min(v), hi.max(v))
    });
    values
        .iter()
        .map(|&v| {
            if !v.is_finite() {
                ' '
            } else if max - min <= max.abs().max(min.abs()) * 1e-12 {
                BARS[3]
            } else {
                let level = ((v - min) / (max - min) * (BARS.len() - 1) as f64).round() as usize;
                BARS[level.min(BARS.len() - 1)]
            }
        })
        .collect()
}
