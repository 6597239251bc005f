//! One name <-> variant table per enum of the language: the checker reads names through
//! [`Named::from_name`] and the printer writes [`Named::name`], so the two cannot drift. `name`
//! is an exhaustive `match` (a new variant cannot compile without a name); `ALL` lists the
//! variants the checker accepts, and a round-trip test checks the two agree.

use super::plan::{Activation, AddedBy, CycleShape, Distribution, Growth, Scope, SmoothingStyle, Ste};

pub trait Named: Sized + Copy + PartialEq + 'static {
    /// Every variant, in the order diagnostics list them.
    const ALL: &'static [Self];

    fn name(self) -> &'static str;

    fn from_name(name: &str) -> Option<Self> {
        Self::ALL.iter().copied().find(|v| v.name() == name)
    }

    /// `(name, variant)` pairs, for the checker's choices.
    fn table() -> Vec<(&'static str, Self)> {
        Self::ALL.iter().map(|v| (v.name(), *v)).collect()
    }

    fn names() -> Vec<&'static str> {
        Self::ALL.iter().map(|v| v.name()).collect()
    }
}

impl Named for Activation {
    const ALL: &'static [Self] = &[Activation::Relu, Activation::Swish, Activation::Mish, Activation::Gelu];
    fn name(self) -> &'static str {
        match self {
            Activation::Relu => "relu",
            Activation::Swish => "swish",
            Activation::Mish => "mish",
            Activation::Gelu => "gelu",
        }
    }
}

impl Named for Distribution {
    const ALL: &'static [Self] = &[Distribution::Uniform, Distribution::Erk, Distribution::Global];
    fn name(self) -> &'static str {
        match self {
            Distribution::Uniform => "uniform",
            Distribution::Erk => "erk",
            Distribution::Global => "global",
        }
    }
}

impl Named for Scope {
    const ALL: &'static [Self] = &[Scope::Global, Scope::Layer];
    fn name(self) -> &'static str {
        match self {
            Scope::Layer => "layer",
            Scope::Global => "global",
        }
    }
}

impl Named for CycleShape {
    const ALL: &'static [Self] = &[CycleShape::Cosine, CycleShape::Triangular];
    fn name(self) -> &'static str {
        match self {
            CycleShape::Cosine => "cosine",
            CycleShape::Triangular => "triangular",
        }
    }
}

impl Named for Ste {
    const ALL: &'static [Self] = &[Ste::Dense, Ste::Masked];
    fn name(self) -> &'static str {
        match self {
            Ste::Dense => "dense",
            Ste::Masked => "masked",
        }
    }
}

impl Named for Growth {
    const ALL: &'static [Self] = &[Growth::Random, Growth::Gradient];
    fn name(self) -> &'static str {
        match self {
            Growth::Random => "random",
            Growth::Gradient => "gradient",
        }
    }
}

impl Named for SmoothingStyle {
    const ALL: &'static [Self] = &[SmoothingStyle::Uniform, SmoothingStyle::Others];
    fn name(self) -> &'static str {
        match self {
            SmoothingStyle::Uniform => "uniform",
            SmoothingStyle::Others => "others",
        }
    }
}

impl Named for AddedBy {
    const ALL: &'static [Self] = &[AddedBy::GhostSkip, AddedBy::DyRelu, AddedBy::WeightSharing];
    fn name(self) -> &'static str {
        match self {
            AddedBy::GhostSkip => "ghost_skip",
            AddedBy::DyRelu => "dyrelu",
            AddedBy::WeightSharing => "weight_sharing",
        }
    }
}

/// The `techniques` block's keywords as a constant list, for tables that need one (the
/// language server's); a test checks it equals `TechniqueKind`'s names.
pub const TECHNIQUE_NAMES: &[&str] =
    &["ghost_neurons", "ghost_skip", "label_smoothing", "gradinit", "dyrelu", "weight_sharing"];

/// The techniques of the `techniques` block, by statement keyword.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TechniqueKind {
    GhostNeurons,
    GhostSkip,
    LabelSmoothing,
    GradInit,
    DyRelu,
    WeightSharing,
}

impl Named for TechniqueKind {
    const ALL: &'static [Self] = &[
        TechniqueKind::GhostNeurons,
        TechniqueKind::GhostSkip,
        TechniqueKind::LabelSmoothing,
        TechniqueKind::GradInit,
        TechniqueKind::DyRelu,
        TechniqueKind::WeightSharing,
    ];
    fn name(self) -> &'static str {
        match self {
            TechniqueKind::GhostNeurons => "ghost_neurons",
            TechniqueKind::GhostSkip => "ghost_skip",
            TechniqueKind::LabelSmoothing => "label_smoothing",
            TechniqueKind::GradInit => "gradinit",
            TechniqueKind::DyRelu => "dyrelu",
            TechniqueKind::WeightSharing => "weight_sharing",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn round_trips<T: Named + std::fmt::Debug>() {
        let names = T::names();
        for v in T::ALL {
            assert_eq!(T::from_name(v.name()), Some(*v), "{v:?}");
        }
        let mut unique = names.clone();
        unique.sort_unstable();
        unique.dedup();
        assert_eq!(unique.len(), names.len(), "two variants share a name: {names:?}");
        assert_eq!(T::from_name("no_such_name"), None);
    }

    #[test]
    fn every_table_round_trips() {
        round_trips::<Activation>();
        round_trips::<Distribution>();
        round_trips::<Scope>();
        round_trips::<CycleShape>();
        round_trips::<Ste>();
        round_trips::<Growth>();
        round_trips::<SmoothingStyle>();
        round_trips::<AddedBy>();
        round_trips::<TechniqueKind>();
    }

    #[test]
    fn the_constant_technique_list_is_the_tables() {
        assert_eq!(TECHNIQUE_NAMES, TechniqueKind::names().as_slice());
    }

    #[test]
    fn technique_names_match_the_language_keywords() {
        for k in TechniqueKind::ALL {
            let src =
                format!("recipe r {{ data synthetic_digits\n model lenet300_100\n techniques {{ {}() }} }}", k.name());
            let c = crate::compile_source(std::path::Path::new("t.sprs"), src, &[]);
            assert!(!c.diagnostics.iter().any(|d| d.code == "E0102"), "{}: {:?}", k.name(), c.diagnostics);
        }
    }
}
