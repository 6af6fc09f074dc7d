//! Finishing the rendered Rust with the toolchain's rustfmt, so the output passes
//! `cargo fmt --check` exactly as engineers' tools see it (prettyplease alone does not match
//! rustfmt everywhere). One rustfmt process formats every file, in a scratch copy of the layout.

use crate::render::FileSet;
use std::path::PathBuf;
use std::process::Command;

#[derive(Debug, thiserror::Error, miette::Diagnostic)]
pub enum FormatError {
    #[error("rustfmt was not found")]
    #[diagnostic(
        code(bulwark::rustfmt::missing),
        help("install it with `rustup component add rustfmt`, or point BULWARK_RUSTFMT at it")
    )]
    Missing,
    #[error("rustfmt failed: {0}")]
    #[diagnostic(
        code(bulwark::rustfmt::failed),
        help("this is likely a bug in bulwark; please report it with the spec")
    )]
    Failed(String),
    #[error("scratch directory for rustfmt: {0}")]
    #[diagnostic(code(bulwark::rustfmt::io))]
    Io(#[from] std::io::Error),
}

fn rustfmt() -> PathBuf {
    std::env::var_os("BULWARK_RUSTFMT").map_or_else(|| PathBuf::from("rustfmt"), PathBuf::from)
}

/// The rustfmt version line, recorded in the manifest.
pub fn rustfmt_version() -> Result<String, FormatError> {
    let output = Command::new(rustfmt())
        .arg("--version")
        .output()
        .map_err(|_| FormatError::Missing)?;
    if !output.status.success() {
        return Err(FormatError::Missing);
    }
    Ok(String::from_utf8_lossy(&output.stdout).trim().to_owned())
}

/// Formats every `.rs` file of `files` in place (edition 2024, default style).
pub fn format_rust(files: &mut FileSet) -> Result<(), FormatError> {
    let scratch = tempfile::tempdir()?;
    let mut paths = Vec::new();
    // The real layout, so rustfmt resolves `mod x;` to the right files.
    for path in files.rust_paths() {
        let scratch_path = scratch.path().join(path);
        if let Some(parent) = scratch_path.parent() {
            std::fs::create_dir_all(parent)?;
        }
        std::fs::write(&scratch_path, &files.files[path])?;
        paths.push((path.clone(), scratch_path));
    }
    if paths.is_empty() {
        return Ok(());
    }
    let output = Command::new(rustfmt())
        .args(["--edition", "2024"])
        .args(paths.iter().map(|(_, p)| p))
        .output()
        .map_err(|_| FormatError::Missing)?;
    if !output.status.success() {
        let stderr = String::from_utf8_lossy(&output.stderr);
        return Err(FormatError::Failed(
            stderr.lines().take(20).collect::<Vec<_>>().join("\n"),
        ));
    }
    for (path, scratch_path) in paths {
        let formatted = std::fs::read_to_string(&scratch_path)?;
        files.files.insert(path, formatted);
    }
    Ok(())
}
