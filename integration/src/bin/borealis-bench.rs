//! `borealis-bench`: Borealis against PostgreSQL on this machine; see
//! `borealis_integration::bench` for what it runs and reports.
//!
//! Ctrl-C or SIGTERM drops the running bench, whose guards stop PostgreSQL
//! and the Borealis cluster (they run in process groups of their own, so the
//! terminal's signal does not reach them).

use clap::Parser;
use std::process::ExitCode;
use tokio::signal::unix::{SignalKind, signal};

#[tokio::main]
async fn main() -> ExitCode {
    let cli = borealis_integration::bench::Cli::parse();
    let mut terminate = match signal(SignalKind::terminate()) {
        Ok(terminate) => terminate,
        Err(error) => {
            eprintln!("borealis-bench: failed to watch SIGTERM: {error}");
            return ExitCode::FAILURE;
        }
    };
    let outcome = tokio::select! {
        outcome = borealis_integration::bench::main(cli) => outcome,
        _ = tokio::signal::ctrl_c() => Err(anyhow::anyhow!("run: interrupted")),
        _ = terminate.recv() => Err(anyhow::anyhow!("run: terminated")),
    };
    match outcome {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => {
            eprintln!("borealis-bench: wrong answers (listed above)");
            ExitCode::from(2)
        }
        Err(error) => {
            eprintln!("borealis-bench: failed to {error:#}");
            ExitCode::FAILURE
        }
    }
}
