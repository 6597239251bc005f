//! The robustness corpus: the shipped recipes and UI cases, and random mutations of them
//! (truncations, deletions, inserted tokens, duplicated pieces, replaced characters).

use std::path::Path;

use rand::Rng;
use rand_chacha::ChaCha8Rng;

pub const TOKENS: &[&str] = &[
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

pub fn corpus() -> Vec<String> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let mut out = Vec::new();
    for dir in ["recipes", "tests/ui"] {
        for e in std::fs::read_dir(root.join(dir)).unwrap() {
            out.push(std::fs::read_to_string(e.unwrap().path()).unwrap());
        }
    }
    out
}

pub fn char_boundary(s: &str, mut i: usize) -> usize {
    i = i.min(s.len());
    while !s.is_char_boundary(i) {
        i -= 1;
    }
    i
}

pub fn mutate(rng: &mut ChaCha8Rng, text: &str) -> String {
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
