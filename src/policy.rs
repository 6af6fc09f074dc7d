//! The spec's permissions as Cedar: a schema (entity types from the resources, the
//! principal, one action per operation) and one `permit` policy per role and operation.
//! Anything not permitted is denied.
//!
//! A condition (`when:`) is parsed as one Cedar expression and printed back from its syntax
//! tree, never pasted in as text, so it cannot close its clause and add a policy of its own.
//! Lowering validates the policies against the schema with the same cedar-policy version
//! the generated server pins, and points at the condition on any error.

use crate::model::{Action, App, BuiltinOperation, FieldType, Resource};
use cedar_policy::{Expression, PolicySet, Schema, ValidationMode, Validator};
use std::fmt::Write;
use std::str::FromStr;

/// The cedar-policy version the generated server pins: the one bulwark validates with.
pub const CEDAR_VERSION: &str = "4.14.1";
/// Namespace of everything the policies name.
pub const NAMESPACE: &str = "App";
/// Entity type of the caller.
pub const PRINCIPAL: &str = "Principal";
/// Entity type of a machine caller (no tenant), for the built-in routes that accept one.
pub const MACHINE: &str = "Machine";
/// Entity type the built-in routes act on: a subject's membership of the caller's tenant.
pub const MEMBERSHIP: &str = "Membership";
/// Entity type of the built-in domain routes: a domain the caller's tenant claims.
pub const DOMAIN: &str = "Domain";

/// A condition that is not one valid Cedar expression.
pub fn parse_condition(condition: &str) -> Result<String, ConditionError> {
    Expression::from_str(condition)
        .map(|expression| expression.to_string())
        .map_err(|errors| ConditionError {
            message: one_line(&errors.to_string()),
            span: first_label(&errors),
        })
}

/// Why a condition does not parse, and where in its text (byte offset and length) when Cedar
/// says.
#[derive(Debug)]
pub struct ConditionError {
    pub message: String,
    pub span: Option<(usize, usize)>,
}

/// The first place a Cedar diagnostic points at, as (byte offset, length).
fn first_label(diagnostic: &dyn miette::Diagnostic) -> Option<(usize, usize)> {
    let label = diagnostic.labels()?.next()?;
    Some((label.offset(), label.len()))
}

/// A condition evaluated by Cedar here, at generation time: the generated tests take their
/// expected outcomes from this, independently of the policies the server loads. Parsed once,
/// evaluated for each row and caller.
pub struct Condition {
    policies: PolicySet,
    /// The syntax tree of its `when` clause, in Cedar's JSON form (what it reads and the
    /// literals it compares with are found there).
    trees: Vec<serde_json::Value>,
    caller: cedar_policy::EntityUid,
    action: cedar_policy::EntityUid,
    row: cedar_policy::EntityUid,
}

/// What a condition reads: attributes of the caller, of the row (read, or tested with
/// `has`) and of the context, by name; and the variables it uses whole (`resource == ..`,
/// `principal in ..`, `context` alone), `action` aside.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Reads {
    pub principal: Vec<String>,
    pub resource: Vec<String>,
    pub tested: Vec<String>,
    pub context: Vec<String>,
    pub whole: Vec<String>,
}

impl Condition {
    pub fn parse(condition: &str) -> Result<Condition, String> {
        use cedar_policy::EntityUid;
        // The condition ends its own line: a trailing `//` comment cannot swallow the rest.
        let policy = format!("permit (principal, action, resource) when {{ {condition}\n}};");
        let policies = PolicySet::from_str(&policy).map_err(|e| one_line(&e.to_string()))?;
        let uid = |text: &str| EntityUid::from_str(text).map_err(|e| one_line(&e.to_string()));
        let trees = policies
            .policies()
            .filter_map(|policy| policy.to_json().ok())
            .map(|mut json| json["conditions"].take())
            .collect();
        Ok(Condition {
            policies,
            trees,
            caller: uid(r#"Test::Principal::"caller""#)?,
            action: uid(r#"Test::Action::"act""#)?,
            row: uid(r#"Test::Row::"row""#)?,
        })
    }

    /// What it reads, from its syntax tree (so a string that looks like an attribute, or a
    /// name written `resource["x"]`, is taken for what it is).
    pub fn reads(&self) -> Reads {
        fn walk(json: &serde_json::Value, reads: &mut Reads) {
            match json {
                serde_json::Value::Object(fields) => {
                    for (key, inner) in fields {
                        let var = inner
                            .get("left")
                            .and_then(|left| left.get("Var"))
                            .and_then(|v| v.as_str());
                        let attr = inner.get("attr").and_then(|a| a.as_str());
                        match (key.as_str(), var, attr) {
                            ("." | "has", Some(var), Some(attr)) => {
                                let list = match var {
                                    "principal" => &mut reads.principal,
                                    "resource" if key == "has" => &mut reads.tested,
                                    "resource" => &mut reads.resource,
                                    "context" => &mut reads.context,
                                    _ => continue,
                                };
                                if !list.iter().any(|a| a == attr) {
                                    list.push(attr.to_owned());
                                }
                            }
                            ("Var", _, _) => {
                                if let Some(var) = inner.as_str().filter(|v| *v != "action")
                                    && !reads.whole.iter().any(|w| w == var)
                                {
                                    reads.whole.push(var.to_owned());
                                }
                            }
                            _ => walk(inner, reads),
                        }
                    }
                }
                serde_json::Value::Array(items) => items.iter().for_each(|item| walk(item, reads)),
                _ => {}
            }
        }
        let mut reads = Reads::default();
        self.trees.iter().for_each(|tree| walk(tree, &mut reads));
        reads
    }

    /// The literals it compares with (strings, integers, booleans, `decimal("..")` and
    /// `datetime("..")` calls as `{"__extn": {"fn": .., "arg": ..}}`, and for each `like`
    /// pattern a string it matches, each wildcard standing for `x`), once each, in order of
    /// appearance: the values worth trying on the fields it reads.
    pub fn literals(&self) -> Vec<serde_json::Value> {
        fn walk(json: &serde_json::Value, found: &mut Vec<serde_json::Value>) {
            match json {
                serde_json::Value::Object(fields) => {
                    for (key, inner) in fields {
                        let literal = match key.as_str() {
                            "Value"
                                if inner.is_string() || inner.is_number() || inner.is_boolean() =>
                            {
                                Some(inner.clone())
                            }
                            "decimal" | "datetime" => inner
                                .as_array()
                                .filter(|args| args.len() == 1)
                                .and_then(|args| args[0].get("Value"))
                                .filter(|arg| arg.is_string())
                                .map(|arg| serde_json::json!({"__extn": {"fn": key, "arg": arg}})),
                            "like" => {
                                inner
                                    .get("pattern")
                                    .and_then(|p| p.as_array())
                                    .map(|pattern| {
                                        let matching: String = pattern
                                            .iter()
                                            .map(|part| {
                                                part.get("Literal")
                                                    .and_then(|l| l.as_str())
                                                    .unwrap_or("x")
                                            })
                                            .collect();
                                        matching.into()
                                    })
                            }
                            _ => None,
                        };
                        // An extension call's argument is its literal, not a string of its own.
                        let call = literal.as_ref().is_some_and(|l| l.get("__extn").is_some());
                        if let Some(literal) = literal
                            && !found.contains(&literal)
                        {
                            found.push(literal);
                        }
                        if !call {
                            walk(inner, found);
                        }
                    }
                }
                serde_json::Value::Array(items) => items.iter().for_each(|item| walk(item, found)),
                _ => {}
            }
        }
        let mut found = Vec::new();
        self.trees.iter().for_each(|tree| walk(tree, &mut found));
        found
    }

    /// Whether it holds for a caller (`subject` with `roles`, a second factor when `mfa`,
    /// `scopes` in the token: the request's context as the server builds it) and a row with
    /// `attrs`: a JSON
    /// object in Cedar's JSON form (strings, integers, booleans, records, and `decimal` and
    /// `datetime` values as `{"__extn": {"fn": .., "arg": ..}}`); a `null` attribute is left
    /// out, as the server leaves out an empty optional field. An evaluation error (reading an
    /// attribute that is left out, say) denies, as it does in the server; a value that has no
    /// Cedar form is an error.
    pub fn holds(
        &self,
        subject: &str,
        roles: &[&str],
        attrs: serde_json::Value,
        (mfa, scopes): (bool, &[&str]),
    ) -> Result<bool, String> {
        use cedar_policy::{
            Authorizer, Context, Decision, Entities, Entity, Request, RestrictedExpression,
        };
        use std::collections::{HashMap, HashSet};
        // Built from values: parsing the entities from JSON cost most of a check.
        let string = |text: &str| RestrictedExpression::new_string(text.to_owned());
        let caller: HashMap<String, RestrictedExpression> = [
            ("sub".to_owned(), string(subject)),
            ("tenant".to_owned(), string("tenant")),
            (
                "roles".to_owned(),
                RestrictedExpression::new_set(roles.iter().map(|role| string(role))),
            ),
        ]
        .into();
        let mut row = HashMap::new();
        for (name, value) in attrs.as_object().into_iter().flatten() {
            if !value.is_null() {
                let value = restricted(value).map_err(|e| format!("{name}: {e}"))?;
                row.insert(name.clone(), value);
            }
        }
        let entities = Entities::from_entities(
            [
                Entity::new(self.caller.clone(), caller, HashSet::new())
                    .map_err(|e| one_line(&e.to_string()))?,
                Entity::new(self.row.clone(), row, HashSet::new())
                    .map_err(|e| one_line(&e.to_string()))?,
            ],
            None,
        )
        .map_err(|e| one_line(&e.to_string()))?;
        let request = Request::new(
            self.caller.clone(),
            self.action.clone(),
            self.row.clone(),
            Context::from_pairs([
                (
                    "scopes".to_owned(),
                    RestrictedExpression::new_set(scopes.iter().map(|scope| string(scope))),
                ),
                ("mfa".to_owned(), RestrictedExpression::new_bool(mfa)),
            ])
            .map_err(|e| one_line(&e.to_string()))?,
            None,
        )
        .map_err(|e| one_line(&e.to_string()))?;
        let answer = Authorizer::new().is_authorized(&request, &self.policies, &entities);
        Ok(answer.decision() == Decision::Allow)
    }
}

/// A value in Cedar's JSON form as an expression Cedar can take as an attribute.
fn restricted(value: &serde_json::Value) -> Result<cedar_policy::RestrictedExpression, String> {
    use cedar_policy::RestrictedExpression;
    Ok(match value {
        serde_json::Value::String(text) => RestrictedExpression::new_string(text.clone()),
        serde_json::Value::Bool(b) => RestrictedExpression::new_bool(*b),
        serde_json::Value::Number(n) => RestrictedExpression::new_long(
            n.as_i64().ok_or_else(|| format!("{n} is not an integer"))?,
        ),
        serde_json::Value::Object(fields) => match fields.get("__extn") {
            Some(extension) => {
                let arg = extension["arg"].as_str().unwrap_or_default();
                match extension["fn"].as_str() {
                    Some("decimal") => RestrictedExpression::new_decimal(arg),
                    Some("datetime") => RestrictedExpression::new_datetime(arg),
                    _ => return Err(format!("{extension} is not a known extension value")),
                }
            }
            None => RestrictedExpression::new_record(
                fields
                    .iter()
                    .map(|(k, v)| Ok((k.clone(), restricted(v)?)))
                    .collect::<Result<Vec<_>, String>>()?,
            )
            .map_err(|e| one_line(&e.to_string()))?,
        },
        other => return Err(format!("{other} has no Cedar form here")),
    })
}

fn one_line(text: &str) -> String {
    text.split_whitespace().collect::<Vec<_>>().join(" ")
}

/// A Cedar string literal of a name: names hold no control characters (lowering refuses
/// them), so the only escapes needed are `\\"` and `\\\\`, which Cedar and JSON share.
fn string(text: &str) -> String {
    serde_json::to_string(text).unwrap_or_else(|_| "\"\"".into())
}

/// The Cedar action id of an operation: the same `resource.action` as the server's
/// operation ids and PERMISSIONS.md.
pub fn action_id(resource: &Resource, action: &Action) -> String {
    format!("{}.{}", resource.name, action.name)
}

fn attribute_type(field: &crate::model::Field) -> &'static str {
    match field.ty {
        FieldType::Int => "Long",
        FieldType::Bool => "Bool",
        FieldType::Decimal => "decimal",
        FieldType::Timestamp => "datetime",
        FieldType::Money => r#"{ "amount_minor": Long, "currency": String }"#,
        FieldType::String
        | FieldType::Text
        | FieldType::Email
        | FieldType::Date
        | FieldType::Uuid
        | FieldType::Enum { .. }
        | FieldType::Reference { .. }
        | FieldType::Principal => "String",
    }
}

/// The schema of one resource's entity type and actions as [`schema_of`] writes it, in
/// Cedar's JSON form (the form Cedar itself converts the text into): for validation, where
/// parsing the text cost most of loading a spec.
fn validation_schema(resource: &Resource) -> serde_json::Value {
    use serde_json::{Map, Value, json};
    let named = |name: &str| json!({"type": "EntityOrCommon", "name": name});
    let attribute = |field: &crate::model::Field| {
        let mut value = match field.ty {
            FieldType::Money => json!({"type": "Record", "attributes": {
                "amount_minor": named("Long"),
                "currency": named("String"),
            }}),
            _ => named(attribute_type(field)),
        };
        if field.optional {
            value["required"] = Value::Bool(false);
        }
        value
    };
    let mut attributes: Map<String, Value> = resource
        .fields
        .iter()
        .map(|field| (field.json.clone(), attribute(field)))
        .collect();
    attributes.insert("id".into(), named("String"));
    let actions: Map<String, Value> = resource
        .actions
        .iter()
        .filter(|a| a.public.is_none())
        .map(|action| {
            let applies = json!({"appliesTo": {
                "resourceTypes": [resource.type_name],
                "principalTypes": [PRINCIPAL],
                "context": {"type": "RequestContext"},
            }});
            (action_id(resource, action), applies)
        })
        .collect();
    json!({ NAMESPACE: {
        "commonTypes": {"RequestContext": {"type": "Record", "attributes": {
            "mfa": named("Bool"),
            "scopes": {"type": "Set", "element": named("String")},
        }}},
        "entityTypes": {
            PRINCIPAL: {"shape": {"type": "Record", "attributes": {
                "roles": {"type": "Set", "element": named("String")},
                "sub": named("String"),
                "tenant": named("String"),
            }}},
            resource.type_name.clone(): {"shape": {"type": "Record", "attributes": attributes}},
        },
        "actions": actions,
    }})
}

/// The Cedar schema of `app`.
pub fn schema(app: &App) -> String {
    schema_of(&app.resources, &app.builtin_operations())
}

/// The Cedar schema of some resources and built-in operations.
fn schema_of(resources: &[Resource], builtins: &[BuiltinOperation]) -> String {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "// @generated by bulwark. Do not edit: change the spec and regenerate."
    );
    let _ = writeln!(out, "namespace {NAMESPACE} {{");
    let _ = writeln!(
        out,
        "  // The caller: subject, tenant and roles from the token and the membership table."
    );
    let _ = writeln!(
        out,
        "  entity {PRINCIPAL} = {{ \"sub\": String, \"tenant\": String, \"roles\": Set<String> }};"
    );
    let _ = writeln!(
        out,
        "  // What the request carries besides the caller: the token's scopes and second factor."
    );
    let _ = writeln!(
        out,
        "  type RequestContext = {{ \"scopes\": Set<String>, \"mfa\": Bool }};"
    );
    for resource in resources {
        let attributes: Vec<String> = resource
            .fields
            .iter()
            .map(|field| {
                let optional = if field.optional { "?" } else { "" };
                format!(
                    "{}{optional}: {}",
                    string(&field.json),
                    attribute_type(field)
                )
            })
            .chain(std::iter::once("\"id\": String".to_owned()))
            .collect();
        let _ = writeln!(
            out,
            "  entity {} = {{ {} }};",
            resource.type_name,
            attributes.join(", ")
        );
    }
    for resource in resources {
        for action in resource.actions.iter().filter(|a| a.public.is_none()) {
            let _ = writeln!(
                out,
                "  action {} appliesTo {{ principal: [{PRINCIPAL}], resource: [{}], context: RequestContext }};",
                string(&action_id(resource, action)),
                resource.type_name
            );
        }
    }
    if !builtins.is_empty() {
        let _ = writeln!(
            out,
            "  // A machine caller: a client-credentials token without a tenant."
        );
        let _ = writeln!(out, "  entity {MACHINE} = {{ \"client\": String }};");
        let _ = writeln!(
            out,
            "  // A subject's membership of the caller's tenant (built-in routes)."
        );
        let _ = writeln!(
            out,
            "  entity {MEMBERSHIP} = {{ \"subject\": String, \"roles\": Set<String> }};"
        );
    }
    if builtins.iter().any(|b| b.entity == DOMAIN) {
        let _ = writeln!(
            out,
            "  // A domain the caller's tenant claims (built-in routes)."
        );
        let _ = writeln!(out, "  entity {DOMAIN} = {{ \"domain\": String }};");
    }
    for builtin in builtins {
        let principals = if builtin.machine_scope.is_some() {
            format!("{PRINCIPAL}, {MACHINE}")
        } else {
            PRINCIPAL.to_owned()
        };
        let _ = writeln!(
            out,
            "  action {} appliesTo {{ principal: [{principals}], resource: [{}], context: RequestContext }};",
            string(builtin.id),
            builtin.entity,
        );
    }
    out.push_str("}\n");
    out
}

/// The policies of `app`: one `permit` per role allowed an operation. A role that needs a
/// second factor counts only with one; the operation's scope must be in the token.
/// Conditions that do not parse are left out here (lowering has reported them).
pub fn policies(app: &App) -> String {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "// @generated by bulwark. Do not edit: change the spec and regenerate."
    );
    let _ = writeln!(
        out,
        "// Deny by default: only what a policy below permits is allowed."
    );
    for resource in &app.resources {
        for action in resource.actions.iter().filter(|a| a.public.is_none()) {
            if let Some(policy) = policy(app, resource, action) {
                out.push('\n');
                out.push_str(&policy);
            }
        }
    }
    for builtin in app.builtin_operations() {
        if !builtin.roles.is_empty() {
            out.push('\n');
            out.push_str(&builtin_policy(app, &builtin));
        }
        if let Some(scope) = &builtin.machine_scope {
            out.push('\n');
            let clauses = [format!("context.scopes.contains({})", string(scope))];
            let id = format!("{}/machine", builtin.id);
            out.push_str(&permit(&id, builtin.id, MACHINE, builtin.entity, &clauses));
        }
    }
    out
}

/// What a member must show for an operation: its scope, and one of `roles`, where a role
/// that needs a second factor counts only with one. One policy per operation, not one per
/// role: Cedar's cost grows with the policies it evaluates.
fn role_clauses(app: &App, roles: &[String], scope: Option<&str>) -> Vec<String> {
    let mfa_roles = app.mfa_roles();
    let (second_factor, plain): (Vec<&String>, Vec<&String>) =
        roles.iter().partition(|r| mfa_roles.contains(&r.as_str()));
    let any = |roles: &[&String]| {
        let list: Vec<String> = roles.iter().map(|r| string(r)).collect();
        format!("principal.roles.containsAny([{}])", list.join(", "))
    };
    let mut alternatives = Vec::new();
    if !plain.is_empty() {
        alternatives.push(any(&plain));
    }
    if !second_factor.is_empty() {
        alternatives.push(format!("(context.mfa && {})", any(&second_factor)));
    }
    let mut clauses = Vec::new();
    if let Some(scope) = scope {
        clauses.push(format!("context.scopes.contains({})", string(scope)));
    }
    clauses.push(match alternatives.as_slice() {
        [one] => one.clone(),
        _ => format!("({})", alternatives.join(" || ")),
    });
    clauses
}

/// What a row must satisfy to appear in `list`, as one Cedar expression, when the resource's
/// read has a condition: the list's own condition (if any), and the read's roles, scope and
/// condition, since a list shows only rows a read would allow. `None` otherwise (the list's
/// own condition says it all).
pub fn listed_condition(app: &App, resource: &Resource, list: &Action) -> Option<String> {
    let read = resource
        .actions
        .iter()
        .find(|a| a.kind == crate::model::ActionKind::Read && a.public.is_none())?;
    let read_condition = read.cedar_condition.as_ref()?;
    let mut clauses: Vec<String> = list
        .cedar_condition
        .iter()
        .map(|c| format!("({c})"))
        .collect();
    clauses.extend(role_clauses(app, &read.roles, read.scope.as_deref()));
    clauses.push(format!("({read_condition})"));
    Some(clauses.join(" && "))
}

/// One `permit` policy, annotated with its id and its operation (the server groups policies
/// by `@action`).
fn permit(id: &str, action: &str, principal: &str, resource: &str, clauses: &[String]) -> String {
    let mut out = String::new();
    let _ = writeln!(out, "@id({})", string(id));
    let _ = writeln!(out, "@action({})", string(action));
    let _ = writeln!(
        out,
        "permit (principal is {NAMESPACE}::{principal}, action == {NAMESPACE}::Action::{}, resource is {NAMESPACE}::{resource})",
        string(action),
    );
    let _ = writeln!(out, "when {{\n  {}\n}};", clauses.join("\n  && "));
    out
}

/// The policy letting the roles of a built-in operation do it.
fn builtin_policy(app: &App, builtin: &BuiltinOperation) -> String {
    let clauses = role_clauses(app, &builtin.roles, builtin.scope.as_deref());
    permit(builtin.id, builtin.id, PRINCIPAL, builtin.entity, &clauses)
}

/// The policy letting the roles of `action` do it to `resource`; `None` without roles, or if
/// its condition does not parse.
fn policy(app: &App, resource: &Resource, action: &Action) -> Option<String> {
    if action.roles.is_empty() {
        return None;
    }
    // A condition Cedar could not parse has no printed form (lowering refused it).
    if action.condition.is_some() && action.cedar_condition.is_none() {
        return None;
    }
    let condition = &action.cedar_condition;
    let id = action_id(resource, action);
    let mut clauses = role_clauses(app, &action.roles, action.scope.as_deref());
    if let Some(condition) = &condition {
        clauses.push(format!("({condition})"));
    }
    Some(permit(&id, &id, PRINCIPAL, &resource.type_name, &clauses))
}

/// A policy that does not validate against the schema, and which operation it belongs to.
#[derive(Debug)]
pub struct Invalid {
    pub resource: usize,
    pub action: usize,
    pub message: String,
    /// The text of the policy the validator points at (`resource.titel`), which the
    /// condition as written holds too unless printing it changed that part.
    pub focus: Option<String>,
}

/// A record of resources whose policies were found valid, by a digest of the validator's
/// version, their schema and their policies: validation is a function of those, so a
/// resource known valid needs no validating again. Best effort both ways.
pub trait Validated: Sync {
    fn known(&self, digest: &str) -> bool;
    fn remember(&self, digest: &str);
}

/// Validates the policies of `app` against its schema (strict mode). An error in the
/// generator's own part of a policy would be a bug; errors are attributed to the operation's
/// condition, the only part the spec writes.
///
/// A resource whose schema and policies `validated` knows to be valid is skipped; each one
/// found valid now is remembered there.
pub fn validate(app: &App, validated: Option<&dyn Validated>) -> Result<Vec<Invalid>, String> {
    // The validator checks each policy against every action of its schema, so each resource
    // is validated with a schema of its own (the cost stays linear in the resources), and
    // the resources are shared out among the cores in runs, which keeps the errors in order.
    let count = app.resources.len();
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    let run = count.div_ceil(cores).max(1);
    let runs: Vec<Result<Vec<Invalid>, String>> = std::thread::scope(|scope| {
        let threads: Vec<_> = (0..count)
            .step_by(run)
            .map(|start| {
                scope.spawn(move || validate_run(app, start..(start + run).min(count), validated))
            })
            .collect();
        threads
            .into_iter()
            .map(|thread| {
                thread
                    .join()
                    .unwrap_or_else(|_| Err("policy validation failed unexpectedly".into()))
            })
            .collect()
    });
    let mut invalid = Vec::new();
    for run in runs {
        invalid.extend(run?);
    }
    Ok(invalid)
}

/// [`validate`] for the resources at `indexes`.
fn validate_run(
    app: &App,
    indexes: std::ops::Range<usize>,
    validated: Option<&dyn Validated>,
) -> Result<Vec<Invalid>, String> {
    let mut invalid = Vec::new();
    for index in indexes {
        let resource = &app.resources[index];
        let mut text = String::new();
        for action in resource.actions.iter().filter(|a| a.public.is_none()) {
            if let Some(policy) = policy(app, resource, action) {
                text.push_str(&policy);
            }
        }
        if text.is_empty() {
            continue;
        }
        let schema_json = validation_schema(resource);
        // What the answer depends on: the validator's version, the schema and the policies.
        let digest = validated.map(|_| {
            crate::emit::sha256(format!("{CEDAR_VERSION}\n{schema_json}\n{text}").as_bytes())
        });
        if let (Some(validated), Some(digest)) = (validated, &digest)
            && validated.known(digest)
        {
            continue;
        }
        let schema = Schema::from_json_value(schema_json).map_err(|e| one_line(&e.to_string()))?;
        let policies = PolicySet::from_str(&text).map_err(|e| one_line(&e.to_string()))?;
        let errors = validation_errors(resource, &schema, &policies, &text);
        if let (Some(validated), Some(digest), true) = (validated, &digest, errors.is_empty()) {
            validated.remember(digest);
        }
        for (action, message, focus) in errors {
            invalid.push(Invalid {
                resource: index,
                action,
                message,
                focus,
            });
        }
    }
    Ok(invalid)
}

/// Validation errors of the policies of `resource` (parsed from `source`), as (action
/// index, message, the part of `source` it points at); one per action.
fn validation_errors(
    resource: &Resource,
    schema: &Schema,
    policies: &PolicySet,
    source: &str,
) -> Vec<(usize, String, Option<String>)> {
    let result = Validator::new(schema.clone()).validate(policies, ValidationMode::Strict);
    let mut errors: Vec<(usize, String, Option<String>)> = Vec::new();
    for error in result.validation_errors() {
        let action = policies
            .annotation(error.policy_id(), "action")
            .unwrap_or_default();
        let Some(index) = resource
            .actions
            .iter()
            .position(|a| action_id(resource, a) == action)
        else {
            continue;
        };
        // The policy's generated id says nothing to the spec's author.
        let text = one_line(&error.to_string());
        let message = match text
            .strip_prefix("for policy `")
            .and_then(|rest| rest.split_once("`, "))
        {
            Some((_, rest)) => rest.to_owned(),
            None => text,
        };
        let focus = first_label(error)
            .and_then(|(offset, len)| source.get(offset..offset + len))
            .map(str::to_owned);
        if !errors.iter().any(|(i, ..)| *i == index) {
            errors.push((index, message, focus));
        }
    }
    errors
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_built_in_operations_validate_against_the_schema() {
        let path = concat!(env!("CARGO_MANIFEST_DIR"), "/specs/ledgerly.yaml");
        let source = std::fs::read_to_string(path).expect("the example spec");
        let app = crate::compile(path, &source).expect("the example spec is valid");
        assert!(!app.builtin_operations().is_empty());
        let (schema, _) = Schema::from_cedarschema_str(&schema(&app)).expect("the schema parses");
        let policies = PolicySet::from_str(&policies(&app)).expect("the policies parse");
        let result = Validator::new(schema).validate(&policies, ValidationMode::Strict);
        let errors: Vec<String> = result.validation_errors().map(|e| e.to_string()).collect();
        assert!(errors.is_empty(), "{errors:#?}");
        let machine = policies
            .policies()
            .filter(|p| p.annotation("id") == Some("session.revoke/machine"))
            .count();
        assert_eq!(machine, 1);
    }

    /// A record of valid resources in memory, counting what it was asked.
    #[derive(Default)]
    struct Remembered {
        digests: std::sync::Mutex<std::collections::BTreeSet<String>>,
        hits: std::sync::atomic::AtomicUsize,
    }

    impl Validated for Remembered {
        fn known(&self, digest: &str) -> bool {
            let known = self.digests.lock().expect("not poisoned").contains(digest);
            if known {
                self.hits.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            }
            known
        }

        fn remember(&self, digest: &str) {
            self.digests
                .lock()
                .expect("not poisoned")
                .insert(digest.to_owned());
        }
    }

    #[test]
    fn only_resources_found_valid_are_remembered_and_skipped() {
        let path = concat!(env!("CARGO_MANIFEST_DIR"), "/specs/ledgerly.yaml");
        let source = std::fs::read_to_string(path).expect("the example spec");
        let mut app = crate::compile(path, &source).expect("the example spec is valid");
        let invoice = app
            .resources
            .iter()
            .position(|r| r.name == "invoice")
            .expect("an invoice");
        let update = app.resources[invoice]
            .actions
            .iter()
            .position(|a| a.name == "update")
            .expect("its update");
        app.resources[invoice].actions[update].cedar_condition =
            Some("resource.nowhere == 1".into());
        let remembered = Remembered::default();
        let first = validate(&app, Some(&remembered)).expect("it validates");
        assert_eq!(first.len(), 1, "{first:?}");
        // The customer: the invoice is invalid, the exchange rate public (no policies).
        let valid = remembered.digests.lock().expect("not poisoned").len();
        assert_eq!(valid, 1);
        let again = validate(&app, Some(&remembered)).expect("it validates");
        assert_eq!(again.len(), 1, "the invalid resource is validated again");
        let hits = remembered.hits.load(std::sync::atomic::Ordering::Relaxed);
        assert_eq!(hits, valid);
        // A changed condition is a resource of another digest.
        app.resources[invoice].actions[update].cedar_condition =
            Some("resource.status == \"draft\"".into());
        assert!(
            validate(&app, Some(&remembered))
                .expect("it validates")
                .is_empty()
        );
        assert_eq!(
            remembered.digests.lock().expect("not poisoned").len(),
            valid + 1
        );
    }

    #[test]
    fn the_validation_schema_is_the_schema_text_in_json() {
        for spec in ["ledgerly", "tracker", "hostile"] {
            let path = format!("{}/specs/{spec}.yaml", env!("CARGO_MANIFEST_DIR"));
            let source = std::fs::read_to_string(&path).expect("the example spec");
            let app = crate::compile(&path, &source).expect("the example spec is valid");
            for resource in &app.resources {
                let text = schema_of(std::slice::from_ref(resource), &[]);
                let (fragment, _) =
                    cedar_policy::SchemaFragment::from_cedarschema_str(&text).expect("it parses");
                let json = fragment.to_json_value().expect("it has a JSON form");
                assert_eq!(
                    validation_schema(resource),
                    json,
                    "{spec}: {}",
                    resource.name
                );
            }
        }
    }

    #[test]
    fn a_condition_names_its_literals_once_each_in_order() {
        let condition = Condition::parse(
            r#"resource.group != "it's \"q\"" && resource.n < -1 && (resource.ok || resource.n == 7) && principal.roles.contains("it's \"q\"") && resource.flag == false && resource.mail like "*@example.com" && resource.at < datetime("2030-01-01") && resource.rate.lessThan(decimal("1.5"))"#,
        )
        .expect("the condition parses");
        assert_eq!(
            condition.literals(),
            [
                serde_json::json!("it's \"q\""),
                serde_json::json!(-1),
                serde_json::json!(7),
                serde_json::json!(false),
                serde_json::json!("x@example.com"),
                serde_json::json!({"__extn": {"fn": "datetime", "arg": "2030-01-01"}}),
                serde_json::json!({"__extn": {"fn": "decimal", "arg": "1.5"}}),
            ]
        );
        let row = |at: &str| {
            serde_json::json!({
                "mail": "x@example.com", "group": "g", "n": -2, "ok": true, "flag": false,
                "at": {"__extn": {"fn": "datetime", "arg": at}},
                "rate": {"__extn": {"fn": "decimal", "arg": "1.4999"}},
            })
        };
        let holds = |row| {
            condition
                .holds("u", &["it's \"q\""], row, (true, &[]))
                .expect("it evaluates")
        };
        assert!(holds(row("2029-12-31T23:59:59.999Z")));
        assert!(!holds(row("2030-01-01T00:00:00.000Z")));
        // Reading an attribute that is left out errors, which denies, as in the server.
        let mut without = row("2029-12-31T23:59:59.999Z");
        without["at"] = serde_json::Value::Null;
        assert!(!holds(without));
    }

    #[test]
    fn a_condition_sees_the_context_the_server_builds() {
        let condition = Condition::parse(r#"context.mfa && context.scopes.contains("a.admin")"#)
            .expect("it parses");
        let holds = |mfa, scopes: &[&str]| {
            condition
                .holds("u", &["r"], serde_json::json!({}), (mfa, scopes))
                .expect("it evaluates")
        };
        assert!(holds(true, &["a.read", "a.admin"]));
        assert!(!holds(false, &["a.read", "a.admin"]));
        assert!(!holds(true, &["a.read"]));
    }

    #[test]
    fn a_condition_cannot_escape_its_clause() {
        assert!(
            parse_condition("true } ; permit (principal, action, resource) when { true").is_err()
        );
        assert!(parse_condition("true; permit(principal, action, resource);").is_err());
        assert!(parse_condition("resource.status == \"draft\"").is_ok());
    }
}
