//! Sparsity schedules. In: `Schedule` with symbolic times, steps per epoch, total steps.
//! Out: the progress `p(t)` in `[0, 1]` towards each group's final target after `t`
//! completed steps; a group's sparsity is `p(t) * target`.

use crate::ir::plan::{Schedule, Time};

#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Ramp {
    Linear,
    /// GMP: `1 - (1 - f)^3`.
    Cubic,
}

#[derive(Debug, Clone, Copy, PartialEq)]
pub enum SparsitySchedule {
    Constant,
    Ramp { ramp: Ramp, start: u64, end: u64, every: u64 },
}

impl SparsitySchedule {
    /// Resolves times against the run's length; `None` for schedules not implemented yet.
    pub fn resolve(s: &Schedule, steps_per_epoch: u64, total: u64) -> Option<SparsitySchedule> {
        let steps = |t: Time| t.to_steps(steps_per_epoch, total);
        let ramp = |ramp, start, end, every| SparsitySchedule::Ramp {
            ramp,
            start: steps(start),
            end: steps(end),
            every: steps(every).max(1),
        };
        match s {
            Schedule::Constant => Some(SparsitySchedule::Constant),
            Schedule::Linear { start, end, every } => Some(ramp(Ramp::Linear, *start, *end, *every)),
            Schedule::Cubic { start, end, every } => Some(ramp(Ramp::Cubic, *start, *end, *every)),
            Schedule::Cyclic { .. } => None,
        }
    }

    /// Progress after `t` completed steps. Between `start` and `end` it moves only on `every`
    /// boundaries counted from `start`, so the mask changes exactly there.
    pub fn progress(&self, t: u64) -> f64 {
        match *self {
            SparsitySchedule::Constant => 1.0,
            SparsitySchedule::Ramp { ramp, start, end, every } => {
                if t >= end {
                    return 1.0;
                }
                if t <= start {
                    return 0.0;
                }
                let tq = start + (t - start) / every * every;
                let f = (tq - start) as f64 / (end - start) as f64;
                match ramp {
                    Ramp::Linear => f,
                    Ramp::Cubic => 1.0 - (1.0 - f).powi(3),
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cubic_matches_gmp_formula_on_boundaries() {
        let s = Schedule::Cubic { start: Time::Epochs(1.0), end: Time::Fraction(0.5), every: Time::Steps(10) };
        let r = SparsitySchedule::resolve(&s, 100, 1000).unwrap();
        assert_eq!(r, SparsitySchedule::Ramp { ramp: Ramp::Cubic, start: 100, end: 500, every: 10 });
        assert_eq!(r.progress(0), 0.0);
        assert_eq!(r.progress(100), 0.0);
        let want = 1.0 - (1.0 - 200.0 / 400.0f64).powi(3);
        assert_eq!(r.progress(300), want);
        assert_eq!(r.progress(309), want);
        assert_eq!(r.progress(500), 1.0);
        assert_eq!(r.progress(9999), 1.0);
    }

    #[test]
    fn linear_and_constant() {
        let s = Schedule::Linear { start: Time::Steps(0), end: Time::Steps(4), every: Time::Steps(1) };
        let r = SparsitySchedule::resolve(&s, 1, 4).unwrap();
        let p: Vec<f64> = (0..6).map(|t| r.progress(t)).collect();
        assert_eq!(p, vec![0.0, 0.25, 0.5, 0.75, 1.0, 1.0]);
        assert_eq!(SparsitySchedule::Constant.progress(0), 1.0);
    }
}
