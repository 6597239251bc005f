//! Which masked parameters share one sparsity target. In: the plan's params. Out: groups;
//! a global group selects over all its members at once, a per-layer group holds one param.

use crate::ir::plan::{Param, Scope};

#[derive(Debug, Clone, PartialEq)]
pub struct Group {
    /// Indices into the plan's params, ascending.
    pub members: Vec<usize>,
    /// Final sparsity of the group.
    pub target: f64,
}

impl Group {
    /// The group's items (params, masks, any per-param buffer), mutable, in member order.
    pub fn members_mut<'a, T>(&self, items: &'a mut [T]) -> Vec<&'a mut T> {
        items.iter_mut().enumerate().filter(|(i, _)| self.members.contains(i)).map(|(_, p)| p).collect()
    }
}

/// Params with a plan-time target (uniform, overrides) form their own group; the rest share
/// one global group at `global_target` (or one each when `scope` is `Layer`).
pub fn groups(params: &[Param], global_target: f64, scope: Scope) -> Vec<Group> {
    let mut out = Vec::new();
    let mut pool = Vec::new();
    for (i, p) in params.iter().enumerate().filter(|(_, p)| p.masked) {
        match (p.target, scope) {
            (Some(t), _) => out.push(Group { members: vec![i], target: t }),
            (None, Scope::Layer) => out.push(Group { members: vec![i], target: global_target }),
            (None, Scope::Global) => pool.push(i),
        }
    }
    if !pool.is_empty() {
        out.push(Group { members: pool, target: global_target });
    }
    out
}
