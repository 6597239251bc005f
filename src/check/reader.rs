//! Typed reading of generic statements: the checker's vocabulary. A `Sink` collects
//! diagnostics and every reader keeps going after an error (returning `None`), so one run
//! reports all the mistakes of a file.

use std::collections::BTreeMap;

use crate::diagnostics::{did_you_mean, Diagnostic, Span};
use crate::ir::plan::Time;
use crate::syntax::ast::{Arg, Block, Ident, Statement, TimeUnit, Value, ValueKind};

#[derive(Default)]
pub struct Sink {
    pub diags: Vec<Diagnostic>,
}

impl Sink {
    pub fn push(&mut self, d: Diagnostic) {
        self.diags.push(d);
    }
}

pub fn unknown_name(code: &'static str, what: &str, got: &Ident, known: &[&str]) -> Diagnostic {
    // `what` may carry a context after a colon: "keyword: in `sparsity`".
    let (what, ctx) = what.split_once(':').unwrap_or((what, ""));
    let mut d = Diagnostic::error(code, format!("unknown {what} `{}`{ctx}", got.name))
        .at(got.span, format!("not a known {what}"));
    d = match did_you_mean(&got.name, known.iter().copied()) {
        Some(s) => d.with_help(format!("did you mean `{s}`?")),
        None => d.with_help(format!("expected one of: {}", known.join(", "))),
    };
    d
}

// ---------------------------------------------------------------- blocks

/// The statements of one block, checked against the keywords allowed there.
pub struct BlockReader<'a> {
    pub stmts: BTreeMap<&'static str, Vec<&'a Statement>>,
}

impl<'a> BlockReader<'a> {
    /// `repeatable` keywords may appear more than once; others are reported as duplicates.
    pub fn new(
        sink: &mut Sink,
        block: &'a Block,
        what: &str,
        keywords: &[&'static str],
        repeatable: &[&str],
    ) -> BlockReader<'a> {
        let mut stmts: BTreeMap<&'static str, Vec<&'a Statement>> = BTreeMap::new();
        for s in &block.statements {
            let Some(&k) = keywords.iter().find(|k| **k == s.keyword.name) else {
                let what = format!("keyword: in `{what}`");
                sink.push(unknown_name("E0101", &what, &s.keyword, keywords));
                continue;
            };
            let list = stmts.entry(k).or_default();
            if let (Some(first), false) = (list.first(), repeatable.contains(&k)) {
                sink.push(
                    Diagnostic::error("E0103", format!("`{k}` is given more than once"))
                        .at(s.keyword.span, "given again here")
                        .with_secondary(first.keyword.span, "first given here")
                        .with_help("keep one of them"),
                );
                continue;
            }
            list.push(s);
        }
        BlockReader { stmts }
    }

    pub fn one(&self, k: &str) -> Option<&'a Statement> {
        self.stmts.get(k).and_then(|v| v.first().copied())
    }

    pub fn all(&self, k: &str) -> &[&'a Statement] {
        self.stmts.get(k).map_or(&[], |v| v.as_slice())
    }
}

/// A required statement is missing from a block.
pub fn missing(sink: &mut Sink, span: Span, what: &str, keyword: &str, example: &str) {
    sink.push(
        Diagnostic::error("E0104", format!("{what} has no `{keyword}`"))
            .at(span, format!("`{keyword}` is required here"))
            .with_help(format!("add a statement such as `{example}`")),
    );
}

/// A statement that must not have a block, or must have one.
pub fn check_block_use(sink: &mut Sink, s: &Statement, wants_block: bool) {
    match (&s.block, wants_block) {
        (Some(b), false) => sink.push(
            Diagnostic::error("E0112", format!("`{}` does not take a block", s.keyword.name))
                .at(b.span, "unexpected block")
                .with_help("remove the `{ ... }`"),
        ),
        (None, true) => sink.push(
            Diagnostic::error("E0112", format!("`{}` needs a block `{{ ... }}`", s.keyword.name))
                .at(s.span, "no block")
                .with_help(format!("write `{} {{ ... }}`", s.keyword.name)),
        ),
        _ => {}
    }
}

// ---------------------------------------------------------------- arguments

/// Positional and named arguments of a statement or call, consumed by name; `finish` reports
/// whatever was not consumed.
pub struct Args<'a> {
    owner: String,
    span: Span,
    positional: Vec<Option<&'a Value>>,
    named: Vec<(&'a Ident, Option<&'a Value>)>,
}

impl<'a> Args<'a> {
    pub fn new(sink: &mut Sink, owner: &str, span: Span, args: &'a [Arg]) -> Args<'a> {
        let mut positional = Vec::new();
        let mut named: Vec<(&'a Ident, Option<&'a Value>)> = Vec::new();
        for a in args {
            match &a.key {
                None => positional.push(Some(&a.value)),
                Some(k) => {
                    if let Some((first, _)) = named.iter().find(|(n, _)| n.name == k.name) {
                        sink.push(
                            Diagnostic::error("E0111", format!("argument `{}` is given twice", k.name))
                                .at(k.span, "given again here")
                                .with_secondary(first.span, "first given here"),
                        );
                        continue;
                    }
                    named.push((k, Some(&a.value)));
                }
            }
        }
        Args { owner: owner.to_string(), span, positional, named }
    }

    pub fn of_statement(sink: &mut Sink, s: &'a Statement) -> Args<'a> {
        Args::new(sink, &s.keyword.name, s.span, &s.args)
    }

    /// The `i`-th positional argument, or the named one `key` (either spelling is accepted).
    pub fn get(&mut self, i: usize, key: &str) -> Option<&'a Value> {
        if let Some(v) = self.named(key) {
            return Some(v);
        }
        self.positional.get_mut(i).and_then(Option::take)
    }

    pub fn named(&mut self, key: &str) -> Option<&'a Value> {
        self.named.iter_mut().find(|(k, _)| k.name == key).and_then(|(_, v)| v.take())
    }

    pub fn positional(&mut self, i: usize) -> Option<&'a Value> {
        self.positional.get_mut(i).and_then(Option::take)
    }

    pub fn require(&mut self, sink: &mut Sink, i: usize, key: &str, example: &str) -> Option<&'a Value> {
        let v = self.get(i, key);
        if v.is_none() {
            sink.push(
                Diagnostic::error("E0109", format!("`{}` needs its {key}", self.owner))
                    .at(self.span, format!("missing {key}"))
                    .with_help(format!("for example `{example}`")),
            );
        }
        v
    }

    /// Reports arguments nobody asked for; `known` are the names this owner accepts.
    pub fn finish(self, sink: &mut Sink, known: &[&str]) {
        for v in self.positional.into_iter().flatten() {
            sink.push(
                Diagnostic::error("E0110", format!("too many arguments for `{}`", self.owner))
                    .at(v.span, "unexpected argument")
                    .with_help(if known.is_empty() {
                        format!("`{}` takes no arguments", self.owner)
                    } else {
                        format!("`{}` takes: {}", self.owner, known.join(", "))
                    }),
            );
        }
        for (k, v) in self.named {
            if v.is_some() {
                let what = format!("argument: of `{}`", self.owner);
                sink.push(unknown_name("E0102", &what, k, known));
            }
        }
    }
}

// ---------------------------------------------------------------- values

fn wrong_type(v: &Value, expected: &str, help: Option<String>) -> Diagnostic {
    let d = Diagnostic::error("E0201", format!("expected {expected}, found {}", v.kind.describe()))
        .at(v.span, format!("expected {expected}"));
    match help {
        Some(h) => d.with_help(h),
        None => d,
    }
}

fn check_finite(sink: &mut Sink, v: &Value, x: f64) -> Option<f64> {
    if x.is_finite() {
        Some(x)
    } else {
        sink.push(
            Diagnostic::error("E0002", "number is too large")
                .at(v.span, "does not fit in a 64-bit float")
                .with_help("use a smaller number"),
        );
        None
    }
}

/// A plain number (an integer is a number too).
pub fn number(sink: &mut Sink, v: &Value) -> Option<f64> {
    match &v.kind {
        ValueKind::Number { value, .. } => check_finite(sink, v, *value),
        ValueKind::Percent(_) | ValueKind::Duration(..) | ValueKind::Multiplier(_) => {
            sink.push(wrong_unit(v, "a plain number", "remove the unit"));
            None
        }
        _ => {
            sink.push(wrong_type(v, "a number", None));
            None
        }
    }
}

fn wrong_unit(v: &Value, expected: &str, help: &str) -> Diagnostic {
    Diagnostic::error("E0202", format!("expected {expected}, found {}", v.kind.describe()))
        .at(v.span, format!("wrong unit: expected {expected}"))
        .with_help(help.to_string())
}

pub fn positive(sink: &mut Sink, v: &Value, what: &str) -> Option<f64> {
    let x = number(sink, v)?;
    if x > 0.0 {
        Some(x)
    } else {
        sink.push(
            Diagnostic::error("E0205", format!("{what} must be positive, found {x}"))
                .at(v.span, "must be greater than zero"),
        );
        None
    }
}

pub fn non_negative(sink: &mut Sink, v: &Value, what: &str) -> Option<f64> {
    let x = number(sink, v)?;
    if x >= 0.0 {
        Some(x)
    } else {
        sink.push(
            Diagnostic::error("E0204", format!("{what} must not be negative, found {x}")).at(v.span, "out of range"),
        );
        None
    }
}

/// An integer in `lo..=hi`.
pub fn int(sink: &mut Sink, v: &Value, what: &str, lo: u64, hi: u64) -> Option<u64> {
    match &v.kind {
        ValueKind::Number { value, is_int: true } => {
            let x = check_finite(sink, v, *value)?;
            if x < lo as f64 || x > hi as f64 {
                let code = if lo == 1 && x < 1.0 { "E0205" } else { "E0204" };
                sink.push(
                    Diagnostic::error(code, format!("{what} must be between {lo} and {hi}, found {x}"))
                        .at(v.span, "out of range"),
                );
                return None;
            }
            Some(x as u64)
        }
        ValueKind::Number { value, .. } => {
            check_finite(sink, v, *value)?;
            sink.push(
                Diagnostic::error("E0203", format!("{what} must be a whole number, found {value}"))
                    .at(v.span, "not an integer")
                    .with_help(format!("write `{}`", value.round().max(lo as f64))),
            );
            None
        }
        ValueKind::Duration(..) | ValueKind::Percent(_) | ValueKind::Multiplier(_) => {
            sink.push(wrong_unit(v, "a whole number", "remove the unit"));
            None
        }
        _ => {
            sink.push(wrong_type(v, "a whole number", None));
            None
        }
    }
}

/// A fraction in `[0, 1]` (`allow_one`) or `[0, 1)`, written as a percentage or a number.
pub fn fraction(sink: &mut Sink, v: &Value, what: &str, allow_one: bool) -> Option<f64> {
    let x = match &v.kind {
        ValueKind::Percent(p) => check_finite(sink, v, *p)?,
        ValueKind::Number { value, .. } => check_finite(sink, v, *value)?,
        ValueKind::Duration(..) | ValueKind::Multiplier(_) => {
            sink.push(wrong_unit(v, "a percentage", "write a percentage such as `90%`"));
            return None;
        }
        _ => {
            sink.push(wrong_type(v, "a percentage", Some("write a percentage such as `90%`".into())));
            return None;
        }
    };
    let ok = x >= 0.0 && (x < 1.0 || (allow_one && x <= 1.0));
    if !ok {
        let range = if allow_one { "[0, 100%]" } else { "[0, 100%)" };
        let mut d = Diagnostic::error("E0204", format!("{what} must be in {range}, found {}", show_pct(x)))
            .at(v.span, "out of range");
        if matches!(v.kind, ValueKind::Number { .. }) && x > 1.0 && x < 100.0 {
            d = d.with_help(format!("a plain number is a fraction; did you mean `{x}%`?"));
        }
        sink.push(d);
        return None;
    }
    Some(x)
}

/// A probability in `[0, 1]`, as a number or a percentage.
pub fn probability(sink: &mut Sink, v: &Value, what: &str) -> Option<f64> {
    let x = match &v.kind {
        ValueKind::Number { value, .. } | ValueKind::Percent(value) => check_finite(sink, v, *value)?,
        _ => {
            sink.push(wrong_type(v, "a probability", None));
            return None;
        }
    };
    if (0.0..=1.0).contains(&x) {
        Some(x)
    } else {
        sink.push(
            Diagnostic::error("E0206", format!("{what} must be a probability in [0, 1], found {x}"))
                .at(v.span, "not a probability"),
        );
        None
    }
}

pub fn show_pct(x: f64) -> String {
    format!("{}%", (x * 1e6).round() / 1e4)
}

/// A point in training time: `5 epochs`, `500 steps` or `30%` of the run.
pub fn time(sink: &mut Sink, v: &Value) -> Option<Time> {
    match &v.kind {
        ValueKind::Duration(n, unit) => {
            let n = check_finite(sink, v, *n)?;
            if n < 0.0 {
                sink.push(Diagnostic::error("E0204", "a time cannot be negative").at(v.span, "negative"));
                return None;
            }
            Some(match unit {
                TimeUnit::Epochs => Time::Epochs(n),
                TimeUnit::Steps if n.fract() == 0.0 => Time::Steps(n as u64),
                TimeUnit::Steps => {
                    sink.push(
                        Diagnostic::error("E0203", "a number of steps must be whole").at(v.span, "not an integer"),
                    );
                    return None;
                }
            })
        }
        ValueKind::Percent(p) => {
            if !(0.0..=1.0).contains(p) {
                sink.push(
                    Diagnostic::error(
                        "E0204",
                        format!("a share of the run must be in [0, 100%], found {}", show_pct(*p)),
                    )
                    .at(v.span, "out of range"),
                );
                return None;
            }
            Some(Time::Fraction(*p))
        }
        ValueKind::Number { .. } => {
            sink.push(wrong_unit(v, "a duration", "give a unit: `5 epochs`, `500 steps`, or `30%` of the run"));
            None
        }
        _ => {
            sink.push(wrong_type(v, "a duration", Some("for example `5 epochs` or `500 steps`".into())));
            None
        }
    }
}

/// A range of times `a .. b`.
pub fn time_range(sink: &mut Sink, v: &Value) -> Option<(Time, Time, Span, Span)> {
    match &v.kind {
        ValueKind::Range(a, b) => Some((time(sink, a)?, time(sink, b)?, a.span, b.span)),
        _ => {
            sink.push(wrong_type(v, "a range of times", Some("for example `0% .. 40%`".into())));
            None
        }
    }
}

pub fn multiplier(sink: &mut Sink, v: &Value, what: &str) -> Option<f64> {
    match &v.kind {
        ValueKind::Multiplier(m) | ValueKind::Number { value: m, .. } => {
            let m = check_finite(sink, v, *m)?;
            if m >= 1.0 {
                Some(m)
            } else {
                sink.push(
                    Diagnostic::error("E0204", format!("{what} must be at least 1x, found {m}x"))
                        .at(v.span, "out of range"),
                );
                None
            }
        }
        _ => {
            sink.push(wrong_type(v, "a multiplier", Some("for example `3x`".into())));
            None
        }
    }
}

pub fn string<'a>(sink: &mut Sink, v: &'a Value) -> Option<&'a str> {
    match &v.kind {
        ValueKind::Str(s) => Some(s),
        _ => {
            sink.push(wrong_type(v, "a string", Some("strings are written in double quotes".into())));
            None
        }
    }
}

pub fn boolean(sink: &mut Sink, v: &Value) -> Option<bool> {
    match &v.kind {
        ValueKind::Ident(s) if s == "true" => Some(true),
        ValueKind::Ident(s) if s == "false" => Some(false),
        _ => {
            sink.push(wrong_type(v, "`true` or `false`", None));
            None
        }
    }
}

pub fn list<'a>(sink: &mut Sink, v: &'a Value) -> Option<&'a [Value]> {
    match &v.kind {
        ValueKind::List(items) => Some(items),
        _ => {
            sink.push(wrong_type(v, "a list `[...]`", None));
            None
        }
    }
}

/// A named argument that must be one of `options` (a bare name), or `default` when absent.
pub fn choice<T: Copy>(
    sink: &mut Sink,
    a: &mut Args,
    key: &str,
    what: &str,
    options: &[(&'static str, T)],
    default: T,
) -> Option<T> {
    let Some(v) = a.named(key) else { return Some(default) };
    let names: Vec<&'static str> = options.iter().map(|(n, _)| *n).collect();
    let (name, args) = variant(sink, v, what, &names)?;
    args.finish(sink, &[]);
    options.iter().find(|(n, _)| *n == name).map(|(_, t)| *t)
}

/// A name or a call, one of `options`: returns the option and its (possibly empty) arguments.
pub fn variant<'a>(
    sink: &mut Sink,
    v: &'a Value,
    what: &str,
    options: &[&'static str],
) -> Option<(&'static str, Args<'a>)> {
    let (ident, args): (Ident, &'a [Arg]) = match &v.kind {
        ValueKind::Ident(n) => (Ident { name: n.clone(), span: v.span }, &[]),
        ValueKind::Call(n, args) => (n.clone(), args),
        _ => {
            sink.push(wrong_type(v, &format!("a {what}"), Some(format!("one of: {}", options.join(", ")))));
            return None;
        }
    };
    let Some(&name) = options.iter().find(|o| **o == ident.name) else {
        sink.push(unknown_name("E0105", what, &ident, options));
        return None;
    };
    Some((name, Args::new(sink, name, v.span, args)))
}

// ---------------------------------------------------------------- statement helpers

pub fn single<'a>(sink: &mut Sink, st: &'a Statement, example: &str) -> Option<&'a Value> {
    check_block_use(sink, st, false);
    let mut a = Args::of_statement(sink, st);
    let v = a.require(sink, 0, "value", example);
    a.finish(sink, &["value"]);
    v
}

pub fn count(sink: &mut Sink, a: &mut Args, key: &str, default: u64, hi: u64) -> Option<usize> {
    a.named(key).map_or(Some(default), |v| int(sink, v, key, 1, hi)).map(|x| x as usize)
}

pub fn time_arg(sink: &mut Sink, a: &mut Args, key: &str, default: Option<Time>, example: &str) -> Option<Time> {
    match (a.named(key), default) {
        (Some(v), _) => time(sink, v),
        (None, Some(d)) => Some(d),
        (None, None) => {
            a.require(sink, usize::MAX, key, example);
            None
        }
    }
}
