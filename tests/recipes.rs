//! Every recipe in `recipes/` goes through the front end: it checks clean (no errors, no
//! warnings), and its plan and kernel listing are snapshotted.

mod common;

#[test]
fn shipped_recipes_check_clean_and_lower() {
    let mut count = 0;
    insta::glob!("../recipes", "*.sprs", |path| {
        count += 1;
        let comp = common::compile(path);
        assert!(
            comp.diagnostics.is_empty(),
            "{} does not check clean:\n{}",
            path.display(),
            common::rendered(&comp, &comp.diagnostics)
        );
        assert!(!comp.checked.plans.is_empty(), "{} has no recipe", path.display());
        let mut ir = String::new();
        for p in &comp.checked.plans {
            ir.push_str(&p.to_string());
            ir.push('\n');
        }
        for s in &comp.checked.sweeps {
            ir.push_str(&s.to_string());
        }
        insta::assert_snapshot!("ir", ir);
        insta::assert_snapshot!("kernels", sprsc::cli::kernel_listing(&comp));
    });
    assert!(count >= 5, "expected the shipped recipes, found {count}");
}

/// Each recipe file starts with a comment that says what it reproduces.
#[test]
fn recipes_begin_with_a_comment() {
    for entry in std::fs::read_dir(concat!(env!("CARGO_MANIFEST_DIR"), "/recipes")).unwrap() {
        let path = entry.unwrap().path();
        let text = std::fs::read_to_string(&path).unwrap();
        assert!(text.starts_with("//"), "{} must begin with a comment naming what it reproduces", path.display());
    }
}

/// The AST printer's output parses back to the same text (the printer is canonical).
#[test]
fn ast_printing_round_trips() {
    for entry in std::fs::read_dir(concat!(env!("CARGO_MANIFEST_DIR"), "/recipes")).unwrap() {
        let path = entry.unwrap().path();
        let text = std::fs::read_to_string(&path).unwrap();
        let once = sprsc::syntax::parse(&text, 0).unwrap().to_string();
        let twice = sprsc::syntax::parse(&once, 0)
            .unwrap_or_else(|d| panic!("printed AST of {} does not parse: {d:?}\n{once}", path.display()))
            .to_string();
        assert_eq!(once, twice, "{}", path.display());
    }
}

/// Every shipped recipe trains a few steps (batch 16, 2 steps, evaluated on at most 256
/// examples per split) through the engine, every method included. The outcome is snapshotted.
#[test]
fn shipped_recipes_train_a_few_steps() {
    // The real data sets sit beside the checkout unless SPRS_DATA says otherwise.
    let shared = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../shared/data");
    if std::env::var_os("SPRS_DATA").is_none() && shared.is_dir() {
        std::env::set_var("SPRS_DATA", shared);
    }
    insta::glob!("../recipes", "*.sprs", |path| {
        let text = std::fs::read_to_string(path).unwrap();
        let sets = ["train.batch=16".to_string()];
        let comp = sprsc::compile_source(path, text, &sets);
        assert!(!comp.has_errors(), "{}", common::rendered(&comp, &comp.diagnostics));
        let mut outcome = String::new();
        for plan in &comp.checked.plans {
            let data = match sprsc::data::load(&plan.data, plan.seed) {
                Ok(d) => d,
                Err(e) if e.code() == "E0601" => {
                    eprintln!("skipping {}: {e} (set SPRS_DATA)", path.display());
                    return;
                }
                Err(e) => panic!("{}: {e}", plan.recipe),
            };
            let tmp = common::temp_dir(&plan.recipe);
            let opts = sprsc::exec::RunOptions {
                out_dir: Some(tmp.join("run")),
                threads: Some(1),
                quiet: true,
                max_steps: Some(2),
                max_eval: Some(256),
                kernels: Default::default(),
                resume: false,
            };
            match sprsc::exec::run(plan, &data, &opts) {
                Ok(s) => {
                    assert_eq!(s.steps, 2, "{}", plan.recipe);
                    assert!(s.final_train_loss.is_finite(), "{}", plan.recipe);
                    assert!(tmp.join("run/summary.json").is_file());
                    outcome.push_str(&format!("{}: trained 2 steps\n", plan.recipe));
                }
                Err(e) => panic!("{}: {} {e}", plan.recipe, e.code()),
            }
        }
        insta::assert_snapshot!("run", outcome);
    });
}
