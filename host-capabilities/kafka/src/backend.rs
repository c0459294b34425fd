//! One rdkafka producer per `[kafka.<id>]`, created at start-up and shared by
//! every module; librdkafka keeps its broker connections and reconnects by
//! itself. Consumers for message triggers are built from the same settings.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use rdkafka::ClientConfig;
use rdkafka::producer::{BaseProducer, FutureProducer, Producer};
use serde::Deserialize;
use warden_capability::{Backend, BackendSet, Health, HumanDuration, PROBE_TIMEOUT};

/// One `[kafka.<id>]` entry of the host config.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct KafkaBackendConfig {
    /// `host:port[,host:port…]`
    pub bootstrap_servers: String,
    #[serde(default)]
    pub security_protocol: SecurityProtocol,
    /// `PLAIN`, `SCRAM-SHA-256` or `SCRAM-SHA-512` (with `sasl_*` protocols).
    pub sasl_mechanism: Option<String>,
    pub sasl_username: Option<String>,
    pub sasl_password: Option<String>,
    /// CA bundle to verify the brokers (with `ssl`/`sasl_ssl`).
    pub ssl_ca_location: Option<String>,
    /// Client certificate and key for mutual TLS.
    pub ssl_certificate_location: Option<String>,
    pub ssl_key_location: Option<String>,
    pub ssl_key_password: Option<String>,
    /// Topics the host creates at start-up when missing (one partition
    /// each), for brokers that do not create topics on first use.
    #[serde(default)]
    pub create_topics: Vec<String>,
    /// How long a send may wait for the broker's acknowledgement.
    #[serde(default = "default_delivery_timeout")]
    pub delivery_timeout: HumanDuration,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SecurityProtocol {
    #[default]
    Plaintext,
    Ssl,
    SaslPlaintext,
    SaslSsl,
}

impl SecurityProtocol {
    fn as_str(self) -> &'static str {
        match self {
            SecurityProtocol::Plaintext => "plaintext",
            SecurityProtocol::Ssl => "ssl",
            SecurityProtocol::SaslPlaintext => "sasl_plaintext",
            SecurityProtocol::SaslSsl => "sasl_ssl",
        }
    }

    fn uses_sasl(self) -> bool {
        matches!(
            self,
            SecurityProtocol::SaslPlaintext | SecurityProtocol::SaslSsl
        )
    }
}

fn default_delivery_timeout() -> HumanDuration {
    HumanDuration(Duration::from_secs(10))
}

impl KafkaBackendConfig {
    /// The librdkafka settings every client of this backend shares.
    pub(crate) fn client_config(&self, id: &str) -> Result<ClientConfig, String> {
        let mut c = ClientConfig::new();
        c.set("bootstrap.servers", &self.bootstrap_servers)
            .set("security.protocol", self.security_protocol.as_str())
            .set("client.id", format!("warden-{id}"));
        if self.security_protocol.uses_sasl() {
            let mechanism = self.sasl_mechanism.as_deref().ok_or_else(|| {
                format!(
                    "kafka.{id}: sasl-mechanism is required with {}",
                    self.security_protocol.as_str()
                )
            })?;
            if !matches!(mechanism, "PLAIN" | "SCRAM-SHA-256" | "SCRAM-SHA-512") {
                return Err(format!(
                    "kafka.{id}.sasl-mechanism: {mechanism:?} is not one of PLAIN, SCRAM-SHA-256, SCRAM-SHA-512"
                ));
            }
            let (Some(user), Some(password)) = (&self.sasl_username, &self.sasl_password) else {
                return Err(format!(
                    "kafka.{id}: sasl-username and sasl-password are required with SASL"
                ));
            };
            c.set("sasl.mechanism", mechanism)
                .set("sasl.username", user)
                .set("sasl.password", password);
        } else if self.sasl_mechanism.is_some() || self.sasl_username.is_some() {
            return Err(format!(
                "kafka.{id}: sasl-* settings need security-protocol sasl_plaintext or sasl_ssl"
            ));
        }
        for (key, value) in [
            ("ssl.ca.location", &self.ssl_ca_location),
            ("ssl.certificate.location", &self.ssl_certificate_location),
            ("ssl.key.location", &self.ssl_key_location),
            ("ssl.key.password", &self.ssl_key_password),
        ] {
            if let Some(v) = value {
                c.set(key, v);
            }
        }
        Ok(c)
    }
}

pub struct KafkaBackend {
    pub id: String,
    config: KafkaBackendConfig,
    producer: FutureProducer,
    sent: AtomicU64,
    errors: AtomicU64,
    /// Whether the cluster answers; sends fail fast while it does not.
    pub(crate) health: Health,
}

#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct KafkaBackendStatus {
    pub id: String,
    pub sent: u64,
    pub errors: u64,
    /// Records queued or awaiting the broker's acknowledgement.
    pub in_flight: u64,
}

/// Every `[kafka.<id>]` backend of the host.
pub type KafkaBackends = BackendSet<KafkaBackend>;

impl Backend for KafkaBackend {
    type Config = KafkaBackendConfig;
    type Status = KafkaBackendStatus;

    fn new(id: &str, config: &KafkaBackendConfig) -> Result<Self, String> {
        let producer = config
            .client_config(id)?
            // Every send waits for all in-sync replicas: a receipt
            // means the record survives a broker failure.
            .set("acks", "all")
            .set(
                "message.timeout.ms",
                config.delivery_timeout.0.as_millis().to_string(),
            )
            .create::<FutureProducer>()
            .map_err(|e| format!("kafka.{id}: {e}"))?;
        Ok(KafkaBackend {
            id: id.to_string(),
            config: config.clone(),
            health: gate(id, config)?,
            producer,
            sent: AtomicU64::new(0),
            errors: AtomicU64::new(0),
        })
    }

    fn status(&self) -> KafkaBackendStatus {
        KafkaBackendStatus {
            id: self.id.clone(),
            sent: self.sent.load(Ordering::Relaxed),
            errors: self.errors.load(Ordering::Relaxed),
            in_flight: self.producer.in_flight_count().max(0) as u64,
        }
    }
}

/// The health gate of backend `id`. A frozen or partitioned broker still
/// accepts TCP connections (the kernel does), so the probe is a metadata
/// request, on a client of its own: behind the shared producer's
/// connections it would wait for a tenant's queued batches.
fn gate(id: &str, config: &KafkaBackendConfig) -> Result<Health, String> {
    let prober: BaseProducer = config
        .client_config(id)?
        .create()
        .map_err(|e| format!("kafka.{id}: {e}"))?;
    let prober = Arc::new(prober);
    let probe: warden_capability::ProbeFn = Arc::new(move || {
        let prober = prober.clone();
        Box::pin(async move {
            let asked = tokio::task::spawn_blocking(move || {
                prober
                    .client()
                    .fetch_metadata(None, PROBE_TIMEOUT)
                    .map(|_| ())
                    .map_err(|e| format!("no metadata: {e}"))
            });
            asked.await.map_err(|e| e.to_string())?
        })
    });
    Ok(Health::with_probe(
        format!("kafka backend {id}"),
        "cluster",
        probe,
    ))
}

impl KafkaBackend {
    /// Creates the configured `create-topics` that do not exist yet.
    pub async fn create_topics(&self) -> Result<(), String> {
        use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
        use rdkafka::client::DefaultClientContext;
        use rdkafka::types::RDKafkaErrorCode;
        if self.config.create_topics.is_empty() {
            return Ok(());
        }
        let admin: AdminClient<DefaultClientContext> = self
            .config
            .client_config(&self.id)?
            .create()
            .map_err(|e| format!("kafka.{}: {e}", self.id))?;
        let topics: Vec<_> = self
            .config
            .create_topics
            .iter()
            .map(|t| NewTopic::new(t, 1, TopicReplication::Fixed(1)))
            .collect();
        let options = AdminOptions::new().operation_timeout(Some(Duration::from_secs(5)));
        let results = admin
            .create_topics(&topics, &options)
            .await
            .map_err(|e| format!("kafka.{}: create-topics: {e}", self.id))?;
        for result in results {
            match result {
                Ok(_) | Err((_, RDKafkaErrorCode::TopicAlreadyExists)) => {}
                Err((topic, e)) => {
                    return Err(format!("kafka.{}: create topic {topic:?}: {e}", self.id));
                }
            }
        }
        Ok(())
    }

    pub(crate) fn producer(&self) -> &FutureProducer {
        &self.producer
    }

    pub(crate) fn config(&self) -> &KafkaBackendConfig {
        &self.config
    }

    pub(crate) fn count(&self, sent: u64, errors: u64) {
        self.sent.fetch_add(sent, Ordering::Relaxed);
        self.errors.fetch_add(errors, Ordering::Relaxed);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(extra: &str) -> Result<ClientConfig, String> {
        toml::from_str::<KafkaBackendConfig>(&format!("bootstrap-servers = \"b:9092\"\n{extra}"))
            .map_err(|e| e.to_string())?
            .client_config("ev")
    }

    #[test]
    fn security_settings_are_complete_or_refused_by_name() {
        let c = config("security-protocol = \"sasl_ssl\"\nsasl-mechanism = \"SCRAM-SHA-512\"\nsasl-username = \"u\"\nsasl-password = \"p\"\nssl-ca-location = \"/ca.pem\"\n").unwrap();
        assert_eq!(c.get("security.protocol"), Some("sasl_ssl"));
        assert_eq!(c.get("sasl.mechanism"), Some("SCRAM-SHA-512"));
        assert_eq!(c.get("ssl.ca.location"), Some("/ca.pem"));

        let err = config("security-protocol = \"sasl_plaintext\"\n").unwrap_err();
        assert!(err.contains("sasl-mechanism is required"), "{err}");
        let err = config("security-protocol = \"sasl_plaintext\"\nsasl-mechanism = \"GSSAPI\"\nsasl-username = \"u\"\nsasl-password = \"p\"\n").unwrap_err();
        assert!(err.contains("kafka.ev.sasl-mechanism"), "{err}");
        let err =
            config("security-protocol = \"sasl_ssl\"\nsasl-mechanism = \"PLAIN\"\n").unwrap_err();
        assert!(err.contains("sasl-username and sasl-password"), "{err}");
        let err = config("sasl-username = \"u\"\n").unwrap_err();
        assert!(err.contains("need security-protocol"), "{err}");
        let err = config("security-protocol = \"tls\"\n").unwrap_err();
        assert!(err.contains("unknown variant"), "{err}");
    }
}
