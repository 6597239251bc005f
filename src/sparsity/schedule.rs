//! Sparsity schedules. In: `Schedule` with symbolic times, steps per epoch, total steps.
//! Out: a group's sparsity after `t` completed steps ([`SparsitySchedule::sparsity`]): for ramps
//! the progress `p(t)` in `[0, 1]` times the group's final target, for EAST's cycles a density
//! that moves between the target's and `peak` times it.

use std::f64::consts::PI;

use crate::ir::plan::{CycleShape, Schedule, Time};

#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Ramp {
    Linear,
    /// GMP: `1 - (1 - f)^3`.
    Cubic,
}

#[derive(Debug, Clone, Copy, PartialEq)]
pub enum SparsitySchedule {
    Constant,
    Ramp {
        ramp: Ramp,
        start: u64,
        end: u64,
        every: u64,
    },
    /// EAST: `cycles` periods of `length` steps; each starts and ends at the target density and
    /// peaks at `peak` times it half-way through; the target from the end of the last cycle on.
    Cyclic {
        cycles: u64,
        length: u64,
        peak: f64,
        shape: CycleShape,
    },
}

impl SparsitySchedule {
    /// Resolves times against the run's length.
    pub fn resolve(s: &Schedule, steps_per_epoch: u64, total: u64) -> SparsitySchedule {
        let steps = |t: Time| t.to_steps(steps_per_epoch, total);
        let ramp = |ramp, start, end, every| SparsitySchedule::Ramp {
            ramp,
            start: steps(start),
            end: steps(end),
            every: steps(every).max(1),
        };
        match s {
            Schedule::Constant => SparsitySchedule::Constant,
            Schedule::Linear { start, end, every } => ramp(Ramp::Linear, *start, *end, *every),
            Schedule::Cubic { start, end, every } => ramp(Ramp::Cubic, *start, *end, *every),
            Schedule::Cyclic { cycles, length, peak, shape } => {
                SparsitySchedule::Cyclic { cycles: *cycles as u64, length: steps(*length), peak: *peak, shape: *shape }
            }
        }
    }

    /// Sparsity after `t` completed steps of a group whose final sparsity is `target`.
    ///
    /// Cyclic: with `d = 1 - target` and `phi` the position in the current cycle in `[0, 1)`,
    /// density `= min(1, d * (1 + (peak - 1) * f(phi)))` where `f = (1 - cos(2 pi phi)) / 2`
    /// (cosine) or `1 - |2 phi - 1|` (triangular).
    pub fn sparsity(&self, t: u64, target: f64) -> f64 {
        match *self {
            SparsitySchedule::Cyclic { cycles, length, peak, shape } => {
                if length == 0 || t >= cycles.saturating_mul(length) {
                    return target;
                }
                let phi = (t % length) as f64 / length as f64;
                let f = match shape {
                    CycleShape::Cosine => (1.0 - (2.0 * PI * phi).cos()) / 2.0,
                    CycleShape::Triangular => 1.0 - (2.0 * phi - 1.0).abs(),
                };
                let density = ((1.0 - target) * (1.0 + (peak - 1.0) * f)).min(1.0);
                1.0 - density
            }
            _ => self.progress(t) * target,
        }
    }

    /// Progress after `t` completed steps. Between `start` and `end` it moves only on `every`
    /// boundaries counted from `start`, so the mask changes exactly there.
    pub fn progress(&self, t: u64) -> f64 {
        match *self {
            SparsitySchedule::Constant => 1.0,
            SparsitySchedule::Cyclic { .. } => 1.0,
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
        let r = SparsitySchedule::resolve(&s, 100, 1000);
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
        let r = SparsitySchedule::resolve(&s, 1, 4);
        let p: Vec<f64> = (0..6).map(|t| r.progress(t)).collect();
        assert_eq!(p, vec![0.0, 0.25, 0.5, 0.75, 1.0, 1.0]);
        assert_eq!(SparsitySchedule::Constant.progress(0), 1.0);
    }

    /// EAST's cyclic density, written out from the definition at every step of two cycles.
    #[test]
    fn cyclic_density_follows_its_formula_at_every_step() {
        for shape in [CycleShape::Cosine, CycleShape::Triangular] {
            let s = Schedule::Cyclic { cycles: 2, length: Time::Epochs(2.0), peak: 3.0, shape };
            let r = SparsitySchedule::resolve(&s, 50, 500);
            assert_eq!(r, SparsitySchedule::Cyclic { cycles: 2, length: 100, peak: 3.0, shape });
            for t in 0..500u64 {
                let density = if t >= 200 {
                    0.01
                } else {
                    let phi = (t % 100) as f64 / 100.0;
                    let up = match shape {
                        CycleShape::Cosine => 0.5 - 0.5 * (2.0 * std::f64::consts::PI * phi).cos(),
                        CycleShape::Triangular => 1.0 - (2.0 * phi - 1.0).abs(),
                    };
                    0.01 + 0.02 * up
                };
                let got = 1.0 - r.sparsity(t, 0.99);
                assert!((got - density).abs() < 1e-12, "{shape:?} step {t}: density {got}, want {density}");
            }
            // Target at the start and end of each cycle, peak half-way.
            assert!((r.sparsity(50, 0.99) - 0.97).abs() < 1e-12 && r.sparsity(100, 0.99) == r.sparsity(0, 0.99));
        }
        // A peak above 1/density saturates at dense.
        let r = SparsitySchedule::Cyclic { cycles: 1, length: 10, peak: 100.0, shape: CycleShape::Triangular };
        assert_eq!(r.sparsity(5, 0.5), 0.0);
    }
}
