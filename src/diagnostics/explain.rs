//! Long explanations of diagnostic codes, for `sprsc explain CODE`. Each code has a Markdown
//! file in `explain/` (collected by `build.rs`) whose `## Example` emits that code.

/// Every documented code with its explanation, sorted by code.
pub const CODES: &[(&str, &str)] = include!(concat!(env!("OUT_DIR"), "/explain_table.rs"));

pub fn explanation(code: &str) -> Option<&'static str> {
    let code = code.trim().to_ascii_uppercase();
    CODES.iter().find(|(c, _)| *c == code).map(|(_, text)| *text)
}
