//! Contract validation: a component may import only baseline WASI plus what
//! its grants allow, and must export what its triggers call.

use wasmtime::Engine;
use wasmtime::component::Component;
use wasmtime::component::types::ComponentItem;

use crate::capabilities;
use crate::manifest::{Grants, Manifest};

/// The export interface of tasks (`warden run`, `[[cron]]`).
pub const TASK_EXPORT: &str = "warden:module/task";
/// The export interface of `[[subscribe]]` modules.
pub const MESSAGE_EXPORT: &str = "warden:module/message-handler";
/// The export interface of `[http]` modules.
pub const HTTP_EXPORT: &str = "wasi:http/incoming-handler";

/// Who may import an interface.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Need {
    /// Every module: std's runtime and inert type-only interfaces. Filesystem
    /// is here because std always links it; without `[grants.fs]` there are no
    /// preopens, so it reaches nothing.
    Baseline,
    /// Only with `[grants.net]`.
    Net,
    /// Only with a grant of the capability providing it (`capabilities.rs`):
    /// how a manifest grants it, and whether this one does.
    Capability { grant: &'static str, granted: bool },
}

fn classify(interface: &str, grants: &Grants) -> Option<Need> {
    let (package, name) = interface.split_once('/')?;
    match package {
        "wasi:cli" | "wasi:io" | "wasi:clocks" | "wasi:random" | "wasi:filesystem" => {
            Some(Need::Baseline)
        }
        "wasi:config" if name == "store" => Some(Need::Baseline),
        "warden:host" => match name {
            "types" => Some(Need::Baseline),
            _ => capabilities::provider(name, grants)
                .map(|(grant, granted)| Need::Capability { grant, granted }),
        },
        "wasi:sockets" => match name {
            "network" | "tcp" | "udp" => Some(Need::Baseline),
            "instance-network" | "tcp-create-socket" | "udp-create-socket" | "ip-name-lookup" => {
                Some(Need::Net)
            }
            _ => None,
        },
        "wasi:http" => match name {
            "types" => Some(Need::Baseline),
            "outgoing-handler" => Some(Need::Net),
            _ => None,
        },
        _ => None,
    }
}

/// `wasi:cli/stdout@0.2.6` → `wasi:cli/stdout`.
pub fn unversioned(name: &str) -> &str {
    name.split_once('@').map_or(name, |(n, _)| n)
}

/// The interfaces a component imports and exports, by full name.
pub struct ComponentShape {
    pub imports: Vec<String>,
    pub exports: Vec<String>,
}

impl ComponentShape {
    pub fn of(engine: &Engine, component: &Component) -> Self {
        let ty = component.component_type();
        Self {
            imports: ty.imports(engine).map(|(n, _)| n.to_string()).collect(),
            exports: ty
                .exports(engine)
                .filter(|(_, item)| matches!(item.ty, ComponentItem::ComponentInstance(_)))
                .map(|(n, _)| n.to_string())
                .collect(),
        }
    }

    pub fn exports_interface(&self, interface: &str) -> bool {
        self.exports.iter().any(|e| unversioned(e) == interface)
    }
}

/// Every way the component breaks its manifest; empty when it is fine.
pub fn check(shape: &ComponentShape, manifest: &Manifest) -> Vec<String> {
    let mut problems = Vec::new();
    let net_granted = manifest
        .grants
        .net
        .as_ref()
        .is_some_and(|n| !n.allow.is_empty());
    let mut needs_net = Vec::new();
    for import in &shape.imports {
        match classify(unversioned(import), &manifest.grants) {
            Some(Need::Baseline) => {}
            Some(Need::Net) if net_granted => {}
            Some(Need::Net) => needs_net.push(import.as_str()),
            Some(Need::Capability { granted: true, .. }) => {}
            Some(Need::Capability { grant, .. }) => {
                problems.push(format!("imports {import} but the manifest has no {grant}"))
            }
            None => problems.push(format!(
                "imports {import}, which this warden does not provide"
            )),
        }
    }
    if !needs_net.is_empty() {
        problems.insert(
            0,
            format!(
                "imports {} but the manifest has no [grants.net]",
                needs_net.join(", ")
            ),
        );
    }
    if manifest.http.is_some() && !shape.exports_interface(HTTP_EXPORT) {
        problems.push(format!("[http] needs the export {HTTP_EXPORT}"));
    }
    if !manifest.cron.is_empty() && !shape.exports_interface(TASK_EXPORT) {
        problems.push(format!("[[cron]] needs the export {TASK_EXPORT}"));
    }
    if !manifest.subscribe.is_empty() && !shape.exports_interface(MESSAGE_EXPORT) {
        problems.push(format!("[[subscribe]] needs the export {MESSAGE_EXPORT}"));
    }
    if shape.exports.is_empty() {
        problems.push("exports no interface: nothing can call it".to_string());
    }
    problems
}

#[cfg(test)]
mod tests {
    use super::*;

    fn manifest(extra: &str) -> Manifest {
        Manifest::parse(&format!(
            "[module]\nname = \"m\"\nversion = \"0.1.0\"\n{extra}"
        ))
        .unwrap()
    }

    fn shape(imports: &[&str]) -> ComponentShape {
        ComponentShape {
            imports: imports.iter().map(|s| s.to_string()).collect(),
            exports: vec!["warden:module/task@0.1.0".into()],
        }
    }

    #[test]
    fn baseline_imports_pass() {
        let s = shape(&[
            "wasi:cli/stdout@0.2.6",
            "wasi:filesystem/preopens@0.2.6",
            "wasi:sockets/tcp@0.2.6",
            "wasi:config/store@0.2.0-rc.1",
        ]);
        assert!(check(&s, &manifest("")).is_empty());
    }

    #[test]
    fn network_imports_need_a_grant() {
        let s = shape(&[
            "wasi:sockets/tcp-create-socket@0.2.6",
            "wasi:http/outgoing-handler@0.2.6",
        ]);
        let problems = check(&s, &manifest(""));
        assert_eq!(
            problems,
            [
                "imports wasi:sockets/tcp-create-socket@0.2.6, wasi:http/outgoing-handler@0.2.6 but the manifest has no [grants.net]"
            ]
        );
        assert!(
            check(
                &s,
                &manifest("[grants.net]\nallow = [\"example.com:443\"]\n")
            )
            .is_empty()
        );
    }

    #[test]
    fn unknown_imports_are_rejected() {
        let problems = check(
            &shape(&["evil:host/escape@1.0.0", "wasi:sockets/unknown@0.2.6"]),
            &manifest(""),
        );
        assert_eq!(problems.len(), 2, "{problems:?}");
    }

    #[test]
    fn triggers_need_their_exports() {
        let s = ComponentShape {
            imports: vec![],
            exports: vec![],
        };
        let problems = check(
            &s,
            &manifest("[http]\nroute = \"/x\"\n[[cron]]\nschedule = \"* * * * *\"\n"),
        );
        assert_eq!(problems.len(), 3, "{problems:?}");
    }
}
