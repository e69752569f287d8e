//! Replaying a sweep's scheduler on recorded learning curves: the simulator behind the replay
//! benchmark (`bench/sweeps`, `core/examples/replay.rs`). It drives the same
//! [`schedule::on_epoch`] and [`search::propose`] the coordinator calls, with `workers`
//! simulated workers that take runs in the queue's claim order (lowest run id first, so a
//! promoted run goes before a new one), each epoch lasting its recorded seconds. Every
//! reported epoch adds a point (epochs spent, best validation loss seen so far).
//!
//! The fixture is a grid of configs, each with its validation curve, recorded by real
//! training (`bench/sweeps/run.sh record`).

use std::collections::{BTreeMap, HashMap, HashSet, VecDeque};

use serde::{Deserialize, Serialize};

use crate::config::TrainConfig;
use crate::schedule::{self, Policy, RunView, Spent, State, Verdict};
use crate::search::{self, Space, Tpe};

/// Recorded curves of a grid of configs.
#[derive(Debug, Clone, Deserialize)]
pub struct Fixture {
    /// The axes of the grid, in the spec's sense.
    pub axes: BTreeMap<String, Vec<serde_json::Value>>,
    /// Config keys shared by every run.
    #[serde(default)]
    pub base: serde_json::Map<String, serde_json::Value>,
    /// One entry per grid point.
    pub runs: Vec<FixtureRun>,
}

/// One recorded run.
#[derive(Debug, Clone, Deserialize)]
pub struct FixtureRun {
    /// Its axis values.
    pub config: serde_json::Map<String, serde_json::Value>,
    /// Validation loss per epoch.
    pub val_loss: Vec<f64>,
    /// Seconds per epoch (1 each when absent).
    #[serde(default)]
    pub seconds: Vec<f64>,
}

/// How configs are picked in a replay.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Pick {
    /// Every config, in an order shuffled by the seed (grid and random search are the same
    /// thing on a finite grid: random search is sampling it without replacement).
    Shuffled,
    /// TPE proposals, up to every config.
    Tpe(Tpe),
}

/// A replay's result.
#[derive(Debug, Clone, Serialize)]
pub struct Trace {
    /// `[epochs spent, best validation loss seen]` after every reported epoch.
    pub points: Vec<(u64, f64)>,
    /// Epochs spent in all.
    pub epochs: u64,
    /// Best validation loss seen.
    pub best: f64,
    /// Runs started.
    pub runs: usize,
}

impl Fixture {
    /// The epochs of every run (the shortest recorded curve).
    pub fn max_epochs(&self) -> u32 {
        self.runs
            .iter()
            .map(|r| r.val_loss.len())
            .min()
            .unwrap_or(0) as u32
    }

    fn base_config(&self) -> Result<TrainConfig, String> {
        let mut m = self.base.clone();
        m.insert("epochs".into(), self.max_epochs().into());
        serde_json::from_value(serde_json::Value::Object(m)).map_err(|e| format!("base: {e}"))
    }

    /// The fixture run a config is, matched on the axis values.
    fn index_of(&self, c: &TrainConfig) -> Option<usize> {
        let v = serde_json::to_value(c).ok()?;
        self.runs.iter().position(|r| {
            r.config
                .iter()
                .all(|(k, x)| v.get(k).is_some_and(|y| same(x, y)))
        })
    }

    /// The best loss of the whole grid and the epochs it costs to train all of it.
    pub fn grid_best(&self) -> (f64, u64) {
        let e = self.max_epochs() as usize;
        let best = self
            .runs
            .iter()
            .map(|r| schedule::best_until(&r.val_loss, e))
            .fold(f64::INFINITY, f64::min);
        (best, (e * self.runs.len()) as u64)
    }
}

/// Numbers equal as numbers (`0.001` written as float or int).
fn same(a: &serde_json::Value, b: &serde_json::Value) -> bool {
    match (a.as_f64(), b.as_f64()) {
        (Some(x), Some(y)) => (x - y).abs() <= 1e-12 * x.abs().max(y.abs()),
        _ => a == b,
    }
}

/// A run of the simulated sweep.
struct Sim {
    fixture: usize,
    state: State,
    curve: Vec<f64>,
}

/// Replays `policy` over `fixture` with `workers` workers, picking configs by `pick` and
/// `seed`.
pub fn simulate(
    fixture: &Fixture,
    policy: &Policy,
    pick: Pick,
    workers: usize,
    seed: u64,
) -> Result<Trace, String> {
    let base = fixture.base_config()?;
    let axes: Vec<(String, Vec<serde_json::Value>)> = fixture
        .axes
        .iter()
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect();
    let space = Space::from_choices(base, &axes).map_err(|e| e.to_string())?;
    let max_epochs = fixture.max_epochs();
    let mut order: Vec<usize> = (0..fixture.runs.len()).collect();
    shuffle(&mut order, seed);
    let mut next_shuffled = order.into_iter();
    // Every fixture run's config, and which run a config is, looked up once: TPE asks both for
    // every candidate of every proposal.
    let configs: Vec<TrainConfig> = (0..fixture.runs.len())
        .map(|i| config_of(fixture, i))
        .collect();
    let index: HashMap<String, usize> = configs
        .iter()
        .enumerate()
        .map(|(i, c)| (c.canonical_json(), i))
        .collect();
    let index_of = |c: &TrainConfig| {
        index
            .get(&c.canonical_json())
            .copied()
            .or_else(|| fixture.index_of(c))
    };

    let mut runs: Vec<Sim> = Vec::new();
    let mut queue: VecDeque<usize> = VecDeque::new();
    // (worker busy until, run index)
    let mut busy: Vec<Option<(f64, usize)>> = vec![None; workers.max(1)];
    let mut now = 0.0f64;
    let mut spent = Spent::default();
    let mut best = f64::INFINITY;
    let mut points = Vec::new();
    let mut budget_spent = false;
    let mut tried: HashSet<usize> = HashSet::new();

    loop {
        // Fill idle workers: the queue first (lowest run id first), then new configs.
        for slot in busy.iter_mut() {
            if slot.is_some() || budget_spent {
                continue;
            }
            let run = if let Some(pos) = (0..queue.len()).min_by_key(|&i| queue[i]) {
                queue.remove(pos)
            } else {
                let next = match pick {
                    Pick::Shuffled => next_shuffled.next(),
                    Pick::Tpe(tpe) => {
                        let curves: Vec<(TrainConfig, &[f64])> = runs
                            .iter()
                            .map(|r| (configs[r.fixture].clone(), &r.curve[..]))
                            .collect();
                        let observed = search::observations(&curves, tpe.initial as usize);
                        let exists =
                            |c: &TrainConfig| index_of(c).is_none_or(|i| tried.contains(&i));
                        search::propose(&space, &tpe, &observed, seed, runs.len() as u32, &exists)
                            .and_then(|c| index_of(&c))
                    }
                };
                match next {
                    Some(f) => {
                        tried.insert(f);
                        runs.push(Sim {
                            fixture: f,
                            state: State::Queued,
                            curve: vec![],
                        });
                        Some(runs.len() - 1)
                    }
                    None => None,
                }
            };
            if let Some(r) = run {
                runs[r].state = State::Running;
                let e = runs[r].curve.len();
                *slot = Some((now + seconds(fixture, runs[r].fixture, e), r));
            }
        }
        // The next epoch to end.
        let Some(w) = (0..busy.len())
            .filter(|&w| busy[w].is_some())
            .min_by(|&a, &b| {
                busy[a]
                    .unwrap()
                    .0
                    .total_cmp(&busy[b].unwrap().0)
                    .then(a.cmp(&b))
            })
        else {
            // Nothing runs and nothing can start: the sweep is idle.
            let idle = schedule::on_idle(policy, &views(&runs, max_epochs));
            if idle.promote.is_empty() || budget_spent {
                for (id, _) in idle.stop {
                    runs[id as usize - 1].state = State::Stopped;
                }
                break;
            }
            for p in idle.promote {
                let i = p.run as usize - 1;
                runs[i].state = State::Queued;
                queue.push_back(i);
            }
            continue;
        };
        let (t, r) = busy[w].take().expect("busy");
        now = t;
        let f = runs[r].fixture;
        let e = runs[r].curve.len();
        let loss = fixture.runs[f].val_loss[e];
        runs[r].curve.push(loss);
        spent.epochs += 1;
        spent.hours += seconds(fixture, f, e) / 3600.0;
        if loss < best {
            best = loss;
        }
        points.push((spent.epochs, best));
        let d = schedule::on_epoch(policy, &views(&runs, max_epochs), r as i64 + 1, spent);
        for p in &d.promote {
            let i = p.run as usize - 1;
            runs[i].state = State::Queued;
            queue.push_back(i);
        }
        if d.budget_spent {
            budget_spent = true;
            for run in runs.iter_mut() {
                if matches!(run.state, State::Queued | State::Paused) {
                    run.state = State::Stopped;
                }
            }
            queue.clear();
        }
        match d.verdict {
            Verdict::Continue(_) if runs[r].curve.len() as u32 >= max_epochs => {
                runs[r].state = State::Succeeded;
            }
            Verdict::Continue(_) => {
                let e = runs[r].curve.len();
                busy[w] = Some((now + seconds(fixture, f, e), r));
            }
            Verdict::Pause(_) => runs[r].state = State::Paused,
            Verdict::Stop(_) => runs[r].state = State::Stopped,
        }
    }
    Ok(Trace {
        epochs: spent.epochs,
        best,
        runs: runs.len(),
        points,
    })
}

/// The scheduler's view of the simulated runs: run ids from 1, trials in creation order.
fn views(runs: &[Sim], epochs_total: u32) -> Vec<RunView<'_>> {
    runs.iter()
        .enumerate()
        .map(|(i, r)| RunView {
            id: i as i64 + 1,
            trial: i as u32,
            state: r.state,
            curve: &r.curve,
            epochs_total,
        })
        .collect()
}

/// The full config of fixture run `i`: the base with its axis values.
fn config_of(fixture: &Fixture, i: usize) -> TrainConfig {
    let mut v = serde_json::to_value(fixture.base_config().expect("checked")).expect("json");
    for (k, x) in &fixture.runs[i].config {
        v[k] = x.clone();
    }
    serde_json::from_value(v).expect("a fixture config")
}

fn seconds(fixture: &Fixture, run: usize, epoch: usize) -> f64 {
    fixture.runs[run].seconds.get(epoch).copied().unwrap_or(1.0)
}

/// Fisher-Yates with a ChaCha8 stream: the ordering `seed` names.
fn shuffle(v: &mut [usize], seed: u64) {
    use rand_chacha::rand_core::SeedableRng;
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(seed);
    for i in (1..v.len()).rev() {
        let j = crate::sweep::int_between(&mut rng, 0, i as u64) as usize;
        v.swap(i, j);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::schedule::{Rule, Rungs};

    /// 27 configs whose curves fall to `floor`, the floors spread so one config is best; the
    /// ranking holds from epoch 1 on (an easy case for halving).
    fn fixture() -> Fixture {
        let mut runs = vec![];
        for (i, u) in [16, 32, 64].iter().enumerate() {
            for (j, lr) in [0.001, 0.003, 0.01].iter().enumerate() {
                for (k, l) in [1, 2, 3].iter().enumerate() {
                    let floor = 1.5 + 0.1 * ((i * 9 + j * 3 + k) * 7 % 27) as f64;
                    let curve = (1..=9).map(|e| floor + 2.0 / e as f64).collect();
                    runs.push(FixtureRun {
                        config: serde_json::json!({"units": u, "learning_rate": lr, "layers": l})
                            .as_object()
                            .unwrap()
                            .clone(),
                        val_loss: curve,
                        seconds: vec![],
                    });
                }
            }
        }
        Fixture {
            axes: serde_json::from_value(serde_json::json!({"units": [16, 32, 64],
                "learning_rate": [0.001, 0.003, 0.01], "layers": [1, 2, 3]}))
            .unwrap(),
            base: serde_json::Map::new(),
            runs,
        }
    }

    fn asha() -> Policy {
        Policy {
            rule: Rule::Asha(Rungs {
                min_epochs: 1,
                eta: 3,
                max_epochs: 9,
            }),
            ..Default::default()
        }
    }

    #[test]
    fn the_full_grid_spends_every_epoch_and_finds_the_best() {
        let f = fixture();
        let (best, epochs) = f.grid_best();
        let t = simulate(&f, &Policy::default(), Pick::Shuffled, 4, 1).unwrap();
        assert_eq!((t.epochs, t.runs), (epochs, 27));
        assert_eq!(t.best, best);
    }

    #[test]
    fn asha_finds_the_best_with_a_fraction_of_the_epochs() {
        let f = fixture();
        let (best, epochs) = f.grid_best();
        for seed in 0..5 {
            let t = simulate(&f, &asha(), Pick::Shuffled, 4, seed).unwrap();
            assert_eq!(t.best, best, "seed {seed}");
            assert!(
                t.epochs * 100 <= epochs * 40,
                "seed {seed}: {} of {epochs} epochs",
                t.epochs
            );
            assert_eq!(t.runs, 27);
        }
    }

    #[test]
    fn hyperband_finds_the_best_with_less_than_the_grid() {
        let f = fixture();
        let (best, epochs) = f.grid_best();
        let p = Policy {
            rule: Rule::Hyperband(Rungs {
                min_epochs: 1,
                eta: 3,
                max_epochs: 9,
            }),
            ..Default::default()
        };
        for seed in 0..5 {
            let t = simulate(&f, &p, Pick::Shuffled, 4, seed).unwrap();
            assert_eq!(t.best, best, "seed {seed}");
            // Bracket 2 (a third of the runs at most) trains in full, the others are halved.
            assert!(
                t.epochs * 100 <= epochs * 60,
                "seed {seed}: {} of {epochs} epochs",
                t.epochs
            );
        }
    }

    #[test]
    fn tpe_tries_each_config_at_most_once_and_replays_are_deterministic() {
        let f = fixture();
        let tpe = Tpe {
            initial: 5,
            ..Default::default()
        };
        let a = simulate(&f, &asha(), Pick::Tpe(tpe), 4, 3).unwrap();
        let b = simulate(&f, &asha(), Pick::Tpe(tpe), 4, 3).unwrap();
        assert_eq!(a.points, b.points);
        assert!(a.runs <= 27);
    }

    #[test]
    fn a_budget_ends_the_replay() {
        let f = fixture();
        let p = Policy {
            budget: Some(schedule::Budget::Epochs(30)),
            ..Default::default()
        };
        let t = simulate(&f, &p, Pick::Shuffled, 4, 0).unwrap();
        // Workers busy when the budget runs out stop at their next report.
        assert!((30..30 + 4).contains(&t.epochs), "{}", t.epochs);
    }
}
