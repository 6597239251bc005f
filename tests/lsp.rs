//! The language server in process: the robustness corpus (10,500 mutations) fed through
//! `didChange` with every request asked at random positions (no panic may escape), and the
//! completion vocabulary checked against the checker. The end-to-end tests with a real client are
//! `tests/editors/test_lsp.py`.

use std::path::Path;

use lsp_server::{Message, Notification, Request, RequestId};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use serde_json::json;
use sprsc::lsp::Server;

mod common;
use common::fuzz::{corpus, mutate, TOKENS};

const URI: &str = "file:///tmp/sprsc-lsp-test/fuzz.sprs";

fn notify(server: &mut Server, method: &str, params: serde_json::Value) -> Vec<Message> {
    server.notification(Notification::new(method.to_string(), params))
}

fn request(server: &mut Server, id: i32, method: &str, params: serde_json::Value) -> serde_json::Value {
    let resp = server.request(Request::new(RequestId::from(id), method.to_string(), params));
    match resp.response_result {
        Ok(v) => v,
        Err(e) => panic!("{method}: {} {}", e.code, e.message),
    }
}

#[test]
fn the_robustness_corpus_through_did_change_never_panics() {
    let mut server = Server { docs: Default::default(), roots: vec![] };
    let doc = json!({"uri": URI, "languageId": "sprs", "version": 1, "text": ""});
    notify(&mut server, "textDocument/didOpen", json!({ "textDocument": doc }));
    let corpus = corpus();
    let mut rng = ChaCha8Rng::seed_from_u64(11);
    for i in 0..10_500 {
        let text = mutate(&mut rng, &corpus[i % corpus.len()]);
        let lines = text.lines().count() as u32 + 1;
        let published = notify(
            &mut server,
            "textDocument/didChange",
            json!({"textDocument": {"uri": URI, "version": i + 2}, "contentChanges": [{"text": text}]}),
        );
        assert_eq!(published.len(), 1);
        for (j, method) in
            ["textDocument/hover", "textDocument/completion", "textDocument/definition"].iter().enumerate()
        {
            let pos = json!({"line": rng.gen_range(0..lines + 1), "character": rng.gen_range(0..80)});
            let params = json!({"textDocument": {"uri": URI}, "position": pos});
            request(&mut server, (i * 10 + j) as i32, method, params);
        }
        if i % 10 == 0 {
            // An edit of a random range, positions possibly past the end or inside a character.
            let p =
                |rng: &mut ChaCha8Rng| json!({"line": rng.gen_range(0..lines + 2), "character": rng.gen_range(0..90)});
            let (a, b) = (p(&mut rng), p(&mut rng));
            let edit = TOKENS[rng.gen_range(0..TOKENS.len())];
            let change = json!({"range": {"start": a, "end": b}, "text": edit});
            let params = json!({"textDocument": {"uri": URI, "version": i + 2}, "contentChanges": [change]});
            assert_eq!(notify(&mut server, "textDocument/didChange", params).len(), 1);
            let doc = json!({"textDocument": {"uri": URI}});
            request(&mut server, -1, "textDocument/documentSymbol", doc.clone());
            let opts = json!({"tabSize": 2, "insertSpaces": true});
            request(&mut server, -2, "textDocument/formatting", json!({"textDocument": {"uri": URI}, "options": opts}));
        }
    }
}

/// The server compiles as `sprsc check` does (its own copy of the steps, so that open documents
/// override the disk): the same diagnostics, spans included, and the same plans.
#[test]
fn the_server_compiles_every_recipe_and_ui_case_as_sprsc_check_does() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let mut files = 0;
    for dir in ["recipes", "tests/ui"] {
        for e in std::fs::read_dir(root.join(dir)).unwrap() {
            let path = e.unwrap().path();
            let text = std::fs::read_to_string(&path).unwrap();
            let want = sprsc::compile_source(&path, text.clone(), &[]);
            let got = sprsc::lsp::compile_with_overlay(&path, text, &Default::default());
            assert_eq!(got.diagnostics, want.diagnostics, "{}", path.display());
            let plans = |c: &sprsc::Compilation| c.checked.plans.iter().map(|p| p.to_string()).collect::<Vec<_>>();
            assert_eq!(plans(&got), plans(&want), "{}", path.display());
            files += 1;
        }
    }
    assert!(files > 60);
}

/// A recipe with `stmt` added to `block` (the rest valid), compiled.
fn compile_with(block: &str, stmt: &str) -> sprsc::Compilation {
    let mut blocks = vec![
        ("init", String::new()),
        ("sparsity", "target 90%".to_string()),
        ("train", "epochs 1".to_string()),
        ("techniques", String::new()),
        ("output", String::new()),
    ];
    let body = if block == "recipe" {
        format!("  {stmt}\n")
    } else {
        for (b, s) in &mut blocks {
            if *b == block {
                s.push_str(&format!("\n    {stmt}"));
            }
        }
        String::new()
    };
    let blocks: String = blocks.iter().map(|(b, s)| format!("  {b} {{\n    {s}\n  }}\n")).collect();
    let text = format!(
        "recipe a {{\n  data synthetic_digits(train: 600, test: 100)\n  model lenet300_100\n{blocks}{body}}}\n"
    );
    let comp = sprsc::compile_source(Path::new("vocab.sprs"), text.clone(), &[]);
    // A syntax error would hide the checker's answer.
    assert!(!comp.diagnostics.iter().any(|d| d.code.starts_with("E00")), "{text}\n{:?}", comp.diagnostics);
    comp
}

#[test]
fn every_keyword_the_editor_offers_is_one_the_checker_knows() {
    for (block, keywords) in sprsc::lsp::BLOCKS {
        if !["recipe", "init", "sparsity", "train", "techniques", "output"].contains(block) {
            continue;
        }
        for k in *keywords {
            let comp = compile_with(block, k);
            let unknown: Vec<&str> =
                comp.diagnostics.iter().filter(|d| d.code == "E0101").map(|d| d.message.as_str()).collect();
            assert!(unknown.is_empty(), "`{k}` in `{block}`: {unknown:?}");
        }
    }
}

#[test]
fn every_value_the_editor_offers_is_one_the_checker_knows() {
    for (path, values) in sprsc::lsp::VALUES {
        let (block, keyword) = path.split_once('.').unwrap();
        for v in *values {
            let stmt = match keyword {
                "dense" => format!("{keyword} [{v}]"),
                "freeze" => format!("{keyword} {v} 1 epoch"),
                _ => format!("{keyword} {v}"),
            };
            let comp = compile_with(block, &stmt);
            let unknown: Vec<&str> = comp
                .diagnostics
                .iter()
                .filter(|d| ["E0101", "E0105", "E0102"].contains(&d.code))
                .map(|d| d.message.as_str())
                .collect();
            assert!(unknown.is_empty(), "`{stmt}` in `{block}`: {unknown:?}");
        }
    }
}

#[test]
fn argument_names_the_editor_offers_are_those_the_checker_reads() {
    // The checker names what a call takes in its help when given an unknown argument.
    let cases = [
        ("train", "optimizer sgd(zzzz: 1)", "sgd"),
        ("train", "optimizer adam(zzzz: 1)", "adam"),
        ("sparsity", "mask lottery(zzzz: 1)", "lottery"),
        ("sparsity", "schedule cyclic(zzzz: 1)", "cyclic"),
        ("sparsity", "update soft_threshold(zzzz: 1)", "soft_threshold"),
        ("sparsity", "update prune_regrow(zzzz: 1)", "prune_regrow"),
        ("techniques", "gradinit(zzzz: 1)", "gradinit"),
        ("techniques", "ghost_neurons(zzzz: 1)", "ghost_neurons"),
    ];
    for (block, stmt, call) in cases {
        let comp = compile_with(block, stmt);
        let d = comp.diagnostics.iter().find(|d| d.code == "E0102").unwrap_or_else(|| panic!("{stmt}"));
        let help = d.help.as_deref().unwrap_or("");
        let offered = sprsc::lsp::ARGS.iter().find(|(c, _)| *c == call).unwrap().1;
        for a in offered {
            assert!(help.contains(a), "`{call}` does not take `{a}`: {help}");
        }
    }
}
