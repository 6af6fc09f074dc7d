//! Every user name becomes an identifier here, in one place: Rust identifiers (keywords and
//! the generated code's own names avoided, non-ASCII spelled out), type names, SQL
//! identifiers within PostgreSQL's 63-byte limit, and URL path segments. Render only adds
//! fixed prefixes and suffixes whose namespaces cannot meet (`handle_x`, `apply_x`, `X_OP`,
//! `XInput`), and lowering rejects names that collide after conversion. Tested with hostile
//! names.

use heck::{ToSnakeCase, ToUpperCamelCase};
use sha2::{Digest, Sha256};

/// PostgreSQL truncates identifiers longer than this many bytes (NAMEDATALEN - 1).
pub const PG_MAX_IDENT: usize = 63;

/// The ASCII name a non-ASCII one reads as, or `None` for an ASCII name or one that reads as
/// nothing else. Each character confusable with an ASCII one (Unicode's TR39 skeletons:
/// Cyrillic `а` for `a`, fullwidth `ｍ` for `m`) is read as it; other characters stay. A check
/// on what a name means (card data) applies to this reading as well, so look-alike letters
/// cannot slip a name past it.
pub fn ascii_reading(name: &str) -> Option<String> {
    // A skeleton several ASCII characters share (`l`, `I` and `1`; `O` and `0`) reads as a
    // letter of the character's own case, and as a digit only failing any letter.
    static LOWER_FIRST: std::sync::LazyLock<Vec<(String, char)>> =
        std::sync::LazyLock::new(|| table(('a'..='z').chain('A'..='Z')));
    static UPPER_FIRST: std::sync::LazyLock<Vec<(String, char)>> =
        std::sync::LazyLock::new(|| table(('A'..='Z').chain('a'..='z')));
    fn table(letters: impl Iterator<Item = char>) -> Vec<(String, char)> {
        letters
            .chain('0'..='9')
            .chain(['_', '-'])
            .map(|c| (skeleton(c), c))
            .collect()
    }
    fn skeleton(c: char) -> String {
        unicode_security::skeleton(c.encode_utf8(&mut [0; 4])).collect()
    }
    if name.is_ascii() {
        return None;
    }
    let mut reading = String::with_capacity(name.len());
    for c in name.chars() {
        if c.is_ascii() {
            reading.push(c);
            continue;
        }
        let shape = skeleton(c);
        let table = if c.is_uppercase() {
            &UPPER_FIRST
        } else {
            &LOWER_FIRST
        };
        match table.iter().find(|(ascii, _)| *ascii == shape) {
            Some((_, ascii)) => reading.push(*ascii),
            // A ligature (`ﬁ`) reads as several characters.
            None if shape.is_ascii() => reading.push_str(&shape),
            None => reading.push(c),
        }
    }
    (reading != name).then_some(reading)
}

/// The ASCII snake_case form of a user's name; the key used to detect collisions.
///
/// Non-ASCII characters are spelled as their code point (`café` → `caf_u00e9`) so the result
/// is a plain identifier everywhere (Rust, SQL, URLs, JSON) and still distinct per name.
pub fn snake(name: &str) -> String {
    let mut ascii = String::with_capacity(name.len());
    for c in name.chars() {
        if c.is_ascii_alphanumeric() {
            ascii.push(c);
        } else if c.is_ascii() {
            ascii.push('_');
        } else {
            ascii.push_str(&format!("_u{:04x}_", c as u32));
        }
    }
    let mut snake = ascii.to_snake_case();
    if snake.is_empty() {
        snake.push_str("unnamed");
    }
    if snake.starts_with(|c: char| c.is_ascii_digit()) {
        snake.insert(0, 'n');
    }
    snake
}

/// A Rust value identifier (field, function, module) for a user's name.
///
/// Keywords get a trailing underscore rather than `r#`, because `r#` is not allowed for
/// `self`, `super`, `crate` and `Self`, and the same spelling then works in every position.
pub fn rust_ident(name: &str) -> String {
    let snake = snake(name);
    if is_rust_keyword(&snake) || RESERVED_RUST.contains(&snake.as_str()) {
        format!("{snake}_")
    } else {
        snake
    }
}

/// A Rust type name (struct, enum, variant) for a user's name.
///
/// Keywords and names the generated code uses get a `Type` suffix (`Self` → `SelfType`),
/// which keeps the name UpperCamelCase; lowering compares the final type names, so a user's
/// `self_type` next to `Self` is reported as a collision rather than shadowed.
pub fn rust_type(name: &str) -> String {
    let camel = snake(name).to_upper_camel_case();
    if is_rust_keyword(&camel) || RESERVED_TYPES.contains(&camel.as_str()) {
        format!("{camel}Type")
    } else {
        camel
    }
}

/// Names the generated crates use for their own modules, functions and dependencies; a
/// resource, field or action named like one of them gets a trailing underscore instead.
const RESERVED_RUST: &[&str] = &[
    "tenant",
    "db",
    "state",
    "principal",
    "router",
    "problem",
    "guard",
    "routes",
    "resources",
    "lib",
    "main",
    "check",
    "serde",
    "serde_json",
    "uuid",
    "chrono",
    "rust_decimal",
    "std",
    "core",
    "alloc",
    "sqlx",
    "axum",
    "tokio",
    "tracing",
    "reqwest",
    "tower",
    "server",
    "types",
    "tests",
    "new",
    "with_token",
    "request",
    "send",
    "input",
    "row",
    "id",
    "tx",
    "builtin",
];

/// Characters that must never appear in a name or literal: control characters, and the
/// invisible and direction-changing ones that make code read differently than it runs
/// (rustc refuses them in comments and literals).
pub fn is_invisible(c: char) -> bool {
    c.is_control()
        || matches!(c, '\u{200B}'..='\u{200F}' | '\u{202A}'..='\u{202E}' | '\u{2060}'..='\u{2069}' | '\u{061C}' | '\u{FEFF}')
}
/// Type names used by the generated code or the prelude.
const RESERVED_TYPES: &[&str] = &[
    "Self",
    "Option",
    "Result",
    "String",
    "Vec",
    "Box",
    "Some",
    "None",
    "Ok",
    "Err",
    "Uuid",
    "Money",
    "Problem",
    "TenantId",
    "Principal",
    "Action",
    "Page",
    "Json",
    "Router",
    "State",
    "Decimal",
    "Date",
    "DateTime",
    "Utc",
    "Error",
    "Client",
    "Value",
    // Names of the generated modules' imports.
    "Serialize",
    "Deserialize",
    "FieldError",
    // Cedar's own type names: an entity type named like one shadows it in the schema.
    "Long",
    "Bool",
    "Set",
    "Record",
    "Entity",
    "Extension",
];

fn is_rust_keyword(word: &str) -> bool {
    const KEYWORDS: &[&str] = &[
        "as", "break", "const", "continue", "crate", "else", "enum", "extern", "false", "fn",
        "for", "if", "impl", "in", "let", "loop", "match", "mod", "move", "mut", "pub", "ref",
        "return", "self", "Self", "static", "struct", "super", "trait", "true", "type", "unsafe",
        "use", "where", "while", "async", "await", "dyn", "abstract", "become", "box", "do",
        "final", "macro", "override", "priv", "typeof", "unsized", "virtual", "yield", "try",
        "gen", "union", "raw", "safe",
    ];
    KEYWORDS.contains(&word)
}

/// A SQL identifier (unquoted form) no longer than PostgreSQL keeps, made unique by a hash
/// suffix when shortened: two long names sharing their first 63 bytes stay distinct.
pub fn sql_name(name: &str) -> String {
    let snake = snake(name);
    shorten(&snake, PG_MAX_IDENT)
}

/// Shortens `s` to at most `max` bytes deterministically, keeping a readable prefix and
/// appending 8 hex digits of its SHA-256.
pub fn shorten(s: &str, max: usize) -> String {
    if s.len() <= max {
        return s.to_owned();
    }
    let digest = Sha256::digest(s.as_bytes());
    let suffix = hex::encode(&digest[..4]);
    let mut keep = max - suffix.len() - 1;
    while !s.is_char_boundary(keep) {
        keep -= 1;
    }
    format!("{}_{suffix}", &s[..keep])
}

/// The URL path segment for a resource: the plural of its snake name, kebab-cased.
pub fn path_segment(name: &str) -> String {
    plural(&snake(name)).replace('_', "-")
}

/// English plural, good enough for resource names; a spec can override with `path:`.
pub fn plural(word: &str) -> String {
    if word.ends_with('s') || word.ends_with('x') || word.ends_with("ch") || word.ends_with("sh") {
        format!("{word}es")
    } else if let Some(stem) = word.strip_suffix('y')
        && !stem.ends_with(['a', 'e', 'i', 'o', 'u'])
    {
        format!("{stem}ies")
    } else {
        format!("{word}s")
    }
}

/// A crate name for the app (`ledgerly-server`): lowercase ASCII, digits and dashes.
pub fn crate_name(app: &str, suffix: &str) -> String {
    let base = snake(app).replace('_', "-");
    format!("{base}-{suffix}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keywords_become_valid_identifiers() {
        for word in [
            "type", "match", "self", "Self", "crate", "super", "async", "fn",
        ] {
            let ident = rust_ident(word);
            assert!(
                syn::parse_str::<syn::Ident>(&ident).is_ok(),
                "{word} -> {ident}"
            );
            let ty = rust_type(word);
            assert!(syn::parse_str::<syn::Ident>(&ty).is_ok(), "{word} -> {ty}");
            assert!(!ty.contains('_'), "{word} -> {ty} is not UpperCamelCase");
        }
    }

    #[test]
    fn unicode_is_spelled_out_distinctly() {
        assert_eq!(snake("café"), "caf_u00e9");
        assert_ne!(snake("名前"), snake("名字"));
        assert!(snake("名前").is_ascii());
    }

    #[test]
    fn case_variants_collide() {
        assert_eq!(snake("LineItem"), snake("line_item"));
        assert_eq!(snake("dueDate"), snake("due-date"));
    }

    #[test]
    fn long_names_are_shortened_without_collisions() {
        let a = "a".repeat(70) + "_one";
        let b = "a".repeat(70) + "_two";
        assert!(sql_name(&a).len() <= PG_MAX_IDENT);
        assert_ne!(sql_name(&a), sql_name(&b));
        assert_eq!(sql_name(&a), sql_name(&a));
        let c = "é".repeat(40);
        assert!(sql_name(&c).len() <= PG_MAX_IDENT);
    }

    #[test]
    fn plurals() {
        assert_eq!(path_segment("invoice"), "invoices");
        assert_eq!(path_segment("exchange_rate"), "exchange-rates");
        assert_eq!(path_segment("company"), "companies");
        assert_eq!(path_segment("status"), "statuses");
    }
}
