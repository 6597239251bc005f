//! Rendering diagnostics: miette's graphical report for people, JSON lines for editors.

use std::fmt;

use miette::{GraphicalReportHandler, GraphicalTheme, LabeledSpan, NamedSource, SourceSpan};
use serde::Serialize;

use super::{Diagnostic, Severity, SourceMap};

/// A diagnostic paired with the source it points into, as miette wants it.
struct Report<'a> {
    diag: &'a Diagnostic,
    source: Option<NamedSource<String>>,
    help: Option<String>,
}

impl fmt::Debug for Report<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(self.diag, f)
    }
}

impl fmt::Display for Report<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.diag.message)
    }
}

impl std::error::Error for Report<'_> {}

impl miette::Diagnostic for Report<'_> {
    fn code<'b>(&'b self) -> Option<Box<dyn fmt::Display + 'b>> {
        Some(Box::new(self.diag.code))
    }

    fn severity(&self) -> Option<miette::Severity> {
        Some(match self.diag.severity {
            Severity::Error => miette::Severity::Error,
            Severity::Warning => miette::Severity::Warning,
        })
    }

    fn help<'b>(&'b self) -> Option<Box<dyn fmt::Display + 'b>> {
        self.help.as_ref().map(|h| Box::new(h) as Box<dyn fmt::Display>)
    }

    fn source_code(&self) -> Option<&dyn miette::SourceCode> {
        self.source.as_ref().map(|s| s as &dyn miette::SourceCode)
    }

    fn labels(&self) -> Option<Box<dyn Iterator<Item = LabeledSpan> + '_>> {
        let primary = self.diag.span?;
        let mut labels = vec![LabeledSpan::new_primary_with_span(
            self.diag.label.clone(),
            SourceSpan::from((primary.start, primary.end - primary.start)),
        )];
        for (span, label) in &self.diag.secondary {
            if span.file == primary.file {
                labels.push(LabeledSpan::new_with_span(
                    Some(label.clone()),
                    SourceSpan::from((span.start, span.end - span.start)),
                ));
            }
        }
        Some(Box::new(labels.into_iter()))
    }
}

/// Renders with miette's graphical handler; `color` picks the themed (ANSI) or plain style.
pub fn render_text(diag: &Diagnostic, sources: &SourceMap, color: bool) -> String {
    let source =
        diag.span.and_then(|s| sources.file(s.file)).map(|f| NamedSource::new(f.name.clone(), f.text.to_string()));
    let mut help = diag.help.clone();
    for note in &diag.notes {
        let line = format!("note: {note}");
        help = Some(match help {
            Some(h) => format!("{h}\n{line}"),
            None => line,
        });
    }
    let report = Report { diag, source, help };
    let theme = if color { GraphicalTheme::unicode() } else { GraphicalTheme::unicode_nocolor() };
    let handler = GraphicalReportHandler::new_themed(theme).with_width(100);
    let mut out = String::new();
    if handler.render_report(&mut out, &report).is_err() {
        out = format!("{diag}\n");
    }
    out
}

#[derive(Serialize)]
struct JsonDiagnostic<'a> {
    file: Option<&'a str>,
    line: Option<usize>,
    column: Option<usize>,
    end_line: Option<usize>,
    end_column: Option<usize>,
    severity: &'static str,
    code: &'static str,
    message: &'a str,
    label: Option<&'a str>,
    help: Option<&'a str>,
    notes: &'a [String],
}

/// One JSON object per line: file, line, column, end, severity, code, message, help.
pub fn render_json(diag: &Diagnostic, sources: &SourceMap) -> String {
    let file = diag.span.and_then(|s| sources.file(s.file)).map(|f| f.name.as_str());
    let start = diag.span.map(|s| sources.line_col(s.file, s.start));
    let end = diag.span.map(|s| sources.line_col(s.file, s.end));
    let json = JsonDiagnostic {
        file,
        line: start.map(|p| p.0),
        column: start.map(|p| p.1),
        end_line: end.map(|p| p.0),
        end_column: end.map(|p| p.1),
        severity: diag.severity.name(),
        code: diag.code,
        message: &diag.message,
        label: diag.label.as_deref(),
        help: diag.help.as_deref(),
        notes: &diag.notes,
    };
    serde_json::to_string(&json).unwrap_or_default()
}
