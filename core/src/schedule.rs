//! Early stopping and promotion: what a sweep's scheduler decides when a run reports an
//! epoch, as pure functions of the sweep's [`Policy`] and the validation curves reported so
//! far. The coordinator calls them inside a transaction that holds the sweep's row lock, so
//! decisions are taken one at a time per sweep whatever the number of replicas; the replay
//! benchmark (`core/examples/replay.rs`) calls the very same functions on recorded curves.
//! Nothing here reads a clock or a random source: the same reports in the same order give the
//! same decisions.
//!
//! The rules (`[stopping] rule = …` in a sweep spec):
//! - `median`: at epoch `e >= grace_epochs`, a run whose best validation loss over epochs
//!   `1..=e` is worse than the median of the other runs' best over their epochs `1..=e` is
//!   stopped, once at least `min_runs` other runs have reached `e` (Optuna's `MedianPruner`,
//!   on the best so far rather than the last value, so one noisy epoch does not kill a run).
//! - `asha`: asynchronous successive halving. Rungs stand at `min_epochs · eta^k` below
//!   `max_epochs`. A run reaching a rung is ranked there by its best validation loss so far
//!   among every run that reached that rung; the top `⌊n / eta⌋` go on, the others pause. A
//!   paused run whose rank later falls inside the top `⌊n / eta⌋` (because more runs arrived
//!   behind it) is promoted: requeued, it resumes from its checkpoint at the rung, bit-exactly.
//!   Runs still paused when the sweep has nothing left to run are stopped.
//! - `hyperband`: brackets of ASHA on one rung system. Bracket `b`'s runs are first judged
//!   at `min_epochs · eta^b` (a head start: they pass the lower rungs unjudged); runs are
//!   dealt to brackets by their position in the sweep, in HyperBand's proportions (the most
//!   aggressive bracket gets the most), interleaved by a fixed weighted round-robin
//!   ([`Rungs::deal`]; Ray Tune's and Syne Tune's asynchronous HyperBand deal them at random, a
//!   fixed deal keeps decisions a function of the reports). At a rung, a run is ranked against
//!   every run that reached that epoch, whatever its bracket, and any run reaching the epoch
//!   raises the rung's quota (Syne Tune's `HyperbandScheduler` with its default
//!   `rung_system_per_bracket = False`: "all trials compete with each other in a single rung
//!   level system, they just get different head starts"). Why not one rung system per bracket,
//!   as in the HyperBand paper and Optuna's `HyperbandPruner`: a sweep of a few dozen runs split
//!   three ways leaves each rung a handful of arrivals, quotas of 0 or 1, and the best config
//!   lost to a neighbour that was better at epoch 3. On the replay benchmark (27 configs,
//!   `bench/sweeps`) per-bracket ranking reached the grid's best in 86 of 100 seeds (+0.4 % at
//!   the end, significantly worse than Syne Tune's Hyperband at every budget from 55 % of the
//!   grid); one rung system reaches it in 200 of 200 and is not worse in the mean than
//!   Optuna's or Syne Tune's at any budget (BENCHMARKS.md, "Sweeps").
//! - `patience` (with any rule): a run whose best loss of its last `epochs` epochs is not
//!   better by at least `min_delta` than its best before them is stopped.
//! - a budget of epochs or worker-hours: once spent, every running run stops at its next
//!   report and nothing else is started, promoted or proposed.

use serde::{Deserialize, Serialize};
use std::cmp::Ordering;

/// The stopping rule of a sweep.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
#[serde(tag = "rule", rename_all = "lowercase")]
pub enum Rule {
    /// Every run trains all its epochs.
    #[default]
    None,
    /// Stop a run worse than the median of the others at the same epoch.
    Median {
        /// Epochs before a run can be stopped.
        grace_epochs: u32,
        /// Other runs that must have reached the epoch before the median counts.
        min_runs: u32,
    },
    /// Asynchronous successive halving.
    Asha(Rungs),
    /// Brackets of ASHA.
    Hyperband(Rungs),
}

/// The rung ladder of `asha` and `hyperband`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Rungs {
    /// The first rung (bracket 0's, for hyperband).
    pub min_epochs: u32,
    /// Reduction factor: the top `1/eta` of a rung goes on.
    pub eta: u32,
    /// Epochs of a run that is never stopped (every run's `epochs`).
    pub max_epochs: u32,
}

impl Rungs {
    /// Number of hyperband brackets: `⌊log_eta(max / min)⌋ + 1`.
    pub fn brackets(&self) -> u32 {
        let mut b = 1;
        let mut m = u64::from(self.min_epochs) * u64::from(self.eta);
        while m <= u64::from(self.max_epochs) {
            b += 1;
            m *= u64::from(self.eta);
        }
        b
    }

    /// How many of every [`Rungs::deal`] cycle's trials each hyperband bracket gets:
    /// HyperBand's proportions, `⌈B / (B − b) · eta^(B − 1 − b)⌉` for bracket `b` of `B` (the
    /// most aggressive bracket, which halves the most, gets the most configs).
    pub fn bracket_weights(&self) -> Vec<u64> {
        let b_count = u64::from(self.brackets());
        (0..b_count)
            .map(|b| {
                let n = b_count * u64::from(self.eta).pow((b_count - 1 - b) as u32);
                n.div_ceil(b_count - b)
            })
            .collect()
    }

    /// The bracket of each trial of one cycle, interleaved by smooth weighted round-robin so
    /// that any prefix of trials is spread over the brackets in their proportions. Trial `t`
    /// is in bracket `deal[t % deal.len()]`.
    pub fn deal(&self) -> Vec<u32> {
        let w = self.bracket_weights();
        let total: i64 = w.iter().sum::<u64>() as i64;
        let mut credit = vec![0i64; w.len()];
        (0..total)
            .map(|_| {
                for (c, x) in credit.iter_mut().zip(&w) {
                    *c += *x as i64;
                }
                let pick = (0..credit.len())
                    .max_by_key(|&b| (credit[b], std::cmp::Reverse(b)))
                    .expect("at least one bracket");
                credit[pick] -= total;
                pick as u32
            })
            .collect()
    }

    /// The rung epochs (below `max_epochs`) of a ladder starting at `first`.
    pub fn ladder(&self, first: u64) -> Vec<u32> {
        let mut out = Vec::new();
        let mut r = first.max(1);
        while r < u64::from(self.max_epochs) {
            out.push(r as u32);
            r *= u64::from(self.eta);
        }
        out
    }
}

/// The per-run patience rule.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Patience {
    /// Epochs without enough improvement before the run stops.
    pub epochs: u32,
    /// The improvement that counts, in nats per char.
    pub min_delta: f64,
}

/// What a sweep may spend in all.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Budget {
    /// Epochs trained by all its runs together.
    Epochs(u64),
    /// Hours of training (the sum of every epoch's duration) by all its runs together.
    WorkerHours(f64),
}

/// Everything the scheduler decides by.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
pub struct Policy {
    /// The stopping rule.
    pub rule: Rule,
    /// The patience rule, with any stopping rule.
    pub patience: Option<Patience>,
    /// The sweep's budget.
    pub budget: Option<Budget>,
}

/// Where a run stands, as the scheduler sees it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum State {
    /// Waiting for a worker.
    Queued,
    /// Leased.
    Running,
    /// Waiting at a rung for a promotion.
    Paused,
    /// Stopped early (finished).
    Stopped,
    /// Trained every epoch.
    Succeeded,
    /// Gave up.
    Failed,
    /// Cancelled by a user.
    Cancelled,
}

impl State {
    /// The state named `s` as the database spells it.
    pub fn parse(s: &str) -> Option<State> {
        serde_json::from_value(serde_json::Value::String(s.to_string())).ok()
    }

    /// Whether the run still wants a worker (queued or running).
    pub fn active(self) -> bool {
        matches!(self, State::Queued | State::Running)
    }
}

/// One run of the sweep.
#[derive(Debug, Clone, PartialEq)]
pub struct RunView<'a> {
    /// Run id.
    pub id: i64,
    /// Position in the sweep, from 0 (deals hyperband brackets).
    pub trial: u32,
    /// Where it stands.
    pub state: State,
    /// Validation loss of epochs `1..=curve.len()`.
    pub curve: &'a [f64],
    /// Epochs the run is to train in all.
    pub epochs_total: u32,
}

/// Why a decision was taken, in words and in numbers.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Reason {
    /// One line, e.g. "stopped at rung 2: 2.31 > median 2.05 of 9 runs".
    pub text: String,
    /// The numbers behind it, e.g. `{"rule": "median", "value": 2.31, "median": 2.05, "runs": 9}`.
    pub detail: serde_json::Value,
}

/// What happens to the run that just reported.
#[derive(Debug, Clone, PartialEq)]
pub enum Verdict {
    /// It trains on; a reason when that was a decision (a promotion at a rung).
    Continue(Option<Reason>),
    /// It waits at a rung (resumable).
    Pause(Reason),
    /// It ends now, keeping its history and checkpoints.
    Stop(Reason),
}

/// A paused run sent back to the queue.
#[derive(Debug, Clone, PartialEq)]
pub struct Promotion {
    /// The run.
    pub run: i64,
    /// Why.
    pub reason: Reason,
}

/// The decisions of one report.
#[derive(Debug, Clone, PartialEq)]
pub struct Decisions {
    /// For the reporting run.
    pub verdict: Verdict,
    /// Paused runs to requeue.
    pub promote: Vec<Promotion>,
    /// The budget is spent: the caller stops every queued and paused run ([`on_budget_spent`]).
    pub budget_spent: bool,
}

/// What the sweep has spent so far, including the epoch just reported.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct Spent {
    /// Epochs reported by all its runs.
    pub epochs: u64,
    /// Hours of training of all its runs.
    pub hours: f64,
}

impl Budget {
    /// `Some(reason)` once `spent` reaches the budget.
    pub fn spent(&self, spent: Spent) -> Option<Reason> {
        match *self {
            Budget::Epochs(b) if spent.epochs >= b => Some(Reason {
                text: format!("budget spent: {} of {b} epochs", spent.epochs),
                detail: serde_json::json!({"rule": "budget", "epochs": spent.epochs, "budget_epochs": b}),
            }),
            Budget::WorkerHours(b) if spent.hours >= b => Some(Reason {
                text: format!("budget spent: {:.3} of {b} worker-hours", spent.hours),
                detail: serde_json::json!({"rule": "budget", "hours": spent.hours, "budget_hours": b}),
            }),
            _ => None,
        }
    }
}

/// The best (lowest) loss of `curve[..n]`; NaN losses never win.
pub fn best_until(curve: &[f64], n: usize) -> f64 {
    curve[..n.min(curve.len())]
        .iter()
        .copied()
        .filter(|v| !v.is_nan())
        .fold(f64::INFINITY, f64::min)
}

/// Lower loss first, then lower id (a total order: NaN and +inf rank last).
fn rank_order(a: &(f64, i64), b: &(f64, i64)) -> Ordering {
    a.0.total_cmp(&b.0).then(a.1.cmp(&b.1))
}

/// Decides for run `run`, which has just reported epoch `curve.len()` (its `RunView` in `runs`
/// holds the new epoch), given what the sweep has `spent`.
pub fn on_epoch(policy: &Policy, runs: &[RunView], run: i64, spent: Spent) -> Decisions {
    let me = runs
        .iter()
        .find(|r| r.id == run)
        .expect("the reporting run is one of the sweep's runs");
    let epoch = me.curve.len() as u32;
    let keep = |verdict| Decisions {
        verdict,
        promote: vec![],
        budget_spent: false,
    };
    if let Some(reason) = policy.budget.as_ref().and_then(|b| b.spent(spent)) {
        let verdict = if epoch >= me.epochs_total {
            Verdict::Continue(None)
        } else {
            Verdict::Stop(reason)
        };
        return Decisions {
            verdict,
            promote: vec![],
            budget_spent: true,
        };
    }
    if epoch >= me.epochs_total {
        return keep(Verdict::Continue(None));
    }
    if let Some(p) = policy.patience
        && let Some(reason) = patience(p, me.curve)
    {
        return keep(Verdict::Stop(reason));
    }
    match &policy.rule {
        Rule::None => keep(Verdict::Continue(None)),
        Rule::Median {
            grace_epochs,
            min_runs,
        } => keep(median(runs, me, *grace_epochs, *min_runs)),
        Rule::Asha(r) => rung_decision("asha", runs, me, r, |_| 0),
        Rule::Hyperband(r) => {
            let deal = r.deal();
            rung_decision("hyperband", runs, me, r, move |trial| {
                deal[trial as usize % deal.len()]
            })
        }
    }
}

fn patience(p: Patience, curve: &[f64]) -> Option<Reason> {
    let n = curve.len();
    let window = p.epochs as usize;
    if window == 0 || n <= window {
        return None;
    }
    let before = best_until(curve, n - window);
    let recent = curve[n - window..]
        .iter()
        .copied()
        .filter(|v| !v.is_nan())
        .fold(f64::INFINITY, f64::min);
    if before - recent >= p.min_delta {
        return None;
    }
    Some(Reason {
        text: format!(
            "stopped at epoch {n}: no improvement of {} in {window} epochs (best {before:.4} before, {recent:.4} since)",
            p.min_delta
        ),
        detail: serde_json::json!({"rule": "patience", "epoch": n, "best_before": finite(before),
            "best_since": finite(recent), "epochs": window, "min_delta": p.min_delta}),
    })
}

/// JSON has no infinity: a loss that was never finite is `null`.
fn finite(v: f64) -> serde_json::Value {
    if v.is_finite() {
        serde_json::json!(v)
    } else {
        serde_json::Value::Null
    }
}

fn median(runs: &[RunView], me: &RunView, grace: u32, min_runs: u32) -> Verdict {
    let e = me.curve.len();
    if (e as u32) < grace.max(1) {
        return Verdict::Continue(None);
    }
    let mut others: Vec<f64> = runs
        .iter()
        .filter(|r| r.id != me.id && r.curve.len() >= e)
        .map(|r| best_until(r.curve, e))
        .collect();
    if others.len() < min_runs.max(1) as usize {
        return Verdict::Continue(None);
    }
    others.sort_by(f64::total_cmp);
    let k = others.len();
    let med = if k % 2 == 1 {
        others[k / 2]
    } else {
        (others[k / 2 - 1] + others[k / 2]) / 2.0
    };
    let mine = best_until(me.curve, e);
    // A run that never reported a finite loss (NaN or +inf) is worse than any median.
    if mine.partial_cmp(&med) != Some(Ordering::Less) && mine != med {
        Verdict::Stop(Reason {
            text: format!("stopped at epoch {e}: best {mine:.4} > median {med:.4} of {k} runs"),
            detail: serde_json::json!({"rule": "median", "epoch": e, "value": finite(mine),
                "median": finite(med), "runs": k}),
        })
    } else {
        Verdict::Continue(None)
    }
}

/// The rung ladder of a run under `rungs`, by its bracket.
fn ladder_of(rungs: &Rungs, bracket: u32) -> Vec<u32> {
    let first = u64::from(rungs.min_epochs) * u64::from(rungs.eta).pow(bracket);
    rungs.ladder(first)
}

/// Every run that reached epoch `r`, ranked: (best loss until `r`, id), best first. One rung
/// system for all of hyperband's brackets: a bracket only sets where its runs are first judged.
fn standings(runs: &[RunView], r: u32) -> Vec<(f64, i64)> {
    let mut at: Vec<(f64, i64)> = runs
        .iter()
        .filter(|x| x.curve.len() >= r as usize)
        .map(|x| (best_until(x.curve, r as usize), x.id))
        .collect();
    at.sort_by(rank_order);
    at
}

/// The rung decisions of one report under `asha` or `hyperband`. The reporting run is judged
/// only at a rung of its own bracket's ladder; but any run reaching an epoch where others wait
/// raises that rung's quota, so paused runs now inside it are promoted whatever the reporting
/// run's bracket.
fn rung_decision(
    rule: &str,
    runs: &[RunView],
    me: &RunView,
    rungs: &Rungs,
    bracket_of: impl Fn(u32) -> u32,
) -> Decisions {
    let epoch = me.curve.len() as u32;
    // Where a run stands on its own ladder: (bracket, rung index) when `epoch` is one of its rungs.
    let rung_at = |trial: u32| {
        let b = bracket_of(trial);
        ladder_of(rungs, b)
            .iter()
            .position(|&r| r == epoch)
            .map(|k| (b, k))
    };
    let mine = rung_at(me.trial);
    let waiting = |r: &RunView| r.state == State::Paused && r.curve.len() == epoch as usize;
    if mine.is_none() && !runs.iter().any(|r| r.id != me.id && waiting(r)) {
        return Decisions {
            verdict: Verdict::Continue(None),
            promote: vec![],
            budget_spent: false,
        };
    }
    let at = standings(runs, epoch);
    let n = at.len();
    let quota = n / rungs.eta as usize;
    let judged = |(b, k): (u32, usize), rank: usize, value: f64, went_on: bool| {
        let verb = if went_on { "promoted" } else { "paused" };
        Reason {
            text: format!(
                "{verb} at rung {k} (epoch {epoch}): {value:.4} ranks {} of {n}, top {quota} go on",
                rank + 1
            ),
            detail: serde_json::json!({"rule": rule,
                "bracket": b, "rung": k, "epoch": epoch, "value": finite(value), "rank": rank + 1,
                "runs": n, "quota": quota, "eta": rungs.eta}),
        }
    };
    let verdict = match mine {
        None => Verdict::Continue(None),
        Some(place) => {
            let rank = at.iter().position(|x| x.1 == me.id).expect("me at my rung");
            if rank < quota {
                Verdict::Continue(Some(judged(place, rank, at[rank].0, true)))
            } else {
                Verdict::Pause(judged(place, rank, at[rank].0, false))
            }
        }
    };
    // The new arrival may have raised the quota: paused runs now inside it go on.
    let promote = at
        .iter()
        .take(quota)
        .enumerate()
        .filter(|(_, x)| x.1 != me.id)
        .filter_map(|(i, x)| {
            let r = runs.iter().find(|r| r.id == x.1 && waiting(r))?;
            let place = rung_at(r.trial)?;
            Some(Promotion {
                run: x.1,
                reason: judged(place, i, x.0, true),
            })
        })
        .collect();
    Decisions {
        verdict,
        promote,
        budget_spent: false,
    }
}

/// What happens when a sweep has nothing queued or running and nothing more to propose.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Idle {
    /// Paused runs sent on so that every bracket trains at least one run to the end.
    pub promote: Vec<Promotion>,
    /// Paused runs stopped (only when nothing is promoted).
    pub stop: Vec<(i64, Reason)>,
}

/// When the sweep has nothing queued or running and nothing more to propose. Per bracket, if
/// no run went past the highest rung where runs wait (fewer than `eta` reached it, so its
/// quota was 0), the best run waiting there goes on: a sweep never ends without having trained
/// its most promising run of each bracket to the end. Otherwise every paused run is stopped,
/// with its standing at the rung where it waits.
pub fn on_idle(policy: &Policy, runs: &[RunView]) -> Idle {
    let (rungs, bracket_of): (Rungs, Box<dyn Fn(u32) -> u32>) = match &policy.rule {
        Rule::Asha(r) => (*r, Box::new(|_| 0)),
        Rule::Hyperband(r) => {
            let deal = r.deal();
            (*r, Box::new(move |t| deal[t as usize % deal.len()]))
        }
        _ => {
            let stop = runs
                .iter()
                .filter(|r| r.state == State::Paused)
                .map(|r| {
                    (
                        r.id,
                        Reason {
                            text: "stopped: the sweep has nothing left to run".into(),
                            detail: serde_json::json!({"rule": "idle", "epoch": r.curve.len()}),
                        },
                    )
                })
                .collect();
            return Idle {
                promote: vec![],
                stop,
            };
        }
    };
    let paused: Vec<&RunView> = runs.iter().filter(|r| r.state == State::Paused).collect();
    // The rung index of a paused run within its own bracket's ladder.
    let rung_of = |r: &RunView| {
        let b = bracket_of(r.trial);
        let k = ladder_of(&rungs, b)
            .iter()
            .position(|&x| x as usize == r.curve.len())
            .unwrap_or(0);
        (b, k)
    };
    let mut promote = Vec::new();
    let top = paused.iter().map(|r| r.curve.len()).max().unwrap_or(0);
    let went_on = runs.iter().any(|r| r.curve.len() > top);
    let at = standings(runs, top as u32);
    let waiting = at.iter().enumerate().find_map(|(rank, x)| {
        paused
            .iter()
            .find(|r| r.id == x.1 && r.curve.len() == top)
            .map(|r| (rank, x.0, *r))
    });
    if !went_on && let Some((rank, value, run)) = waiting {
        let n = at.len();
        let (b, k) = rung_of(run);
        promote.push(Promotion {
            run: run.id,
            reason: Reason {
                text: format!(
                    "promoted at rung {k} (epoch {top}) with nothing else left to run: {value:.4} ranks {} of {n} and no run went on from there",
                    rank + 1
                ),
                detail: serde_json::json!({"rule": "idle_promotion", "bracket": b, "rung": k, "epoch": top,
                    "value": finite(value), "rank": rank + 1, "runs": n, "quota": n / rungs.eta as usize, "idle": true}),
            },
        });
    }
    if !promote.is_empty() {
        return Idle {
            promote,
            stop: vec![],
        };
    }
    let stop = paused
        .iter()
        .map(|r| {
            let epoch = r.curve.len() as u32;
            let (bracket, k) = rung_of(r);
            let at = standings(runs, epoch);
            let n = at.len();
            let quota = n / rungs.eta as usize;
            let rank = at.iter().position(|x| x.1 == r.id).unwrap_or(n);
            let value = best_until(r.curve, epoch as usize);
            (
                r.id,
                Reason {
                    text: format!(
                        "stopped at rung {k} (epoch {epoch}): {value:.4} ranked {} of {n}, top {quota} went on; the sweep has nothing left to run",
                        rank + 1
                    ),
                    detail: serde_json::json!({"rule": "not_promoted", "bracket": bracket, "rung": k,
                        "epoch": epoch, "value": finite(value), "rank": rank + 1, "runs": n, "quota": quota}),
                },
            )
        })
        .collect();
    Idle {
        promote: vec![],
        stop,
    }
}

/// Once the budget is spent: every queued and paused run stops (running ones stop at their
/// next report, through [`on_epoch`]).
pub fn on_budget_spent(runs: &[RunView], reason: &Reason) -> Vec<(i64, Reason)> {
    runs.iter()
        .filter(|r| matches!(r.state, State::Queued | State::Paused))
        .map(|r| (r.id, reason.clone()))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn view(id: i64, state: State, curve: &[f64], total: u32) -> RunView<'_> {
        RunView {
            id,
            trial: (id - 1) as u32,
            state,
            curve,
            epochs_total: total,
        }
    }

    fn asha(min: u32, eta: u32, max: u32) -> Policy {
        Policy {
            rule: Rule::Asha(Rungs {
                min_epochs: min,
                eta,
                max_epochs: max,
            }),
            ..Default::default()
        }
    }

    #[test]
    fn hyperband_deals_brackets_in_its_proportions() {
        let r = Rungs {
            min_epochs: 1,
            eta: 3,
            max_epochs: 20,
        };
        // HyperBand's n_s for s = 2, 1, 0: ⌈3/3 · 9⌉, ⌈3/2 · 3⌉, ⌈3/1 · 1⌉.
        assert_eq!(r.bracket_weights(), vec![9, 5, 3]);
        let deal = r.deal();
        assert_eq!(deal.len(), 17);
        for (b, w) in [(0, 9), (1, 5), (2, 3)] {
            assert_eq!(deal.iter().filter(|&&x| x == b).count(), w);
        }
        // Interleaved: the first 6 trials already reach every bracket.
        let mut first: Vec<u32> = deal[..6].to_vec();
        first.sort_unstable();
        first.dedup();
        assert_eq!(first, vec![0, 1, 2]);
    }

    #[test]
    fn ladders_and_brackets() {
        let r = Rungs {
            min_epochs: 1,
            eta: 3,
            max_epochs: 27,
        };
        assert_eq!(r.ladder(1), vec![1, 3, 9]);
        assert_eq!(r.brackets(), 4);
        assert_eq!(ladder_of(&r, 1), vec![3, 9]);
        assert_eq!(ladder_of(&r, 3), Vec::<u32>::new());
        let r = Rungs {
            min_epochs: 2,
            eta: 2,
            max_epochs: 20,
        };
        assert_eq!(r.ladder(2), vec![2, 4, 8, 16]);
        assert_eq!(r.brackets(), 4);
    }

    #[test]
    fn asha_pauses_the_first_arrivals_and_promotes_once_the_quota_grows() {
        let p = asha(1, 3, 9);
        // Run 1 arrives alone at rung 0 (epoch 1): quota 0, it pauses.
        let c1 = [2.0];
        let runs = [view(1, State::Running, &c1, 9)];
        let d = on_epoch(&p, &runs, 1, Spent::default());
        assert!(
            matches!(&d.verdict, Verdict::Pause(r) if r.text == "paused at rung 0 (epoch 1): 2.0000 ranks 1 of 1, top 0 go on"),
            "{d:?}"
        );
        // Runs 2 and 3 arrive worse; at the third arrival the quota is 1 and run 1 (paused,
        // best) is promoted while run 3 pauses.
        let (c2, c3) = ([2.5], [3.0]);
        let runs = [
            view(1, State::Paused, &c1, 9),
            view(2, State::Paused, &c2, 9),
            view(3, State::Running, &c3, 9),
        ];
        let d = on_epoch(&p, &runs, 3, Spent::default());
        assert!(matches!(d.verdict, Verdict::Pause(_)));
        assert_eq!(d.promote.len(), 1);
        assert_eq!(d.promote[0].run, 1);
        assert_eq!(
            d.promote[0].reason.detail["rank"],
            serde_json::json!(1),
            "{:?}",
            d.promote
        );
        // A fourth, better run goes straight on (rank 1 of 4, quota 1); run 1 is no longer
        // paused, so nothing else is promoted.
        let c4 = [1.5];
        let runs = [
            view(1, State::Queued, &c1, 9),
            view(2, State::Paused, &c2, 9),
            view(3, State::Paused, &c3, 9),
            view(4, State::Running, &c4, 9),
        ];
        let d = on_epoch(&p, &runs, 4, Spent::default());
        assert!(matches!(d.verdict, Verdict::Continue(Some(_))));
        assert!(d.promote.is_empty());
        // Between rungs nothing is decided.
        let c4b = [1.5, 1.4];
        let runs = [view(4, State::Running, &c4b, 9)];
        let d = on_epoch(&p, &runs, 4, Spent::default());
        assert_eq!(d.verdict, Verdict::Continue(None));
    }

    #[test]
    fn asha_ranks_by_best_so_far_and_breaks_ties_by_id() {
        let p = asha(2, 2, 8);
        let (a, b) = ([1.0, 5.0], [3.0, 1.0]);
        // Best until epoch 2: run 1 has 1.0, run 2 has 1.0: the tie goes to the lower id.
        let runs = [
            view(1, State::Paused, &a, 8),
            view(2, State::Running, &b, 8),
        ];
        let d = on_epoch(&p, &runs, 2, Spent::default());
        assert!(matches!(d.verdict, Verdict::Pause(_)));
        assert_eq!(d.promote.iter().map(|x| x.run).collect::<Vec<_>>(), vec![1]);
    }

    fn hyperband(min: u32, eta: u32, max: u32) -> Policy {
        Policy {
            rule: Rule::Hyperband(Rungs {
                min_epochs: min,
                eta,
                max_epochs: max,
            }),
            ..Default::default()
        }
    }

    #[test]
    fn hyperband_brackets_share_one_rung_system() {
        let p = hyperband(1, 2, 4);
        // 3 brackets: rungs [1, 2], [2], []; weights 4, 3, 3 dealt [0, 1, 2, 0, 1, ...]:
        // trial 0 is in bracket 0, trial 1 in bracket 1, trial 2 in bracket 2.
        let Rule::Hyperband(r) = p.rule else {
            unreachable!()
        };
        assert_eq!(r.bracket_weights(), vec![4, 3, 3]);
        assert_eq!(&r.deal()[..3], &[0, 1, 2]);
        // Run 2 (bracket 1) is not judged at epoch 1, its bracket's head start, however bad.
        let (c1, c2) = ([1.0], [9.0]);
        let runs = [
            view(1, State::Paused, &c1, 4),
            view(2, State::Running, &c2, 4),
        ];
        assert_eq!(
            on_epoch(&p, &runs, 2, Spent::default()).verdict,
            Verdict::Continue(None)
        );
        // Run 1 (bracket 0) at epoch 1 is ranked against every run that reached epoch 1,
        // run 2 of bracket 1 included: 2 runs, quota 1, run 2 (0.5) ranks first, run 1 pauses.
        let (c1, c2) = ([1.0], [0.5, 0.4]);
        let runs = [
            view(1, State::Running, &c1, 4),
            view(2, State::Running, &c2, 4),
        ];
        let d = on_epoch(&p, &runs, 1, Spent::default());
        assert!(
            matches!(&d.verdict, Verdict::Pause(r) if r.detail["runs"] == 2 && r.detail["rank"] == 2
                && r.detail["bracket"] == 0),
            "{d:?}"
        );
        // Run 2 at epoch 2 is at bracket 1's first rung (rung 0 of its own ladder).
        let d = on_epoch(&p, &runs, 2, Spent::default());
        assert!(
            matches!(&d.verdict, Verdict::Pause(r) if r.detail["bracket"] == 1 && r.detail["rung"] == 0),
            "{d:?}"
        );
        // Trial 2 is in bracket 2, which has no rungs: never paused.
        let c3 = [9.0, 9.0];
        let runs = [RunView {
            id: 3,
            trial: 2,
            state: State::Running,
            curve: &c3,
            epochs_total: 4,
        }];
        assert_eq!(
            on_epoch(&p, &runs, 3, Spent::default()).verdict,
            Verdict::Continue(None)
        );
    }

    #[test]
    fn hyperband_promotes_when_a_run_of_another_bracket_passes_the_rung() {
        let p = hyperband(1, 2, 4);
        // Run 1 (bracket 0) waits at epoch 1. Run 2 (bracket 1, not judged at epoch 1) reports
        // epoch 1, worse: 2 runs reached epoch 1, quota 1, run 1 ranks first and goes on,
        // while run 2 trains on undecided.
        let (c1, c2) = ([1.0], [2.0]);
        let runs = [
            view(1, State::Paused, &c1, 4),
            view(2, State::Running, &c2, 4),
        ];
        let d = on_epoch(&p, &runs, 2, Spent::default());
        assert_eq!(d.verdict, Verdict::Continue(None));
        assert_eq!(d.promote.len(), 1, "{d:?}");
        assert_eq!(d.promote[0].run, 1);
        assert_eq!(
            d.promote[0].reason.text,
            "promoted at rung 0 (epoch 1): 1.0000 ranks 1 of 2, top 1 go on"
        );
        assert_eq!(d.promote[0].reason.detail["bracket"], 0);
        // A run paused at an epoch that is no rung of its ladder (a user's pause) is left alone.
        let c4 = [1.0, 1.0, 1.0];
        let c5 = [2.0, 2.0, 2.0];
        let runs = [
            view(1, State::Paused, &c4, 4),
            view(2, State::Running, &c5, 4),
        ];
        assert!(on_epoch(&p, &runs, 2, Spent::default()).promote.is_empty());
    }

    #[test]
    fn median_stops_a_run_worse_than_the_median_after_the_grace() {
        let p = Policy {
            rule: Rule::Median {
                grace_epochs: 2,
                min_runs: 3,
            },
            ..Default::default()
        };
        let (a, b, c) = ([2.0, 1.9, 1.8], [2.2, 2.0, 1.9], [2.4, 2.1, 2.0]);
        let bad = [2.5, 2.3];
        let runs = [
            view(1, State::Succeeded, &a, 3),
            view(2, State::Succeeded, &b, 3),
            view(3, State::Succeeded, &c, 3),
            view(4, State::Running, &bad, 3),
        ];
        let d = on_epoch(&p, &runs, 4, Spent::default());
        match d.verdict {
            Verdict::Stop(r) => {
                assert_eq!(
                    r.text,
                    "stopped at epoch 2: best 2.3000 > median 2.0000 of 3 runs"
                );
                assert_eq!(r.detail["median"], serde_json::json!(2.0));
            }
            v => panic!("{v:?}"),
        }
        // Within the grace, or with too few others, it goes on.
        let first = [9.0];
        let runs = [
            view(1, State::Succeeded, &a, 3),
            view(4, State::Running, &first, 3),
        ];
        assert_eq!(
            on_epoch(&p, &runs, 4, Spent::default()).verdict,
            Verdict::Continue(None)
        );
        let runs = [
            view(1, State::Succeeded, &a, 3),
            view(2, State::Succeeded, &b, 3),
            view(4, State::Running, &bad, 3),
        ];
        assert_eq!(
            on_epoch(&p, &runs, 4, Spent::default()).verdict,
            Verdict::Continue(None)
        );
    }

    #[test]
    fn patience_stops_a_stalled_run_and_spares_an_improving_one() {
        let p = Policy {
            patience: Some(Patience {
                epochs: 2,
                min_delta: 0.01,
            }),
            ..Default::default()
        };
        let stalled = [2.0, 1.5, 1.495, 1.6];
        let runs = [view(1, State::Running, &stalled, 10)];
        let d = on_epoch(&p, &runs, 1, Spent::default());
        assert!(
            matches!(&d.verdict, Verdict::Stop(r) if r.detail["best_before"] == 1.5),
            "{d:?}"
        );
        let improving = [2.0, 1.5, 1.45, 1.6];
        let runs = [view(1, State::Running, &improving, 10)];
        assert_eq!(
            on_epoch(&p, &runs, 1, Spent::default()).verdict,
            Verdict::Continue(None)
        );
    }

    #[test]
    fn a_spent_budget_stops_the_reporting_run_and_flags_the_rest() {
        let p = Policy {
            budget: Some(Budget::Epochs(10)),
            ..asha(1, 3, 9)
        };
        let c = [2.0, 1.9];
        let runs = [
            view(1, State::Running, &c, 9),
            view(2, State::Queued, &[], 9),
        ];
        let spent = Spent {
            epochs: 10,
            hours: 0.0,
        };
        let d = on_epoch(&p, &runs, 1, spent);
        assert!(d.budget_spent);
        let Verdict::Stop(reason) = d.verdict else {
            panic!("not stopped")
        };
        assert_eq!(reason.text, "budget spent: 10 of 10 epochs");
        assert_eq!(on_budget_spent(&runs, &reason).len(), 1);
        let hours = Budget::WorkerHours(0.5);
        assert!(
            hours
                .spent(Spent {
                    epochs: 1,
                    hours: 0.4
                })
                .is_none()
        );
        assert!(
            hours
                .spent(Spent {
                    epochs: 1,
                    hours: 0.5
                })
                .is_some()
        );
    }

    #[test]
    fn idle_stops_paused_runs_with_their_standing() {
        let p = asha(1, 3, 9);
        let (a, b, c) = ([1.0, 0.9, 0.8], [2.0], [3.0]);
        let runs = [
            view(1, State::Succeeded, &a, 9),
            view(2, State::Paused, &b, 9),
            view(3, State::Paused, &c, 9),
        ];
        let out = on_idle(&p, &runs).stop;
        assert_eq!(out.iter().map(|x| x.0).collect::<Vec<_>>(), vec![2, 3]);
        assert_eq!(
            out[1].1.text,
            "stopped at rung 0 (epoch 1): 3.0000 ranked 3 of 3, top 1 went on; the sweep has nothing left to run"
        );
    }

    #[test]
    fn idle_sends_on_the_best_run_of_a_rung_nobody_went_past() {
        let p = asha(1, 3, 9);
        // Run 1 waits alone at rung 1 (epoch 3), runs 2 and 3 at rung 0; nobody went past
        // epoch 3: run 1 goes on, nobody stops.
        let (a, b, c) = ([1.0, 0.9, 0.8], [2.0], [3.0]);
        let runs = [
            view(1, State::Paused, &a, 9),
            view(2, State::Paused, &b, 9),
            view(3, State::Paused, &c, 9),
        ];
        let out = on_idle(&p, &runs);
        assert!(out.stop.is_empty());
        assert_eq!(out.promote.len(), 1);
        assert_eq!(out.promote[0].run, 1);
        assert_eq!(
            out.promote[0].reason.text,
            "promoted at rung 1 (epoch 3) with nothing else left to run: 0.8000 ranks 1 of 1 and no run went on from there"
        );
        // Once it finished, the others stop.
        let a9 = [1.0, 0.9, 0.8, 0.7, 0.7, 0.7, 0.7, 0.7, 0.7];
        let runs = [
            view(1, State::Succeeded, &a9, 9),
            view(2, State::Paused, &b, 9),
            view(3, State::Paused, &c, 9),
        ];
        let out = on_idle(&p, &runs);
        assert!(out.promote.is_empty());
        assert_eq!(out.stop.len(), 2);
    }

    #[test]
    fn idle_under_hyperband_sends_on_one_run_for_all_brackets() {
        let p = hyperband(1, 2, 4);
        // Runs 1 (bracket 0) and 2 (bracket 1) wait at epoch 2, nobody went past: only the
        // better of the two goes on, the brackets being one rung system.
        let (a, b) = ([1.0, 0.9], [1.2, 0.8]);
        let runs = [view(1, State::Paused, &a, 4), view(2, State::Paused, &b, 4)];
        let out = on_idle(&p, &runs);
        assert!(out.stop.is_empty());
        assert_eq!(
            out.promote.iter().map(|x| x.run).collect::<Vec<_>>(),
            vec![2]
        );
        assert_eq!(out.promote[0].reason.detail["bracket"], 1);
        assert_eq!(out.promote[0].reason.detail["rank"], 1);
    }

    #[test]
    fn decisions_are_a_function_of_the_reports() {
        // The same curves in the same order give the same decisions, run after run.
        let p = asha(1, 2, 8);
        let curves: Vec<Vec<f64>> = (0..12)
            .map(|i| {
                (1..=3)
                    .map(|e| 3.0 - 0.1 * e as f64 + 0.07 * ((i * 7) % 5) as f64)
                    .collect()
            })
            .collect();
        let decide = || {
            let mut out = vec![];
            for i in 0..curves.len() {
                let runs: Vec<RunView> = curves[..=i]
                    .iter()
                    .enumerate()
                    .map(|(j, c)| {
                        view(
                            j as i64 + 1,
                            if j == i {
                                State::Running
                            } else {
                                State::Paused
                            },
                            &c[..1],
                            8,
                        )
                    })
                    .collect();
                let d = on_epoch(&p, &runs, i as i64 + 1, Spent::default());
                out.push(format!("{:?}", d));
            }
            out
        };
        assert_eq!(decide(), decide());
    }
}
