//! `warden module …`: the management API from the command line.

use std::path::{Path, PathBuf};

use serde_json::{Value, json};

use crate::cli::{Failure, ModuleCommand};
use crate::client::Client;

pub async fn execute(
    server: &str,
    token: Option<String>,
    data_dir: &Path,
    command: ModuleCommand,
) -> Result<(), Failure> {
    let subject = match &command {
        ModuleCommand::Upload { component, .. } => component
            .file_stem()
            .map_or("warden".into(), |s| s.to_string_lossy().replace('_', "-")),
        ModuleCommand::List => "warden".into(),
        ModuleCommand::Show { name }
        | ModuleCommand::Versions { name }
        | ModuleCommand::Activate { name, .. }
        | ModuleCommand::Pause { name }
        | ModuleCommand::Resume { name }
        | ModuleCommand::Stop { name }
        | ModuleCommand::Delete { name } => name.clone(),
    };
    let fail = |message: String| Failure {
        module: subject.clone(),
        message,
    };
    let token = match token {
        Some(t) => t,
        None => read_token(&data_dir.join("admin.token")).map_err(&fail)?,
    };
    let client = Client::new(server, token).map_err(|e| fail(e.0))?;
    let result = match command {
        ModuleCommand::Upload {
            component,
            manifest,
            activate,
        } => {
            let bytes = read(&component).map_err(&fail)?;
            let text = read(&manifest).map_err(&fail)?;
            let path = if activate {
                "/v1/modules?activate=true"
            } else {
                "/v1/modules"
            };
            let done = client
                .post_multipart(
                    path,
                    &[
                        ("component", "component.wasm", &bytes),
                        ("manifest", "warden.toml", &text),
                    ],
                )
                .await
                .map_err(|e| fail(e.0))?;
            println!(
                "{} {}: {}{} (sha256 {})",
                done["module"].as_str().unwrap_or("?"),
                done["version"].as_str().unwrap_or("?"),
                if done["stored"] == json!(true) {
                    "uploaded"
                } else {
                    "already stored"
                },
                if activate { ", active" } else { "" },
                done["sha256"].as_str().unwrap_or("?"),
            );
            return Ok(());
        }
        ModuleCommand::List => {
            let list = client.get("/v1/modules").await.map_err(|e| fail(e.0))?;
            for m in list["modules"].as_array().into_iter().flatten() {
                println!(
                    "{:<24} {:<9} {}",
                    m["name"].as_str().unwrap_or("?"),
                    m["state"].as_str().unwrap_or("?"),
                    m["active_version"].as_str().unwrap_or("-"),
                );
            }
            return Ok(());
        }
        ModuleCommand::Show { name } => client.get(&format!("/v1/modules/{name}")).await,
        ModuleCommand::Versions { name } => {
            client.get(&format!("/v1/modules/{name}/versions")).await
        }
        ModuleCommand::Activate { name, version } => {
            client
                .post_json(
                    &format!("/v1/modules/{name}/activate"),
                    &json!({ "version": version }),
                )
                .await
        }
        ModuleCommand::Pause { name } => action(&client, &name, "pause").await,
        ModuleCommand::Resume { name } => action(&client, &name, "resume").await,
        ModuleCommand::Stop { name } => action(&client, &name, "stop").await,
        ModuleCommand::Delete { name } => client.delete(&format!("/v1/modules/{name}")).await,
    };
    let value = result.map_err(|e| fail(e.0))?;
    if !value.is_null() {
        println!(
            "{}",
            serde_json::to_string_pretty(&value).unwrap_or_default()
        );
    }
    Ok(())
}

async fn action(
    client: &Client,
    name: &str,
    action: &str,
) -> Result<Value, crate::client::ClientError> {
    client
        .post_json(&format!("/v1/modules/{name}/{action}"), &Value::Null)
        .await
}

fn read(path: &PathBuf) -> Result<Vec<u8>, String> {
    std::fs::read(path).map_err(|e| format!("cannot read {}: {e}", path.display()))
}

fn read_token(file: &Path) -> Result<String, String> {
    std::fs::read_to_string(file)
        .map(|t| t.trim().to_string())
        .map_err(|e| {
            format!(
                "no token: pass --token or WARDEN_TOKEN (cannot read {}: {e})",
                file.display()
            )
        })
}
