//! The one retry delay of poet: exponential backoff with jitter.
//!
//! Every loop that retries a call to the coordinator or to Postgres (worker registration,
//! lease long-polls, calls under a lease, dataset downloads refused while the coordinator's
//! downloads are all taken, the coordinator's notification listener, blob deletion) takes its
//! delays from a [`Backoff`]. Before this module each loop doubled a fixed delay of its own,
//! with no jitter, so after a coordinator restart hundreds of workers retried in lockstep: every
//! one of them hit the new process in the same few milliseconds, then again 400 ms later, and so
//! on up to the cap.
//!
//! The ceiling starts at `start` and doubles after each delay up to `max`; each delay is drawn
//! uniformly from `[ceiling / 2, ceiling]` ("equal jitter"). Half the ceiling keeps a floor, so a
//! retry never hammers a server that just refused; the other half spreads a crowd of workers
//! that failed together over a window as wide as the delay itself. (Full jitter, `[0,
//! ceiling]`, spreads wider but lets some retries go at once; with a few hundred workers the
//! half-window is already wide enough, and the floor matters more to a server coming back.)
//! [`Backoff::reset`] goes back to `start` after a success.
//!
//! The randomness is SplitMix64, seeded per `Backoff` from the clock, the process id and a
//! counter, so two workers started in the same millisecond still differ. It is not for
//! anything secret; it only decorrelates. [`Backoff::seeded`] makes the sequence reproducible
//! for tests.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

/// Delays for one retry loop; see the module docs.
#[derive(Debug, Clone)]
pub struct Backoff {
    start: Duration,
    max: Duration,
    ceiling: Duration,
    state: u64,
}

impl Backoff {
    /// The workers' defaults: 200 ms, doubling up to 10 s.
    pub const START: Duration = Duration::from_millis(200);
    /// Longest ceiling of the workers' defaults.
    pub const MAX: Duration = Duration::from_secs(10);

    /// Delays from `start`, doubling up to `max` (at least `start`), with a fresh seed.
    pub fn new(start: Duration, max: Duration) -> Backoff {
        static COUNTER: AtomicU64 = AtomicU64::new(0);
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos() as u64);
        let seed = nanos
            ^ (u64::from(std::process::id()) << 32)
            ^ COUNTER
                .fetch_add(1, Ordering::Relaxed)
                .wrapping_mul(0x9e37_79b9_7f4a_7c15);
        Backoff::seeded(start, max, seed)
    }

    /// [`Backoff::new`] with a fixed seed: the same seed gives the same delays.
    pub fn seeded(start: Duration, max: Duration, seed: u64) -> Backoff {
        Backoff {
            start,
            max: max.max(start),
            ceiling: start,
            state: seed,
        }
    }

    /// The workers' defaults ([`Backoff::START`], [`Backoff::MAX`]).
    pub fn worker() -> Backoff {
        Backoff::new(Backoff::START, Backoff::MAX)
    }

    /// The next delay: uniform in `[ceiling / 2, ceiling]`; then the ceiling doubles.
    pub fn next_delay(&mut self) -> Duration {
        let delay = self.jitter(self.ceiling);
        self.ceiling = (self.ceiling * 2).min(self.max);
        delay
    }

    /// Back to the first ceiling, after a success.
    pub fn reset(&mut self) {
        self.ceiling = self.start;
    }

    /// A delay uniform in `[d / 2, d]` from this backoff's random stream, for a one-off wait
    /// that should not be taken in lockstep either (for example a long pause after a
    /// coordinator that does not offer a service at all).
    pub fn jitter(&mut self, d: Duration) -> Duration {
        let half = d / 2;
        let spread = (d - half).as_nanos() as u64;
        let r = self.next_u64();
        // Multiply-shift maps the 64 random bits onto [0, spread] without modulo bias.
        let offset = ((u128::from(r) * (u128::from(spread) + 1)) >> 64) as u64;
        half + Duration::from_nanos(offset)
    }

    /// SplitMix64.
    fn next_u64(&mut self) -> u64 {
        self.state = self.state.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.state;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MS: Duration = Duration::from_millis(1);

    #[test]
    fn delays_double_within_their_jitter_window_up_to_the_cap() {
        let mut b = Backoff::seeded(200 * MS, 10_000 * MS, 1);
        let ceilings = [200, 400, 800, 1600, 3200, 6400, 10_000, 10_000];
        for c in ceilings {
            let d = b.next_delay();
            assert!(
                d >= c * MS / 2 && d <= c * MS,
                "delay {d:?} outside [{}, {c}] ms",
                c / 2
            );
        }
        b.reset();
        assert!(b.next_delay() <= 200 * MS);
    }

    #[test]
    fn a_crowd_that_failed_together_retries_spread_out() {
        // 300 workers whose calls failed at the same instant: their third retries (ceiling
        // 800 ms) must not land together. Without jitter all 300 would wait exactly 800 ms.
        let third: Vec<Duration> = (0..300)
            .map(|_| {
                let mut b = Backoff::worker();
                b.next_delay();
                b.next_delay();
                b.next_delay()
            })
            .collect();
        let mut ms: Vec<u128> = third.iter().map(|d| d.as_millis()).collect();
        ms.sort_unstable();
        ms.dedup();
        assert!(
            ms.len() > 200,
            "only {} distinct ms among 300 workers",
            ms.len()
        );
        assert!(third.iter().all(|d| *d >= 400 * MS && *d <= 800 * MS));
        let spread =
            third.iter().max().unwrap().as_millis() - third.iter().min().unwrap().as_millis();
        assert!(spread > 300, "spread {spread} ms");
    }

    #[test]
    fn the_same_seed_gives_the_same_delays() {
        let run = |seed| {
            let mut b = Backoff::seeded(MS, 1000 * MS, seed);
            (0..6).map(|_| b.next_delay()).collect::<Vec<_>>()
        };
        assert_eq!(run(7), run(7));
        assert_ne!(run(7), run(8));
    }
}
