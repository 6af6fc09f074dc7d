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
        let loc = error
            .location()
            .map(|l| {
                let span = l.span();
                Loc {
                    line: l.line() as u32,
                    column: l.column() as u32,
                    offset: span.byte_offset().unwrap_or(0) as usize,
                    len: span.byte_len().unwrap_or(0) as usize,
                }
            })
            .unwrap_or_default();
        Diagnostic::new("yaml-syntax", syntax_message(&error.to_string()), loc)
    })
}

/// serde-saphyr's message may carry its own location and snippet; keep just the first line
/// of the message, since the diagnostic renders location and snippet itself.
fn syntax_message(raw: &str) -> String {
    let first = raw.lines().next().unwrap_or("invalid YAML").trim();
    let first = first.split(" at line ").next().unwrap_or(first);
    format!("invalid YAML: {}", first.trim_end_matches('.'))
}
