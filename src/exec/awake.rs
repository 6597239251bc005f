//! Keeps the pool's other threads awake while steps run.
//!
//! rayon parks a worker that found no work for about 32 yields, and a parked worker takes a
//! futex wake and a reschedule to join the next parallel loop: tens of microseconds here, while
//! the parallel products of a sparse LeNet-300-100 step take 10-100 µs each. So the step's
//! loops ran on one thread whatever `--threads` said (a split cost more than it saved).
//! `Awake::keep` puts a job on each other worker of the current pool that looks for rayon work
//! in a loop (`rayon::yield_now`, which also steals from the other workers' queues) and
//! returns once it found none for `IDLE`: through a run of steps the workers stay hot, and
//! between runs (or through an evaluation that is serial) they park again.
//!
//! Only timing changes: which thread runs a chunk of a parallel loop never changes what the
//! chunk computes.

use std::cell::Cell;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// How long a kept-awake worker looks for work before it parks again.
const IDLE: Duration = Duration::from_millis(2);

thread_local! {
    /// Set on a worker while it runs a keep-awake loop (another one found there returns).
    static LOOPING: Cell<bool> = const { Cell::new(false) };
}

/// The keep-awake loops of one pool, started from one thread (the trainer's).
#[derive(Debug)]
pub struct Awake {
    /// Loops started and not yet returned.
    live: Arc<AtomicUsize>,
    /// The other workers of the pool.
    others: usize,
    /// The index of the thread that starts them: a loop picked up there (while that thread
    /// waits for a stolen half of its own loop) returns at once, or its wait would last as long
    /// as the loop.
    owner: Option<usize>,
}

impl Awake {
    /// For the current pool, called from one of its workers (none outside a pool, or with one
    /// thread).
    pub fn new() -> Awake {
        let owner = rayon::current_thread_index();
        let others = if owner.is_some() { rayon::current_num_threads().saturating_sub(1) } else { 0 };
        Awake { live: Arc::new(AtomicUsize::new(0)), others, owner }
    }

    /// Starts a loop for each other worker that has none: call before work that has parallel
    /// loops (one atomic load when they are running).
    pub fn keep(&self) {
        while self.live.load(Ordering::Acquire) < self.others {
            self.live.fetch_add(1, Ordering::AcqRel);
            let (live, owner) = (Arc::clone(&self.live), self.owner);
            rayon::spawn(move || {
                if rayon::current_thread_index() != owner && !LOOPING.get() {
                    LOOPING.set(true);
                    look_for_work();
                    LOOPING.set(false);
                }
                live.fetch_sub(1, Ordering::AcqRel);
            });
        }
    }
}

impl Default for Awake {
    fn default() -> Awake {
        Awake::new()
    }
}

/// Runs the pool's pending jobs until none has come for `IDLE`.
fn look_for_work() {
    let mut idle_since = Instant::now();
    loop {
        match rayon::yield_now() {
            Some(rayon::Yield::Executed) => idle_since = Instant::now(),
            Some(rayon::Yield::Idle) if idle_since.elapsed() < IDLE => std::hint::spin_loop(),
            _ => return,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rayon::prelude::*;

    #[test]
    fn loops_run_the_work_of_the_pool_and_park_again() {
        let pool = rayon::ThreadPoolBuilder::new().num_threads(3).build().unwrap();
        pool.install(|| {
            let awake = Awake::new();
            assert_eq!(awake.others, 2);
            for round in 0..200u64 {
                awake.keep();
                assert_eq!(awake.live.load(Ordering::Acquire), 2, "one loop per other worker");
                let v: Vec<u64> = (0..1000u32).into_par_iter().with_min_len(10).map(|i| i as u64 * round).collect();
                assert_eq!(v.iter().sum::<u64>(), 499_500 * round);
            }
            // Every loop returns once no work comes.
            let t = Instant::now();
            while awake.live.load(Ordering::Acquire) > 0 {
                assert!(t.elapsed() < Duration::from_secs(10), "a keep-awake loop never returned");
                std::thread::sleep(Duration::from_millis(1));
            }
        });
    }

    #[test]
    fn outside_a_pool_or_on_one_thread_nothing_is_started() {
        assert_eq!(Awake::new().others, 0);
        let pool = rayon::ThreadPoolBuilder::new().num_threads(1).build().unwrap();
        pool.install(|| {
            let awake = Awake::new();
            awake.keep();
            assert_eq!(awake.live.load(Ordering::Acquire), 0);
        });
    }
}
