//! No input, however malformed, makes the front end panic: 10,000+ random mutations and
//! truncations of the shipped recipes and UI cases go through parse + check + printing.

use std::path::Path;

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

const TOKENS: &[&str] = &[
    "{",
    "}",
    "(",
    ")",
    "[",
    "]",
    ",",
    ":",
    ";",
    "\n",
    "..",
    "%",
    "x",
    "-",
    "=",
    "\"",
    "//",
    " ",
    "1e999",
    "-0",
    "0",
    "3",
    "0.5",
    "99.99%",
    "5 epochs",
    "1 step",
    "3x",
    "1x28x28",
    "0x0",
    "recipe",
    "extends",
    "kernel",
    "use",
    "sweep",
    "sparsity",
    "train",
    "model",
    "data",
    "layer",
    "target",
    "residual",
    "shortcut",
    "select(",
    "max(",
    "\"ü\"",
    "é",
    "\t",
    "\r\n",
    "lenet300_100",
    "resnet20",
    "mnist",
    "conv 3 kernel: 99",
    "dense 0",
    "freeze at",
];

fn corpus() -> Vec<String> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let mut out = Vec::new();
    for dir in ["recipes", "tests/ui"] {
        for e in std::fs::read_dir(root.join(dir)).unwrap() {
            out.push(std::fs::read_to_string(e.unwrap().path()).unwrap());
        }
    }
    out
}

fn char_boundary(s: &str, mut i: usize) -> usize {
    i = i.min(s.len());
    while !s.is_char_boundary(i) {
        i -= 1;
    }
    i
}

fn mutate(rng: &mut ChaCha8Rng, text: &str) -> String {
    let mut s = text.to_string();
    for _ in 0..rng.gen_range(1..6) {
        let at = char_boundary(&s, rng.gen_range(0..=s.len()));
        match rng.gen_range(0..5) {
            0 => s.truncate(at),
            1 => {
                let end = char_boundary(&s, at + rng.gen_range(0..20));
                s.replace_range(at..end, "");
            }
            2 => s.insert_str(at, TOKENS[rng.gen_range(0..TOKENS.len())]),
            3 => {
                let end = char_boundary(&s, at + rng.gen_range(0..40));
                let piece = s[at..end].to_string();
                s.insert_str(at, &piece);
            }
            _ => {
                let end = char_boundary(&s, at + 1);
                s.replace_range(at..end, TOKENS[rng.gen_range(0..TOKENS.len())]);
            }
        }
    }
    s
}

#[test]
fn mutated_recipes_never_panic() {
    let corpus = corpus();
    let mut rng = ChaCha8Rng::seed_from_u64(7);
    let mut clean = 0;
    for i in 0..10_500 {
        let base = &corpus[i % corpus.len()];
        let text = mutate(&mut rng, base);
        let comp = sprsc::compile_source(Path::new("fuzz.sprs"), text.clone(), &[]);
        for d in &comp.diagnostics {
            let _ = sprsc::diagnostics::render_text(d, &comp.sources, false);
            let _ = sprsc::diagnostics::render_json(d, &comp.sources);
        }
        if !comp.has_errors() {
            clean += 1;
            comp.checked.plans.iter().for_each(|p| drop(p.to_string()));
            comp.files.iter().for_each(|f| drop(f.to_string()));
        }
    }
    // Some mutations leave a valid recipe: the printers ran on those too.
    assert!(clean > 0);
}

#[test]
fn bad_set_overrides_never_panic() {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("recipes/quickstart.sprs");
    let text = std::fs::read_to_string(&path).unwrap();
    for set in [
        "",
        "=",
        "sparsity",
        "sparsity.target=",
        "sparsity.target={",
        "a.b.c.d=1",
        "train.optimizer.lr=x(",
        "seed=1e999",
        "model.width=0",
        "sparsity.target=\"ü\"",
    ] {
        let comp = sprsc::compile_source(&path, text.clone(), &[set.to_string()]);
        assert!(comp.has_errors(), "`--set {set}` should be an error");
    }
}

/// Inputs built to exhaust a recursive parser's stack get E0005 instead.
#[test]
fn deep_nesting_is_refused_not_overflowed() {
    let cases = [
        format!("recipe a {{ seed {} }}", "[".repeat(200_000)),
        format!("kernel k(w) = {}w", "-".repeat(200_000)),
        format!("kernel k(w) = {}w{}", "(".repeat(100_000), ")".repeat(100_000)),
        format!("kernel k(w) = w{}", "+w".repeat(300_000)),
        format!("kernel k(w) = w{}", "*w".repeat(300_000)),
    ];
    for text in cases {
        let comp = sprsc::compile_source(Path::new("deep.sprs"), text, &[]);
        let codes: Vec<&str> = comp.diagnostics.iter().map(|d| d.code).collect();
        assert_eq!(codes, ["E0005"]);
    }
}
