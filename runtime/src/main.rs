use std::process::ExitCode;

use clap::Parser;
use warden_runtime::cli::{Cli, execute};

#[tokio::main]
async fn main() -> ExitCode {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("WARDEN_LOG")
                .unwrap_or_else(|_| "warn".into()),
        )
        .with_writer(std::io::stderr)
        .init();
    match execute(Cli::parse()).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(f) => {
            // The contract: exactly one line on stderr naming module and rule.
            eprintln!("{}: {}", f.module, f.message.replace('\n', " "));
            ExitCode::FAILURE
        }
    }
}
