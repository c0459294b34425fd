//! The module manifest (`warden.toml` next to a component). Deny-by-default:
//! a capability the manifest does not grant does not exist for the module.
//!
//! Parsing is strict: unknown keys, bad sizes, durations or patterns are
//! errors that name the key path (`limits.memory: ...`).

use std::collections::BTreeMap;
use std::path::Path;

use serde::Deserialize;
use warden_amqp::AmqpGrant;
use warden_capability::Capability;
use warden_fs::FsGrants;
use warden_kafka::KafkaGrant;
use warden_net::NetGrant;

pub use warden_capability::{ByteSize, HumanDuration, Rate};

/// `[[cron]]` entries a module may have.
pub const MAX_CRON: usize = 16;

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Manifest {
    pub module: ModuleInfo,
    #[serde(default)]
    pub limits: LimitsSpec,
    pub http: Option<HttpTrigger>,
    #[serde(default)]
    pub cron: Vec<CronTrigger>,
    #[serde(default)]
    pub subscribe: Vec<Subscription>,
    #[serde(default)]
    pub grants: Grants,
    #[serde(default)]
    pub config: BTreeMap<String, ConfigValue>,
    #[serde(rename = "config-schema")]
    pub config_schema: Option<toml::Table>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ModuleInfo {
    pub name: String,
    pub version: String,
    #[serde(default)]
    pub description: String,
}

/// `[limits]`: every key optional; host defaults fill the gaps.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct LimitsSpec {
    pub memory: Option<ByteSize>,
    pub timeout: Option<HumanDuration>,
    pub fuel: Option<u64>,
    pub max_instances: Option<u32>,
    pub rate: Option<Rate>,
    /// Host resource handles (streams, pollables, ...) alive at once.
    pub max_handles: Option<u32>,
    /// Bytes the host hands back per invocation (results, return values).
    pub max_output: Option<ByteSize>,
    /// Longest wait for a free instance before the call is refused.
    pub queue_timeout: Option<HumanDuration>,
    /// Denied host calls per invocation before the invocation is stopped.
    pub max_denials: Option<u32>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HttpTrigger {
    pub route: String,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CronTrigger {
    pub schedule: String,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct Subscription {
    pub source: String,
    pub topic: String,
    pub max_retries: Option<u32>,
    pub dead_letter: Option<String>,
}

macro_rules! grants {
    ($($kind:ident: $cap:ty),* $(,)?) => {
        /// `[grants]`: `fs` and `net`, which widen WASI's own interfaces, and
        /// one slice per capability of `capabilities.rs`. Capabilities not
        /// built into this warden are rejected by name.
        #[derive(Debug, Clone, Default, Deserialize)]
        #[serde(deny_unknown_fields)]
        pub struct Grants {
            #[serde(default)]
            pub fs: FsGrants,
            pub net: Option<NetGrant>,
            $(#[serde(default)]
            pub $kind: <$cap as Capability>::Grants,)*
        }

        impl Grants {
            /// What each capability grants, for the API's module detail:
            /// grant names, or the guest paths, hosts and topics granted.
            pub fn summary(&self) -> serde_json::Value {
                let mut all = serde_json::Map::new();
                all.insert("fs".into(), serde_json::json!(self.fs.keys().collect::<Vec<_>>()));
                let net = self.net.as_ref().map(|n| n.allow.clone());
                all.insert("net".into(), serde_json::json!(net));
                $(let summary = <$cap>::summary(&self.$kind);
                all.insert(
                    stringify!($kind).into(),
                    serde_json::to_value(summary).unwrap_or_default(),
                );)*
                serde_json::Value::Object(all)
            }

            /// `(kind, grant name, backend id)` of every grant that names a
            /// backend of the host config.
            pub fn backend_ids(&self) -> Vec<(&'static str, String, String)> {
                let mut ids = Vec::new();
                $(ids.extend(
                    <$cap>::backend_ids(&self.$kind)
                        .into_iter()
                        .map(|(name, id)| (<$cap>::KIND, name, id)),
                );)*
                ids
            }

            /// Every capability's own checks of its grants.
            fn capability_problems(&self) -> Vec<ManifestError> {
                let mut problems = Vec::new();
                $(problems.extend(<$cap>::check(&self.$kind).into_iter().map(
                    |(path, e)| ManifestError::new(format!("grants.{}.{path}", <$cap>::KIND), e),
                ));)*
                problems
            }
        }
    };
}

crate::capabilities::for_each_capability!(grants);

/// `[config]` values; non-strings are passed to the guest in TOML syntax.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(untagged)]
pub enum ConfigValue {
    String(String),
    Integer(i64),
    Float(f64),
    Bool(bool),
}

impl ConfigValue {
    pub fn as_config_string(&self) -> String {
        match self {
            ConfigValue::String(s) => s.clone(),
            ConfigValue::Integer(i) => i.to_string(),
            ConfigValue::Float(f) => f.to_string(),
            ConfigValue::Bool(b) => b.to_string(),
        }
    }
}

/// A manifest problem, with the key path it concerns.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{path}: {message}")]
pub struct ManifestError {
    pub path: String,
    pub message: String,
}

impl ManifestError {
    fn new(path: impl Into<String>, message: impl Into<String>) -> Self {
        Self {
            path: path.into(),
            message: message.into(),
        }
    }
}

impl Manifest {
    pub fn load(path: &Path) -> Result<Manifest, Vec<ManifestError>> {
        let text = std::fs::read_to_string(path).map_err(|e| {
            vec![ManifestError::new(
                path.display().to_string(),
                format!("cannot read manifest: {e}"),
            )]
        })?;
        Manifest::parse(&text)
    }

    /// Parses and validates; returns every semantic problem at once.
    pub fn parse(text: &str) -> Result<Manifest, Vec<ManifestError>> {
        let de = toml::Deserializer::parse(text).map_err(|e| vec![syntax_error(&e)])?;
        let manifest: Manifest = serde_path_to_error::deserialize(de).map_err(|e| {
            let path = e.path().to_string();
            let message = e.inner().message().to_string();
            vec![ManifestError::new(
                if path == "." { "manifest".into() } else { path },
                message,
            )]
        })?;
        let problems = manifest.validate();
        if problems.is_empty() {
            Ok(manifest)
        } else {
            Err(problems)
        }
    }

    fn validate(&self) -> Vec<ManifestError> {
        let mut p = Vec::new();
        let name = &self.module.name;
        if name.is_empty()
            || name.len() > 63
            || !name
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        {
            p.push(ManifestError::new(
                "module.name",
                format!("{name:?} must match [a-z0-9-]{{1,63}}"),
            ));
        }
        if let Err(e) = semver::Version::parse(&self.module.version) {
            p.push(ManifestError::new(
                "module.version",
                format!("{:?} is not a semver version: {e}", self.module.version),
            ));
        }
        let l = &self.limits;
        if l.memory.is_some_and(|m| m.0 < 64 << 10) {
            p.push(ManifestError::new(
                "limits.memory",
                "must be at least 64 KiB (one wasm page)",
            ));
        }
        if l.fuel == Some(0) {
            p.push(ManifestError::new(
                "limits.fuel",
                "must be greater than zero",
            ));
        }
        for (key, v) in [
            ("limits.max-instances", l.max_instances),
            ("limits.max-handles", l.max_handles),
            ("limits.max-denials", l.max_denials),
        ] {
            if v == Some(0) {
                p.push(ManifestError::new(key, "must be greater than zero"));
            }
        }
        if let Some(http) = &self.http
            && (!http.route.starts_with('/') || http.route.contains(char::is_whitespace))
        {
            p.push(ManifestError::new(
                "http.route",
                format!("{:?} must be a path prefix starting with /", http.route),
            ));
        }
        if self.cron.len() > MAX_CRON {
            p.push(ManifestError::new(
                "cron",
                format!("at most {MAX_CRON} schedules per module"),
            ));
        }
        for (i, c) in self.cron.iter().enumerate().take(MAX_CRON) {
            if let Err(e) = schedule::parse_schedule(&c.schedule) {
                p.push(ManifestError::new(format!("cron[{i}].schedule"), e));
            }
        }
        for (i, s) in self.subscribe.iter().enumerate() {
            if s.topic.is_empty() || s.topic.contains('*') {
                p.push(ManifestError::new(
                    format!("subscribe[{i}].topic"),
                    format!("{:?} must be one topic name", s.topic),
                ));
            }
            if s.dead_letter.as_deref() == Some(s.topic.as_str()) {
                p.push(ManifestError::new(
                    format!("subscribe[{i}].dead-letter"),
                    "must differ from the topic (a poison message would loop)",
                ));
            }
            if let Err((key, e)) = self.check_subscription(s) {
                p.push(ManifestError::new(format!("subscribe[{i}].{key}"), e));
            }
        }
        p.extend(self.grants.capability_problems());
        if let Some(net) = &self.grants.net
            && let Err(e) = net.endpoints()
        {
            p.push(ManifestError::new("grants.net.allow", e));
        }
        if let Some(schema) = &self.config_schema {
            p.extend(schema::check(schema, &self.config));
        }
        p
    }
}

impl Manifest {
    /// A subscription consumes only what a grant of the same module allows,
    /// and dead-letters only where that grant may write.
    fn check_subscription(&self, s: &Subscription) -> Result<(), (&'static str, String)> {
        let source = Source::parse(&s.source).map_err(|e| ("source", e))?;
        let dead_letter = s.dead_letter.as_deref();
        match source {
            Source::Events => Ok(()),
            Source::Kafka(b) => {
                let on = |key, wanted, allows: &dyn Fn(&KafkaGrant) -> bool| {
                    granted_on(
                        "kafka",
                        b,
                        &self.grants.kafka,
                        |g| &g.backend,
                        key,
                        wanted,
                        allows,
                    )
                };
                on("topic", format!("{:?} in consume", s.topic), &|g| {
                    g.may_consume(&s.topic)
                })?;
                warden_kafka::check_topic(&s.topic).map_err(|e| ("topic", e.to_string()))?;
                match dead_letter {
                    Some(dl) => on("dead-letter", format!("{dl:?} in produce"), &|g| {
                        g.may_produce(dl)
                    }),
                    None => Ok(()),
                }
            }
            Source::Amqp(b) => {
                let on = |key, wanted, allows: &dyn Fn(&AmqpGrant) -> bool| {
                    granted_on(
                        "amqp",
                        b,
                        &self.grants.amqp,
                        |g| &g.backend,
                        key,
                        wanted,
                        allows,
                    )
                };
                on("topic", format!("queue {:?} in consume", s.topic), &|g| {
                    g.may_consume(&s.topic)
                })?;
                // Dead letters go to that exchange with the queue name as
                // routing key.
                match dead_letter {
                    Some(dl) => on(
                        "dead-letter",
                        format!("\"{dl}/{}\" in publish", s.topic),
                        &|g| g.may_publish(dl, &s.topic),
                    ),
                    None => Ok(()),
                }
            }
            Source::Redis(backend) => self
                .redis_prefix(backend)
                .map(drop)
                .map_err(|e| ("source", e)),
        }
    }

    /// The kv prefix a `redis:<backend>` subscription's channels live under:
    /// that of the module's one kv grant on the backend.
    pub fn redis_prefix(&self, backend: &str) -> Result<&str, String> {
        let mut on_backend = self.grants.kv.values().filter(|g| g.backend == backend);
        match (on_backend.next(), on_backend.next()) {
            (Some(g), None) => Ok(&g.prefix),
            (None, _) => Err(format!(
                "redis channels are confined to a kv prefix: no [grants.kv.<name>] on backend {backend:?}"
            )),
            (Some(_), Some(_)) => Err(format!(
                "more than one [grants.kv.<name>] on backend {backend:?}: the channel prefix is ambiguous"
            )),
        }
    }
}

/// Ok when one of the module's `kind` grants on `backend` allows it; else
/// the subscription key at fault and what is missing.
fn granted_on<G>(
    kind: &str,
    backend: &str,
    grants: &BTreeMap<String, G>,
    backend_of: impl Fn(&G) -> &String,
    key: &'static str,
    wanted: String,
    allows: &dyn Fn(&G) -> bool,
) -> Result<(), (&'static str, String)> {
    if grants
        .values()
        .any(|g| backend_of(g) == backend && allows(g))
    {
        Ok(())
    } else {
        Err((
            key,
            format!("no [grants.{kind}.<name>] on backend {backend:?} has {wanted}"),
        ))
    }
}

/// Where a `[[subscribe]]` takes messages from: `events`, or
/// `<kind>:<backend id>` of the host config.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Source<'a> {
    Events,
    Kafka(&'a str),
    Amqp(&'a str),
    Redis(&'a str),
}

impl<'a> Source<'a> {
    pub fn parse(source: &'a str) -> Result<Self, String> {
        if source == "events" {
            return Ok(Source::Events);
        }
        let kinds = "\"events\", \"kafka:<id>\", \"amqp:<id>\" or \"redis:<id>\"";
        let Some((kind, id)) = source.split_once(':') else {
            return Err(format!("{source:?} is not one of {kinds}"));
        };
        if id.is_empty() {
            return Err(format!("{source:?} names no backend id"));
        }
        match kind {
            "kafka" => Ok(Source::Kafka(id)),
            "amqp" => Ok(Source::Amqp(id)),
            "redis" => Ok(Source::Redis(id)),
            _ => Err(format!("{source:?} is not one of {kinds}")),
        }
    }
}

fn syntax_error(e: &toml::de::Error) -> ManifestError {
    ManifestError::new("manifest", format!("TOML syntax: {}", e.message()))
}

pub mod schedule;
mod schema;
#[cfg(test)]
mod tests;
