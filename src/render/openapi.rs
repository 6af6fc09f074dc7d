//! The OpenAPI 3.1 document: versioned paths, each operation's scope, problem+json errors.
//! Built as JSON values (serde_json escapes every string), keys in sorted order.

use super::Options;
use crate::model::{ActionKind, App, FieldType, Resource};
use serde_json::{Map, Value, json};

pub fn render_openapi(app: &App, options: &Options) -> String {
    let mut paths = Map::new();
    let mut schemas = Map::new();
    schemas.insert("Problem".into(), json!({
        "type": "object",
        "required": ["type", "title", "status"],
        "properties": {
            "type": {"type": "string"}, "title": {"type": "string"}, "status": {"type": "integer"},
            "detail": {"type": "string"},
            "errors": {"type": "array", "items": {"type": "object", "properties": {"field": {"type": "string"}, "message": {"type": "string"}}}}
        }
    }));
    schemas.insert("Money".into(), json!({
        "type": "object", "required": ["amount_minor", "currency"],
        "properties": {"amount_minor": {"type": "integer", "format": "int64"}, "currency": {"type": "string", "pattern": "^[A-Z]{3}$"}}
    }));
    for resource in &app.resources {
        let (output, input) = schemas_of(resource);
        // `.` cannot occur in a type name, so `Invoice.Input` never meets another resource's.
        schemas.insert(resource.type_name.clone(), output);
        schemas.insert(format!("{}.Input", resource.type_name), input);
        schemas.insert(format!("{}.Page", resource.type_name), json!({
            "type": "object", "required": ["items"],
            "properties": {
                "items": {"type": "array", "items": {"$ref": format!("#/components/schemas/{}", resource.type_name)}},
                "next_after": {"type": "string", "format": "uuid", "description": "Pass as `after` for the next page; absent on the last. A page may be short, even empty, with more after it."}
            }
        }));
        for action in &resource.actions {
            let entry = paths
                .entry(action.path.clone())
                .or_insert_with(|| json!({}));
            let mut op = Map::new();
            op.insert(
                "operationId".into(),
                json!(format!("{}.{}", resource.ident, action.ident)),
            );
            op.insert(
                "summary".into(),
                json!(
                    action
                        .description
                        .clone()
                        .unwrap_or_else(|| format!("{} {}", action.name, resource.name))
                ),
            );
            op.insert("tags".into(), json!([resource.name]));
            match (&action.public, &action.scope) {
                (Some(reason), _) => {
                    op.insert("security".into(), json!([]));
                    op.insert("x-public-reason".into(), json!(reason));
                }
                (None, Some(scope)) => {
                    op.insert("security".into(), json!([{"bearer": [scope]}]));
                    op.insert("x-scope".into(), json!(scope));
                }
                (None, None) => {}
            }
            op.insert("x-roles".into(), json!(action.roles));
            if let Some(condition) = &action.condition {
                op.insert("x-condition".into(), json!(condition));
            }
            let mut params = Vec::new();
            if action.path.contains("{id}") {
                params.push(json!({"name": "id", "in": "path", "required": true, "schema": {"type": "string", "format": "uuid"}}));
            }
            let schema_ref = |name: String| json!({"$ref": format!("#/components/schemas/{name}")});
            let ok = |status: &str, name: String| json!({status: {"description": "success", "content": {"application/json": {"schema": schema_ref(name)}}}});
            let mut responses = match &action.kind {
                ActionKind::Create => ok("201", resource.type_name.clone()),
                ActionKind::List => {
                    params.push(json!({"name": "after", "in": "query", "required": false, "schema": {"type": "string", "format": "uuid"}}));
                    params.push(json!({"name": "limit", "in": "query", "required": false, "schema": {"type": "integer", "minimum": 1, "maximum": 100}}));
                    ok("200", format!("{}.Page", resource.type_name))
                }
                ActionKind::Delete => json!({"204": {"description": "deleted"}}),
                _ => ok("200", resource.type_name.clone()),
            };
            let problem = json!({"description": "problem", "content": {"application/problem+json": {"schema": {"$ref": "#/components/schemas/Problem"}}}});
            if let Some(map) = responses.as_object_mut() {
                if action.public.is_none() {
                    map.insert("401".into(), problem.clone());
                    map.insert("403".into(), problem.clone());
                }
                if action.path.contains("{id}") {
                    map.insert("404".into(), problem.clone());
                }
                if matches!(action.kind, ActionKind::Create | ActionKind::Update) {
                    map.insert("422".into(), problem.clone());
                }
                // Found at commit: a unique value taken, a row others refer to, a concurrent
                // change in the way.
                if !matches!(action.kind, ActionKind::Read | ActionKind::List) {
                    map.insert("409".into(), problem.clone());
                }
                if action.rate_limit.is_some() {
                    map.insert("429".into(), problem.clone());
                }
            }
            if !params.is_empty() {
                op.insert("parameters".into(), Value::Array(params));
            }
            if matches!(action.kind, ActionKind::Create | ActionKind::Update) {
                op.insert("requestBody".into(), json!({"required": true, "content": {"application/json": {"schema": schema_ref(format!("{}.Input", resource.type_name))}}}));
            }
            op.insert("responses".into(), responses);
            if let Some(map) = entry.as_object_mut() {
                map.insert(action.method.as_str().to_lowercase(), Value::Object(op));
            }
        }
    }
    builtin_paths(app, &mut paths, &mut schemas);
    deprecated_paths(app, &mut paths, &mut schemas);
    let scopes: Map<String, Value> = app
        .scopes
        .iter()
        .map(|s| (s.name.clone(), json!(s.description)))
        .collect();
    // Built by moving the parts in, in this order (`json!` would copy them whole).
    let mut components = Map::new();
    components.insert("schemas".into(), Value::Object(schemas));
    components.insert(
        "securitySchemes".into(),
        json!({"bearer": security_scheme(app, scopes)}),
    );
    let mut document = Map::new();
    document.insert("openapi".into(), json!("3.1.0"));
    document.insert(
        "info".into(),
        json!({
            "title": app.name,
            "version": app.api_version,
            "description": app.description.clone().unwrap_or_default(),
            "x-generated": format!("@generated by bulwark {}", options.generator_version),
        }),
    );
    document.insert("paths".into(), Value::Object(paths));
    document.insert("components".into(), Value::Object(components));
    let printed = serde_json::to_string_pretty(&document).unwrap_or_default();
    // Invisible and direction-changing characters of spec text (they occur only inside
    // strings, which serde_json leaves raw) as escapes: the same string for JSON readers,
    // and a reviewer's diff shows them.
    let mut text = String::with_capacity(printed.len() + 1);
    for c in printed.chars() {
        if crate::model::names::is_invisible(c) && !matches!(c, '\n') {
            for unit in c.encode_utf16(&mut [0; 2]) {
                text.push_str(&format!("\\u{unit:04x}"));
            }
        } else {
            text.push(c);
        }
    }
    text.push('\n');
    text
}

/// Earlier versions still served: the operations each has, under its prefix (at its own
/// path where it was other), marked deprecated, with their own ids and the sunset; where its
/// bodies were other, schemas of its own (`v1.Invoice`: a `.` never occurs in a type name).
fn deprecated_paths(app: &App, paths: &mut Map<String, Value>, schemas: &mut Map<String, Value>) {
    if app.deprecated_versions.is_empty() {
        return;
    }
    let current = paths.clone();
    let operation = |path: &str, method: &str| -> Option<Value> {
        current.get(path)?.get(method.to_lowercase()).cloned()
    };
    for previous in &app.deprecated_versions {
        let mut served: Vec<(String, String, Value)> = Vec::new();
        for resource in &app.resources {
            let Some(shape) = previous.serves(resource) else {
                continue;
            };
            if let Some(fields) = &shape.fields {
                previous_schemas(&previous.version, resource, fields, schemas);
            }
            for action in &shape.actions {
                let Some(mut op) = operation(&action.path, action.method.as_str()) else {
                    continue;
                };
                if shape.fields.is_some() {
                    rename_refs(&mut op, &previous.version, &resource.type_name);
                }
                let path = previous.path_of(app, resource, &shape, action);
                served.push((path, action.method.as_str().to_lowercase(), op));
            }
        }
        for builtin in app.builtin_operations() {
            if let Some(op) = operation(&builtin.path, builtin.method) {
                let rest = builtin
                    .path
                    .strip_prefix('/')
                    .and_then(|p| p.split_once('/'))
                    .map_or("", |(_, rest)| rest);
                let path = format!("/{}/{rest}", previous.version);
                served.push((path, builtin.method.to_lowercase(), op));
            }
        }
        for (path, method, mut op) in served {
            if let Some(op) = op.as_object_mut() {
                let id = op
                    .get("operationId")
                    .and_then(Value::as_str)
                    .unwrap_or_default();
                let id = format!("{}.{id}", previous.version);
                op.insert("operationId".into(), json!(id));
                op.insert("deprecated".into(), json!(true));
                op.insert("x-sunset".into(), json!(previous.sunset_day));
            }
            let entry = paths.entry(path).or_insert_with(|| json!({}));
            if let Some(entry) = entry.as_object_mut() {
                entry.insert(method, op);
            }
        }
    }
}

/// Points an operation's references to a resource's schemas at the version's own.
fn rename_refs(value: &mut Value, version: &str, type_name: &str) {
    match value {
        Value::Object(map) => {
            for (key, inner) in map.iter_mut() {
                match inner {
                    Value::String(target) if key == "$ref" => {
                        let prefix = "#/components/schemas/";
                        if let Some(name) = target.strip_prefix(prefix)
                            && (name == type_name
                                || name
                                    .strip_prefix(type_name)
                                    .is_some_and(|r| r.starts_with('.')))
                        {
                            *target = format!("{prefix}{version}.{name}");
                        }
                    }
                    _ => rename_refs(inner, version, type_name),
                }
            }
        }
        Value::Array(items) => items
            .iter_mut()
            .for_each(|i| rename_refs(i, version, type_name)),
        _ => {}
    }
}

/// A resource's schemas in an earlier version: the current ones with that version's property
/// names, without the fields it does not have.
fn previous_schemas(
    version: &str,
    resource: &Resource,
    fields: &[(&crate::model::Field, &str)],
    schemas: &mut Map<String, Value>,
) {
    let name = &resource.type_name;
    let reshape = |schema: &Value, keep: &[&str]| -> Value {
        let mut schema = schema.clone();
        let properties = schema
            .get("properties")
            .and_then(Value::as_object)
            .cloned()
            .unwrap_or_default();
        let required: Vec<String> = schema
            .get("required")
            .and_then(Value::as_array)
            .map(|r| {
                r.iter()
                    .filter_map(|v| v.as_str().map(str::to_owned))
                    .collect()
            })
            .unwrap_or_default();
        let mut new_properties = Map::new();
        let mut new_required = Vec::new();
        for key in keep {
            if let Some(p) = properties.get(*key) {
                new_properties.insert((*key).to_owned(), p.clone());
                if required.iter().any(|r| r == key) {
                    new_required.push(json!(key));
                }
            }
        }
        for (field, json_name) in fields {
            if let Some(p) = properties.get(&field.json) {
                new_properties.insert((*json_name).to_owned(), p.clone());
                if required.contains(&field.json) {
                    new_required.push(json!(json_name));
                }
            }
        }
        if let Some(map) = schema.as_object_mut() {
            map.insert("properties".into(), Value::Object(new_properties));
            if map.contains_key("required") {
                map.insert("required".into(), Value::Array(new_required));
            }
        }
        schema
    };
    if let Some(output) = schemas.get(name.as_str()) {
        let output = reshape(output, &["id", "created_at", "updated_at"]);
        schemas.insert(format!("{version}.{name}"), output);
    }
    if let Some(input) = schemas.get(&format!("{name}.Input")) {
        let input = reshape(input, &[]);
        schemas.insert(format!("{version}.{name}.Input"), input);
    }
    if let Some(page) = schemas.get(&format!("{name}.Page")) {
        let mut page = page.clone();
        rename_refs(&mut page, version, name);
        schemas.insert(format!("{version}.{name}.Page"), page);
    }
}

/// The built-in routes (memberships, sessions). Their schemas are named `Builtin.*`: a `.`
/// never occurs in a resource's type name, so they cannot meet one.
fn builtin_paths(app: &App, paths: &mut Map<String, Value>, schemas: &mut Map<String, Value>) {
    let builtins = app.builtin_operations();
    if builtins.is_empty() {
        return;
    }
    schemas.insert("Builtin.Membership".into(), json!({
        "type": "object", "required": ["subject", "roles", "created_at"],
        "properties": {
            "subject": {"type": "string", "minLength": 1, "maxLength": 255},
            "roles": {"type": "array", "items": {"type": "string", "enum": app.roles.iter().map(|r| r.name.clone()).collect::<Vec<_>>()}},
            "created_at": {"type": "string", "format": "date-time"}
        }
    }));
    schemas.insert("Builtin.MembershipGrant".into(), json!({
        "type": "object", "additionalProperties": false, "required": ["roles"],
        "properties": {"roles": {"type": "array", "items": {"type": "string", "enum": app.roles.iter().map(|r| r.name.clone()).collect::<Vec<_>>()}}}
    }));
    schemas.insert("Builtin.MembershipPage".into(), json!({
        "type": "object", "required": ["items"],
        "properties": {
            "items": {"type": "array", "items": {"$ref": "#/components/schemas/Builtin.Membership"}},
            "next_after": {"type": "string"}
        }
    }));
    schemas.insert(
        "Builtin.SessionRevocation".into(),
        json!({
            "type": "object", "additionalProperties": false, "required": ["subject"],
            "properties": {
                "subject": {"type": "string", "minLength": 1, "maxLength": 255},
                "reason": {"type": "string", "enum": ["admin", "password_change", "device_risk"]}
            }
        }),
    );
    if builtins.iter().any(|b| b.entity == "Domain") {
        schemas.insert(
            "Builtin.Domain".into(),
            json!({
                "type": "object", "required": ["domain", "token", "proof_url"],
                "properties": {
                    "domain": {"type": "string"},
                    "token": {"type": "string"},
                    "proof_url": {"type": "string", "format": "uri"},
                    "verified_at": {"type": "string", "format": "date-time"}
                }
            }),
        );
        schemas.insert(
            "Builtin.DomainClaim".into(),
            json!({
                "type": "object", "additionalProperties": false, "required": ["domain"],
                "properties": {"domain": {"type": "string", "maxLength": 253}}
            }),
        );
        schemas.insert("Builtin.DomainList".into(), json!({
            "type": "object", "required": ["items"],
            "properties": {"items": {"type": "array", "items": {"$ref": "#/components/schemas/Builtin.Domain"}}}
        }));
    }
    let problem = json!({"description": "problem", "content": {"application/problem+json": {"schema": {"$ref": "#/components/schemas/Problem"}}}});
    let body = |name: &str| json!({"required": true, "content": {"application/json": {"schema": {"$ref": format!("#/components/schemas/{name}")}}}});
    let ok = |name: &str| json!({"description": "success", "content": {"application/json": {"schema": {"$ref": format!("#/components/schemas/{name}")}}}});
    for builtin in &builtins {
        let mut op = Map::new();
        op.insert("operationId".into(), json!(builtin.id));
        op.insert("summary".into(), json!(builtin.summary));
        op.insert("tags".into(), json!(["built-in"]));
        let mut security = Vec::new();
        if let Some(scope) = &builtin.scope {
            security.push(json!({"bearer": [scope]}));
            op.insert("x-scope".into(), json!(scope));
        }
        if let Some(scope) = &builtin.machine_scope {
            security.push(json!({"bearer": [scope]}));
            op.insert("x-machine-scope".into(), json!(scope));
        }
        op.insert("security".into(), Value::Array(security));
        op.insert("x-roles".into(), json!(builtin.roles));
        let mut responses = Map::new();
        match builtin.id {
            "membership.list" => {
                op.insert("parameters".into(), json!([
                    {"name": "after", "in": "query", "required": false, "schema": {"type": "string"}},
                    {"name": "limit", "in": "query", "required": false, "schema": {"type": "integer", "minimum": 1, "maximum": 100}}
                ]));
                responses.insert("200".into(), json!({"description": "success", "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Builtin.MembershipPage"}}}}));
            }
            "membership.grant" => {
                op.insert("requestBody".into(), body("Builtin.MembershipGrant"));
                responses.insert("200".into(), json!({"description": "success", "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Builtin.Membership"}}}}));
                responses.insert("422".into(), problem.clone());
            }
            "membership.remove" | "domain.remove" => {
                responses.insert("204".into(), json!({"description": "removed"}));
                responses.insert("404".into(), problem.clone());
            }
            "domain.list" => {
                responses.insert("200".into(), ok("Builtin.DomainList"));
            }
            "domain.add" => {
                op.insert("requestBody".into(), body("Builtin.DomainClaim"));
                responses.insert("201".into(), ok("Builtin.Domain"));
                responses.insert("409".into(), problem.clone());
                responses.insert("422".into(), problem.clone());
            }
            "domain.verify" => {
                responses.insert("200".into(), ok("Builtin.Domain"));
                responses.insert("404".into(), problem.clone());
                responses.insert("422".into(), problem.clone());
            }
            _ => {
                op.insert("requestBody".into(), body("Builtin.SessionRevocation"));
                responses.insert("204".into(), json!({"description": "revoked"}));
                responses.insert("404".into(), problem.clone());
            }
        }
        if builtin.path.contains("{domain}") {
            op.insert("parameters".into(), json!([
                {"name": "domain", "in": "path", "required": true, "schema": {"type": "string", "maxLength": 253}}
            ]));
        }
        if builtin.path.contains("{subject}") {
            op.insert("parameters".into(), json!([
                {"name": "subject", "in": "path", "required": true, "schema": {"type": "string", "minLength": 1, "maxLength": 255}}
            ]));
            responses.insert("422".into(), problem.clone());
        }
        responses.insert("401".into(), problem.clone());
        responses.insert("403".into(), problem.clone());
        op.insert("responses".into(), Value::Object(responses));
        let entry = paths
            .entry(builtin.path.clone())
            .or_insert_with(|| json!({}));
        if let Some(map) = entry.as_object_mut() {
            map.insert(builtin.method.to_lowercase(), Value::Object(op));
        }
    }
}

/// OpenID Connect when the spec names an issuer (clients discover its endpoints), else a
/// plain bearer token; the scopes and what each allows are listed either way.
fn security_scheme(app: &App, scopes: Map<String, Value>) -> Value {
    let description = "OAuth 2.1 access tokens (RFC 9068 JWT) from the identity provider";
    match &app.identity.issuer {
        Some(issuer) => json!({
            "type": "openIdConnect",
            "openIdConnectUrl": format!("{}/.well-known/openid-configuration", issuer.trim_end_matches('/')),
            "description": description,
            "x-scopes": scopes,
        }),
        None => {
            json!({"type": "http", "scheme": "bearer", "bearerFormat": "JWT", "description": description, "x-scopes": scopes})
        }
    }
}

fn schemas_of(resource: &Resource) -> (Value, Value) {
    let mut out_props = Map::new();
    let mut in_props = Map::new();
    let mut out_required = vec![json!("id"), json!("created_at"), json!("updated_at")];
    let mut in_required = Vec::new();
    out_props.insert("id".into(), json!({"type": "string", "format": "uuid"}));
    for field in &resource.fields {
        let mut schema = match &field.ty {
            FieldType::String | FieldType::Text | FieldType::Principal => json!({"type": "string"}),
            FieldType::Email => json!({"type": "string", "format": "email"}),
            FieldType::Int => json!({"type": "integer", "format": "int64"}),
            FieldType::Bool => json!({"type": "boolean"}),
            FieldType::Decimal => json!({"type": "string", "format": "decimal"}),
            FieldType::Money => json!({"$ref": "#/components/schemas/Money"}),
            FieldType::Timestamp => json!({"type": "string", "format": "date-time"}),
            FieldType::Date => json!({"type": "string", "format": "date"}),
            FieldType::Uuid | FieldType::Reference { .. } => {
                json!({"type": "string", "format": "uuid"})
            }
            FieldType::Enum { variants, .. } => {
                json!({"type": "string", "enum": variants.iter().map(|v| v.value.clone()).collect::<Vec<_>>()})
            }
        };
        if field.ty == FieldType::Money && (field.min.is_some() || field.max.is_some()) {
            // The amount's bounds on the shared Money schema, through `allOf` (tools that
            // predate OpenAPI 3.1 ignore keywords beside a `$ref`).
            let mut amount = json!({"type": "integer", "format": "int64"});
            if let Some(min) = field.min {
                amount["minimum"] = json!(min);
            }
            if let Some(max) = field.max {
                amount["maximum"] = json!(max);
            }
            schema = json!({
                "allOf": [
                    {"$ref": "#/components/schemas/Money"},
                    {"properties": {"amount_minor": amount}},
                ],
            });
        }
        if let Some(map) = schema.as_object_mut() {
            let (min_key, max_key) = match field.ty {
                FieldType::Int => ("minimum", "maximum"),
                _ => ("minLength", "maxLength"),
            };
            if field.ty != FieldType::Money {
                if let Some(min) = field.min {
                    map.insert(min_key.into(), json!(min));
                }
                if let Some(max) = field.max {
                    map.insert(max_key.into(), json!(max));
                }
            }
            if let Some(description) = &field.description {
                map.insert("description".into(), json!(description));
            }
        }
        out_props.insert(field.json.clone(), schema.clone());
        if !field.optional {
            out_required.push(json!(field.json));
        }
        if field.ty != FieldType::Principal {
            in_props.insert(field.json.clone(), schema);
            if !field.optional && field.default.is_none() {
                in_required.push(json!(field.json));
            }
        }
    }
    out_props.insert(
        "created_at".into(),
        json!({"type": "string", "format": "date-time"}),
    );
    out_props.insert(
        "updated_at".into(),
        json!({"type": "string", "format": "date-time"}),
    );
    // Built by moving the parts in (`json!` would copy them).
    let object = |required: Vec<Value>, properties: Map<String, Value>, closed: bool| {
        let mut object = Map::new();
        object.insert("type".into(), json!("object"));
        if closed {
            object.insert("additionalProperties".into(), Value::Bool(false));
        }
        object.insert("required".into(), Value::Array(required));
        object.insert("properties".into(), Value::Object(properties));
        Value::Object(object)
    };
    (
        object(out_required, out_props, false),
        object(in_required, in_props, true),
    )
}
