//! Diagnostics shared by every pipeline stage: a message pointing into the spec, rendered for
//! people with miette (file:line:col and a snippet) or as JSON for programs.

use miette::{LabeledSpan, MietteSpanContents, SourceSpan, SpanContents};
use serde::Serialize;
use std::fmt;
use std::sync::Arc;

/// A position in the spec source: 1-based line and column, plus the byte range for snippets.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
pub struct Loc {
    pub line: u32,
    pub column: u32,
    #[serde(skip)]
    pub offset: usize,
    #[serde(skip)]
    pub len: usize,
}

impl Loc {
    /// Whether this location points somewhere real (line numbers start at 1).
    pub fn is_known(&self) -> bool {
        self.line > 0
    }
}

/// One problem found in a spec.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Diagnostic {
    /// A stable, machine-readable code such as `unknown-key` or `card-data`.
    pub code: &'static str,
    /// Lowercase message; user input in backticks.
    pub message: String,
    /// Where in the spec, when known.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub location: Option<Loc>,
    /// What to do about it, kept apart from the message.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub help: Option<String>,
}

impl Diagnostic {
    pub fn new(code: &'static str, message: impl Into<String>, location: Loc) -> Self {
        Diagnostic {
            code,
            message: message.into(),
            location: location.is_known().then_some(location),
            help: None,
        }
    }

    pub fn help(mut self, help: impl Into<String>) -> Self {
        self.help = Some(help.into());
        self
    }

    /// Adds "did you mean" help when `got` is close to one of `known`.
    pub fn suggest<'a>(self, got: &str, known: impl IntoIterator<Item = &'a str>) -> Self {
        match did_you_mean(got, known) {
            Some(best) => self.help(format!("did you mean `{best}`?")),
            None => self,
        }
    }
}

/// The closest known name to `got`, if it is close enough to be a likely typo.
pub fn did_you_mean<'a>(got: &str, known: impl IntoIterator<Item = &'a str>) -> Option<&'a str> {
    known
        .into_iter()
        .map(|k| (strsim::jaro_winkler(got, k), k))
        .filter(|(score, _)| *score > 0.8)
        .max_by(|a, b| a.0.total_cmp(&b.0))
        .map(|(_, k)| k)
}

/// A set of diagnostics about one spec file, with the source they point into.
#[derive(Debug)]
pub struct Report {
    pub path: String,
    pub diagnostics: Vec<Diagnostic>,
    named: Source,
}

impl Report {
    pub fn new(path: &str, source: Arc<str>, diagnostics: Vec<Diagnostic>) -> Self {
        Report {
            path: path.to_owned(),
            diagnostics,
            named: Source {
                name: path.to_owned(),
                text: source,
            },
        }
    }

    /// Renders every diagnostic with miette's graphical handler (no colour: output is read by
    /// people and by tests alike).
    pub fn render(&self) -> String {
        let handler =
            miette::GraphicalReportHandler::new_themed(miette::GraphicalTheme::unicode_nocolor())
                .with_width(100);
        let mut out = String::new();
        for diagnostic in &self.diagnostics {
            let located = Located {
                report: self,
                diagnostic,
            };
            let _ = handler.render_report(&mut out, &located);
            if let Some(loc) = diagnostic.location {
                // miette shows the snippet; this line gives editors and CI a file:line:col to jump to.
                out.push_str(&format!("  at {}:{}:{}\n", self.path, loc.line, loc.column));
            }
            out.push('\n');
        }
        let n = self.diagnostics.len();
        out.push_str(&format!(
            "error: {} has {n} problem{}\n",
            self.path,
            if n == 1 { "" } else { "s" }
        ));
        printable(&out)
    }
}

/// `text` safe for a terminal: control, bidirectional and zero-width characters (from an
/// untrusted spec, they could retitle or clear the terminal, or reorder what is shown) are
/// written as `<U+001B>`; line breaks stay.
pub fn printable(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        if c != '\n' && crate::model::names::is_invisible(c) {
            out.push_str(&format!("<U+{:04X}>", u32::from(c)));
        } else {
            out.push(c);
        }
    }
    out
}

/// A spec's text under its name, as miette reads it for snippets. miette counts the column of
/// its `[file:line:col]` header in bytes; this counts characters, as the `at file:line:col`
/// line, editors and the JSON output do (they differ on a line with non-ASCII text before the
/// span).
#[derive(Debug)]
struct Source {
    name: String,
    text: Arc<str>,
}

impl miette::SourceCode for Source {
    fn read_span<'a>(
        &'a self,
        span: &SourceSpan,
        context_lines_before: usize,
        context_lines_after: usize,
    ) -> Result<Box<dyn SpanContents<'a> + 'a>, miette::MietteError> {
        let inner =
            self.text
                .as_ref()
                .read_span(span, context_lines_before, context_lines_after)?;
        // miette gives a column only without lines before the span (else 0).
        let line_start = span.offset().saturating_sub(inner.column());
        let column = self
            .text
            .get(line_start..span.offset())
            .map_or(inner.column(), |before| before.chars().count());
        Ok(Box::new(MietteSpanContents::new_named(
            self.name.clone(),
            inner.data(),
            *inner.span(),
            inner.line(),
            column,
            inner.line_count(),
        )))
    }
}

/// The longest line shown in a snippet, in bytes.
const MAX_SNIPPET_LINE: usize = 400;

struct Located<'a> {
    report: &'a Report,
    diagnostic: &'a Diagnostic,
}

impl fmt::Debug for Located<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

impl fmt::Display for Located<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.diagnostic.message)
    }
}

impl std::error::Error for Located<'_> {}

impl miette::Diagnostic for Located<'_> {
    fn code<'a>(&'a self) -> Option<Box<dyn fmt::Display + 'a>> {
        Some(Box::new(self.diagnostic.code))
    }

    fn help<'a>(&'a self) -> Option<Box<dyn fmt::Display + 'a>> {
        self.diagnostic
            .help
            .as_ref()
            .map(|h| Box::new(h) as Box<dyn fmt::Display>)
    }

    fn source_code(&self) -> Option<&dyn miette::SourceCode> {
        let loc = self.diagnostic.location?;
        // A snippet of a line longer than a screen says nothing the `at file:line:col` line
        // does not, at great length (a spec of one 100 KB line, say).
        let text = &self.report.named.text;
        let start = text
            .get(..loc.offset)
            .and_then(|before| before.rfind('\n'))
            .map_or(0, |i| i + 1);
        let end = text[start..].find('\n').map_or(text.len(), |i| start + i);
        (end - start <= MAX_SNIPPET_LINE).then_some(&self.report.named as &dyn miette::SourceCode)
    }

    fn labels(&self) -> Option<Box<dyn Iterator<Item = LabeledSpan> + '_>> {
        let loc = self.diagnostic.location?;
        let span = SourceSpan::new(loc.offset.into(), loc.len.max(1));
        Some(Box::new(std::iter::once(LabeledSpan::new_with_span(
            Some("here".into()),
            span,
        ))))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_snippet_header_counts_columns_in_characters() {
        let text = "app:\n  文書: {}\n";
        let offset = text.find('{').unwrap_or_default();
        let diagnostic = Diagnostic {
            code: "invalid-value",
            message: "missing required key `fields`".into(),
            location: Some(Loc {
                line: 2,
                column: 7,
                offset,
                len: 2,
            }),
            help: None,
        };
        let rendered = Report::new("spec.yaml", text.into(), vec![diagnostic]).render();
        assert!(rendered.contains("[spec.yaml:2:7]"), "{rendered}");
        assert!(rendered.contains("at spec.yaml:2:7"), "{rendered}");
    }
}
