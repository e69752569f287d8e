//! Axis ranges and tick values: linear axes step by 1, 2 or 5 times a power of ten,
//! logarithmic axes label decades (or 1-2-5 within a decade when the data spans less
//! than one).
//!
//! Degenerate input (one value, all values equal) still gets a range of non-zero width,
//! so callers never divide by zero and a flat line is drawn in the middle of the chart.

/// A labelled tick.
#[derive(Debug, Clone, PartialEq)]
pub struct Tick {
    /// Where the tick is, in data units.
    pub value: f64,
    /// What is written beside it, with as many decimals as the step needs.
    pub label: String,
}

/// A mapped axis: its range in data units, labelled ticks, and for log axes the
/// unlabelled minor ticks between them.
#[derive(Debug, Clone)]
pub struct Axis {
    /// The data value at the start of the axis (always below `hi`; positive if `log`).
    pub lo: f64,
    /// The data value at the end of the axis.
    pub hi: f64,
    /// Whether positions are proportional to the logarithm of the value.
    pub log: bool,
    /// Labelled ticks, ascending.
    pub ticks: Vec<Tick>,
    /// Unlabelled ticks (log axes only), drawn as faint grid lines.
    pub minor: Vec<f64>,
}

impl Axis {
    /// A linear axis covering `min..=max`, widened to the nearest ticks, with at most
    /// about `target` intervals.
    pub fn linear(min: f64, max: f64, target: usize) -> Axis {
        let (min, max) = widen_if_flat(min, max);
        let step = nice_step((max - min) / target.max(1) as f64);
        let lo = (min / step + 1e-9).floor() * step;
        let hi = (max / step - 1e-9).ceil() * step;
        Axis::stepped(lo, hi, lo, step)
    }

    /// An axis of whole numbers (epochs) covering exactly `min..=max`, ticks on
    /// multiples of a 1-2-5 step of at least 1.
    pub fn integer(min: u32, max: u32, target: usize) -> Axis {
        let (lo, hi) = if min < max {
            (f64::from(min), f64::from(max))
        } else {
            (f64::from(min.saturating_sub(1)), f64::from(max) + 1.0)
        };
        let step = nice_step((hi - lo) / target.max(1) as f64).max(1.0);
        Axis::stepped(lo, hi, (lo / step).ceil() * step, step)
    }

    /// A linear axis over `lo..=hi` with ticks every `step` from `first`.
    fn stepped(lo: f64, hi: f64, first: f64, step: f64) -> Axis {
        let ticks = steps(first, hi, step)
            .map(|value| Tick {
                value,
                label: format_linear(value, step),
            })
            .collect();
        Axis {
            lo,
            hi,
            log: false,
            ticks,
            minor: Vec::new(),
        }
    }

    /// A logarithmic axis covering `min..=max` (both positive) with a little room at
    /// each end.
    pub fn log(min: f64, max: f64, target: usize) -> Axis {
        let (mut lmin, mut lmax) = (min.log10(), max.log10());
        if lmax - lmin < 1e-9 {
            lmin -= 0.05;
            lmax += 0.05;
        }
        let pad = (lmax - lmin) * 0.03;
        lmin -= pad;
        lmax += pad;
        let (lo, hi) = (10f64.powf(lmin), 10f64.powf(lmax));
        let within = |v: &f64| *v >= lo * (1.0 - 1e-9) && *v <= hi * (1.0 + 1e-9);

        let decades: Vec<f64> = (lmin.ceil() as i32..=lmax.floor() as i32)
            .map(|k| 10f64.powi(k))
            .collect();
        let in_decades = |mults: &[f64]| -> Vec<f64> {
            (lmin.floor() as i32..=lmax.floor() as i32)
                .flat_map(|k| mults.iter().map(move |m| m * 10f64.powi(k)))
                .filter(within)
                .collect()
        };
        let all_minor = in_decades(&[2.0, 3.0, 4.0, 5.0, 6.0, 7.0, 8.0, 9.0]);

        let (major, minor) = if decades.len() >= 2 {
            // Too many decades to label them all: label every n-th, keep the rest as minors.
            let every = decades.len().div_ceil(target.max(2));
            let (labelled, rest): (Vec<_>, Vec<_>) = decades
                .iter()
                .enumerate()
                .partition(|(i, _)| i % every == 0);
            let mut minor: Vec<f64> = rest.into_iter().map(|(_, v)| *v).collect();
            if decades.len() <= 6 {
                minor.extend(all_minor);
            }
            (labelled.into_iter().map(|(_, v)| *v).collect(), minor)
        } else {
            let one_two_five = in_decades(&[1.0, 2.0, 5.0]);
            if one_two_five.len() >= 3 {
                let minor = all_minor
                    .into_iter()
                    .filter(|v| !one_two_five.contains(v))
                    .collect();
                (one_two_five, minor)
            } else {
                let all = in_decades(&[1.0, 2.0, 3.0, 4.0, 5.0, 6.0, 7.0, 8.0, 9.0]);
                if all.len() >= 2 {
                    (all, Vec::new())
                } else {
                    // Less than a factor of two: plain linear steps, placed on the log scale.
                    let linear = Axis::linear(lo, hi, target);
                    let ticks = linear
                        .ticks
                        .into_iter()
                        .filter(|t| within(&t.value))
                        .collect();
                    return Axis {
                        lo,
                        hi,
                        log: true,
                        ticks,
                        minor: Vec::new(),
                    };
                }
            }
        };
        let ticks = major
            .into_iter()
            .map(|v| Tick {
                value: v,
                label: format_log(v),
            })
            .collect();
        Axis {
            lo,
            hi,
            log: true,
            ticks,
            minor,
        }
    }

    /// Where `v` falls along the axis, 0 at `lo` and 1 at `hi`.
    pub fn frac(&self, v: f64) -> f64 {
        if self.log {
            (v.log10() - self.lo.log10()) / (self.hi.log10() - self.lo.log10())
        } else {
            (v - self.lo) / (self.hi - self.lo)
        }
    }
}

/// The smallest of 1, 2, 5 or 10 times a power of ten that is at least `raw`.
fn nice_step(raw: f64) -> f64 {
    if !raw.is_finite() || raw <= 0.0 {
        return 1.0;
    }
    let mag = 10f64.powf(raw.log10().floor());
    let norm = raw / mag;
    let mult = if norm <= 1.0 + 1e-9 {
        1.0
    } else if norm <= 2.0 + 1e-9 {
        2.0
    } else if norm <= 5.0 + 1e-9 {
        5.0
    } else {
        10.0
    };
    mult * mag
}

/// Values `first, first + step, …` up to `last`, computed by multiplication so rounding
/// errors do not accumulate.
fn steps(first: f64, last: f64, step: f64) -> impl Iterator<Item = f64> {
    let n = ((last - first) / step + 1e-6).floor().max(-1.0) as i64;
    (0..=n).map(move |i| {
        let v = first + i as f64 * step;
        // Snap values like 0.30000000000000004 so labels and positions agree.
        (v / step).round() * step
    })
}

/// `(min, max)` made at least a little wide: a flat series gets ±5% (or ±0.5 around 0).
fn widen_if_flat(min: f64, max: f64) -> (f64, f64) {
    if max - min > max.abs().max(min.abs()) * 1e-9 {
        return (min, max);
    }
    let pad = if min == 0.0 { 0.5 } else { min.abs() * 0.05 };
    (min - pad, max + pad)
}

/// A linear tick label with as many decimals as the step needs.
fn format_linear(v: f64, step: f64) -> String {
    let decimals = (-(step.log10() + 1e-9).floor()).max(0.0) as usize;
    let s = format!("{v:.decimals$}");
    if s.trim_start_matches('-')
        .chars()
        .all(|c| c == '0' || c == '.')
    {
        s.trim_start_matches('-').to_string()
    } else {
        s
    }
}

/// A log tick label: plain decimals for moderate magnitudes, `1e-7` style beyond.
fn format_log(v: f64) -> String {
    let exp = v.log10().floor() as i32;
    if !(-5..=6).contains(&exp) {
        let mantissa = v / 10f64.powi(exp);
        let m = format!("{mantissa:.0}");
        return if m == "1" {
            format!("1e{exp}")
        } else {
            format!("{m}e{exp}")
        };
    }
    let decimals = (-exp).max(0) as usize;
    format!("{v:.decimals$}")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn labels(a: &Axis) -> Vec<&str> {
        a.ticks.iter().map(|t| t.label.as_str()).collect()
    }

    #[test]
    fn linear_steps_are_one_two_five() {
        assert_eq!(nice_step(0.3), 0.5);
        assert_eq!(nice_step(0.15), 0.2);
        assert_eq!(nice_step(7.0), 10.0);
        let a = Axis::linear(1.21, 3.4, 6);
        assert_eq!(labels(&a), ["1.0", "1.5", "2.0", "2.5", "3.0", "3.5"]);
        assert_eq!((a.lo, a.hi), (1.0, 3.5));
    }

    #[test]
    fn flat_values_get_a_real_range() {
        let a = Axis::linear(2.0, 2.0, 5);
        assert!(a.hi > a.lo);
        assert!((a.frac(2.0) - 0.5).abs() < 1e-9);
        let z = Axis::linear(0.0, 0.0, 5);
        assert!(z.hi > z.lo);
    }

    #[test]
    fn integer_axis_for_one_epoch() {
        let a = Axis::integer(1, 1, 8);
        assert_eq!(labels(&a), ["0", "1", "2"]);
        let b = Axis::integer(1, 10, 10);
        assert_eq!(
            labels(&b),
            ["1", "2", "3", "4", "5", "6", "7", "8", "9", "10"]
        );
        let c = Axis::integer(1, 200, 8);
        assert_eq!(labels(&c), ["50", "100", "150", "200"]);
    }

    #[test]
    fn log_axis_labels_decades() {
        let a = Axis::log(0.01, 10.0, 6);
        assert_eq!(labels(&a), ["0.01", "0.1", "1", "10"]);
        assert!(!a.minor.is_empty());
    }

    #[test]
    fn log_axis_within_a_decade_uses_one_two_five() {
        let a = Axis::log(1.1, 4.2, 6);
        assert_eq!(labels(&a), ["2", "3", "4"]);
        let b = Axis::log(0.8, 6.0, 6);
        assert_eq!(labels(&b), ["1", "2", "5"]);
    }

    #[test]
    fn log_axis_tiny_range_still_has_ticks() {
        let a = Axis::log(2.0, 2.1, 6);
        assert!(a.ticks.len() >= 2, "{:?}", a.ticks);
    }
}
