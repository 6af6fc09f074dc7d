//! The `bulwark` binary; everything lives in the library (`bulwark::cli`).

fn main() -> std::process::ExitCode {
    bulwark::cli::run()
}
