//! A serde deserializer over the located YAML tree that keeps going after a mistake.
//!
//! Unknown keys are reported and skipped without failing. A value of the wrong type is
//! recorded and read, in the next pass, as an empty stand-in of the type asked for, so the
//! rest of its entry and of the spec are still checked; a missing key likewise, one pass per
//! key. Where a stand-in cannot stand for the value, or would empty a list or mapping of a
//! collection entry (an action's roles), the entry of the nearest user-named collection (one
//! resource, one field, one action) is set aside instead. So one spec run reports every
//! structural mistake, not just the first, up to [`MAX_STRUCTURAL_PROBLEMS`]. `Located<T>`
//! values carry their position so later stages can point back into the spec.

use super::node::{Kind, Node};
use crate::diagnostic::{Diagnostic, Loc, did_you_mean};
use schemars::JsonSchema;
use serde::de::{
    self, Deserialize, DeserializeSeed, Deserializer, EnumAccess, IntoDeserializer, MapAccess,
    SeqAccess, VariantAccess, Visitor,
};
use std::borrow::Cow;
use std::cell::RefCell;
use std::collections::BTreeSet;
use std::fmt;
use std::hash::{Hash, Hasher};

const LOCATED: &str = "$bulwark::Located";

/// Each pass finds one structural problem more, and a pass reads the whole spec: past this
/// many, loading stops (with what it found), so a spec made of mistakes cannot hold the
/// loader for minutes.
pub const MAX_STRUCTURAL_PROBLEMS: usize = 100;

/// A spec value together with where it was written.
#[derive(Clone, Debug)]
pub struct Located<T> {
    pub value: T,
    pub loc: Loc,
}

impl<T> Located<T> {
    pub fn new(value: T, loc: Loc) -> Self {
        Located { value, loc }
    }
}

impl<T> std::ops::Deref for Located<T> {
    type Target = T;
    fn deref(&self) -> &T {
        &self.value
    }
}

// Equality and hashing look at the value only: two keys are the same name wherever written.
impl<T: PartialEq> PartialEq for Located<T> {
    fn eq(&self, other: &Self) -> bool {
        self.value == other.value
    }
}
impl<T: Eq> Eq for Located<T> {}
impl<T: Hash> Hash for Located<T> {
    fn hash<H: Hasher>(&self, state: &mut H) {
        self.value.hash(state)
    }
}
impl<T: PartialOrd> PartialOrd for Located<T> {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        self.value.partial_cmp(&other.value)
    }
}
impl<T: Ord> Ord for Located<T> {
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        self.value.cmp(&other.value)
    }
}

// Lets name-keyed maps be looked up by plain `&str` (hashing agrees: a name hashes as its text).
impl std::borrow::Borrow<str> for Located<String> {
    fn borrow(&self) -> &str {
        &self.value
    }
}

impl<T: JsonSchema> JsonSchema for Located<T> {
    fn inline_schema() -> bool {
        T::inline_schema()
    }
    fn schema_name() -> Cow<'static, str> {
        T::schema_name()
    }
    fn schema_id() -> Cow<'static, str> {
        T::schema_id()
    }
    fn json_schema(generator: &mut schemars::SchemaGenerator) -> schemars::Schema {
        T::json_schema(generator)
    }
}

impl<'de, T: Deserialize<'de>> Deserialize<'de> for Located<T> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct LocatedVisitor<T>(std::marker::PhantomData<T>);
        impl<'de, T: Deserialize<'de>> Visitor<'de> for LocatedVisitor<T> {
            type Value = Located<T>;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a located value")
            }
            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
                let [line, column, offset, len]: [u64; 4] = seq
                    .next_element()?
                    .ok_or_else(|| de::Error::custom("located value without a location"))?;
                let value = seq
                    .next_element()?
                    .ok_or_else(|| de::Error::custom("located value without a value"))?;
                let loc = Loc {
                    line: line as u32,
                    column: column as u32,
                    offset: offset as usize,
                    len: len as usize,
                };
                Ok(Located { value, loc })
            }
        }
        deserializer.deserialize_newtype_struct(LOCATED, LocatedVisitor(std::marker::PhantomData))
    }
}

/// A deserialization failure, with where it happened and which collection entry to set aside.
#[derive(Debug)]
pub struct Error {
    message: String,
    help: Option<String>,
    loc: Option<Loc>,
    /// The key node (by address) of the innermost collection entry the failure lies in.
    entry: Option<usize>,
    /// The node (by address) where it failed.
    node: Option<usize>,
    /// The required key whose absence it reports, if that is what it reports.
    missing: Option<&'static str>,
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for Error {}

impl de::Error for Error {
    fn custom<T: fmt::Display>(msg: T) -> Self {
        Error {
            message: msg.to_string(),
            help: None,
            loc: None,
            entry: None,
            node: None,
            missing: None,
        }
    }

    fn unknown_variant(variant: &str, expected: &'static [&'static str]) -> Self {
        let mut error = Error::custom(format!("unknown value `{variant}`"));
        error.help = Some(match did_you_mean(variant, expected.iter().copied()) {
            Some(best) => format!("did you mean `{best}`?"),
            None => format!("expected one of: {}", quoted_list(expected)),
        });
        error
    }

    fn missing_field(field: &'static str) -> Self {
        let mut error = Error::custom(format!("missing required key `{field}`"));
        error.help = Some(format!("add `{field}:` here"));
        error.missing = Some(field);
        error
    }

    fn invalid_type(unexp: de::Unexpected<'_>, exp: &dyn de::Expected) -> Self {
        Error::custom(format!(
            "expected {}, found {}",
            describe_expected(exp),
            describe_unexpected(unexp)
        ))
    }

    fn invalid_value(unexp: de::Unexpected<'_>, exp: &dyn de::Expected) -> Self {
        Error::custom(format!(
            "expected {}, found {}",
            describe_expected(exp),
            describe_unexpected(unexp)
        ))
    }
}

/// Says what serde's primitive visitors expect in the spec's words, not Rust's.
fn describe_expected(exp: &dyn de::Expected) -> String {
    let raw = exp.to_string();
    match raw.as_str() {
        "u8" | "u16" | "u32" | "u64" | "usize" => "a whole number, 0 or more".into(),
        "i8" | "i16" | "i32" | "i64" | "isize" => "an integer".into(),
        "f32" | "f64" => "a number".into(),
        "a boolean" => "`true` or `false`".into(),
        _ => raw,
    }
}

fn describe_unexpected(unexp: de::Unexpected<'_>) -> String {
    match unexp {
        de::Unexpected::Map => "a mapping".into(),
        de::Unexpected::Seq => "a list".into(),
        de::Unexpected::Unit => "nothing".into(),
        other => other.to_string(),
    }
}

fn quoted_list(items: &[&str]) -> String {
    items
        .iter()
        .map(|i| format!("`{i}`"))
        .collect::<Vec<_>>()
        .join(", ")
}

/// State shared by one deserialization pass.
#[derive(Default)]
struct Context {
    /// Problems that did not stop the pass (unknown keys).
    problems: RefCell<Vec<Diagnostic>>,
    /// Collection entries set aside after an earlier pass failed inside them.
    skipped: BTreeSet<usize>,
    /// Collection entries currently being deserialized, innermost last.
    entries: RefCell<Vec<usize>>,
    /// Values that an earlier pass found of the wrong type: read as an empty value of the
    /// type asked for, so the rest of the spec is still read and checked (what follows from
    /// the stand-in at its place is not reported). Inside a collection entry only where the
    /// stand-in is no emptied list or mapping (see `emptied`).
    poisoned: BTreeSet<usize>,
    /// Required keys that an earlier pass found missing, by their mapping (its address):
    /// each reads as a stand-in, so the next pass can find the mapping's other missing keys.
    missing: BTreeSet<(usize, &'static str)>,
    /// The keys given a stand-in because their mapping lacked them (outside any entry).
    stood_in: RefCell<BTreeSet<&'static str>>,
    /// Collection entries where a value of the wrong type would be read as an empty list or
    /// mapping: set aside instead, since an emptied part (an action's roles, a resource's
    /// fields) would make the checks report what follows from it.
    emptied: RefCell<BTreeSet<usize>>,
}

/// What one structural pass over the tree found.
pub struct Structural<T> {
    /// The value built from the well-formed entries, if the root itself was well-formed.
    pub value: Option<T>,
    /// Every structural problem.
    pub problems: Vec<Diagnostic>,
    /// Names of the collection entries set aside as malformed: they were reported here, so
    /// later stages do not report references to them as undefined.
    pub set_aside: BTreeSet<String>,
    /// Where the collection entries are named that hold a value read as a stand-in: what
    /// later stages find wrong with such an entry as a whole follows from the stand-in.
    pub misread_entries: Vec<Loc>,
}

/// Deserializes `T` from `root`, collecting every structural problem.
pub fn from_node<T: for<'de> Deserialize<'de>>(root: &Node) -> Structural<T> {
    let mut skipped = BTreeSet::new();
    let mut poisoned = BTreeSet::new();
    let mut missing = BTreeSet::new();
    // Collection entries that lack a required key: read with stand-ins until every key
    // they lack is known, then set aside like any other malformed entry.
    let mut lacking = BTreeSet::new();
    // Collection entries holding a value of the wrong type, read as a stand-in so the rest
    // of the entry is still checked (set aside instead if the stand-in fails too).
    let mut misread = BTreeSet::new();
    // (Values read as stand-ins inside entries: they define no section.)
    let mut in_entries = BTreeSet::new();
    // Every pass reports the unknown keys it saw; later passes skip the failed entries, so
    // the union over all passes is kept (without repeats).
    let mut problems: Vec<Diagnostic> = Vec::new();
    let mut failures = Vec::new();
    let mut stood_in = BTreeSet::new();
    let mut passes = 0;
    let value = loop {
        passes += 1;
        if passes > MAX_STRUCTURAL_PROBLEMS {
            failures.push(Diagnostic {
                code: "too-many-problems",
                message: format!(
                    "more than {MAX_STRUCTURAL_PROBLEMS} structural problems: the rest of the spec is not checked"
                ),
                location: None,
                help: Some("fix the problems above and run again".into()),
            });
            break None;
        }
        let context = Context {
            skipped: skipped.clone(),
            poisoned: poisoned.clone(),
            missing: missing.clone(),
            ..Context::default()
        };
        let result = T::deserialize(NodeDe {
            node: root,
            cx: &context,
        });
        for problem in context.problems.into_inner() {
            if !problems.contains(&problem) {
                problems.push(problem);
            }
        }
        stood_in = context.stood_in.into_inner();
        let emptied = context.emptied.into_inner();
        if !emptied.is_subset(&skipped) {
            skipped.extend(emptied);
            continue;
        }
        match result {
            Ok(_) if !lacking.is_subset(&skipped) => skipped.extend(lacking.iter().copied()),
            Ok(value) => break Some(value),
            Err(error) => {
                let help = error
                    .help
                    .unwrap_or_else(|| "`bulwark schema` prints what every key accepts".into());
                let failure = Diagnostic {
                    code: "invalid-value",
                    message: error.message,
                    location: error.loc,
                    help: Some(help),
                };
                // (A node a stand-in cannot stand for fails again in the next pass; a
                // stand-in itself is at no place, and what it stands for was reported.)
                if !failures.contains(&failure) && failure.location.is_some_and(|l| l.is_known()) {
                    failures.push(failure);
                }
                match (error.entry, error.node) {
                    (entry, Some(node))
                        if let Some(key) = error.missing
                            && missing.insert((node, key)) =>
                    {
                        lacking.extend(entry);
                        continue;
                    }
                    (Some(entry), Some(node))
                        if !lacking.contains(&entry) && poisoned.insert(node) =>
                    {
                        misread.insert(entry);
                        in_entries.insert(node);
                        continue;
                    }
                    (Some(entry), _) if skipped.insert(entry) => continue,
                    (None, Some(node)) if poisoned.insert(node) => continue,
                    _ => break None,
                }
            }
        }
    };
    problems.extend(failures);
    // Entries set aside by name; a section read as a stand-in (empty) as `*` and its key, so
    // that names it would have defined are not reported as undefined.
    let set_aside = skipped
        .iter()
        .filter_map(|&entry| key_name(root, entry))
        .chain(
            poisoned
                .difference(&in_entries)
                .filter_map(|&node| key_of_value(root, node))
                .chain(stood_in.iter().map(|key| (*key).to_owned()))
                .map(|key| format!("*{key}")),
        )
        .collect();
    let misread_entries = misread
        .difference(&skipped)
        .filter_map(|&entry| loc_at(root, entry))
        .collect();
    Structural {
        value,
        problems,
        set_aside,
        misread_entries,
    }
}

/// Where the node at `address` (a key, a value or a list item) stands, somewhere in `node`.
fn loc_at(node: &Node, address: usize) -> Option<Loc> {
    if std::ptr::eq(node, address as *const Node) {
        return Some(node.loc);
    }
    match &node.kind {
        Kind::Map(entries) => entries
            .iter()
            .find_map(|(key, value)| loc_at(key, address).or_else(|| loc_at(value, address))),
        Kind::Seq(items) => items.iter().find_map(|item| loc_at(item, address)),
        _ => None,
    }
}

/// The text of the key node at `address`, if it is a string key somewhere in `node`.
fn key_name(node: &Node, address: usize) -> Option<String> {
    key_where(node, &|key, _| std::ptr::eq(key, address as *const Node))
}

/// The text of the key whose value is the node at `address`, somewhere in `node`.
fn key_of_value(node: &Node, address: usize) -> Option<String> {
    key_where(node, &|_, value| {
        std::ptr::eq(value, address as *const Node)
    })
}

/// The text of the first string key, anywhere in `node`, whose entry `found` picks.
fn key_where(node: &Node, found: &dyn Fn(&Node, &Node) -> bool) -> Option<String> {
    match &node.kind {
        Kind::Map(entries) => entries.iter().find_map(|(key, value)| {
            if found(key, value) {
                match &key.kind {
                    Kind::Str(name) => Some(name.clone()),
                    _ => None,
                }
            } else {
                key_where(value, found)
            }
        }),
        Kind::Seq(items) => items.iter().find_map(|item| key_where(item, found)),
        _ => None,
    }
}

struct NodeDe<'a> {
    node: &'a Node,
    cx: &'a Context,
}

impl<'a> NodeDe<'a> {
    fn at(&self, node: &'a Node) -> NodeDe<'a> {
        NodeDe { node, cx: self.cx }
    }

    /// Fills in location and collection entry on an error that has none yet.
    fn locate(&self, mut error: Error) -> Error {
        if error.loc.is_none() {
            error.loc = Some(self.node.loc);
        }
        if error.entry.is_none() {
            error.entry = self.cx.entries.borrow().last().copied();
        }
        if error.node.is_none() {
            error.node = Some(self.node as *const Node as usize);
        }
        error
    }

    /// Read as a stand-in: a scalar of the wrong type, a mapping that lacked a key, or a
    /// stand-in for a missing key itself (at no place: line 0).
    fn poisoned(&self) -> bool {
        self.node.loc.line == 0
            || self
                .cx
                .poisoned
                .contains(&(self.node as *const Node as usize))
    }

    /// Notes that this poisoned node, a value written in the spec, is read as an empty list
    /// or mapping inside a collection entry (see `Context::emptied`).
    fn emptied(&self) {
        if self.node.loc.line != 0
            && let Some(&entry) = self.cx.entries.borrow().last()
        {
            self.cx.emptied.borrow_mut().insert(entry);
        }
    }

    fn expected(&self, what: &str) -> Error {
        self.locate(<Error as de::Error>::custom(format!(
            "expected {what}, found {}",
            self.node.kind.describe()
        )))
    }
}

/// A key named `field` and a null value at no place (line 0): the stand-in for a key a
/// mapping lacked. One pair per field name of the spec's types, made once and kept.
fn stand_in_entry(field: &'static str) -> (&'static Node, &'static Node) {
    static MADE: std::sync::OnceLock<
        std::sync::Mutex<std::collections::HashMap<&'static str, &'static (Node, Node)>>,
    > = std::sync::OnceLock::new();
    let mut made = MADE
        .get_or_init(Default::default)
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    let entry = *made.entry(field).or_insert_with(|| {
        let nowhere = Loc::default();
        Box::leak(Box::new((
            Node {
                loc: nowhere,
                kind: Kind::Str(field.to_owned()),
            },
            Node {
                loc: nowhere,
                kind: Kind::Null,
            },
        )))
    });
    (&entry.0, &entry.1)
}

/// `deserialize_*` methods that give a poisoned node's stand-in, else read the node.
macro_rules! stand_in {
    ($($method:ident => $visit:ident($value:expr),)*) => {
        $(
            fn $method<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Error> {
                if self.poisoned() {
                    return visitor.$visit($value).map_err(|e| self.locate(e));
                }
                self.deserialize_any(visitor)
            }
        )*
    };
}

impl<'de, 'a> Deserializer<'de> for NodeDe<'a> {
    type Error = Error;

    fn deserialize_any<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Error> {
        let result = match &self.node.kind {
            Kind::Null => visitor.visit_unit(),
            Kind::Bool(b) => visitor.visit_bool(*b),
            Kind::Int(i) => visitor.visit_i64(*i),
            Kind::Float(f) => visitor.visit_f64(*f),
            Kind::Str(s) => visitor.visit_str(s),
            Kind::Seq(items) => visitor.visit_seq(Seq {
                items: items.iter(),
                de: &self,
                index: 0,
            }),
            Kind::Map(entries) => visitor.visit_map(Map::collection(entries, &self)),
        };
        result.map_err(|e| self.locate(e))
    }

    fn deserialize_option<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Error> {
        match self.node.kind {
            Kind::Null => visitor.visit_none(),
            _ => visitor.visit_some(self),
        }
    }

    fn deserialize_newtype_struct<V: Visitor<'de>>(
        self,
        name: &'static str,
        visitor: V,
    ) -> Result<V::Value, Error> {
        if name == LOCATED {
            let loc = self.node.loc;
            let header = [
                loc.line as u64,
                loc.column as u64,
                loc.offset as u64,
                loc.len as u64,
            ];
            let result = visitor.visit_seq(LocatedSeq {
                header: Some(header),
                de: Some(self.at(self.node)),
            });
            return result.map_err(|e| self.locate(e));
        }
        visitor
            .visit_newtype_struct(self.at(self.node))
            .map_err(|e| self.locate(e))
    }

    fn deserialize_seq<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Error> {
        match &self.node.kind {
            _ if self.poisoned() => {
                self.emptied();
                visitor
                    .visit_seq(Seq {
                        items: [].iter(),
                        de: &self,
                        index: 0,
                    })
                    .map_err(|e| self.locate(e))
            }
            Kind::Seq(items) => visitor
                .visit_seq(Seq {
                    items: items.iter(),
                    de: &self,
                    index: 0,
                })
                .map_err(|e| self.locate(e)),
            _ => Err(self.expected("a list")),
        }
    }

    fn deserialize_map<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Error> {
        match &self.node.kind {
            Kind::Map(entries) => visitor
                .visit_map(Map::collection(entries, &self))
                .map_err(|e| self.locate(e)),
            // An empty value (`roles:` with nothing after it) reads as an empty mapping, and
            // so does a stand-in.
            Kind::Null => visitor
                .visit_map(Map::collection(&[], &self))
                .map_err(|e| self.locate(e)),
            _ if self.poisoned() => {
                self.emptied();
                visitor
                    .visit_map(Map::collection(&[], &self))
                    .map_err(|e| self.locate(e))
            }
            _ => Err(self.expected("a mapping")),
        }
    }

    fn deserialize_struct<V: Visitor<'de>>(
        self,
        _name: &'static str,
        fields: &'static [&'static str],
        visitor: V,
    ) -> Result<V::Value, Error> {
        let entries: &[(Node, Node)] = match &self.node.kind {
            Kind::Map(entries) => entries,
            Kind::Null => &[],
            _ if self.poisoned() => {
                self.emptied();
                &[]
            }
            _ => return Err(self.expected("a mapping")),
        };
        let mut known = Vec::with_capacity(entries.len());
        for (key, value) in entries {
            match &key.kind {
                Kind::Str(name) if fields.contains(&name.as_str()) => known.push((key, value)),
                Kind::Str(name) => {
                    let diagnostic =
                        Diagnostic::new("unknown-key", format!("unknown key `{name}`"), key.loc);
                    let diagnostic = match did_you_mean(name, fields.iter().copied()) {
                        Some(best) => diagnostic.help(format!("did you mean `{best}`?")),
                        None => diagnostic.help(format!("allowed here: {}", quoted_list(fields))),
                    };
                    self.cx.problems.borrow_mut().push(diagnostic);
                }
                _ => {
                    let diagnostic = Diagnostic::new(
                        "unknown-key",
                        format!("expected a key name, found {}", key.kind.describe()),
                        key.loc,
                    );
                    self.cx.problems.borrow_mut().push(diagnostic);
                }
            }
        }
        // A mapping that was not one gets a stand-in for every key it lacks, and one that
        // lacked required keys for each of those found so far (the next pass then finds the
        // next), so what it does hold, and the rest of the spec, are still read.
        let address = self.node as *const Node as usize;
        let poisoned = self.poisoned();
        for field in fields {
            let stands_in = poisoned || self.cx.missing.contains(&(address, *field));
            if stands_in
                && !known
                    .iter()
                    .any(|(key, _)| matches!(&key.kind, Kind::Str(k) if k == field))
            {
                let (key, value) = stand_in_entry(field);
                known.push((key, value));
                if self.cx.entries.borrow().is_empty() {
                    self.cx.stood_in.borrow_mut().insert(field);
                }
            }
        }
        let map = Map {
            entries: known.into_iter(),
            de: &self,
            value: None,
            collection: false,
        };
        visitor.visit_map(map).map_err(|e| self.locate(e))
    }

    fn deserialize_enum<V: Visitor<'de>>(
        self,
        _name: &'static str,
        variants: &'static [&'static str],
        visitor: V,
    ) -> Result<V::Value, Error> {
        match &self.node.kind {
            // A stand-in takes the first value (a unit one, as every value of the spec's
            // enums written as a word is).
            _ if self.poisoned() && !variants.is_empty() => visitor
                .visit_enum(variants[0].into_deserializer())
                .map_err(|e: Error| self.locate(e)),
            Kind::Str(s) => visitor
                .visit_enum(s.as_str().into_deserializer())
                .map_err(|e: Error| self.locate(e)),
            Kind::Map(entries) if entries.len() == 1 => visitor
                .visit_enum(Enum {
                    key: &entries[0].0,
                    value: &entries[0].1,
                    de: &self,
                })
                .map_err(|e| self.locate(e)),
            _ => Err(self.expected("one of the allowed values")),
        }
    }

    fn deserialize_ignored_any<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Error> {
        visitor.visit_unit()
    }

    // A poisoned scalar reads as the empty value of its type (see `Context::poisoned`);
    // anything else asked of it fails as before, which ends the passes.
    stand_in! {
        deserialize_bool => visit_bool(false),
        deserialize_i8 => visit_i64(0),
        deserialize_i16 => visit_i64(0),
        deserialize_i32 => visit_i64(0),
        deserialize_i64 => visit_i64(0),
        deserialize_u8 => visit_u64(0),
        deserialize_u16 => visit_u64(0),
        deserialize_u32 => visit_u64(0),
        deserialize_u64 => visit_u64(0),
        deserialize_f32 => visit_f64(0.0),
        deserialize_f64 => visit_f64(0.0),
        deserialize_str => visit_str(""),
        deserialize_string => visit_str(""),
    }

    serde::forward_to_deserialize_any! {
        i128 u128 char bytes byte_buf unit unit_struct tuple tuple_struct identifier
    }
}

struct LocatedSeq<'a> {
    header: Option<[u64; 4]>,
    de: Option<NodeDe<'a>>,
}

impl<'de> SeqAccess<'de> for LocatedSeq<'_> {
    type Error = Error;
    fn next_element_seed<T: DeserializeSeed<'de>>(
        &mut self,
        seed: T,
    ) -> Result<Option<T::Value>, Error> {
        if let Some(header) = self.header.take() {
            let header = de::value::SeqDeserializer::<_, Error>::new(header.into_iter());
            return seed.deserialize(header).map(Some);
        }
        match self.de.take() {
            Some(de) => seed.deserialize(de).map(Some),
            None => Ok(None),
        }
    }
}

struct Seq<'a, 'b> {
    items: std::slice::Iter<'a, Node>,
    de: &'b NodeDe<'a>,
    index: usize,
}

impl<'de> SeqAccess<'de> for Seq<'_, '_> {
    type Error = Error;
    fn next_element_seed<T: DeserializeSeed<'de>>(
        &mut self,
        seed: T,
    ) -> Result<Option<T::Value>, Error> {
        for item in self.items.by_ref() {
            self.index += 1;
            let id = item as *const Node as usize;
            if self.de.cx.skipped.contains(&id) {
                continue;
            }
            self.de.cx.entries.borrow_mut().push(id);
            let result = seed.deserialize(self.de.at(item));
            self.de.cx.entries.borrow_mut().pop();
            return result.map(Some);
        }
        Ok(None)
    }
}

struct Map<'a, 'b, I> {
    entries: I,
    de: &'b NodeDe<'a>,
    value: Option<(&'a Node, &'a Node)>,
    /// A user-named collection (resources, fields): a failing entry can be set aside.
    collection: bool,
}

impl<'a, 'b>
    Map<
        'a,
        'b,
        std::iter::Map<
            std::slice::Iter<'a, (Node, Node)>,
            fn(&'a (Node, Node)) -> (&'a Node, &'a Node),
        >,
    >
{
    fn collection(entries: &'a [(Node, Node)], de: &'b NodeDe<'a>) -> Self {
        fn split(entry: &(Node, Node)) -> (&Node, &Node) {
            (&entry.0, &entry.1)
        }
        Map {
            entries: entries.iter().map(split as fn(_) -> _),
            de,
            value: None,
            collection: true,
        }
    }
}

impl<'de, 'a, I: Iterator<Item = (&'a Node, &'a Node)>> MapAccess<'de> for Map<'a, '_, I> {
    type Error = Error;

    fn next_key_seed<K: DeserializeSeed<'de>>(
        &mut self,
        seed: K,
    ) -> Result<Option<K::Value>, Error> {
        for (key, value) in self.entries.by_ref() {
            if self.collection && self.de.cx.skipped.contains(&(key as *const Node as usize)) {
                continue;
            }
            self.value = Some((key, value));
            if self.collection {
                self.de
                    .cx
                    .entries
                    .borrow_mut()
                    .push(key as *const Node as usize);
            }
            let result = seed.deserialize(self.de.at(key)).map(Some);
            if result.is_err() && self.collection {
                self.de.cx.entries.borrow_mut().pop();
            }
            return result;
        }
        Ok(None)
    }

    fn next_value_seed<V: DeserializeSeed<'de>>(&mut self, seed: V) -> Result<V::Value, Error> {
        let (_, value) = self
            .value
            .take()
            .ok_or_else(|| <Error as de::Error>::custom("value requested before key"))?;
        let result = seed.deserialize(self.de.at(value));
        if self.collection {
            self.de.cx.entries.borrow_mut().pop();
        }
        result
    }
}

struct Enum<'a, 'b> {
    key: &'a Node,
    value: &'a Node,
    de: &'b NodeDe<'a>,
}

impl<'de, 'a, 'b> EnumAccess<'de> for Enum<'a, 'b> {
    type Error = Error;
    type Variant = NodeDe<'a>;
    fn variant_seed<V: DeserializeSeed<'de>>(
        self,
        seed: V,
    ) -> Result<(V::Value, NodeDe<'a>), Error> {
        let variant = seed
            .deserialize(self.de.at(self.key))
            .map_err(|e| self.de.at(self.key).locate(e))?;
        Ok((variant, self.de.at(self.value)))
    }
}

impl<'de> VariantAccess<'de> for NodeDe<'_> {
    type Error = Error;
    fn unit_variant(self) -> Result<(), Error> {
        match self.node.kind {
            Kind::Null => Ok(()),
            _ => Err(self.expected("nothing")),
        }
    }
    fn newtype_variant_seed<T: DeserializeSeed<'de>>(self, seed: T) -> Result<T::Value, Error> {
        seed.deserialize(self)
    }
    fn tuple_variant<V: Visitor<'de>>(self, _len: usize, visitor: V) -> Result<V::Value, Error> {
        self.deserialize_seq(visitor)
    }
    fn struct_variant<V: Visitor<'de>>(
        self,
        fields: &'static [&'static str],
        visitor: V,
    ) -> Result<V::Value, Error> {
        self.deserialize_struct("", fields, visitor)
    }
}
