//! Learning-rate schedules. In: `LrSchedule`, base lr, steps per epoch and total steps.
//! Out: the lr for step `t` (0-based).

use crate::ir::plan::LrSchedule;

#[derive(Debug, Clone, PartialEq)]
pub enum Lr {
    Constant(f64),
    /// Linear warmup over `warmup` steps to `base`, then cosine to zero at `total`.
    Cosine {
        base: f64,
        warmup: u64,
        total: u64,
    },
    /// `base * factor^(number of boundaries <= t)`.
    Step {
        base: f64,
        at: Vec<u64>,
        factor: f64,
    },
}

impl Lr {
    pub fn new(s: &LrSchedule, base: f64, steps_per_epoch: u64, total: u64) -> Lr {
        match s {
            LrSchedule::Constant => Lr::Constant(base),
            LrSchedule::Cosine { warmup } => {
                Lr::Cosine { base, warmup: warmup.to_steps(steps_per_epoch, total), total }
            }
            LrSchedule::Step { at, factor } => {
                Lr::Step { base, at: at.iter().map(|t| t.to_steps(steps_per_epoch, total)).collect(), factor: *factor }
            }
        }
    }

    pub fn at(&self, t: u64) -> f64 {
        match self {
            Lr::Constant(lr) => *lr,
            Lr::Cosine { base, warmup, total } => {
                if t < *warmup {
                    base * (t + 1) as f64 / *warmup as f64
                } else {
                    let span = total.saturating_sub(*warmup).max(1) as f64;
                    let f = ((t - warmup) as f64 / span).min(1.0);
                    base * 0.5 * (1.0 + (std::f64::consts::PI * f).cos())
                }
            }
            Lr::Step { base, at, factor } => base * factor.powi(at.iter().filter(|&&a| a <= t).count() as i32),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ir::plan::Time;

    #[test]
    fn cosine_with_warmup_and_steps() {
        let lr = Lr::new(&LrSchedule::Cosine { warmup: Time::Steps(10) }, 0.1, 10, 110);
        assert!((lr.at(0) - 0.01).abs() < 1e-12);
        assert!((lr.at(9) - 0.1).abs() < 1e-12);
        assert!((lr.at(10) - 0.1).abs() < 1e-12);
        assert!((lr.at(60) - 0.05).abs() < 1e-12);
        assert!(lr.at(110).abs() < 1e-12);
        let st = Lr::new(&LrSchedule::Step { at: vec![Time::Epochs(1.0), Time::Steps(15)], factor: 0.1 }, 1.0, 10, 30);
        assert_eq!([st.at(9), st.at(10), st.at(15)].map(|v| (v * 1000.0).round()), [1000.0, 100.0, 10.0]);
    }
}
