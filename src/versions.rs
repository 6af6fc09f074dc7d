//! Stage 2b, versions: what each API version serves, between lowering and rendering.
//!
//! The manifest of a generation records the shape of every version it served: each resource
//! with its path, its fields under their JSON names and its operations. A version the spec
//! keeps under `api.deprecated` keeps the shape it had when it was current, mapped through this
//! spec's renames, so its clients go on seeing the names and fields they were written against
//! while the current version changes. A resource or field that a served version exposes
//! cannot leave the spec (its column would be dropped under that version's clients) or change
//! its type (an enum may gain values) until the version is retired. A version no earlier
//! generation recorded is served with the current shapes, and recorded so from then on.

use crate::model::{Action, App, DeprecatedVersion, Field, FieldType, Resource};
use crate::render::rust::input_optional;
use serde::{Deserialize, Serialize};

/// What one API version serves.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ApiShape {
    /// `v1`, …
    pub version: String,
    pub resources: Vec<ResourceShape>,
}

/// One resource as a version serves it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ResourceShape {
    /// The resource's name in the spec of the generation that recorded it (renames carry it
    /// forward).
    pub resource: String,
    /// Its path segment in that version (`invoices`).
    pub path: String,
    /// Its fields, in order.
    pub fields: Vec<FieldShape>,
    /// Its operations, by action name (`read`, `send`).
    pub actions: Vec<String>,
}

/// One field as a version serves it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct FieldShape {
    /// The field's name in the spec of the generation that recorded it.
    pub field: String,
    /// Its JSON property in that version.
    pub json: String,
    /// Its type there (`string`, `enum (a, b)`, `reference`); empty in records that
    /// predate it.
    #[serde(default)]
    pub ty: String,
}

/// A spec change that would break a version still served (exit 4).
#[derive(Debug, thiserror::Error, miette::Diagnostic)]
#[error("the spec change breaks an API version still served:\n{}", .reasons.iter().map(|r| format!("  - {r}")).collect::<Vec<_>>().join("\n"))]
#[diagnostic(
    code(bulwark::versions::still_served),
    help(
        "a deprecated version keeps the resources and fields its clients use until the spec retires it: each line says what to keep or change"
    )
)]
pub struct StillServed {
    pub reasons: Vec<String>,
}

/// The shape the current spec serves.
pub fn current(app: &App) -> ApiShape {
    ApiShape {
        version: app.api_version.clone(),
        resources: app.resources.iter().map(resource_shape).collect(),
    }
}

fn resource_shape(resource: &Resource) -> ResourceShape {
    ResourceShape {
        resource: resource.name.clone(),
        path: resource.path.clone(),
        fields: resource
            .fields
            .iter()
            .map(|f| FieldShape {
                field: f.name.clone(),
                json: f.json.clone(),
                ty: type_text(f),
            })
            .collect(),
        actions: resource.actions.iter().map(|a| a.name.clone()).collect(),
    }
}

/// Gives each deprecated version of `app` its shape: the one `recorded` by the previous
/// generation (mapped through the renames), else the current one. Errs with the reasons when
/// a served version exposes what the spec no longer has, or has with another type, or its
/// record is not one bulwark writes.
pub fn attach(app: &mut App, recorded: &[ApiShape]) -> Result<(), StillServed> {
    let mut reasons = Vec::new();
    let mut shapes = Vec::new();
    for version in &app.deprecated_versions {
        let shape = match recorded.iter().find(|s| s.version == version.version) {
            Some(shape) => carried_forward(app, shape, &mut reasons),
            None => current_as(app, &version.version),
        };
        shapes.push(shape);
    }
    if !reasons.is_empty() {
        return Err(StillServed { reasons });
    }
    for (version, shape) in app.deprecated_versions.iter_mut().zip(shapes) {
        version.shape = Some(shape);
    }
    Ok(())
}

/// `shape` with this spec's names: resources and fields renamed since are found under their
/// new names; operations the spec no longer has are left out (no policy allows them).
fn carried_forward(app: &App, shape: &ApiShape, reasons: &mut Vec<String>) -> ApiShape {
    let version = &shape.version;
    let mut resources = Vec::new();
    // The record comes from the output directory or branch, which people can edit: what it
    // names reaches route paths and serde attributes only when it is what bulwark writes.
    let written_by_bulwark = |text: &str, extra: char| {
        !text.is_empty()
            && text
                .chars()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == extra)
    };
    for old in &shape.resources {
        let mut json_names: Vec<&str> = vec!["id", "created_at", "updated_at"];
        let odd = !written_by_bulwark(&old.path, '-')
            || old.fields.iter().any(|f| {
                let fresh = !json_names.contains(&f.json.as_str());
                json_names.push(&f.json);
                !fresh || !written_by_bulwark(&f.json, '_')
            });
        if odd {
            reasons.push(format!(
                "the manifest's record of api version `{version}` has a path or property names for `{}` that bulwark never writes: restore `.bulwark/manifest.json` from the generated branch",
                old.resource
            ));
            continue;
        }
        let name = app
            .rename_resources
            .iter()
            .find(|(from, _)| *from == old.resource)
            .map_or(old.resource.as_str(), |(_, to)| to.as_str());
        let Some(resource) = app.resources.iter().find(|r| r.name == name) else {
            reasons.push(format!(
                "api version `{version}` still serves `{}` (at `/{version}/{}`): keep the resource in the spec until `{version}` is retired (removed from `api.deprecated`)",
                old.resource, old.path
            ));
            continue;
        };
        let mut fields = Vec::new();
        for field in &old.fields {
            let name = app
                .rename
                .iter()
                .find(|(r, from, _)| r == &resource.name && *from == field.field)
                .map_or(field.field.as_str(), |(_, _, to)| to.as_str());
            if let Some(now) = resource.fields.iter().find(|f| f.name == name) {
                let ty = type_text(now);
                if !field.ty.is_empty() && !widens(&field.ty, &ty) {
                    reasons.push(format!(
                        "api version `{version}` still serves `{}.{name}` as `{}`: keep its type (not `{ty}`) until `{version}` is retired (removed from `api.deprecated`)",
                        resource.name, field.ty
                    ));
                }
                fields.push(FieldShape {
                    field: name.to_owned(),
                    json: field.json.clone(),
                    ty,
                });
            } else {
                reasons.push(format!(
                    "api version `{version}` still serves `{}.{}` (as `{}`): keep the field in the spec until `{version}` is retired (removed from `api.deprecated`)",
                    resource.name, field.field, field.json
                ));
            }
        }
        let actions: Vec<String> = old
            .actions
            .iter()
            .filter(|a| resource.actions.iter().any(|c| &c.name == *a))
            .cloned()
            .collect();
        let creates = actions.iter().any(|a| a == "create");
        for added in resource.fields.iter().filter(|f| {
            crate::render::rust::is_input(f)
                && !input_optional(f)
                && !fields.iter().any(|s| s.field == f.name)
        }) {
            if creates {
                reasons.push(format!(
                    "api version `{version}` creates `{}` without `{}`, which is required: give `{}` a default or make it optional",
                    resource.name, added.name, added.name
                ));
            }
        }
        resources.push(ResourceShape {
            resource: resource.name.clone(),
            path: old.path.clone(),
            fields,
            actions,
        });
    }
    ApiShape {
        version: version.clone(),
        resources,
    }
}

/// A field's type as clients see it. (A reference's target is left out: it follows renames.)
pub fn type_text(field: &Field) -> String {
    match &field.ty {
        FieldType::Enum { variants, .. } => format!(
            "enum ({})",
            variants
                .iter()
                .map(|v| v.value.as_str())
                .collect::<Vec<_>>()
                .join(", ")
        ),
        FieldType::Reference { .. } => "reference".into(),
        other => serde_json::to_value(other)
            .ok()
            .and_then(|v| v["kind"].as_str().map(str::to_owned))
            .unwrap_or_default(),
    }
}

/// Whether a version that served a field as `was` may serve it as `now`: the same type, or
/// an enum with values added (as the current version does).
fn widens(was: &str, now: &str) -> bool {
    let values = |ty: &str| -> Option<Vec<String>> {
        let list = ty.strip_prefix("enum (")?.strip_suffix(')')?;
        Some(list.split(", ").map(str::to_owned).collect())
    };
    match (values(was), values(now)) {
        (Some(was), Some(now)) => was.iter().all(|v| now.contains(v)),
        _ => was == now,
    }
}

/// The shapes a generation records: the current version's, then each deprecated one's.
pub fn recorded(app: &App) -> Vec<ApiShape> {
    let mut shapes = vec![current(app)];
    shapes.extend(app.deprecated_versions.iter().map(|v| {
        v.shape
            .clone()
            .unwrap_or_else(|| current_as(app, &v.version))
    }));
    shapes
}

fn current_as(app: &App, version: &str) -> ApiShape {
    ApiShape {
        version: version.to_owned(),
        ..current(app)
    }
}

/// How a previous version serves one resource of the current spec.
pub struct Served<'a> {
    /// Its path segment there.
    pub path: &'a str,
    /// The current actions it serves, in spec order.
    pub actions: Vec<&'a Action>,
    /// Its fields with their JSON names there, when they differ from the current ones (then
    /// it has types of its own); `None` when its bodies are the current ones.
    pub fields: Option<Vec<(&'a Field, &'a str)>>,
}

impl Served<'_> {
    /// Whether `action` is served there exactly as now (same path after the prefix, same
    /// bodies), so the current handler and route serve it.
    pub fn unchanged(&self, resource: &Resource, action: &Action) -> bool {
        self.fields.is_none()
            && self.path == resource.path
            && self.actions.iter().any(|a| a.name == action.name)
    }
}

impl DeprecatedVersion {
    /// How this version serves `resource`; `None` when it does not (the resource is newer).
    /// A version without a recorded shape serves everything as the current one.
    pub fn serves<'a>(&'a self, resource: &'a Resource) -> Option<Served<'a>> {
        let Some(shape) = &self.shape else {
            return Some(Served {
                path: &resource.path,
                actions: resource.actions.iter().collect(),
                fields: None,
            });
        };
        let old = shape
            .resources
            .iter()
            .find(|r| r.resource == resource.name)?;
        let fields: Vec<(&Field, &str)> = old
            .fields
            .iter()
            .filter_map(|s| {
                let field = resource.fields.iter().find(|f| f.name == s.field)?;
                Some((field, s.json.as_str()))
            })
            .collect();
        let same_fields =
            fields.len() == resource.fields.len() && fields.iter().all(|(f, json)| f.json == *json);
        Some(Served {
            path: &old.path,
            actions: resource
                .actions
                .iter()
                .filter(|a| old.actions.contains(&a.name))
                .collect(),
            fields: (!same_fields).then_some(fields),
        })
    }

    /// Whether this version serves every operation of `app` exactly as the current version.
    pub fn serves_as_current(&self, app: &App) -> bool {
        app.resources.iter().all(|r| {
            self.serves(r).is_some_and(|served| {
                served.actions.len() == r.actions.len()
                    && r.actions.iter().all(|a| served.unchanged(r, a))
            })
        })
    }

    /// The path of `action` (a current one of `resource`) in this version, as `served`.
    pub fn path_of(
        &self,
        app: &App,
        resource: &Resource,
        served: &Served<'_>,
        action: &Action,
    ) -> String {
        let current = format!("/{}/{}", app.api_version, resource.path);
        let rest = action.path.strip_prefix(&current).unwrap_or_default();
        format!("/{}/{}{rest}", self.version, served.path)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A spec at `version`, with `fields` for `note` and `extra` lines (resources, markers).
    fn spec(version: &str, deprecated: &str, fields: &str, extra: &str) -> String {
        format!(
            r#"
bulwark: 1
app: {{ name: shapes }}
api:
  version: {version}
  {deprecated}
  scopes: {{ s: Everything }}
identity: {{ issuer: "https://id.example.com/", audience: shapes, max_token_lifetime: 10m }}
roles: {{ admin: {{ description: Admin }} }}
resources:
  note:
    fields: {{ {fields} }}
    actions:
      create: {{ roles: [admin], scope: s }}
      read: {{ roles: [admin], scope: s }}
      update: {{ roles: [admin], scope: s }}
{extra}"#
        )
    }

    fn compile(text: &str) -> App {
        crate::compile("shapes.yaml", text).expect("the spec is valid")
    }

    const V1_FIELDS: &str = "title: { type: string, max: 10 }";
    const BUMP: &str = "deprecated: { v1: { since: 2026-01-01, sunset: 2027-01-01 } }";

    #[test]
    fn a_version_without_a_record_serves_the_current_shapes() {
        let mut app = compile(&spec("v2", BUMP, V1_FIELDS, ""));
        attach(&mut app, &[]).expect("nothing recorded, nothing refused");
        let v1 = &app.deprecated_versions[0];
        assert!(v1.serves_as_current(&app));
        assert_eq!(recorded(&app)[1].resources, current(&app).resources);
    }

    #[test]
    fn a_recorded_version_keeps_its_names_through_renames() {
        let first = compile(&spec("v1", "", V1_FIELDS, ""));
        let renamed = spec(
            "v2",
            BUMP,
            "heading: { type: string, max: 10 }, body: { type: text, optional: true }",
            "migrations: { rename: { note.title: heading } }\n",
        );
        let mut app = compile(&renamed);
        attach(&mut app, &recorded(&first)).expect("nothing left the spec");
        let v1 = &app.deprecated_versions[0];
        assert!(!v1.serves_as_current(&app));
        let note = &app.resources[0];
        let served = v1.serves(note).expect("v1 has notes");
        let fields: Vec<(&str, &str)> = served
            .fields
            .as_ref()
            .expect("bodies of its own")
            .iter()
            .map(|(f, json)| (f.name.as_str(), *json))
            .collect();
        assert_eq!(fields, [("heading", "title")], "body is newer than v1");
        assert_eq!(served.actions.len(), 3);
        assert_eq!(
            v1.path_of(&app, note, &served, &note.actions[1]),
            "/v1/notes/{id}"
        );
        // Recorded again under the current names, it maps the same way next time.
        let again = recorded(&app);
        let mut next = compile(&renamed);
        attach(&mut next, &again).expect("still nothing left the spec");
        assert_eq!(
            next.deprecated_versions[0].shape,
            app.deprecated_versions[0].shape
        );
    }

    #[test]
    fn newer_resources_and_removed_actions_are_not_served_by_an_old_version() {
        let first = compile(&spec("v1", "", V1_FIELDS, ""));
        let text = spec("v2", BUMP, V1_FIELDS, "  tag:\n    fields: { label: { type: string, max: 5 } }\n    actions: { read: { roles: [admin], scope: s } }\n")
            .replace("      update: { roles: [admin], scope: s }\n", "");
        let mut app = compile(&text);
        attach(&mut app, &recorded(&first)).expect("nothing left the spec");
        let v1 = &app.deprecated_versions[0];
        assert!(
            v1.serves(&app.resources[1]).is_none(),
            "tag is newer than v1"
        );
        let served = v1.serves(&app.resources[0]).expect("v1 has notes");
        assert!(served.fields.is_none(), "the same bodies");
        assert_eq!(served.actions.len(), 2, "update is gone");
        assert!(!v1.serves_as_current(&app));
    }

    #[test]
    fn what_a_served_version_exposes_cannot_leave_the_spec() {
        let first = compile(&spec(
            "v1",
            "",
            "title: { type: string, max: 10 }, body: { type: text, optional: true }",
            "",
        ));
        let mut app = compile(&spec(
            "v2",
            BUMP,
            &format!("{V1_FIELDS}, due: {{ type: date }}"),
            "migrations: { drop: [note.body] }\n",
        ));
        let refused = attach(&mut app, &recorded(&first)).expect_err("body is still served");
        assert_eq!(
            refused.reasons,
            [
                "api version `v1` still serves `note.body` (as `body`): keep the field in the spec until `v1` is retired (removed from `api.deprecated`)",
                "api version `v1` creates `note` without `due`, which is required: give `due` a default or make it optional",
            ]
        );
        assert!(
            app.deprecated_versions[0].shape.is_none(),
            "nothing attached"
        );
    }

    #[test]
    fn a_record_edited_by_hand_is_refused() {
        let first = compile(&spec("v1", "", V1_FIELDS, ""));
        let mut app = compile(&spec("v2", BUMP, V1_FIELDS, ""));
        for (path, json) in [
            ("notes/{*rest}", "title"),
            ("notes", "a\"b"),
            ("notes", "id"),
        ] {
            let mut record = recorded(&first);
            record[0].resources[0].path = path.into();
            record[0].resources[0].fields[0].json = json.into();
            let refused = attach(&mut app, &record).expect_err("not what bulwark writes");
            assert!(refused.reasons[0].contains("never writes"), "{refused:?}");
        }
    }

    #[test]
    fn a_served_field_keeps_its_type_but_an_enum_may_grow() {
        let first = compile(&spec(
            "v1",
            "",
            "title: { type: string, max: 10 }, state: { type: enum, values: [open, done] }",
            "",
        ));
        let grown = spec(
            "v2",
            BUMP,
            "title: { type: string, max: 10 }, state: { type: enum, values: [open, done, held] }",
            "",
        );
        let mut app = compile(&grown);
        attach(&mut app, &recorded(&first)).expect("an enum may gain values");
        let retyped = spec(
            "v2",
            BUMP,
            "title: { type: int }, state: { type: enum, values: [open] }",
            "",
        );
        let mut app = compile(&retyped);
        let refused = attach(&mut app, &recorded(&first)).expect_err("v1 serves title as a string");
        assert_eq!(
            refused.reasons,
            [
                "api version `v1` still serves `note.title` as `string`: keep its type (not `int`) until `v1` is retired (removed from `api.deprecated`)",
                "api version `v1` still serves `note.state` as `enum (open, done)`: keep its type (not `enum (open)`) until `v1` is retired (removed from `api.deprecated`)",
            ]
        );
    }
}
