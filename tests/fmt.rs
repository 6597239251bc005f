//! `sprsc fmt`: one layout, comments kept, idempotent, and never a change of meaning: the
//! formatted file lowers to the same plans (or the same diagnostics) as the original, on every
//! recipe, every UI case that parses and the robustness corpus (10,500 mutations).

use std::path::Path;

use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use sprsc::fmt::{format, FmtError};

mod common;
use common::fuzz::{corpus, mutate};

/// What a text means: its plans and sweeps printed, or its diagnostics (code and message).
fn meaning(text: &str) -> String {
    let comp = sprsc::compile_source(Path::new("f.sprs"), text.to_string(), &[]);
    let mut out = String::new();
    for d in &comp.diagnostics {
        out.push_str(&format!("{}: {}\n", d.code, d.message));
    }
    for p in &comp.checked.plans {
        out.push_str(&p.to_string());
    }
    for s in &comp.checked.sweeps {
        out.push_str(&s.to_string());
    }
    out
}

fn comments(text: &str) -> Vec<String> {
    // Good enough for the corpus: no `//` inside strings there.
    text.lines().filter_map(|l| l.find("//").map(|i| l[i..].trim_end().to_string())).collect()
}

fn assert_formats_faithfully(name: &str, text: &str) -> String {
    let out = format(text).unwrap_or_else(|e| panic!("{name}: {e}"));
    assert_eq!(meaning(text), meaning(&out), "{name}: formatting changed the meaning\n{out}");
    assert_eq!(comments(text), comments(&out), "{name}: comments changed\n{out}");
    assert_eq!(format(&out).unwrap(), out, "{name}: not idempotent");
    out
}

fn files(dir: &str) -> Vec<(String, String)> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join(dir);
    let mut out: Vec<(String, String)> = std::fs::read_dir(root)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|x| x == "sprs"))
        .map(|p| (p.display().to_string(), std::fs::read_to_string(&p).unwrap()))
        .collect();
    out.sort();
    out
}

#[test]
fn recipes_are_formatted_and_keep_their_plans() {
    for (name, text) in files("recipes") {
        let out = assert_formats_faithfully(&name, &text);
        assert_eq!(out, text, "{name} is not formatted: run `sprsc fmt recipes/*.sprs`");
    }
}

#[test]
fn ui_cases_that_parse_keep_their_diagnostics() {
    let mut formatted = 0;
    for (name, text) in files("tests/ui") {
        match format(&text) {
            Ok(_) => {
                assert_formats_faithfully(&name, &text);
                formatted += 1;
            }
            Err(FmtError::Syntax(_)) => {}
            Err(e) => panic!("{name}: {e}"),
        }
    }
    assert!(formatted > 40, "only {formatted} UI cases parsed");
}

#[test]
fn the_robustness_corpus_formats_faithfully() {
    let corpus = corpus();
    let mut rng = ChaCha8Rng::seed_from_u64(13);
    let mut formatted = 0;
    for i in 0..10_500 {
        let text = mutate(&mut rng, &corpus[i % corpus.len()]);
        match format(&text) {
            Ok(out) => {
                assert_eq!(meaning(&text), meaning(&out), "case {i}: meaning changed\n{text}\n---\n{out}");
                assert_eq!(format(&out).unwrap(), out, "case {i}: not idempotent\n{text}");
                formatted += 1;
            }
            Err(FmtError::Syntax(_)) => {}
            Err(e) => panic!("case {i}: {e}\n{text}"),
        }
    }
    assert!(formatted > 1000, "only {formatted} mutations parsed");
}

#[test]
fn the_layout() {
    let messy = "\n\n// head\nrecipe   a {seed 0;data synthetic_digits( train:600,test :100 )  // data\n\n\n  model lenet300_100 // model\n  sparsity {target 90%; mask magnitude}\ntrain{\nepochs 1\n\n}\n}\nrecipe b extends a { sparsity { target 95% } } recipe c extends a {train{epochs 2}}\nkernel k ( w ;tau )=select(abs(w)>tau,- w,0)\n";
    let want = "// head\nrecipe a {\n  seed 0\n  data synthetic_digits(train: 600, test: 100)  // data\n\n  model lenet300_100  // model\n  sparsity { target 90%; mask magnitude }\n  train {\n    epochs 1\n  }\n}\nrecipe b extends a { sparsity { target 95% } }\nrecipe c extends a { train { epochs 2 } }\nkernel k(w; tau) = select(abs(w) > tau, -w, 0)\n";
    let out = format(messy).unwrap();
    assert_eq!(out, want, "\n{out}");
    assert_formats_faithfully("messy", messy);
}

#[test]
fn multi_line_calls_lists_and_crlf() {
    let text = "recipe a {\r\n  data synthetic_digits(\r\n      train: 600,   // small\r\n  test: 100)\r\n  model lenet300_100\r\n  train { epochs 1 }\r\n  sparsity {\r\n    target 90%\r\n    dense [\r\n    first,\r\n      last\r\n    ]\r\n  }\r\n}\r\n";
    let want = "recipe a {\n  data synthetic_digits(\n    train: 600,  // small\n    test: 100)\n  model lenet300_100\n  train { epochs 1 }\n  sparsity {\n    target 90%\n    dense [\n      first,\n      last\n    ]\n  }\n}\n";
    let out = format(text).unwrap();
    assert_eq!(out, want, "\n{out}");
    assert_formats_faithfully("crlf", text);
}

#[test]
fn long_one_line_blocks_and_continued_lines() {
    let text = "recipe a extends b { sparsity { target 95%; mask magnitude; schedule cubic(start: 1 epoch, end: 3 epochs) } }\nkernel k(w; tau) =\nabs(w) +\ntau\n";
    let want = "recipe a extends b {\n  sparsity {\n    target 95%\n    mask magnitude\n    schedule cubic(start: 1 epoch, end: 3 epochs)\n  }\n}\nkernel k(w; tau) =\n  abs(w) +\n  tau\n";
    let out = format(text).unwrap();
    assert_eq!(out, want, "\n{out}");
    assert_formats_faithfully("long", text);
}

#[test]
fn durations_and_units_keep_their_words() {
    let out = format("recipe a { train { lr cosine(warmup: 5epochs); epochs 3 } }\n").unwrap();
    assert_eq!(out, "recipe a { train { lr cosine(warmup: 5 epochs); epochs 3 } }\n");
}

#[test]
fn a_file_that_does_not_parse_is_refused() {
    assert!(matches!(format("recipe a {\n  seed 0\n"), Err(FmtError::Syntax(_))));
}

#[test]
fn cli_check_prints_a_diff_and_exits_1() {
    let dir = std::env::temp_dir().join(format!("sprsc-fmt-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let file = dir.join("a.sprs");
    std::fs::write(&file, "recipe a {seed 0}\n").unwrap();
    let bin = env!("CARGO_BIN_EXE_sprsc");
    let out = std::process::Command::new(bin).args(["fmt", "--check"]).arg(&file).output().unwrap();
    assert_eq!(out.status.code(), Some(1));
    let diff = String::from_utf8_lossy(&out.stdout);
    assert!(diff.contains("-recipe a {seed 0}") && diff.contains("+recipe a { seed 0 }"), "{diff}");
    let out = std::process::Command::new(bin).arg("fmt").arg(&file).output().unwrap();
    assert_eq!(out.status.code(), Some(0));
    assert_eq!(std::fs::read_to_string(&file).unwrap(), "recipe a { seed 0 }\n");
    let out = std::process::Command::new(bin).args(["fmt", "--check"]).arg(&file).output().unwrap();
    assert_eq!(out.status.code(), Some(0));
    std::fs::write(&file, "recipe a {").unwrap();
    let out = std::process::Command::new(bin).arg("fmt").arg(&file).output().unwrap();
    assert_eq!(out.status.code(), Some(1));
    std::fs::remove_dir_all(&dir).ok();
}
