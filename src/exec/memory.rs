//! The memory check before a run allocates anything. In: the plan and the loaded data. Out:
//! the estimate (`ir::memory`) for the data as loaded, E0710 when it exceeds the memory
//! available, and the peak resident memory the run reached (for the report).
//!
//! The memory available is `$SPRS_MEMORY_AVAILABLE` when set (bytes, or with a `K`, `M`, `G`
//! suffix: powers of 1024; for tests and for machines where other jobs will need their share),
//! else `MemAvailable` of `/proc/meminfo`; where neither can be read nothing is checked.

use super::error::RunError;
use crate::data::DataSet;
use crate::ir::memory::{estimate, Memory};
use crate::ir::plan::{Layer, LayerKind, Plan};

pub const AVAILABLE_VAR: &str = "SPRS_MEMORY_AVAILABLE";

/// The estimate for `plan` on `data` as loaded.
pub fn for_data(plan: &Plan, data: &DataSet) -> Memory {
    let examples = data.train.len + data.val.as_ref().map_or(0, |v| v.len) + data.test.len;
    estimate(plan, Some(examples))
}

/// `8G`, `512M`, `1048576`: bytes.
fn parse_size(s: &str) -> Option<u64> {
    let s = s.trim();
    let (num, shift) = match s.chars().last()?.to_ascii_uppercase() {
        'K' => (&s[..s.len() - 1], 10),
        'M' => (&s[..s.len() - 1], 20),
        'G' => (&s[..s.len() - 1], 30),
        'T' => (&s[..s.len() - 1], 40),
        _ => (s, 0),
    };
    let n: f64 = num.trim().parse().ok().filter(|n: &f64| n.is_finite() && *n >= 0.0)?;
    Some((n * (1u64 << shift) as f64) as u64)
}

/// A `KEY: N kB` line of a `/proc` status file, in bytes.
fn proc_kb(file: &str, key: &str) -> Option<u64> {
    let text = std::fs::read_to_string(file).ok()?;
    let line = text.lines().find(|l| l.starts_with(key))?;
    let kb: u64 = line[key.len()..].trim().trim_end_matches("kB").trim().parse().ok()?;
    Some(kb * 1024)
}

/// Bytes this process may still allocate, as far as the system tells.
pub fn available() -> Option<u64> {
    match std::env::var(AVAILABLE_VAR) {
        Ok(v) => parse_size(&v),
        Err(_) => proc_kb("/proc/meminfo", "MemAvailable:"),
    }
}

/// The most this process has had resident (`VmHWM`), where the system tells.
pub fn peak_resident() -> Option<u64> {
    proc_kb("/proc/self/status", "VmHWM:")
}

/// E0710 when the run would need more memory than is available.
pub fn check(plan: &Plan, data: &DataSet) -> Result<(), RunError> {
    let (Some(available), est) = (available(), for_data(plan, data)) else { return Ok(()) };
    if est.peak() <= available {
        return Ok(());
    }
    let largest = est.largest_layers(1);
    let biggest_param = plan.model.params.iter().max_by_key(|p| p.numel());
    let mut parts = vec![format!(
        "params, gradients, masks and optimizer state {}",
        crate::ir::memory::human(est.params + est.gradients + est.masks + est.optimizer)
    )];
    if let Some(p) = biggest_param {
        parts.push(format!("the largest tensor `{}` is {} values", p.name, p.numel()));
    }
    if let Some(l) = largest.first() {
        parts.push(format!(
            "activations {} at batch {} (largest `{}`)",
            crate::ir::memory::human(est.activations),
            est.batch,
            l.name
        ));
    }
    // Points at the layer that owns the largest tensor, else at the model.
    let span = biggest_param.and_then(|p| find_layer(&plan.model.layers, &p.layer)).map_or(plan.model.span, |l| l.span);
    Err(RunError::OutOfMemory { needed: est.peak(), available, detail: parts.join("; "), span })
}

fn find_layer<'a>(ls: &'a [Layer], name: &str) -> Option<&'a Layer> {
    ls.iter().find_map(|l| match &l.kind {
        _ if l.name == name => Some(l),
        LayerKind::Residual { body, shortcut, .. } => find_layer(body, name).or_else(|| find_layer(shortcut, name)),
        _ => None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_parse_with_binary_suffixes() {
        assert_eq!(parse_size("1048576"), Some(1 << 20));
        assert_eq!(parse_size("8G"), Some(8 << 30));
        assert_eq!(parse_size("1.5k"), Some(1536));
        assert_eq!(parse_size("lots"), None);
        assert_eq!(parse_size("-1G"), None);
        assert_eq!(parse_size(""), None);
    }
}
