//! Completion: what may be typed at the cursor, from the text around it (so it works while the
//! file does not parse) and the last compilation that parsed (layer, recipe and kernel names).

use lsp_types as lt;

use super::context;
use super::features::layer_names;
use super::pos::LineIndex;
use super::vocab::{self, lookup};
use super::{Doc, Server};

pub fn completion(_server: &Server, doc: &Doc, pos: lt::Position) -> Vec<lt::CompletionItem> {
    let idx = LineIndex::new(&doc.text);
    let offset = idx.offset(&doc.text, pos);
    let cx = context::at(&doc.text, offset);
    let keyword = cx.statement.first().map(String::as_str).unwrap_or("");
    let mut out = Vec::new();
    let item = |label: &str, kind: lt::CompletionItemKind, insert: Option<String>| lt::CompletionItem {
        label: label.to_string(),
        kind: Some(kind),
        insert_text: insert,
        ..Default::default()
    };
    let recipes = || recipe_names(doc);
    if cx.in_string {
        if keyword == "layer" || keyword == "dense" {
            for l in layer_names(doc, cx.item.as_deref()) {
                out.push(item(&l, lt::CompletionItemKind::FIELD, None));
            }
        }
        return out;
    }
    match (&cx.call, &cx.key) {
        (_, Some(key)) => {
            if key == "kernel" {
                for k in kernel_names(doc) {
                    out.push(item(&k, lt::CompletionItemKind::FUNCTION, None));
                }
            }
            for v in lookup(vocab::ARG_VALUES, key) {
                out.push(item(v, lt::CompletionItemKind::ENUM_MEMBER, None));
            }
        }
        (Some(call), None) if !call.is_empty() => {
            for a in lookup(vocab::ARGS, call) {
                out.push(item(a, lt::CompletionItemKind::FIELD, Some(format!("{a}: "))));
            }
        }
        _ if cx.statement.is_empty() => {
            for k in lookup(vocab::BLOCKS, &cx.block) {
                let mut it = item(k, lt::CompletionItemKind::KEYWORD, None);
                it.documentation = vocab::reference(k, &cx.block).map(|d| {
                    lt::Documentation::MarkupContent(lt::MarkupContent { kind: lt::MarkupKind::Markdown, value: d })
                });
                out.push(it);
            }
        }
        _ => {
            let n = cx.statement.len();
            match (cx.block.as_str(), keyword) {
                ("", "recipe") if n >= 3 && cx.statement[2] == "extends" => {
                    let own = cx.statement.get(1).map(String::as_str);
                    for r in recipes().iter().filter(|r| Some(r.as_str()) != own) {
                        out.push(item(r, lt::CompletionItemKind::CLASS, None));
                    }
                }
                ("", "recipe") if n == 2 => out.push(item("extends", lt::CompletionItemKind::KEYWORD, None)),
                ("sweep", "recipes") => {
                    for r in recipes() {
                        out.push(item(&r, lt::CompletionItemKind::CLASS, None));
                    }
                }
                ("sweep", "vary") if n == 1 => {
                    for f in field_paths() {
                        out.push(item(&f, lt::CompletionItemKind::FIELD, None));
                    }
                }
                ("sparsity", "layer" | "dense") => {
                    if keyword == "dense" {
                        for v in lookup(vocab::VALUES, "sparsity.dense") {
                            out.push(item(v, lt::CompletionItemKind::ENUM_MEMBER, None));
                        }
                    }
                    for l in layer_names(doc, cx.item.as_deref()) {
                        out.push(item(&format!("\"{l}\""), lt::CompletionItemKind::FIELD, None));
                    }
                }
                (block, _) => {
                    let values = lookup(vocab::VALUES, &format!("{block}.{keyword}"));
                    if n == 1 && !values.is_empty() {
                        for v in values {
                            out.push(item(v, lt::CompletionItemKind::ENUM_MEMBER, None));
                        }
                    } else {
                        for a in lookup(vocab::ARGS, keyword) {
                            out.push(item(a, lt::CompletionItemKind::FIELD, Some(format!("{a}: "))));
                        }
                    }
                }
            }
        }
    }
    out
}

fn field_paths() -> Vec<String> {
    let mut out = vec!["seed".to_string(), "data.val".into(), "model.width".into()];
    for block in ["sparsity", "train", "output"] {
        for k in lookup(vocab::BLOCKS, block) {
            out.push(format!("{block}.{k}"));
        }
    }
    for (stmt, calls) in [("train.optimizer", &["sgd", "adam"][..]), ("sparsity.update", &["soft_threshold"][..])] {
        for c in calls {
            for a in lookup(vocab::ARGS, c) {
                let path = format!("{stmt}.{a}");
                if !out.contains(&path) {
                    out.push(path);
                }
            }
        }
    }
    out
}

/// Recipe names of this document and of the files it uses.
fn recipe_names(doc: &Doc) -> Vec<String> {
    let mut names: Vec<String> =
        context::items(&doc.text).into_iter().filter(|i| i.kind == "recipe").map(|i| i.name).collect();
    if let Some(comp) = &doc.parsed {
        for f in comp.sources.files.iter().skip(2) {
            names.extend(context::items(&f.text).into_iter().filter(|i| i.kind == "recipe").map(|i| i.name));
        }
    }
    names.dedup();
    names
}

fn kernel_names(doc: &Doc) -> Vec<String> {
    let mut texts: Vec<&str> = vec![&doc.text, crate::PRELUDE];
    if let Some(comp) = &doc.parsed {
        texts.extend(comp.sources.files.iter().skip(2).map(|f| &*f.text));
    }
    texts.into_iter().flat_map(context::items).filter(|i| i.kind == "kernel").map(|i| i.name).collect()
}
