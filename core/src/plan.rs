//! The adaptive part of a sweep spec: how configs are searched (`[search]`), when runs stop
//! early (`[stopping]`), what the sweep may spend (`[budget]`) and how many of its runs train
//! at once (`max_concurrent`). Parsed with the rest of the spec in [`crate::sweep`], with
//! errors that name the field:
//!
//! ```toml
//! max_concurrent = 4
//! [search]
//! method = "tpe"          # grid | random | tpe (default: random with [random], else grid)
//! trials = 40             # tpe: configs to try in all
//! initial = 8             # tpe: random configs before the model is used
//! seed = 1
//! [stopping]
//! rule = "asha"           # none | median | asha | hyperband
//! min_epochs = 1          # asha, hyperband: the first rung
//! eta = 3                 # asha, hyperband: the top 1/eta of a rung go on
//! patience = 3            # any rule: stop after 3 epochs without an improvement of min_delta
//! min_delta = 0.001
//! [budget]
//! epochs = 200            # or worker_hours = 2.5
//! ```

use std::collections::BTreeMap;

use crate::schedule::{Budget, Patience, Policy, Rule, Rungs};
use crate::search::Tpe;
use crate::sweep::{Doc, SpecError, int_in, string, table};

/// How a sweep picks its configs.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(tag = "method", rename_all = "lowercase")]
pub enum Search {
    /// Every grid point (crossed with the random draws, if any), queued at submission.
    Grid,
    /// `random.samples` draws per grid point, queued at submission.
    Random,
    /// TPE proposals from the results so far ([`crate::search`]).
    Tpe {
        /// Configs to try in all.
        trials: u32,
        /// The estimator's settings.
        tpe: Tpe,
        /// Seed of the proposal streams.
        seed: u64,
    },
}

/// The adaptive settings of a sweep.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Plan {
    /// How configs are picked.
    pub search: Search,
    /// Stopping rule, patience and budget.
    pub policy: Policy,
    /// At most this many of the sweep's runs train at once.
    pub max_concurrent: Option<u32>,
}

impl Plan {
    /// How many runs a TPE sweep keeps queued or running (its proposal batch).
    pub fn parallel(&self) -> u32 {
        match &self.search {
            Search::Tpe { tpe, trials, .. } => self
                .max_concurrent
                .unwrap_or(tpe.initial.max(1))
                .min(*trials),
            _ => self.max_concurrent.unwrap_or(u32::MAX),
        }
    }

    /// Whether the coordinator must run the scheduler on every report of this sweep.
    pub fn adaptive(&self) -> bool {
        self.policy != Policy::default() || matches!(self.search, Search::Tpe { .. })
    }
}

/// A float within `lo..=hi` (an integer is a fine float).
fn float_in(doc: &Doc, path: &str, lo: f64, hi: f64) -> Result<f64, SpecError> {
    let v = match doc {
        Doc::Float(f) => *f,
        Doc::Int(i) => *i as f64,
        other => {
            return Err(SpecError::new(
                path,
                format!("expected a number, found {}", other.type_name()),
            ));
        }
    };
    if !(lo..=hi).contains(&v) {
        return Err(SpecError::new(
            path,
            format!("{v} is out of range {lo}..={hi}"),
        ));
    }
    Ok(v)
}

/// Takes the keys of `m` out one by one; whatever is left at the end is refused by name.
struct Keys {
    section: &'static str,
    m: BTreeMap<String, Doc>,
}

impl Keys {
    fn take(&mut self, key: &str) -> Option<(Doc, String)> {
        self.m
            .remove(key)
            .map(|d| (d, format!("{}.{key}", self.section)))
    }

    fn int(&mut self, key: &str, lo: i128, hi: i128) -> Result<Option<i128>, SpecError> {
        self.take(key)
            .map(|(d, p)| int_in(&d, &p, lo, hi))
            .transpose()
    }

    fn float(&mut self, key: &str, lo: f64, hi: f64) -> Result<Option<f64>, SpecError> {
        self.take(key)
            .map(|(d, p)| float_in(&d, &p, lo, hi))
            .transpose()
    }

    fn done(self, why: &str) -> Result<(), SpecError> {
        match self.m.into_keys().next() {
            Some(k) => Err(SpecError::new(
                format!("{}.{k}", self.section),
                format!("unknown key{why}"),
            )),
            None => Ok(()),
        }
    }
}

/// Parses `[search]`. `has_random` says whether the spec has a `[random]` section.
pub(crate) fn parse_search(doc: Option<Doc>, has_random: bool) -> Result<Search, SpecError> {
    let default = if has_random {
        Search::Random
    } else {
        Search::Grid
    };
    let Some(doc) = doc else {
        return Ok(default);
    };
    let mut k = Keys {
        section: "search",
        m: table(doc, "search")?,
    };
    let method = match k.take("method") {
        Some((d, p)) => string(d, &p)?,
        None => {
            return Err(SpecError::new(
                "search.method",
                "missing (grid, random or tpe)",
            ));
        }
    };
    let search = match method.as_str() {
        "grid" if has_random => {
            return Err(SpecError::new(
                "search.method",
                "grid cannot use [random] axes; use method = \"random\" or \"tpe\"",
            ));
        }
        "grid" => Search::Grid,
        "random" if !has_random => {
            return Err(SpecError::new(
                "search.method",
                "random needs a [random] section with samples and its axes",
            ));
        }
        "random" => Search::Random,
        "tpe" => {
            let defaults = Tpe::default();
            let trials = k
                .int("trials", 1, 100_000)?
                .ok_or_else(|| SpecError::new("search.trials", "missing (configs to try in all)"))?
                as u32;
            let initial = k
                .int("initial", 1, 100_000)?
                .map_or(defaults.initial, |v| v as u32);
            let gamma = k.float("gamma", 0.01, 0.99)?.unwrap_or(defaults.gamma);
            let candidates = k
                .int("candidates", 1, 10_000)?
                .map_or(defaults.candidates, |v| v as u32);
            let seed = k.int("seed", 0, u64::MAX.into())?.map_or(0, |v| v as u64);
            Search::Tpe {
                trials,
                tpe: Tpe {
                    initial,
                    gamma,
                    candidates,
                },
                seed,
            }
        }
        other => {
            return Err(SpecError::new(
                "search.method",
                format!("unknown method {other:?} (grid, random or tpe)"),
            ));
        }
    };
    k.done(&format!(" for method {method}"))?;
    Ok(search)
}

/// Parses `[stopping]` and `[budget]`. `max_epochs` is every run's `epochs`, or `None` when
/// runs differ in it (an `epochs` axis), which the rung rules refuse.
pub(crate) fn parse_policy(
    stopping: Option<Doc>,
    budget: Option<Doc>,
    max_epochs: Option<u32>,
) -> Result<Policy, SpecError> {
    let mut policy = Policy::default();
    if let Some(doc) = stopping {
        let mut k = Keys {
            section: "stopping",
            m: table(doc, "stopping")?,
        };
        let rule = match k.take("rule") {
            Some((d, p)) => string(d, &p)?,
            None => "none".into(),
        };
        let patience = k.int("patience", 1, 10_000)?;
        let min_delta = k.float("min_delta", 0.0, 100.0)?;
        policy.patience = match (patience, min_delta) {
            (Some(p), d) => Some(Patience {
                epochs: p as u32,
                min_delta: d.unwrap_or(0.0),
            }),
            (None, Some(_)) => {
                return Err(SpecError::new(
                    "stopping.min_delta",
                    "needs stopping.patience",
                ));
            }
            (None, None) => None,
        };
        policy.rule = match rule.as_str() {
            "none" => Rule::None,
            "median" => Rule::Median {
                grace_epochs: k.int("grace_epochs", 1, 100_000)?.map_or(1, |v| v as u32),
                min_runs: k.int("min_runs", 1, 100_000)?.map_or(3, |v| v as u32),
            },
            "asha" | "hyperband" => {
                let max_epochs = max_epochs.ok_or_else(|| {
                    SpecError::new(
                        "stopping.rule",
                        format!("{rule} needs one `epochs` for every run; epochs is a sweep axis"),
                    )
                })?;
                let min_epochs = k.int("min_epochs", 1, 100_000)?.map_or(1, |v| v as u32);
                let eta = k.int("eta", 2, 100)?.map_or(3, |v| v as u32);
                if min_epochs >= max_epochs {
                    return Err(SpecError::new(
                        "stopping.min_epochs",
                        format!("{min_epochs} leaves no rung below the runs' {max_epochs} epochs"),
                    ));
                }
                let rungs = Rungs {
                    min_epochs,
                    eta,
                    max_epochs,
                };
                if rule == "asha" {
                    Rule::Asha(rungs)
                } else {
                    Rule::Hyperband(rungs)
                }
            }
            other => {
                return Err(SpecError::new(
                    "stopping.rule",
                    format!("unknown rule {other:?} (none, median, asha or hyperband)"),
                ));
            }
        };
        k.done(&format!(" for rule {rule}"))?;
    }
    if let Some(doc) = budget {
        let mut k = Keys {
            section: "budget",
            m: table(doc, "budget")?,
        };
        let epochs = k.int("epochs", 1, i64::MAX.into())?;
        let hours = k.float("worker_hours", 1e-6, 1e9)?;
        policy.budget = match (epochs, hours) {
            (Some(e), None) => Some(Budget::Epochs(e as u64)),
            (None, Some(h)) => Some(Budget::WorkerHours(h)),
            (Some(_), Some(_)) => {
                return Err(SpecError::new(
                    "budget",
                    "give epochs or worker_hours, not both",
                ));
            }
            (None, None) => return Err(SpecError::new("budget", "needs epochs or worker_hours")),
        };
        k.done("")?;
    }
    Ok(policy)
}

#[cfg(test)]
mod tests {
    use crate::schedule::{Budget, Rule, Rungs};
    use crate::sweep::{SpecFormat, SweepSpec};

    use super::Search;

    fn parse(s: &str) -> Result<SweepSpec, crate::sweep::SpecError> {
        SweepSpec::parse(&format!("dataset = \"d\"\n{s}"), SpecFormat::Toml)
    }

    fn err(s: &str) -> (String, String) {
        let e = parse(s).unwrap_err();
        (e.field, e.message)
    }

    #[test]
    fn defaults_keep_todays_behaviour() {
        let spec = parse("[grid]\nlayers = [1, 2]").unwrap();
        let plan = spec.plan();
        assert_eq!(plan.search, Search::Grid);
        assert!(!plan.adaptive());
        assert_eq!(plan.max_concurrent, None);
    }

    #[test]
    fn asha_tpe_budget_and_concurrency_parse() {
        let spec = parse(
            "max_concurrent = 4\n[base]\nepochs = 27\n[grid]\nunits = [16, 32]\n[search]\nmethod = \"tpe\"\ntrials = 20\ninitial = 5\nseed = 9\n[stopping]\nrule = \"asha\"\neta = 3\npatience = 4\nmin_delta = 0.01\n[budget]\nepochs = 200",
        )
        .unwrap();
        let plan = spec.plan();
        assert!(plan.adaptive());
        assert_eq!(plan.max_concurrent, Some(4));
        assert_eq!(plan.parallel(), 4);
        assert!(
            matches!(plan.search, Search::Tpe { trials: 20, seed: 9, tpe } if tpe.initial == 5)
        );
        assert_eq!(
            plan.policy.rule,
            Rule::Asha(Rungs {
                min_epochs: 1,
                eta: 3,
                max_epochs: 27
            })
        );
        assert_eq!(plan.policy.budget, Some(Budget::Epochs(200)));
        assert_eq!(plan.policy.patience.unwrap().epochs, 4);
        // A TPE sweep submits its first batch only.
        assert_eq!(spec.expand(&Default::default()).unwrap().configs.len(), 2);
    }

    #[test]
    fn bad_sections_name_the_field() {
        assert_eq!(err("[stopping]\nrule = \"asah\"").0, "stopping.rule");
        assert_eq!(
            err("[stopping]\nrule = \"median\"\neta = 3"),
            ("stopping.eta".into(), "unknown key for rule median".into())
        );
        assert_eq!(
            err("[base]\nepochs = 3\n[stopping]\nrule = \"asha\"\nmin_epochs = 3").0,
            "stopping.min_epochs"
        );
        assert_eq!(
            err("[grid]\nepochs = [3, 9]\n[stopping]\nrule = \"hyperband\"").0,
            "stopping.rule"
        );
        assert_eq!(
            err("[stopping]\nrule = \"asha\"\neta = 1").0,
            "stopping.eta"
        );
        assert_eq!(err("[stopping]\nmin_delta = 0.1").0, "stopping.min_delta");
        assert_eq!(err("[search]\nmethod = \"tpe\"").0, "search.trials");
        assert_eq!(err("[search]\nmethod = \"random\"").0, "search.method");
        assert_eq!(
            err("[search]\nmethod = \"grid\"\ntrials = 3"),
            ("search.trials".into(), "unknown key for method grid".into())
        );
        assert_eq!(err("[budget]\nepochs = 0").0, "budget.epochs");
        assert_eq!(err("[budget]\nepochs = 5\nworker_hours = 1").0, "budget");
        assert_eq!(err("max_concurrent = 0").0, "max_concurrent");
    }
}
