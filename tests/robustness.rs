//! No input, however malformed, makes the front end panic: 10,000+ random mutations and
//! truncations of the shipped recipes and UI cases go through parse + check + printing.

use std::path::Path;

use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;

mod common;
use common::fuzz::{corpus, mutate};

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
