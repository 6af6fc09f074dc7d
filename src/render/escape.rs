//! Escapers: spec strings are untrusted (a low-code platform writes them), so each reaches
//! output only through the escaper for its target. Context structs for templates hold these
//! escaped forms, never raw spec text.

/// A double-quoted PostgreSQL identifier (`"order"`, `"a""b"`).
pub fn sql_ident(name: &str) -> String {
    format!("\"{}\"", name.replace('"', "\"\""))
}

/// The name inside a quoted identifier (`"a""b"` → `a"b`); an unquoted name as it is.
pub fn sql_unquote(name: &str) -> String {
    name.strip_prefix('"')
        .and_then(|n| n.strip_suffix('"'))
        .map(|n| n.replace("\"\"", "\""))
        .unwrap_or_else(|| name.to_owned())
}

/// A PostgreSQL string literal: the quote doubled, NUL (which PostgreSQL rejects in text)
/// dropped. Text with a backslash is written `E'...'` with the backslash doubled too: in a
/// plain literal a backslash is plain only while `standard_conforming_strings` is on (a
/// database or role can turn it off, and `\'` would then end the literal).
pub fn sql_literal(text: &str) -> String {
    let text = text.replace('\0', "").replace('\'', "''");
    if text.contains('\\') {
        format!("E'{}'", text.replace('\\', "\\\\"))
    } else {
        format!("'{text}'")
    }
}

/// A dollar-quoted PostgreSQL function body whose tag does not occur in `body`, so nothing
/// spec-derived inside it (a quoted identifier holding `$$`, say) can end it early.
pub fn sql_function_body(body: &str) -> String {
    let mut tag = String::from("$body$");
    let mut n = 0;
    while body.contains(&tag) {
        n += 1;
        tag = format!("$body{n}$");
    }
    format!("{tag}\n{body}\n{tag}")
}

/// A basic TOML string (JSON-compatible escapes).
pub fn toml_string(text: &str) -> String {
    serde_json::to_string(text).unwrap_or_else(|_| "\"\"".into())
}

/// Inline Markdown text: one line, with every character that could start markup, a link,
/// HTML or a table cell escaped.
pub fn markdown(text: &str) -> String {
    let text = one_line(text);
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            // Entities, not backslashes: no renderer reads them as HTML.
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '&' => out.push_str("&amp;"),
            // Emphasis, code, links and images, table cells, headings, strikethrough, and
            // `scheme:` autolinks.
            // `$` starts math on GitHub.
            '\\' | '`' | '*' | '_' | '[' | ']' | '|' | '#' | '!' | '~' | ':' | '$' => {
                out.push('\\');
                out.push(c);
            }
            // `www.` starts an autolink.
            '.' if out.to_ascii_lowercase().ends_with("www") => out.push_str("\\."),
            c => out.push(c),
        }
    }
    out
}

/// Markdown inline code in a table cell: the text inside a code span long enough not to be
/// closed by it.
pub fn markdown_code(text: &str) -> String {
    // A `|` ends a table cell even inside a code span; GitHub reads `\|` there as `|`.
    code_span(&one_line(text).replace('|', "\\|"))
}

/// Markdown inline code outside tables (where `\|` would show its backslash).
pub fn markdown_code_span(text: &str) -> String {
    code_span(&one_line(text))
}

fn code_span(text: &str) -> String {
    let longest = text.split(|c| c != '`').map(str::len).max().unwrap_or(0);
    let fence = "`".repeat(longest + 1);
    // A space on each side only where the text itself starts or ends with a backtick.
    if text.starts_with('`') || text.ends_with('`') {
        format!("{fence} {text} {fence}")
    } else {
        format!("{fence}{text}{fence}")
    }
}

/// Text for a Rust doc comment: one line, code fences neutralised (generated crates also
/// set `doctest = false`), nothing that rustdoc would read as HTML or an intra-doc link.
/// Single backticks stay: an inline code span cannot run anything.
pub fn rust_doc(text: &str) -> String {
    let line = one_line(text).replace("```", "'''").replace("~~~", "'''");
    let mut out = String::with_capacity(line.len());
    for c in line.chars() {
        match c {
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '[' => out.push('('),
            ']' => out.push(')'),
            c => out.push(c),
        }
    }
    out
}

/// Collapses control characters, line breaks and invisible or direction-changing
/// characters into single spaces.
pub fn one_line(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut space = false;
    for c in text.chars() {
        if crate::model::names::is_invisible(c) || c.is_whitespace() {
            if !space && !out.is_empty() {
                out.push(' ');
            }
            space = true;
        } else {
            out.push(c);
            space = false;
        }
    }
    out.trim_end().to_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sql() {
        assert_eq!(sql_ident("a\"b"), "\"a\"\"b\"");
        assert_eq!(
            sql_literal("'); DROP TABLE x; --"),
            "'''); DROP TABLE x; --'"
        );
        // A backslash cannot end the literal whatever `standard_conforming_strings` says.
        assert_eq!(sql_literal(r"a\'; x"), r"E'a\\''; x'");
        assert_eq!(sql_literal(r"\"), r"E'\\'");
    }

    #[test]
    fn markdown_cannot_open_markup() {
        let out = markdown("</details><script>alert(1)</script> [x](javascript:alert(1))\n# h");
        assert!(!out.contains("<script"));
        // Every `]` is escaped, so no `](` can close a link text.
        assert!(!out.replace("\\]", "").contains("]("));
        assert!(!markdown("see www.evil.example").contains("www."));
        assert!(!markdown("javascript:alert(1)").contains("javascript:"));
        assert!(!out.contains('\n'));
        assert_eq!(markdown_code("a`b"), "``a`b``");
        assert_eq!(markdown_code("`x"), "`` `x ``");
    }

    #[test]
    fn invisible_characters_are_dropped() {
        assert_eq!(one_line("admin \u{202E} evil\u{200B}"), "admin evil");
        assert_eq!(markdown_code("a|b"), "`a\\|b`");
    }

    #[test]
    fn toml_strings_cannot_end_early() {
        let out = toml_string("a\"b\\c]\n[x]\u{7}");
        assert_eq!(out, r#""a\"b\\c]\n[x]\u0007""#);
        let parsed: toml::Table = format!("k = {out}").parse().expect("the line parses");
        assert_eq!(parsed["k"].as_str(), Some("a\"b\\c]\n[x]\u{7}"));
    }

    #[test]
    fn doc_text_has_no_fences() {
        let out = rust_doc("```rust\nfn evil() {}\n```");
        assert!(!out.contains("```"));
        assert!(!out.contains('\n'));
        let out = rust_doc("~~~~rust\ncompile_error!(\"ran\");\n~~~");
        assert!(!out.contains("~~~"), "{out}");
    }
}
