//! The tera templates, embedded in the binary so a generated workspace never depends on
//! files beside bulwark.

use super::RenderError;
use serde::Serialize;
use std::sync::OnceLock;

const TEMPLATES: &[(&str, &str)] = &[
    (
        "migration_init.sql",
        include_str!("../../templates/migration_init.sql.tera"),
    ),
    (
        "workspace_Cargo.toml",
        include_str!("../../templates/workspace_Cargo.toml.tera"),
    ),
    (
        "crate_api_Cargo.toml",
        include_str!("../../templates/crate_api_Cargo.toml.tera"),
    ),
    (
        "crate_server_Cargo.toml",
        include_str!("../../templates/crate_server_Cargo.toml.tera"),
    ),
    (
        "crate_client_Cargo.toml",
        include_str!("../../templates/crate_client_Cargo.toml.tera"),
    ),
    ("gitignore", include_str!("../../templates/gitignore.tera")),
    ("ci.yml", include_str!("../../templates/ci.yml.tera")),
    ("README.md", include_str!("../../templates/README.md.tera")),
    (
        "THREAT_MODEL.md",
        include_str!("../../templates/THREAT_MODEL.md.tera"),
    ),
    (
        "PERMISSIONS.md",
        include_str!("../../templates/PERMISSIONS.md.tera"),
    ),
    (
        "IDENTITY.md",
        include_str!("../../templates/IDENTITY.md.tera"),
    ),
];

fn engine() -> &'static tera::Tera {
    static ENGINE: OnceLock<tera::Tera> = OnceLock::new();
    ENGINE.get_or_init(|| {
        let mut tera = tera::Tera::new();
        // Context values are escaped for their target before they get here; HTML escaping
        // would corrupt SQL and TOML.
        tera.autoescape_on(Vec::<&str>::new());
        for (name, body) in TEMPLATES {
            if let Err(e) = tera.add_raw_template(name, body) {
                panic!("embedded template `{name}` does not parse: {e}");
            }
        }
        tera
    })
}

/// Renders an embedded template with a typed context.
pub fn render<C: Serialize>(name: &str, context: &C) -> Result<String, RenderError> {
    let failed = |e: tera::Error| RenderError::Template {
        name: name.to_owned(),
        message: e.to_string(),
    };
    let context = tera::Context::from_serialize(context).map_err(failed)?;
    engine().render(name, &context).map_err(failed)
}
