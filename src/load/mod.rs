//! Stage 1, load: spec text → `spec::Spec`, with every structural problem located.
//!
//! YAML syntax errors stop loading at the first one (the rest of the file cannot be read
//! reliably); a key repeated in a mapping, unknown keys and wrong types are all collected
//! (see `de`).

mod de;
mod node;

pub use de::{Located, Structural};
pub use node::{Kind, Node};

use crate::diagnostic::{Diagnostic, Loc};
use crate::spec::Spec;

/// Parses spec text. Returns the spec when its structure was sound (possibly with some
/// malformed entries set aside) and every problem found.
pub fn load(source: &str) -> Structural<Spec> {
    let failed = |diagnostic| Structural {
        value: None,
        problems: vec![diagnostic],
        set_aside: Default::default(),
        misread_entries: Vec::new(),
    };
    let mut root = match parse_yaml(source) {
        Ok(root) => root,
        Err(diagnostic) => return failed(diagnostic),
    };
    let mut repeated = Vec::new();
    drop_repeated_keys(&mut root, &mut repeated);
    if root.kind == Kind::Null {
        let diagnostic = Diagnostic::new("empty-spec", "the spec is empty", Loc::default())
            .help("run `bulwark init` for a commented starter spec");
        return failed(diagnostic);
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
        return failed(diagnostic);
    }
    let mut loaded = de::from_node::<Spec>(&root);
    loaded.problems.splice(0..0, repeated);
    loaded
}

/// Removes every later entry of a key a mapping repeats, anywhere in `node`, reporting each
/// at its place: the first one is read, and the rest of the spec is still checked.
fn drop_repeated_keys(node: &mut Node, problems: &mut Vec<Diagnostic>) {
    match &mut node.kind {
        Kind::Map(entries) => {
            let mut first: std::collections::HashMap<String, Loc> = Default::default();
            entries.retain(|(key, _)| {
                let Kind::Str(name) = &key.kind else {
                    return true;
                };
                match first.get(name) {
                    None => {
                        first.insert(name.clone(), key.loc);
                        true
                    }
                    Some(kept) => {
                        let problem = Diagnostic::new(
                            "duplicate-key",
                            format!("the key `{name}` appears twice in the same mapping"),
                            key.loc,
                        )
                        .help(format!(
                            "the first, on line {}, is the one read: remove or rename this one",
                            kept.line
                        ));
                        // (A mapping used through aliases is in the tree once per use.)
                        if !problems.contains(&problem) {
                            problems.push(problem);
                        }
                        false
                    }
                }
            });
            for (_, value) in entries {
                drop_repeated_keys(value, problems);
            }
        }
        Kind::Seq(items) => items
            .iter_mut()
            .for_each(|item| drop_repeated_keys(item, problems)),
        _ => {}
    }
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
    // Repeated keys reach the tree, where they are reported with everything else.
    options.duplicate_keys = serde_saphyr::options::DuplicateKeyPolicy::PassThrough;
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
        // A breach inside an alias comes wrapped in where the alias was used.
        let mut cause = &error;
        while let serde_saphyr::Error::AliasError { error, .. }
        | serde_saphyr::Error::WithSnippet { error, .. } = cause
        {
            cause = error;
        }
        match cause {
            serde_saphyr::Error::Budget { breach, .. } => {
                Diagnostic::new("yaml-too-large", budget_message(breach), loc).help(
                    "a spec is a small file: write repeated parts out rather than through aliases, and nest less",
                )
            }
            // The parser's own nesting limit.
            _ if error.to_string().contains("recursion limit exceeded") => Diagnostic::new(
                "yaml-too-large",
                "the spec nests deeper than bulwark reads",
                loc,
            )
            .help("a spec is a small file: nest less"),
            _ => Diagnostic::new("yaml-syntax", syntax_message(&error.to_string()), loc).help(
                "the YAML is not well-formed here; the rest of the spec is checked once it parses",
            ),
        }
    })
}

/// The YAML reader's limits (they stop alias bombs and runaway nesting), said in words.
fn budget_message(breach: &serde_saphyr::budget::BudgetBreach) -> String {
    use serde_saphyr::budget::BudgetBreach as B;
    match breach {
        B::Nodes { nodes } => format!(
            "the spec expands to more YAML nodes than bulwark reads ({nodes}); aliases that multiply each other are refused"
        ),
        B::Aliases { aliases } => {
            format!("the spec uses more aliases than bulwark reads ({aliases})")
        }
        B::AliasAnchorRatio { aliases, anchors } => format!(
            "the spec uses its anchors too often ({aliases} aliases of {anchors} anchors); aliases that multiply each other are refused"
        ),
        B::Anchors { anchors } => {
            format!("the spec defines more anchors than bulwark reads ({anchors})")
        }
        B::Depth { depth } => format!("the spec nests deeper than bulwark reads ({depth} levels)"),
        B::Events { events } => {
            format!("the spec has more YAML elements than bulwark reads ({events})")
        }
        B::ScalarBytes { total_scalar_bytes } => format!(
            "the spec's values are larger in total than bulwark reads ({total_scalar_bytes} bytes)"
        ),
        B::MergeKeys { merge_keys } => {
            format!("the spec uses more merge keys (`<<`) than bulwark reads ({merge_keys})")
        }
        B::Documents { documents } => {
            format!("the file holds more YAML documents than a spec has ({documents})")
        }
        _ => "the spec is larger than the YAML reader's limits allow".to_owned(),
    }
}

/// serde-saphyr's message may carry its own location and snippet; keep just the first line
/// of the message, since the diagnostic renders location and snippet itself.
fn syntax_message(raw: &str) -> String {
    let first = raw.lines().next().unwrap_or("invalid YAML").trim();
    let first = first.split(" at line ").next().unwrap_or(first);
    // (The library's message names its own functions.)
    if first.starts_with("multiple YAML documents") {
        return "invalid YAML: the file holds a second document (after a `---` line); a spec is one document".into();
    }
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

#[cfg(test)]
mod tests {
    use super::*;

    const BASE: &str = "bulwark: 1\napp: { name: x }\napi: { version: v1 }\n";

    fn codes(source: &str) -> Vec<(&'static str, u32, u32)> {
        load(source)
            .problems
            .iter()
            .map(|d| {
                (
                    d.code,
                    d.location.map_or(0, |l| l.line),
                    d.location.map_or(0, |l| l.column),
                )
            })
            .collect()
    }

    #[test]
    fn names_keep_their_location() {
        let source = format!(
            "{BASE}resources:\n  note:\n    fields: {{ title: {{ type: string }} }}\n    actions: {{}}\n"
        );
        let loaded = load(&source);
        assert!(loaded.problems.is_empty(), "{:?}", loaded.problems);
        let spec = loaded.value.expect("spec");
        let (name, resource) = spec.resources.first().expect("a resource");
        assert_eq!(
            (name.value.as_str(), name.loc.line, name.loc.column),
            ("note", 5, 3)
        );
        let (field, _) = resource.fields.first().expect("a field");
        assert_eq!((field.loc.line, field.loc.column), (6, 15));
        assert_eq!(
            &source[field.loc.offset..field.loc.offset + field.loc.len],
            "title"
        );
    }

    #[test]
    fn a_wrong_value_in_an_entry_is_read_as_a_stand_in() {
        let source =
            format!("{BASE}roles:\n  admin: {{ mfa: requird }}\n  member: {{}}\nresources: {{}}\n");
        let loaded = load(&source);
        // The entry is kept (the rest of it is still checked) and its place noted; the value
        // defines no section, so nothing is marked as read empty.
        assert!(loaded.set_aside.is_empty(), "{:?}", loaded.set_aside);
        assert_eq!(
            loaded
                .misread_entries
                .iter()
                .map(|l| (l.line, l.column))
                .collect::<Vec<_>>(),
            [(5, 3)]
        );
        assert_eq!(loaded.value.expect("spec").roles.len(), 2);
    }

    #[test]
    fn every_structural_problem_is_collected() {
        let source = format!(
            "{BASE}resources:\n  a:\n    fields: {{ n: {{ type: strng }}, m: {{ type: int, max: abc }} }}\n    actions: {{ read: {{ scop: y }} }}\n  b:\n    fields: 5\n    actions: {{}}\n"
        );
        let found = codes(&source);
        assert!(found.contains(&("invalid-value", 6, 26)), "{found:?}");
        assert!(found.contains(&("invalid-value", 6, 56)), "{found:?}");
        assert!(found.contains(&("unknown-key", 7, 24)), "{found:?}");
        assert!(found.contains(&("invalid-value", 9, 13)), "{found:?}");
        assert_eq!(found.len(), 4, "{found:?}");
    }

    #[test]
    fn every_missing_key_of_a_mapping_is_reported() {
        let source =
            format!("{BASE}identity: {{}}\nresources:\n  a: {{}}\n  b: {{ description: x }}\n");
        let loaded = load(&source);
        let mut missing: Vec<_> = loaded
            .problems
            .iter()
            .map(|d| (d.message.as_str(), d.location.map_or(0, |l| l.line)))
            .collect();
        missing.sort();
        assert_eq!(
            missing,
            [
                ("missing required key `actions`", 6),
                ("missing required key `actions`", 7),
                ("missing required key `audience`", 4),
                ("missing required key `fields`", 6),
                ("missing required key `fields`", 7),
                ("missing required key `issuer`", 4),
            ]
        );
        // Entries that lack keys are still set aside whole.
        assert_eq!(
            loaded
                .set_aside
                .iter()
                .filter(|n| !n.starts_with('*'))
                .collect::<Vec<_>>(),
            ["a", "b"]
        );
        assert!(loaded.value.expect("spec").resources.is_empty());
    }

    #[test]
    fn loading_stops_after_so_many_structural_problems() {
        let resources: String = (0..60)
            .map(|n| format!("  r{n}: {{ fields: {{ a: {{ type: int, max: x, pii: y }} }} }}\n"))
            .collect();
        let loaded = load(&format!("{BASE}resources:\n{resources}"));
        assert!(loaded.value.is_none());
        assert_eq!(loaded.problems.len(), de::MAX_STRUCTURAL_PROBLEMS + 1);
        let last = loaded.problems.last().expect("problems");
        assert_eq!((last.code, last.location), ("too-many-problems", None));
    }

    #[test]
    fn unknown_keys_suggest_the_closest_name() {
        let loaded = load(&format!("{BASE}resourcez: {{}}\n"));
        let unknown = loaded
            .problems
            .iter()
            .find(|d| d.code == "unknown-key")
            .expect("unknown key");
        assert_eq!(unknown.help.as_deref(), Some("did you mean `resources`?"));
    }

    #[test]
    fn yaml_one_one_booleans_stay_strings() {
        let source = format!(
            "{BASE}resources:\n  n:\n    fields: {{ NO: {{ type: string }}, y: {{ type: bool }} }}\n    actions: {{}}\n"
        );
        let loaded = load(&source);
        assert!(loaded.problems.is_empty(), "{:?}", loaded.problems);
        let spec = loaded.value.expect("spec");
        let fields: Vec<&str> = spec.resources[0]
            .fields
            .keys()
            .map(|k| k.value.as_str())
            .collect();
        assert_eq!(fields, ["NO", "y"]);
    }

    #[test]
    fn syntax_errors_stop_at_the_first_and_are_located() {
        let found = codes("bulwark: 1\napp: [x,\napi: {\n");
        assert_eq!(found.len(), 1);
        assert_eq!(found[0].0, "yaml-syntax");
        assert!(found[0].1 >= 2);
    }

    #[test]
    fn empty_and_comment_only_specs_are_empty() {
        assert_eq!(codes("")[0].0, "empty-spec");
        assert_eq!(codes("# only a comment\n")[0].0, "empty-spec");
        assert_eq!(codes("- a list\n")[0].0, "invalid-value");
    }

    /// An alias bomb and runaway nesting stop at the reader's limits, said in words, at the
    /// place they were reached; a line too long for a snippet is reported without one.
    #[test]
    fn the_reader_limits_are_said_in_words() {
        let mut bomb = String::from("a0: &a0 [x, x, x, x, x, x, x, x, x]\n");
        for n in 1..9 {
            let p = n - 1;
            bomb.push_str(&format!(
                "a{n}: &a{n} [*a{p}, *a{p}, *a{p}, *a{p}, *a{p}, *a{p}, *a{p}, *a{p}, *a{p}]\n"
            ));
        }
        let loaded = load(&bomb);
        let problem = loaded.problems.first().expect("a problem");
        assert_eq!(problem.code, "yaml-too-large");
        assert!(problem.message.contains("aliases"), "{}", problem.message);
        assert!(!problem.message.contains('{'), "{}", problem.message);
        assert!(problem.location.is_some_and(|l| l.line > 1));

        let deep = format!("a: {}\n", "[".repeat(100_000));
        let loaded = load(&deep);
        let problem = loaded.problems.first().expect("a problem");
        assert_eq!(problem.code, "yaml-too-large");
        assert!(
            problem.message.contains("nests deeper"),
            "{}",
            problem.message
        );
        let report = crate::diagnostic::Report::new("deep.yaml", deep.into(), loaded.problems);
        let rendered = report.render();
        assert!(rendered.len() < 1_000, "{rendered}");
        assert!(rendered.contains("at deep.yaml:1:"), "{rendered}");
    }
}
