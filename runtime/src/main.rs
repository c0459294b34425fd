use std::process::ExitCode;

use clap::Parser;
use warden_runtime::cli::{Cli, Command, execute};

#[tokio::main]
async fn main() -> ExitCode {
    let cli = Cli::parse();
    // A server reports what it does; one-shot commands stay quiet.
    // sqlx's pool logs a refused connection (a privileged credential) once
    // per retry, and the host reports it once, naming the backend. Database
    // notices are a guest's own text (RAISE WARNING in a loop): never logged.
    let default = match cli.command {
        Command::Serve { .. } => "info,sqlx_core::pool=off,sqlx::postgres::notice=off",
        _ => "warn,sqlx_core::pool=off,sqlx::postgres::notice=off",
    };
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("WARDEN_LOG")
                .unwrap_or_else(|_| default.into()),
        )
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .init();
    match execute(cli).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(f) => {
            // The contract: exactly one line on stderr naming module and rule.
            eprintln!("{}: {}", f.module, f.message.replace('\n', " "));
            ExitCode::FAILURE
        }
    }
}
