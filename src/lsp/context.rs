//! What surrounds the cursor, read from the text alone so that it works while a file does not
//! parse (which is most of the time while typing): the enclosing blocks, the statement being
//! written, the call whose arguments the cursor is in, and the top-level items of a file.

/// A token of the editor's rough lexer: names (with dots), strings, punctuation, new lines.
#[derive(Debug, Clone, PartialEq)]
pub enum Tok {
    Word(String),
    /// The contents and whether the closing quote was written.
    Str(String, bool),
    Punct(char),
    Newline,
    Other,
}

/// Tokens with their byte ranges; comments are skipped, nothing ever fails.
pub fn lex(text: &str) -> Vec<(usize, usize, Tok)> {
    let mut out = Vec::new();
    let mut it = text.char_indices().peekable();
    while let Some((i, c)) = it.next() {
        if c == '\n' {
            out.push((i, i + 1, Tok::Newline));
        } else if c == '/' && text[i..].starts_with("//") {
            while it.next_if(|(_, c)| *c != '\n').is_some() {}
        } else if c == '"' {
            let (mut end, mut closed, mut escaped) = (text.len(), false, false);
            while let Some(&(j, d)) = it.peek() {
                if d == '\n' {
                    end = j;
                    break;
                }
                it.next();
                if d == '"' && !escaped {
                    (end, closed) = (j + 1, true);
                    break;
                }
                escaped = d == '\\' && !escaped;
            }
            let inner_end = if closed { end - 1 } else { end };
            out.push((i, end, Tok::Str(text[i + 1..inner_end].to_string(), closed)));
        } else if is_word_char(c) {
            let mut end = i + c.len_utf8();
            while let Some((j, d)) = it.next_if(|(_, d)| is_word_char(*d) || *d == '.' || *d == '%') {
                end = j + d.len_utf8();
            }
            out.push((i, end, Tok::Word(text[i..end].to_string())));
        } else if "{}()[],:;=".contains(c) {
            out.push((i, i + 1, Tok::Punct(c)));
        } else if !c.is_whitespace() {
            out.push((i, i + c.len_utf8(), Tok::Other));
        }
    }
    out
}

fn is_word_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || c == '_'
}

/// The cursor's surroundings.
#[derive(Debug, Default, Clone)]
pub struct Context {
    /// The innermost block: `""` at top level, else the keyword that opened it (`recipe`,
    /// `sparsity`, `model`, `residual`, `sweep`, ...).
    pub block: String,
    /// The recipe or sweep the cursor is in.
    pub item: Option<String>,
    /// Words of the statement before the cursor (the first is its keyword).
    pub statement: Vec<String>,
    /// The innermost open call (`sgd(` -> `sgd`); `Some("")` for a list `[`.
    pub call: Option<String>,
    /// The argument name when the cursor follows `name:`.
    pub key: Option<String>,
    /// The word being typed (up to the cursor).
    pub prefix: String,
    /// Inside a string.
    pub in_string: bool,
}

/// The context at byte `offset`.
pub fn at(text: &str, offset: usize) -> Context {
    let mut blocks: Vec<String> = Vec::new();
    let mut item: Option<String> = None;
    let mut statement: Vec<String> = Vec::new();
    let mut parens: Vec<(String, Vec<String>)> = Vec::new();
    let mut cx = Context::default();
    let mut last_punct: Option<char> = None;
    let mut prev_word: Option<String> = None;
    for (start, end, tok) in lex(text) {
        if start >= offset {
            break;
        }
        if end >= offset {
            match &tok {
                Tok::Word(w) => {
                    cx.prefix = w[..offset - start].to_string();
                    break;
                }
                Tok::Str(_, closed) if offset < end || !closed => {
                    cx.in_string = true;
                    break;
                }
                _ => {}
            }
        }
        match tok {
            Tok::Newline | Tok::Punct(';') if parens.is_empty() => statement.clear(),
            Tok::Punct('{') => {
                let opener = statement.first().cloned().unwrap_or_default();
                if blocks.is_empty() {
                    item = statement.get(1).cloned();
                }
                blocks.push(opener);
                statement.clear();
                parens.clear();
            }
            Tok::Punct('}') => {
                blocks.pop();
                statement.clear();
                parens.clear();
                if blocks.is_empty() {
                    item = None;
                }
            }
            Tok::Punct('(') => parens.push((prev_word.clone().unwrap_or_default(), Vec::new())),
            Tok::Punct('[') => parens.push((String::new(), Vec::new())),
            Tok::Punct(')' | ']') => {
                parens.pop();
            }
            Tok::Word(ref w) => match parens.last_mut() {
                Some((_, words)) => words.push(w.clone()),
                None => statement.push(w.clone()),
            },
            _ => {}
        }
        last_punct = match tok {
            Tok::Punct(c) => Some(c),
            _ => None,
        };
        prev_word = match tok {
            Tok::Word(w) => Some(w),
            _ => None,
        };
    }
    if last_punct == Some(':') {
        cx.key = key_before_colon(text, offset);
    }
    cx.block = blocks.last().cloned().unwrap_or_default();
    cx.item = item;
    cx.statement = statement;
    cx.call = parens.last().map(|(name, _)| name.clone());
    cx
}

/// The name before the last `:` preceding `offset`.
fn key_before_colon(text: &str, offset: usize) -> Option<String> {
    let before = text.get(..offset)?;
    let colon = before.rfind(':')?;
    let head = before[..colon].trim_end();
    // The byte after the last non-word character (which may be several bytes long).
    let start = head.char_indices().rev().find(|(_, c)| !is_word_char(*c)).map_or(0, |(i, c)| i + c.len_utf8());
    Some(head[start..].to_string()).filter(|s| !s.is_empty())
}

/// The word (name, with dots) around `offset` and its byte range.
pub fn word_at(text: &str, offset: usize) -> Option<(usize, usize, String)> {
    lex(text).into_iter().find_map(|(s, e, t)| match t {
        Tok::Word(w) if s <= offset && offset <= e => Some((s, e, w)),
        _ => None,
    })
}

/// The string literal around `offset`, if any.
pub fn string_at(text: &str, offset: usize) -> Option<(usize, usize, String)> {
    lex(text).into_iter().find_map(|(s, e, t)| match t {
        Tok::Str(v, _) if s <= offset && offset <= e => Some((s, e, v)),
        _ => None,
    })
}

/// A top-level item found by the rough lexer.
#[derive(Debug, Clone, PartialEq)]
pub struct ItemRef {
    /// `use`, `kernel`, `recipe` or `sweep`.
    pub kind: &'static str,
    /// The name, or the path of a `use`.
    pub name: String,
    pub name_range: (usize, usize),
    /// From the keyword to the closing brace (or the end of the line).
    pub range: (usize, usize),
    /// The parent of a recipe that `extends` one.
    pub extends: Option<String>,
}

/// The top-level items of a text, whether or not it parses.
pub fn items(text: &str) -> Vec<ItemRef> {
    let toks = lex(text);
    let mut out: Vec<ItemRef> = Vec::new();
    let mut depth = 0usize;
    let mut line_start = true;
    for (i, (start, _, tok)) in toks.iter().enumerate() {
        match tok {
            Tok::Punct('{') => depth += 1,
            Tok::Punct('}') => {
                depth = depth.saturating_sub(1);
                if depth == 0 {
                    if let Some(last) = out.last_mut() {
                        if last.range.1 == usize::MAX {
                            last.range.1 = toks[i].1;
                        }
                    }
                }
            }
            Tok::Word(w) if depth == 0 && line_start => {
                let kind = match w.as_str() {
                    "use" => "use",
                    "kernel" => "kernel",
                    "recipe" => "recipe",
                    "sweep" => "sweep",
                    _ => "",
                };
                let name = toks.get(i + 1).and_then(|(s, e, t)| match t {
                    Tok::Word(n) if kind != "use" => Some((n.clone(), (*s, *e))),
                    Tok::Str(p, _) if kind == "use" => Some((p.clone(), (*s, *e))),
                    _ => None,
                });
                if let (false, Some((name, name_range))) = (kind.is_empty(), name) {
                    let extends = match (toks.get(i + 2), toks.get(i + 3)) {
                        (Some((_, _, Tok::Word(e))), Some((_, _, Tok::Word(p)))) if e == "extends" => Some(p.clone()),
                        _ => None,
                    };
                    let line_end = text[*start..].find('\n').map_or(text.len(), |n| start + n);
                    let end = if kind == "recipe" || kind == "sweep" { usize::MAX } else { line_end };
                    out.push(ItemRef { kind, name, name_range, range: (*start, end), extends });
                }
            }
            _ => {}
        }
        line_start = matches!(tok, Tok::Newline | Tok::Punct(';') | Tok::Punct('}')) && depth == 0;
    }
    for it in &mut out {
        if it.range.1 == usize::MAX {
            it.range.1 = text.len();
        }
    }
    out
}

/// A byte range `start..end`.
pub type Bytes = (usize, usize);

/// The statements directly inside an item's block (`seed`, `sparsity { ... }`, ...): keyword,
/// its range, and the range of the whole statement (to the end of its line or block).
pub fn statements(text: &str, item: Bytes) -> Vec<(String, Bytes, Bytes)> {
    let Some(body) = text.get(item.0..item.1) else { return vec![] };
    let mut out: Vec<(String, Bytes, Bytes)> = Vec::new();
    let mut depth = 0usize;
    let mut line_start = false;
    for (s, e, tok) in lex(body) {
        let (s, e) = (s + item.0, e + item.0);
        match tok {
            Tok::Punct('{') => {
                depth += 1;
                line_start = depth == 1;
            }
            Tok::Punct('}') => {
                depth = depth.saturating_sub(1);
                if depth == 1 {
                    if let Some(last) = out.last_mut() {
                        last.2 .1 = e;
                    }
                }
                line_start = depth == 1;
            }
            Tok::Newline | Tok::Punct(';') => line_start = depth == 1,
            Tok::Word(w) if line_start && depth == 1 => {
                let line_end = text[e..].find(['\n', ';', '}']).map_or(text.len(), |n| e + n);
                out.push((w, (s, e), (s, line_end)));
                line_start = false;
            }
            _ => line_start = false,
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    const TEXT: &str = "use \"common.sprs\"\nrecipe a extends b {\n  sparsity {\n    mask snip(bat\n  }\n  train { optimizer sgd(lr: 0.1, mo";

    #[test]
    fn context_inside_a_call_of_a_block() {
        let off = TEXT.find("bat").unwrap() + 3;
        let cx = at(TEXT, off);
        assert_eq!(cx.block, "sparsity");
        assert_eq!(cx.item.as_deref(), Some("a"));
        assert_eq!(cx.call.as_deref(), Some("snip"));
        assert_eq!(cx.prefix, "bat");
        let cx = at(TEXT, TEXT.len());
        assert_eq!((cx.block.as_str(), cx.call.as_deref(), cx.prefix.as_str()), ("train", Some("sgd"), "mo"));
        assert_eq!(cx.statement, vec!["optimizer".to_string(), "sgd".to_string()]);
    }

    #[test]
    fn context_after_a_colon_and_at_statement_start() {
        let text = "recipe a {\n  sparsity {\n    update soft_threshold(ste: )\n    \n";
        let cx = at(text, text.find("ste: ").unwrap() + 5);
        assert_eq!(cx.key.as_deref(), Some("ste"));
        let cx = at(text, text.len() - 1);
        assert_eq!((cx.block.as_str(), cx.statement.len()), ("sparsity", 0));
    }

    #[test]
    fn statements_of_a_recipe() {
        let text = "recipe a {\n  seed 0; data mnist\n  sparsity {\n    target 90%\n  }\n}\n";
        let item = items(text)[0].range;
        let found: Vec<(String, &str)> =
            statements(text, item).into_iter().map(|(k, _, r)| (k, &text[r.0..r.1])).collect();
        assert_eq!(found[0], ("seed".to_string(), "seed 0"));
        assert_eq!(found[1], ("data".to_string(), "data mnist"));
        assert_eq!(found[2], ("sparsity".to_string(), "sparsity {\n    target 90%\n  }"));
    }

    #[test]
    fn items_of_a_broken_file() {
        let found = items(TEXT);
        let names: Vec<(&str, &str)> = found.iter().map(|i| (i.kind, i.name.as_str())).collect();
        assert_eq!(names, vec![("use", "common.sprs"), ("recipe", "a")]);
        assert_eq!(found[1].extends.as_deref(), Some("b"));
    }
}
