//! UI tests: every invalid recipe in `tests/ui/` carries its expectations inline
//! (`// ~ERROR E0203` or `// ~WARN W0201` on the offending line, several allowed). The test
//! checks that exactly those codes are reported on exactly those lines, and snapshots the
//! rendered diagnostics so a changed span or wording shows up in review.

mod common;

use std::collections::BTreeSet;

#[test]
fn ui_recipes_report_their_inline_codes() {
    let mut count = 0;
    insta::glob!("ui/*.sprs", |path| {
        count += 1;
        let text = std::fs::read_to_string(path).unwrap();
        let mut expected = BTreeSet::new();
        for (i, line) in text.lines().enumerate() {
            for marker in ["// ~ERROR ", "// ~WARN "] {
                if let Some(rest) = line.split(marker).nth(1) {
                    for code in rest.split([',', ' ']).filter(|c| !c.is_empty()) {
                        expected.insert((i + 1, code.to_string()));
                    }
                }
            }
        }
        assert!(!expected.is_empty(), "{} has no `// ~ERROR CODE` marker", path.display());
        let comp = common::compile(path);
        let got: BTreeSet<(usize, String)> =
            comp.diagnostics.iter().map(|d| (common::line_of(&comp, d).unwrap_or(0), d.code.to_string())).collect();
        assert_eq!(got, expected, "diagnostics of {} (line, code)", path.display());
        let name = path.file_name().unwrap().to_string_lossy().to_string();
        insta::assert_snapshot!(common::rendered(&comp, &comp.diagnostics).replace(&path.display().to_string(), &name));
    });
    assert!(count >= 40, "expected at least 40 UI recipes, found {count}");
}
