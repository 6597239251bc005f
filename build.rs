//! Collects the diagnostic explanations (`src/diagnostics/explain/*.md`) into a table that
//! `sprsc explain CODE` reads, so a new code needs only its file.

use std::{env, fs, path::Path};

fn main() {
    let dir = Path::new("src/diagnostics/explain");
    println!("cargo:rerun-if-changed={}", dir.display());
    let mut codes: Vec<String> = fs::read_dir(dir)
        .map(|rd| {
            rd.filter_map(|e| e.ok())
                .filter_map(|e| e.file_name().to_str().map(str::to_owned))
                .filter_map(|n| n.strip_suffix(".md").map(str::to_owned))
                .collect()
        })
        .unwrap_or_default();
    codes.sort();
    // Read at run time, not baked in with `env!`: a build script compiled in one checkout
    // must not point a copied target directory at that checkout's files.
    let root = env::var("CARGO_MANIFEST_DIR").expect("cargo sets CARGO_MANIFEST_DIR");
    let mut table = String::from("&[\n");
    for code in &codes {
        let path = Path::new(&root).join(dir).join(format!("{code}.md"));
        println!("cargo:rerun-if-changed={}", path.display());
        table.push_str(&format!("    ({code:?}, include_str!({:?})),\n", path.display().to_string()));
    }
    table.push(']');
    let out = Path::new(&env::var("OUT_DIR").expect("cargo sets OUT_DIR")).join("explain_table.rs");
    fs::write(out, table).expect("OUT_DIR is writable");
}
