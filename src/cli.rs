//! The command line: parses arguments, runs the pipeline, prints results for people or as
//! JSON for programs, and maps every outcome to a documented exit code.

use crate::diagnostic::Report;
use crate::{emit, format, render};
use clap::{Parser, Subcommand, ValueEnum};
use serde_json::json;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Instant;

// Output goes through these (`print_to!(stdout, …)`) rather than `print!` and friends, which
// panic when the reader has gone away (`bulwark --format json generate … | head`): a closed
// pipe is the reader's choice, not a failure of the command, so write errors are ignored.
macro_rules! print_to {
    ($stream:ident, $($arg:tt)*) => {{
        use std::io::Write as _;
        let _ = write!(std::io::$stream(), $($arg)*);
    }};
}
macro_rules! println_to {
    ($stream:ident, $($arg:tt)*) => {{
        use std::io::Write as _;
        let _ = writeln!(std::io::$stream(), $($arg)*);
    }};
}

/// Exit codes (documented in the README).
pub mod exit {
    pub const OK: u8 = 0;
    pub const INVALID_SPEC: u8 = 1;
    pub const USAGE_OR_IO: u8 = 2;
    pub const CHECK_FAILED: u8 = 3;
    pub const REFUSED: u8 = 4;
}

#[derive(Parser, Debug)]
#[command(
    name = "bulwark",
    version,
    about = "Generate secure-by-default Rust services from a YAML spec"
)]
pub struct Cli {
    /// Output for people (`human`) or programs (`json`).
    #[arg(long, value_enum, global = true, default_value_t = OutputFormat::Human)]
    pub format: OutputFormat,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum OutputFormat {
    Human,
    Json,
}

/// The branch (and folder in it) a generation is committed to.
#[derive(clap::Args, Debug)]
pub struct BranchArgs {
    /// The branch that holds bulwark's generations (e.g. `bulwark/generated`).
    #[arg(long, requires = "git", conflicts_with = "out")]
    branch: Option<String>,
    /// A folder of the branch to generate into (default: its root).
    #[arg(long, requires = "branch", conflicts_with = "out")]
    prefix: Option<String>,
}

#[derive(Subcommand, Debug)]
pub enum Command {
    /// Render the service of SPEC into a directory, or commit it to a git branch.
    Generate {
        /// The spec file.
        spec: PathBuf,
        /// Target directory (created if missing).
        #[arg(long, required_unless_present = "git", conflicts_with = "git")]
        out: Option<PathBuf>,
        /// Commit the generation to a branch of this repository instead (HEAD, the index and
        /// the working tree are left alone; a bare repository works too).
        #[arg(long, value_name = "REPO", requires = "branch")]
        git: Option<PathBuf>,
        #[command(flatten)]
        branch: BranchArgs,
        /// Commit author, `Name <email>` (default: the repository's user, else bulwark).
        #[arg(long, requires = "git", conflicts_with = "out")]
        author: Option<String>,
        /// Committer, `Name <email>` (default: the author).
        #[arg(long, requires = "git", conflicts_with = "out")]
        committer: Option<String>,
        /// Commit time in seconds since the epoch, for reproducible commits (default:
        /// `SOURCE_DATE_EPOCH`, else now); at most 4294967295, the last libgit2 writes as
        /// given.
        #[arg(long, requires = "git", conflicts_with = "out", value_name = "SECONDS",
              value_parser = clap::value_parser!(i64).range(0..=COMMIT_TIME_MAX))]
        commit_time: Option<i64>,
        /// Overwrite generated files edited by hand (never a file bulwark did not generate);
        /// with `--git`, commit on top of a branch bulwark did not make.
        #[arg(long)]
        force: bool,
    },
    /// Report what changed between two specs in who may do what and in the API (Markdown,
    /// or JSON); exit 3 on a breaking API change without an `api.version` bump.
    Diff {
        /// The old spec: a file, or `REVISION:PATH` with `--git`.
        old: String,
        /// The new spec: a file, or `REVISION:PATH` with `--git`.
        new: String,
        /// Read OLD and NEW as `REVISION:PATH` from this repository.
        #[arg(long, value_name = "REPO")]
        git: Option<PathBuf>,
    },
    /// Check that a branch's tip is what SPEC renders now (exit 3 if it drifted).
    Check {
        /// The spec file.
        spec: PathBuf,
        /// The repository holding the generated branch.
        #[arg(long, value_name = "REPO")]
        git: PathBuf,
        /// The branch that holds bulwark's generations (e.g. `bulwark/generated`).
        #[arg(long)]
        branch: String,
        /// The folder of the branch generated into (default: its root).
        #[arg(long)]
        prefix: Option<String>,
    },
    /// Check SPEC and report every problem.
    Validate {
        /// The spec file.
        spec: PathBuf,
    },
    /// Check a generated project: every route goes through the guard and, with `--database`,
    /// its migrations isolate tenants in PostgreSQL (exit 3 if not).
    Audit {
        /// The project's root directory.
        dir: PathBuf,
        /// The spec it was generated from: every declared operation must be one of its, and
        /// the app role's privileges must be what its actions need.
        #[arg(long)]
        spec: Option<PathBuf>,
        /// A PostgreSQL server (URL of a role that may create databases and roles): apply
        /// the migrations to a scratch database there and check the catalog.
        #[arg(long, value_name = "URL")]
        database: Option<String>,
        /// With `--database`: an existing owner role to migrate as (default: a fresh one).
        #[arg(long, value_name = "ROLE", requires = "database")]
        owner_role: Option<String>,
        /// With `--database`: an existing app role to grant to (default: a fresh one).
        #[arg(long, value_name = "ROLE", requires = "database")]
        app_role: Option<String>,
    },
    /// Print the JSON Schema of the spec format.
    Schema,
    /// Write a commented starter spec.
    Init {
        /// Where to write it (`-` for standard output).
        #[arg(default_value = "bulwark.yaml")]
        path: PathBuf,
        /// Overwrite an existing file.
        #[arg(long)]
        force: bool,
    },
}

/// The commit time `SOURCE_DATE_EPOCH` pins, if set; one that is not a time is an error
/// (a reproducible commit was asked for: never one made now instead).
fn source_date_epoch() -> Result<Option<i64>, crate::git::GitError> {
    let value = match std::env::var("SOURCE_DATE_EPOCH") {
        Err(std::env::VarError::NotPresent) => return Ok(None),
        Err(std::env::VarError::NotUnicode(value)) => value.to_string_lossy().into_owned(),
        Ok(value) => value,
    };
    match value.trim().parse() {
        Ok(time) if (0..=COMMIT_TIME_MAX).contains(&time) => Ok(Some(time)),
        _ => Err(crate::git::GitError::SourceDateEpoch { value }),
    }
}

/// The latest commit time libgit2 records as given (it wraps later ones around 2^32).
const COMMIT_TIME_MAX: i64 = u32::MAX as i64;

/// Runs the command line and returns the exit code.
pub fn run() -> ExitCode {
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(error) => return ExitCode::from(usage_error(error)),
    };
    let code = match &cli.command {
        Command::Generate {
            spec,
            out,
            git,
            branch,
            author,
            committer,
            commit_time,
            force,
        } => {
            let target = match (out, git) {
                (Some(out), _) => Output::Dir(out.clone()),
                (None, Some(repo)) => Output::Git(
                    crate::git::Target {
                        repo: repo.clone(),
                        branch: branch.branch.clone().unwrap_or_default(),
                        prefix: branch.prefix.clone(),
                    },
                    crate::git::Identity {
                        author: author.clone(),
                        committer: committer.clone(),
                        time: match commit_time.map_or_else(source_date_epoch, |t| Ok(Some(t))) {
                            Ok(time) => time,
                            Err(error) => {
                                return ExitCode::from(fail(
                                    cli.format,
                                    exit::USAGE_OR_IO,
                                    "usage",
                                    &error,
                                ));
                            }
                        },
                    },
                ),
                (None, None) => unreachable!("clap requires --out or --git"),
            };
            generate(cli.format, spec, &target, *force)
        }
        Command::Diff { old, new, git } => diff(cli.format, old, new, git.as_deref()),
        Command::Check {
            spec,
            git,
            branch,
            prefix,
        } => check(
            cli.format,
            spec,
            &crate::git::Target {
                repo: git.clone(),
                branch: branch.clone(),
                prefix: prefix.clone(),
            },
        ),
        Command::Validate { spec } => validate(cli.format, spec),
        Command::Audit {
            dir,
            spec,
            database,
            owner_role,
            app_role,
        } => {
            let database = database.as_deref().map(|url| {
                (
                    url,
                    crate::audit::database::Roles {
                        owner: owner_role.clone(),
                        app: app_role.clone(),
                    },
                )
            });
            audit(cli.format, dir, spec.as_deref(), database)
        }
        Command::Schema => {
            println_to!(stdout, "{}", crate::schema_json());
            exit::OK
        }
        Command::Init { path, force } => init(cli.format, path, *force),
    };
    ExitCode::from(code)
}

/// Help and version go to stdout with exit 0; usage errors exit 2; each as JSON when the
/// arguments asked for JSON (programs parse stdout even when their call was wrong).
fn usage_error(error: clap::Error) -> u8 {
    use clap::error::ErrorKind;
    // `args_os`: an argument that is not UTF-8 must still get its usage error.
    let args: Vec<String> = std::env::args_os()
        .map(|a| a.to_string_lossy().into_owned())
        .collect();
    // The last `--format` given wins, as clap reads it.
    let mut formats = args
        .iter()
        .enumerate()
        .filter_map(|(i, a)| match a.as_str() {
            "--format" => args.get(i + 1).map(String::as_str),
            _ => a.strip_prefix("--format="),
        });
    let wants_json = formats.next_back() == Some("json");
    if matches!(
        error.kind(),
        ErrorKind::DisplayHelp | ErrorKind::DisplayVersion
    ) {
        if wants_json {
            let key = if error.kind() == ErrorKind::DisplayHelp {
                "help"
            } else {
                "version"
            };
            let text = error.render().to_string();
            println_to!(stdout, "{}", json!({"ok": true, key: text.trim_end()}));
        } else {
            let _ = error.print();
        }
        return exit::OK;
    }
    if wants_json {
        let message = error.kind().as_str().unwrap_or("invalid arguments");
        println_to!(
            stdout,
            "{}",
            json!({"ok": false, "error": {"kind": "usage", "code": "bulwark::usage", "message": message, "help": "run `bulwark help` or `bulwark COMMAND --help` for the accepted arguments", "detail": error.to_string()}})
        );
    } else {
        let _ = error.print();
    }
    exit::USAGE_OR_IO
}

fn fail(format: OutputFormat, code: u8, kind: &str, error: &dyn miette::Diagnostic) -> u8 {
    match format {
        OutputFormat::Json => {
            let help = error.help().map(|h| h.to_string());
            let code = error.code().map(|c| c.to_string());
            println_to!(
                stdout,
                "{}",
                json!({"ok": false, "error": {"kind": kind, "code": code, "message": error.to_string(), "help": help}})
            );
        }
        OutputFormat::Human => {
            let mut out = String::new();
            let handler = miette::GraphicalReportHandler::new_themed(
                miette::GraphicalTheme::unicode_nocolor(),
            );
            let _ = handler.render_report(&mut out, error);
            print_to!(stderr, "{}", crate::diagnostic::printable(&out));
        }
    }
    code
}

#[derive(Debug, thiserror::Error, miette::Diagnostic)]
enum InputError {
    #[error("cannot read `{path}`: {message}")]
    #[diagnostic(code(bulwark::io::read))]
    Read { path: String, message: String },
    #[error("`{path}` is larger than {limit} MiB, more than any spec")]
    #[diagnostic(
        code(bulwark::io::too_large),
        help("name the spec file (a YAML file of resources, roles and actions)")
    )]
    TooLarge { path: String, limit: u64 },
    #[error("`{path}` already exists")]
    #[diagnostic(code(bulwark::init::exists), help("pass --force to overwrite it"))]
    Exists { path: String },
    #[error("cannot write `{path}`: {message}")]
    #[diagnostic(code(bulwark::io::write))]
    Write { path: String, message: String },
}

fn report_invalid(format: OutputFormat, report: &Report) -> u8 {
    match format {
        OutputFormat::Json => println_to!(
            stdout,
            "{}",
            json!({"ok": false, "file": report.path, "diagnostics": report.diagnostics})
        ),
        OutputFormat::Human => print_to!(stderr, "{}", report.render()),
    }
    exit::INVALID_SPEC
}

/// A spec larger than this is refused unread (a spec of a thousand resources takes well under
/// one MiB): whatever names a huge file or a device must not take the machine's memory.
const MAX_SPEC_BYTES: u64 = 16 * 1024 * 1024;

fn read_spec(format: OutputFormat, path: &Path) -> Result<String, u8> {
    use std::io::Read as _;
    let name = path.display().to_string();
    let mut bytes = Vec::new();
    let read = std::fs::File::open(path)
        .and_then(|file| file.take(MAX_SPEC_BYTES + 1).read_to_end(&mut bytes));
    if let Err(e) = read {
        let error = InputError::Read {
            path: name,
            message: e.to_string(),
        };
        return Err(fail(format, exit::USAGE_OR_IO, "io", &error));
    }
    if bytes.len() as u64 > MAX_SPEC_BYTES {
        let error = InputError::TooLarge {
            path: name,
            limit: MAX_SPEC_BYTES >> 20,
        };
        return Err(fail(format, exit::USAGE_OR_IO, "io", &error));
    }
    String::from_utf8(bytes).map_err(|e| {
        // An invalid spec like any other: located at the first byte that is not UTF-8.
        let valid = e.utf8_error().valid_up_to();
        let bytes = e.into_bytes();
        let prefix = String::from_utf8_lossy(&bytes[..valid]);
        let line = prefix.matches('\n').count() + 1;
        let column = prefix.rsplit('\n').next().map_or(0, |l| l.chars().count()) + 1;
        let location = crate::diagnostic::Loc {
            line: u32::try_from(line).unwrap_or(u32::MAX),
            column: u32::try_from(column).unwrap_or(u32::MAX),
            offset: valid,
            len: '\u{FFFD}'.len_utf8(),
        };
        let diagnostic = crate::diagnostic::Diagnostic::new(
            "not-utf8",
            format!(
                "the spec is not UTF-8: byte 0x{:02x} cannot stand here",
                bytes[valid]
            ),
            location,
        )
        .help("save the spec as UTF-8, which YAML specs are written in");
        let text = String::from_utf8_lossy(&bytes).into_owned();
        report_invalid(format, &Report::new(&name, text.into(), vec![diagnostic]))
    })
}

fn validate(format: OutputFormat, path: &Path) -> u8 {
    let source = match read_spec(format, path) {
        Ok(s) => s,
        Err(code) => return code,
    };
    match crate::compile(&path.display().to_string(), &source) {
        Ok(app) => {
            let operations: usize = app.resources.iter().map(|r| r.actions.len()).sum();
            match format {
                OutputFormat::Json => println_to!(
                    stdout,
                    "{}",
                    json!({"ok": true, "file": path.display().to_string(), "resources": app.resources.len(), "operations": operations})
                ),
                OutputFormat::Human => println_to!(
                    stdout,
                    "{}: valid ({} resources, {operations} operations)",
                    path.display(),
                    app.resources.len()
                ),
            }
            exit::OK
        }
        Err(report) => report_invalid(format, &report),
    }
}

/// Where `generate` puts a generation.
enum Output {
    Dir(PathBuf),
    Git(crate::git::Target, crate::git::Identity),
}

/// A spec loaded, rendered and formatted, with the manifest of that generation.
struct Generation {
    app: crate::model::App,
    /// Interrupted generations in the output directory finished before this one.
    recovered: usize,
    files: render::FileSet,
    manifest: emit::Manifest,
    started: Instant,
    loaded: Instant,
    rendered: Instant,
    formatted: Instant,
}

/// Loads, renders and formats the spec at `path`; on failure, the exit code (reported).
/// Loads the previous generation at `output` (its migrations are never rewritten).
fn previous(format: OutputFormat, output: &Output) -> Result<Option<crate::evolve::Previous>, u8> {
    match output {
        Output::Dir(dir) => emit::previous_in_dir(dir).map_err(|e| match e.is_refusal() {
            true => fail(format, exit::REFUSED, "refused", &e),
            false => fail(format, exit::USAGE_OR_IO, "io", &e),
        }),
        Output::Git(target, _) => crate::git::previous(target).map_err(|e| match e.is_refusal() {
            true => fail(format, exit::REFUSED, "refused", &e),
            false => fail(format, exit::USAGE_OR_IO, "git", &e),
        }),
    }
}

fn build(format: OutputFormat, path: &Path, output: &Output) -> Result<Generation, u8> {
    let started = Instant::now();
    let source = read_spec(format, path)?;
    // rustfmt is asked its version while the spec compiles (it is a process of its own).
    let (compiled, rustfmt) = std::thread::scope(|scope| {
        let rustfmt = scope.spawn(format::rustfmt_version);
        let record = crate::cache::ValidPolicies::open();
        let validated = record.as_ref().map(|v| v as &dyn crate::policy::Validated);
        let compiled = crate::compile_with(&path.display().to_string(), &source, validated);
        if let Some(record) = &record {
            record.save();
        }
        let rustfmt = rustfmt.join();
        (
            compiled,
            rustfmt.unwrap_or_else(|panic| std::panic::resume_unwind(panic)),
        )
    });
    let mut app = match compiled {
        Ok(app) => app,
        Err(report) => return Err(report_invalid(format, &report)),
    };
    // A generation killed while moving its files into place is finished first, before this
    // one reads the directory (and only once the spec is known to compile).
    let recovered = match output {
        Output::Dir(dir) => match emit::recover(dir) {
            Ok(finished) => finished,
            Err(e) if e.is_refusal() => return Err(fail(format, exit::REFUSED, "refused", &e)),
            Err(e) => return Err(fail(format, exit::USAGE_OR_IO, "io", &e)),
        },
        Output::Git(..) => 0,
    };
    if recovered > 0 && format == OutputFormat::Human {
        println_to!(
            stderr,
            "finished moving into place a generation that was interrupted before this one"
        );
    }
    // Migrations already generated stay as they are, and versions still served keep their
    // shapes: both come from the previous generation.
    let previous = previous(format, output)?;
    let recorded = previous.as_ref().map_or(&[][..], |p| p.api.as_slice());
    if let Err(e) = crate::versions::attach(&mut app, recorded) {
        return Err(fail(format, exit::REFUSED, "refused", &e));
    }
    let loaded = Instant::now();
    let rustfmt = match rustfmt {
        Ok(v) => v,
        Err(e) => return Err(fail(format, exit::USAGE_OR_IO, "rustfmt", &e)),
    };
    let cache = format::Cache::open(&rustfmt);
    let options = render::Options {
        printed: cache
            .clone()
            .map(|c| std::sync::Arc::new(c) as std::sync::Arc<dyn render::Printed>),
        ..render::Options::default()
    };
    let mut files = match render::render(&app, &options) {
        Ok(files) => files,
        Err(e) => return Err(fail(format, exit::USAGE_OR_IO, "render", &e)),
    };
    let rendered = Instant::now();
    if let Err(e) = format::format_rust(&mut files, cache.as_ref()) {
        return Err(fail(format, exit::USAGE_OR_IO, "rustfmt", &e));
    }
    let formatted = Instant::now();
    crate::cache::sweep();
    // A change of the tables adds the next migration.
    if let Err(e) = crate::evolve::evolve(&app, &options, &mut files, previous.as_ref()) {
        let code = if e.is_refusal() {
            exit::REFUSED
        } else {
            exit::USAGE_OR_IO
        };
        return Err(fail(
            format,
            code,
            if e.is_refusal() { "refused" } else { "render" },
            &e,
        ));
    }
    let mut manifest = emit::Manifest::new(
        &files,
        emit::sha256(source.as_bytes()),
        options.generator_version.clone(),
        rustfmt,
        render::sql::schema(&app),
        crate::versions::recorded(&app),
    );
    // Another rustfmt release that formats every file alike changes nothing: the version
    // recorded stays that of the generation that last changed a file (else engineers and
    // CI on different patch releases would see drift, and commits, back and forth).
    if let Some(previous) = &previous
        && manifest.same_but_rustfmt(&previous.manifest)
    {
        manifest.rustfmt.clone_from(&previous.manifest.rustfmt);
    }
    Ok(Generation {
        app,
        recovered,
        files,
        manifest,
        started,
        loaded,
        rendered,
        formatted,
    })
}

fn generate(format: OutputFormat, path: &Path, target: &Output, force: bool) -> u8 {
    // Held until the generation is written (to the end of this function).
    let _lock = match target {
        Output::Dir(dir) => {
            let waiting = || {
                if format == OutputFormat::Human {
                    println_to!(
                        stderr,
                        "waiting for another generation into {}",
                        dir.display()
                    );
                }
            };
            match emit::lock_dir(dir, waiting) {
                Ok(lock) => lock,
                Err(e) => return fail(format, exit::USAGE_OR_IO, "io", &e),
            }
        }
        Output::Git(..) => None,
    };
    let generation = match build(format, path, target) {
        Ok(generation) => generation,
        Err(code) => return code,
    };
    let Generation {
        app,
        files,
        manifest,
        recovered,
        ..
    } = &generation;
    let (started, loaded, rendered, formatted) = (
        generation.started,
        generation.loaded,
        generation.rendered,
        generation.formatted,
    );
    let ms = |from: Instant, to: Instant| (to - from).as_secs_f64() * 1000.0;
    let out = match target {
        Output::Dir(out) => out,
        Output::Git(target, identity) => {
            return match crate::git::commit_generation(
                target, files, manifest, identity, &app.name, force,
            ) {
                Ok(committed) => {
                    let timings = json!({
                        "load_ms": ms(started, loaded),
                        "render_ms": ms(loaded, rendered),
                        "rustfmt_ms": ms(rendered, formatted),
                        "commit_ms": ms(formatted, Instant::now()),
                        "reused_rust_files": files.finished.len(),
                    });
                    match format {
                        OutputFormat::Json => println_to!(
                            stdout,
                            "{}",
                            json!({"ok": true, "repo": target.repo.display().to_string(), "branch": committed.branch, "commit": committed.commit, "parent": committed.parent, "unchanged": committed.commit.is_none(), "changes": committed.changes, "spec_sha256": manifest.spec_sha256, "timings": timings})
                        ),
                        OutputFormat::Human => match &committed.commit {
                            Some(commit) => println_to!(
                                stdout,
                                "{commit}\ncommitted {} to branch {}: {} added, {} changed, {} removed",
                                app.name,
                                committed.branch,
                                committed.changes.added.len(),
                                committed.changes.modified.len(),
                                committed.changes.removed.len()
                            ),
                            None => println_to!(
                                stdout,
                                "branch {} already holds this generation of {}: nothing committed",
                                committed.branch,
                                app.name
                            ),
                        },
                    }
                    exit::OK
                }
                Err(e) if e.is_refusal() => fail(format, exit::REFUSED, "refused", &e),
                Err(e) => fail(format, exit::USAGE_OR_IO, "git", &e),
            };
        }
    };
    match emit::write_dir(out, files, manifest, force) {
        Ok(outcome) => {
            let written = Instant::now();
            let timings = json!({
                "load_ms": ms(started, loaded),
                "render_ms": ms(loaded, rendered),
                "rustfmt_ms": ms(rendered, formatted),
                "write_ms": ms(formatted, written),
                "reused_rust_files": files.finished.len(),
            });
            match format {
                OutputFormat::Json => println_to!(
                    stdout,
                    "{}",
                    json!({"ok": true, "out": out.display().to_string(), "spec_sha256": manifest.spec_sha256, "written": outcome.written, "removed": outcome.removed, "kept": outcome.kept, "unchanged": outcome.unchanged, "interrupted_finished": recovered, "timings": timings})
                ),
                OutputFormat::Human => {
                    println_to!(
                        stdout,
                        "generated {} into {}: {} written, {} removed, {} unchanged",
                        app.name,
                        out.display(),
                        outcome.written.len(),
                        outcome.removed.len(),
                        outcome.unchanged
                    );
                    for path in &outcome.kept {
                        println_to!(
                            stderr,
                            "kept {path}: no longer generated, but edited by hand"
                        );
                    }
                }
            }
            exit::OK
        }
        Err(e) if e.is_refusal() => fail(format, exit::REFUSED, "refused", &e),
        Err(e) => fail(format, exit::USAGE_OR_IO, "io", &e),
    }
}

fn diff(format: OutputFormat, old: &str, new: &str, repo: Option<&Path>) -> u8 {
    let mut apps = Vec::new();
    for spec in [old, new] {
        let source = match repo {
            Some(repo) => match crate::git::read_at_revision(repo, spec) {
                Ok(source) => source,
                Err(e) => return fail(format, exit::USAGE_OR_IO, "git", &e),
            },
            None => match read_spec(format, Path::new(spec)) {
                Ok(source) => source,
                Err(code) => return code,
            },
        };
        match crate::compile(spec, &source) {
            Ok(app) => apps.push(app),
            Err(report) => return report_invalid(format, &report),
        }
    }
    let report = crate::diff::diff(&apps[0], &apps[1]);
    match format {
        OutputFormat::Json => println_to!(
            stdout,
            "{}",
            json!({"ok": !report.fails(), "old": old, "new": new, "report": report})
        ),
        OutputFormat::Human => print_to!(stdout, "{}", crate::diff::markdown(&report)),
    }
    if report.fails() {
        exit::CHECK_FAILED
    } else {
        exit::OK
    }
}

fn check(format: OutputFormat, path: &Path, target: &crate::git::Target) -> u8 {
    let output = Output::Git(target.clone(), crate::git::Identity::default());
    let generation = match build(format, path, &output) {
        Ok(generation) => generation,
        Err(code) => return code,
    };
    let drift = match crate::git::check_branch(target, &generation.files, &generation.manifest) {
        Ok(drift) => drift,
        Err(e) => return fail(format, exit::USAGE_OR_IO, "git", &e),
    };
    let ok = drift.is_empty();
    match format {
        OutputFormat::Json => println_to!(
            stdout,
            "{}",
            json!({"ok": ok, "branch": target.branch, "spec_sha256": generation.manifest.spec_sha256, "drift": drift})
        ),
        OutputFormat::Human if ok => println_to!(
            stdout,
            "branch {} is what {} renders",
            target.branch,
            path.display()
        ),
        OutputFormat::Human => {
            for d in &drift {
                println_to!(stderr, "{}: {}", d.path, d.kind);
            }
            println_to!(
                stderr,
                "error: branch {} is not what {} renders ({} path{}): regenerate, or move the edits to your own branch",
                target.branch,
                path.display(),
                drift.len(),
                if drift.len() == 1 { "" } else { "s" }
            );
        }
    }
    if ok { exit::OK } else { exit::CHECK_FAILED }
}

fn audit(
    format: OutputFormat,
    dir: &Path,
    spec: Option<&Path>,
    database: Option<(&str, crate::audit::database::Roles)>,
) -> u8 {
    let app = match spec {
        Some(path) => {
            let source = match read_spec(format, path) {
                Ok(s) => s,
                Err(code) => return code,
            };
            let mut app = match crate::compile(&path.display().to_string(), &source) {
                Ok(app) => app,
                Err(report) => return report_invalid(format, &report),
            };
            // The versions still served have the shapes the project's generation recorded,
            // as `generate` gave them (their routes are checked against those).
            let recorded = match emit::read_manifest(dir) {
                Ok(manifest) => manifest.map(|m| m.api).unwrap_or_default(),
                Err(e) => return fail(format, exit::USAGE_OR_IO, "io", &e),
            };
            if let Err(e) = crate::versions::attach(&mut app, &recorded) {
                return fail(format, exit::USAGE_OR_IO, "spec", &e);
            }
            Some(app)
        }
        None => None,
    };
    // syn parses nested expressions recursively: a file nested deep enough (hand-written or
    // hostile) needs more stack than a main thread has, and must give a finding, not a crash.
    let audited = std::thread::scope(|scope| {
        std::thread::Builder::new()
            .stack_size(512 << 20)
            .spawn_scoped(scope, || crate::audit::audit_dir(dir, app.as_ref()))
            .map(|thread| thread.join())
    });
    let audited = match audited {
        Ok(Ok(result)) => result,
        Ok(Err(panic)) => std::panic::resume_unwind(panic),
        Err(e) => Err(crate::audit::AuditError::Io {
            path: dir.display().to_string(),
            message: format!("cannot start the audit: {e}"),
        }),
    };
    let findings = match audited {
        Ok(findings) => findings,
        Err(e) => return fail(format, exit::USAGE_OR_IO, "io", &e),
    };
    let database_findings = match database {
        Some((url, roles)) => {
            match crate::audit::database::audit_database(dir, url, app.as_ref(), &roles) {
                Ok(found) => Some(found),
                Err(e) => return fail(format, exit::USAGE_OR_IO, "database", &e),
            }
        }
        None => None,
    };
    let database_ok = database_findings.as_ref().is_none_or(Vec::is_empty);
    let ok = findings.is_empty() && database_ok;
    match format {
        OutputFormat::Json => {
            let mut report =
                json!({"ok": ok, "dir": dir.display().to_string(), "findings": findings});
            if let Some(found) = &database_findings {
                report["database_findings"] = json!(found);
            }
            println_to!(stdout, "{report}")
        }
        OutputFormat::Human if ok => {
            println_to!(
                stdout,
                "{}: every route goes through the guard",
                dir.display()
            );
            if database_findings.is_some() {
                println_to!(
                    stdout,
                    "{}: the migrations isolate tenants (forced row-level security, tenant policies with WITH CHECK, least privilege)",
                    dir.display()
                );
            }
        }
        OutputFormat::Human => {
            for f in &findings {
                println_to!(
                    stderr,
                    "{}:{}:{}: {}",
                    dir.join(&f.file).display(),
                    f.line,
                    f.column,
                    f.message
                );
            }
            for f in database_findings.iter().flatten() {
                let source = f
                    .source
                    .as_deref()
                    .map(|s| format!("{}: ", dir.join(s).display()))
                    .unwrap_or_default();
                println_to!(stderr, "{source}database: {}: {}", f.object, f.message);
            }
            let count = findings.len() + database_findings.as_ref().map_or(0, Vec::len);
            println_to!(
                stderr,
                "error: {count} finding{} in {}",
                if count == 1 { "" } else { "s" },
                dir.display()
            );
        }
    }
    if ok { exit::OK } else { exit::CHECK_FAILED }
}

fn init(format: OutputFormat, path: &Path, force: bool) -> u8 {
    let starter = include_str!("../templates/starter.yaml");
    if path == Path::new("-") {
        match format {
            OutputFormat::Json => println_to!(stdout, "{}", json!({"ok": true, "spec": starter})),
            OutputFormat::Human => print_to!(stdout, "{starter}"),
        }
        return exit::OK;
    }
    // A link counts as there, even one pointing nowhere: nothing is written through it.
    if std::fs::symlink_metadata(path).is_ok() && !force {
        let error = InputError::Exists {
            path: path.display().to_string(),
        };
        return fail(format, exit::REFUSED, "refused", &error);
    }
    // Written beside it and moved into place: `--force` replaces a link, not what it names.
    let parent = match path.parent() {
        Some(parent) if !parent.as_os_str().is_empty() => parent,
        _ => Path::new("."),
    };
    let mut builder = tempfile::Builder::new();
    #[cfg(unix)]
    builder.permissions(std::os::unix::fs::PermissionsExt::from_mode(0o644));
    let written = builder.tempfile_in(parent).and_then(|mut file| {
        use std::io::Write as _;
        file.write_all(starter.as_bytes())?;
        file.persist(path).map(drop).map_err(|e| e.error)
    });
    if let Err(e) = written {
        // Without the scratch file's random name, which says nothing to the user.
        let message = e.to_string();
        let error = InputError::Write {
            path: path.display().to_string(),
            message: message
                .split(" at path ")
                .next()
                .unwrap_or(&message)
                .to_owned(),
        };
        return fail(format, exit::USAGE_OR_IO, "io", &error);
    }
    match format {
        OutputFormat::Json => println_to!(
            stdout,
            "{}",
            json!({"ok": true, "written": path.display().to_string()})
        ),
        OutputFormat::Human => println_to!(stdout, "wrote a starter spec to {}", path.display()),
    }
    exit::OK
}
