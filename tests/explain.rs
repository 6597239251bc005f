//! Every diagnostic code has an explanation whose example emits that code (rustc's tidy check),
//! and every code the source can emit is documented.

mod common;

use std::collections::BTreeSet;
use std::path::Path;

fn example(text: &str) -> Option<&str> {
    let start = text.find("```sprs\n")? + "```sprs\n".len();
    let end = start + text[start..].find("```")?;
    Some(&text[start..end])
}

fn sets(text: &str) -> Vec<String> {
    text.lines()
        .filter_map(|l| l.trim().strip_prefix("<!-- set: "))
        .filter_map(|l| l.strip_suffix(" -->"))
        .map(str::to_string)
        .collect()
}

/// `<!-- setup: FILE = SPEC -->` lines write files into a fresh `$TMP` before the example runs.
fn setup(code: &str, text: &str) -> common::TempDir {
    let tmp = common::temp_dir(code);
    for line in text.lines() {
        if let Some(spec) = line.strip_prefix("<!-- setup: ").and_then(|l| l.strip_suffix(" -->")) {
            if spec.contains(" = ") {
                common::setup_file(&tmp, spec);
            }
        }
    }
    tmp
}

/// `<!-- cell: I, submitted for plan HASH -->`: the example's sweep cell I is run as a Slurm
/// array task does, `sprsc sweep --index I --plan-hash HASH`.
fn submitted_cell(text: &str) -> Option<(usize, String)> {
    let line = text.lines().find_map(|l| l.trim().strip_prefix("<!-- cell: ")?.strip_suffix(" -->"))?;
    let (index, hash) = line.split_once(", submitted for plan ")?;
    Some((index.trim().parse().ok()?, hash.trim().to_string()))
}

/// The codes an example produces going through the pipeline as `sprsc run` does: check, then
/// (when it checks clean) load the data.
fn emitted(code: &str, text: &str) -> BTreeSet<String> {
    let tmp = setup(code, text);
    let ex = example(text).unwrap_or_else(|| panic!("{code}.md has no ```sprs example"));
    let ex = ex.replace("$TMP", &tmp.display().to_string());
    let comp = sprsc::compile_source(Path::new("example.sprs"), ex.clone(), &sets(text));
    let mut codes: BTreeSet<String> = comp.diagnostics.iter().map(|d| d.code.to_string()).collect();
    if let (Some((index, hash)), false) = (submitted_cell(text), comp.has_errors()) {
        for sweep in &comp.checked.sweeps {
            let cells = sprsc::driver::cells::cells(Path::new("example.sprs"), &ex, sweep, &sets(text), &tmp);
            let Some(cell) = cells.get(index) else { continue };
            if let Err(d) = cell.verify_plan_hash(&hash) {
                codes.insert(d.code.to_string());
            }
        }
        return codes;
    }
    if !comp.has_errors() {
        for plan in &comp.checked.plans {
            match sprsc::data::load(&plan.data, plan.seed) {
                Err(e) => {
                    codes.insert(e.code().to_string());
                }
                Ok(data) => {
                    // Runs go to the temp dir unless the example names its own directory.
                    let default_dir = plan.output.dir == format!("runs/{}", plan.recipe);
                    let dir = if default_dir { tmp.join("run") } else { plan.output.dir.clone().into() };
                    // `<!-- resume -->`: the example resumes the run in its directory, as
                    // `sprsc run --resume` does.
                    let resume = text.contains("<!-- resume -->");
                    if resume {
                        if let Err(d) = sprsc::driver::check_resume(&dir, plan, false) {
                            codes.insert(d.code.to_string());
                            continue;
                        }
                    }
                    let opts = sprsc::exec::RunOptions {
                        out_dir: Some(dir),
                        threads: Some(1),
                        quiet: true,
                        max_steps: Some(5),
                        max_eval: Some(256),
                        kernels: Default::default(),
                        resume,
                    };
                    match sprsc::exec::run(plan, &data, &opts) {
                        Err(e) => {
                            codes.insert(e.code().to_string());
                        }
                        // Warnings raised while training (W0701).
                        Ok(summary) => codes.extend(summary.warnings.iter().map(|d| d.code.to_string())),
                    }
                }
            }
        }
    }
    codes
}

#[test]
fn every_explanation_example_emits_its_code() {
    let (mut internal, mut retired) = (Vec::new(), Vec::new());
    for (code, text) in sprsc::diagnostics::CODES {
        assert!(text.starts_with(&format!("# {code}: ")), "{code}.md must start with `# {code}: title`");
        // Codes are never reused: one no longer emitted keeps its file and says so.
        if text.contains("<!-- retired: ") {
            retired.push(*code);
            continue;
        }
        // Consistency checks of the engine that the checker makes unreachable say so.
        if text.contains("<!-- internal: ") {
            internal.push(*code);
            continue;
        }
        let codes = emitted(code, text);
        assert!(codes.contains(*code), "the example of {code} emits {codes:?}");
    }
    assert_eq!(internal, ["E0703", "E0706", "E0707"], "internal codes are the exception, not the rule");
    assert_eq!(retired, ["E0701"]);
}

fn source_codes(dir: &Path, out: &mut BTreeSet<String>) {
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            source_codes(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            let text = std::fs::read_to_string(&path).unwrap();
            let bytes = text.as_bytes();
            for (i, _) in text.match_indices('"') {
                let code = &bytes[i + 1..(i + 6).min(bytes.len())];
                let closes = bytes.get(i + 6) == Some(&b'"');
                if closes && (code[0] == b'E' || code[0] == b'W') && code[1..].iter().all(u8::is_ascii_digit) {
                    out.insert(String::from_utf8(code.to_vec()).unwrap());
                }
            }
        }
    }
}

#[test]
fn every_emitted_code_is_documented() {
    let mut used = BTreeSet::new();
    source_codes(&Path::new(env!("CARGO_MANIFEST_DIR")).join("src"), &mut used);
    let documented: BTreeSet<String> = sprsc::diagnostics::CODES.iter().map(|(c, _)| c.to_string()).collect();
    let missing: Vec<&String> = used.difference(&documented).collect();
    assert!(missing.is_empty(), "codes without an explanation file: {missing:?}");
    assert!(documented.len() >= 40);
    for (code, text) in sprsc::diagnostics::CODES {
        assert!(!(text.contains("<!-- retired: ") && used.contains(*code)), "{code} is retired but still emitted");
    }
}
