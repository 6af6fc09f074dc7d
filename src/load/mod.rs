//! Stage 1, load: spec text → `spec::Spec`, with every structural problem located.
//!
//! YAML syntax errors stop loading at the first one (the rest of the file cannot be read
//! reliably); unknown keys and wrong types are all collected (see `de`).

mod de;
mod node;

pub use de::Located;
pub use node::{Kind, Node};

use crate::diagnostic::{Diagnostic, Loc};
use crate::spec::Spec;

/// Parses spec text. Returns the spec when its structure was sound (possibly with some
/// malformed entries set aside) and every problem found.
pub fn load(source: &str) -> (Option<Spec>, Vec<Diagnostic>) {
    let root = match parse_yaml(source) {
        Ok(root) => root,
        Err(diagnostic) => return (None, vec![diagnostic]),
    };
    if root.kind == Kind::Null {
        let diagnostic = Diagnostic::new("empty-spec", "the spec is empty", Loc::default())
            .help("run `bulwark init` for a commented starter spec");
        return (None, vec![diagnostic]);
    }
    if !matches!(root.kind, Kind::Map(_)) {
        let diagnostic = Diagnostic::new(
            "invalid-value",
            format!(
                "expected the spec to be a mapping, found {}",
                root.kind.describe()
            ),
            root.loc,
        )
        .help("a spec starts with `bulwark: 1`, then `app:`, `api:` and `resources:`");
        return (None, vec![diagnostic]);
    }
    de::from_node::<Spec>(&root)
}

/// Parses YAML text into a located tree; the first syntax error is returned located.
pub fn parse_yaml(source: &str) -> Result<Node, Diagnostic> {
    if source.trim().is_empty() {
        return Err(
            Diagnostic::new("empty-spec", "the spec is empty", Loc::default())
                .help("run `bulwark init` for a commented starter spec"),
        );
    }
    // YAML 1.2 booleans only: a field called `n` or a country code `NO` stays a string.
    let mut options = serde_saphyr::Options::default();
    options.strict_booleans = true;
    options.with_snippet = false;
    serde_saphyr::from_str_with_options::<Node>(source, options).map_err(|error| {
        // The snippet is placed from line and column: the parser's byte span is not always
        // set for syntax errors.
        let loc = error
            .location()
            .map(|l| {
                let (line, column) = (l.line() as u32, l.column() as u32);
                Loc {
                    line,
                    column,
                    offset: byte_offset(source, line, column),
                    len: 1,
                }
            })
            .unwrap_or_default();
        Diagnostic::new("yaml-syntax", syntax_message(&error.to_string()), loc).help(
            "the YAML is not well-formed here; the rest of the spec is checked once it parses",
        )
    })
}

/// serde-saphyr's message may carry its own location and snippet; keep just the first line
/// of the message, since the diagnostic renders location and snippet itself.
fn syntax_message(raw: &str) -> String {
    let first = raw.lines().next().unwrap_or("invalid YAML").trim();
    let first = first.split(" at line ").next().unwrap_or(first);
    format!("invalid YAML: {}", first.trim_end_matches('.'))
}

/// The byte offset of a 1-based line and character column in `source`.
fn byte_offset(source: &str, line: u32, column: u32) -> usize {
    let start: usize = source
        .split_inclusive('\n')
        .take(line.saturating_sub(1) as usize)
        .map(str::len)
        .sum();
    let rest = source.get(start..).unwrap_or("");
    let within = rest
        .char_indices()
        .nth(column.saturating_sub(1) as usize)
        .map_or(rest.len(), |(i, _)| i);
    start + within
}
