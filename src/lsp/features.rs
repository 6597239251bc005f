//! Hover, go to definition, symbols and formatting for one document.

use std::path::{Path, PathBuf};

use lsp_types as lt;

use super::context::{self, ItemRef};
use super::pos::{path_to_uri, LineIndex};
use super::vocab::{self, lookup};
use super::{Doc, Server};
use crate::Compilation;

// ------------------------------------------------------------------ plans

/// The printed plan (`--emit ir`) of the recipe named `recipe`, else of the first one.
fn plan_text(comp: &Compilation, recipe: Option<&str>) -> Option<String> {
    let plans = &comp.checked.plans;
    let plan = recipe.and_then(|r| plans.iter().find(|p| p.recipe == r)).or(plans.first())?;
    Some(plan.to_string())
}

/// One section of a printed plan: its head line (`  model ...`) and the lines below it.
fn plan_section(plan: &str, head: &str) -> Option<String> {
    let mut lines = plan.lines().skip_while(|l| !l.starts_with(&format!("  {head}")));
    let first = lines.next()?;
    let mut out = vec![first.trim_start()];
    out.extend(lines.take_while(|l| l.starts_with("    ")).map(|l| &l[2..]));
    Some(out.join("\n"))
}

/// Layer names of the recipe's model, from its printed plan.
pub(super) fn layer_names(doc: &Doc, recipe: Option<&str>) -> Vec<String> {
    let Some(plan) = doc.parsed.as_ref().and_then(|c| plan_text(c, recipe)) else { return vec![] };
    let Some(model) = plan_section(&plan, "model") else { return vec![] };
    model.lines().skip(1).filter_map(|l| l.split_whitespace().next()).map(str::to_string).collect()
}

// ------------------------------------------------------------------ hover

pub fn hover(_server: &Server, doc: &Doc, pos: lt::Position) -> Option<lt::Hover> {
    let idx = LineIndex::new(&doc.text);
    let offset = idx.offset(&doc.text, pos);
    let mut parts: Vec<String> = Vec::new();
    // A diagnostic under the cursor: its code's explanation.
    for d in &doc.diagnostics {
        let (s, e) = (idx.offset(&doc.text, d.range.start), idx.offset(&doc.text, d.range.end));
        if s <= offset && offset <= e {
            if let Some(lt::NumberOrString::String(code)) = &d.code {
                if let Some(text) = crate::diagnostics::explanation(code) {
                    parts.push(text.to_string());
                }
            }
        }
    }
    let word = context::word_at(&doc.text, offset).or_else(|| code_at(&doc.text, offset));
    let mut range = None;
    if let Some((start, end, word)) = &word {
        range = Some(idx.range(&doc.text, *start, *end));
        let cx = context::at(&doc.text, *start);
        let mut first = word_hover(doc, &cx, word, &doc.text[*end..]);
        first.append(&mut parts);
        parts = first;
    }
    if parts.is_empty() {
        return None;
    }
    Some(lt::Hover {
        contents: lt::HoverContents::Markup(lt::MarkupContent {
            kind: lt::MarkupKind::Markdown,
            value: parts.join("\n\n---\n\n"),
        }),
        range,
    })
}

/// A diagnostic code under the cursor anywhere, comments included (`// ~ERROR E0203`).
fn code_at(text: &str, offset: usize) -> Option<(usize, usize, String)> {
    let is_code_char = |c: char| c.is_ascii_alphanumeric();
    let offset = offset.min(text.len());
    let before = text.get(..offset)?;
    let start = before.char_indices().rev().find(|(_, c)| !is_code_char(*c)).map_or(0, |(i, c)| i + c.len_utf8());
    let end = text.get(offset..)?.find(|c: char| !is_code_char(c)).map_or(text.len(), |i| offset + i);
    let word = &text[start..end];
    crate::diagnostics::explanation(word)
        .filter(|_| word.starts_with(['E', 'W']))
        .map(|_| (start, end, word.to_string()))
}

fn word_hover(doc: &Doc, cx: &context::Context, word: &str, after: &str) -> Vec<String> {
    let mut parts = Vec::new();
    let plan = doc.parsed.as_ref().and_then(|c| plan_text(c, cx.item.as_deref()));
    let section = |head: &str| plan.as_deref().and_then(|p| plan_section(p, head));
    let code = |s: String| format!("```\n{s}\n```");
    // A code written out (`// ~ERROR E0203`, a note): its explanation.
    if let Some(text) = crate::diagnostics::explanation(word).filter(|_| word.starts_with(['E', 'W'])) {
        parts.push(text.to_string());
        return parts;
    }
    let is_key = after.trim_start().starts_with(':');
    let keyword = cx.statement.first().map(String::as_str);
    if cx.statement.is_empty() && cx.call.is_none() {
        // A statement keyword or block name.
        let block = if cx.block.is_empty() { "" } else { cx.block.as_str() };
        let table_block = if block == "recipe" { word } else { block };
        parts.extend(vocab::reference(word, table_block).or_else(|| vocab::reference(word, block)));
        match (block, word) {
            ("recipe", "model") => {
                parts.extend(section("model").map(|m| format!("Layers:\n{}", code(m))));
                parts.extend(section("params").map(|p| code(with_counts(p))));
            }
            ("recipe", "sparsity") => {
                parts.extend(section("params").map(|p| format!("Per-layer targets:\n{}", code(with_counts(p)))));
            }
            _ => {}
        }
    } else if is_key {
        let owner = cx.call.as_deref().filter(|c| !c.is_empty()).or(keyword).unwrap_or("");
        parts.push(format!("argument `{word}` of `{owner}`"));
        parts.extend(keyword.and_then(|k| vocab::reference(k, &cx.block)));
    } else if vocab::ZOO.contains(&word) {
        parts.extend(vocab::reference(word, "model"));
        parts.extend(section("model").map(|m| format!("Layers:\n{}", code(m))));
        parts.extend(section("params").map(|p| code(with_counts(p))));
    } else if lookup(vocab::VALUES, &format!("{}.{}", cx.block, keyword.unwrap_or(""))).contains(&word) {
        parts.extend(vocab::reference(word, &cx.block).or_else(|| vocab::reference(keyword?, &cx.block)));
    } else if let Some(def) = definition_text(doc, word) {
        parts.push(code(def));
    } else {
        let r = vocab::reference(word, &cx.block).or_else(|| keyword.and_then(|k| vocab::reference(k, &cx.block)));
        parts.extend(r);
    }
    parts
}

/// The `params` section of a plan with each tensor's number of values added.
fn with_counts(params: String) -> String {
    let width = params.lines().map(|l| l.chars().count()).max().unwrap_or(0);
    params
        .lines()
        .map(|l| {
            let dims = l.split_whitespace().nth(1).unwrap_or("");
            let count: Option<usize> = dims.split('x').map(|d| d.parse::<usize>().ok()).product();
            match count {
                Some(n) if l.starts_with("  ") => format!("{l:<width$} {n:>10} values"),
                _ => l.to_string(),
            }
        })
        .collect::<Vec<_>>()
        .join("\n")
}

/// The first line of a user or prelude definition of `name` (a kernel, recipe or sweep).
fn definition_text(doc: &Doc, name: &str) -> Option<String> {
    let comp = doc.parsed.as_ref()?;
    comp.sources.files.iter().find_map(|f| {
        context::items(&f.text)
            .into_iter()
            .find(|i| i.kind != "use" && i.name == name)
            .map(|i| f.text[i.range.0..].lines().next().unwrap_or("").to_string())
    })
}

// ------------------------------------------------------------------ definition

pub fn definition(server: &Server, doc: &Doc, pos: lt::Position) -> Option<lt::Location> {
    let idx = LineIndex::new(&doc.text);
    let offset = idx.offset(&doc.text, pos);
    if let Some((_, _, path)) = context::string_at(&doc.text, offset) {
        let is_use = context::items(&doc.text)
            .iter()
            .any(|i| i.kind == "use" && i.name_range.0 <= offset && offset <= i.name_range.1);
        if is_use {
            let target = doc.path.parent().unwrap_or(Path::new(".")).join(path);
            return Some(lt::Location { uri: path_to_uri(&target)?, range: lt::Range::default() });
        }
    }
    let (_, _, word) = context::word_at(&doc.text, offset)?;
    find_definition(server, &doc.path, &doc.text, &word, &mut Vec::new()).or_else(|| {
        // A built-in kernel: the prelude's source, where this binary was built from it.
        let prelude = Path::new(env!("CARGO_MANIFEST_DIR")).join("src/prelude.sprs");
        let text = std::fs::read_to_string(&prelude).ok()?;
        find_definition(server, &prelude, &text, &word, &mut Vec::new())
    })
}

/// Looks for a top-level `recipe`, `kernel` or `sweep` named `name` in a file and, depth
/// first, in the files it uses.
fn find_definition(
    server: &Server,
    path: &Path,
    text: &str,
    name: &str,
    seen: &mut Vec<PathBuf>,
) -> Option<lt::Location> {
    if seen.iter().any(|p| super::analysis::same_file(p, path)) || seen.len() > 64 {
        return None;
    }
    seen.push(path.to_path_buf());
    let items = context::items(text);
    if let Some(i) = items.iter().find(|i| i.kind != "use" && i.name == name) {
        let idx = LineIndex::new(text);
        return Some(lt::Location { uri: path_to_uri(path)?, range: idx.range(text, i.name_range.0, i.name_range.1) });
    }
    for u in items.iter().filter(|i| i.kind == "use") {
        let target = path.parent().unwrap_or(Path::new(".")).join(&u.name);
        let Some(t) = read(server, &target) else { continue };
        if let Some(l) = find_definition(server, &target, &t, name, seen) {
            return Some(l);
        }
    }
    None
}

/// A file's text: the editor's if it is open, else the disk's.
fn read(server: &Server, path: &Path) -> Option<String> {
    match server.docs.values().find(|d| super::analysis::same_file(&d.path, path)) {
        Some(d) => Some(d.text.clone()),
        None => std::fs::read_to_string(path).ok(),
    }
}

// ------------------------------------------------------------------ symbols

fn symbol_kind(i: &ItemRef) -> lt::SymbolKind {
    match i.kind {
        "kernel" => lt::SymbolKind::FUNCTION,
        "sweep" => lt::SymbolKind::NAMESPACE,
        _ => lt::SymbolKind::CLASS,
    }
}

#[allow(deprecated)] // `deprecated` is a required field of the struct
pub fn document_symbols(doc: &Doc) -> Vec<lt::DocumentSymbol> {
    let idx = LineIndex::new(&doc.text);
    context::items(&doc.text)
        .into_iter()
        .filter(|i| i.kind != "use")
        .map(|i| lt::DocumentSymbol {
            name: i.name.clone(),
            detail: Some(match &i.extends {
                Some(p) => format!("recipe extends {p}"),
                None => i.kind.to_string(),
            }),
            kind: symbol_kind(&i),
            tags: None,
            deprecated: None,
            range: idx.range(&doc.text, i.range.0, i.range.1),
            selection_range: idx.range(&doc.text, i.name_range.0, i.name_range.1),
            children: Some(
                context::statements(&doc.text, i.range)
                    .into_iter()
                    .map(|(keyword, word, whole)| lt::DocumentSymbol {
                        name: keyword,
                        detail: None,
                        kind: lt::SymbolKind::PROPERTY,
                        tags: None,
                        deprecated: None,
                        range: idx.range(&doc.text, whole.0, whole.1),
                        selection_range: idx.range(&doc.text, word.0, word.1),
                        children: None,
                    })
                    .collect(),
            )
            .filter(|c: &Vec<lt::DocumentSymbol>| !c.is_empty()),
        })
        .collect()
}

/// Items of every `.sprs` file under the workspace folders (open documents as edited) whose
/// name contains the query.
#[allow(deprecated)]
pub fn workspace_symbols(server: &Server, query: &str) -> Vec<lt::SymbolInformation> {
    let mut files: Vec<PathBuf> = server.docs.values().map(|d| d.path.clone()).collect();
    for root in &server.roots {
        walk(root, 0, &mut files);
    }
    files.sort();
    files.dedup();
    let query = query.to_lowercase();
    let mut out = Vec::new();
    for path in files {
        let Some(text) = read(server, &path) else { continue };
        let idx = LineIndex::new(&text);
        let Some(uri) = path_to_uri(&path) else { continue };
        for i in context::items(&text) {
            if i.kind == "use" || !i.name.to_lowercase().contains(&query) {
                continue;
            }
            out.push(lt::SymbolInformation {
                name: i.name.clone(),
                kind: symbol_kind(&i),
                tags: None,
                deprecated: None,
                location: lt::Location { uri: uri.clone(), range: idx.range(&text, i.name_range.0, i.name_range.1) },
                container_name: path.file_name().map(|n| n.to_string_lossy().into_owned()),
            });
        }
    }
    out
}

fn walk(dir: &Path, depth: usize, out: &mut Vec<PathBuf>) {
    let Ok(entries) = std::fs::read_dir(dir) else { return };
    for e in entries.flatten() {
        let p = e.path();
        let name = e.file_name().to_string_lossy().into_owned();
        if p.is_dir() {
            if depth < 8 && !name.starts_with('.') && !["target", "node_modules", "runs"].contains(&name.as_str()) {
                walk(&p, depth + 1, out);
            }
        } else if name.ends_with(".sprs") && out.len() < 10_000 {
            out.push(p);
        }
    }
}

// ------------------------------------------------------------------ formatting

/// The whole document replaced by its formatted text; nothing when it does not parse.
pub fn formatting(doc: &Doc) -> Option<Vec<lt::TextEdit>> {
    let formatted = crate::fmt::format(&doc.text).ok()?;
    if formatted == doc.text {
        return Some(vec![]);
    }
    let idx = LineIndex::new(&doc.text);
    Some(vec![lt::TextEdit { range: idx.range(&doc.text, 0, doc.text.len()), new_text: formatted }])
}
