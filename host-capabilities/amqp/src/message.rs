//! Message properties and the caps checked before anything reaches the
//! shared connection.

use lapin::BasicProperties;
use lapin::types::{AMQPValue, FieldTable, LongString, ShortString};
use warden_capability::CapabilityError;

/// Largest payload of one message.
pub const MAX_PAYLOAD: usize = 1 << 20;
/// Headers per message, and their total bytes.
pub const MAX_HEADERS: usize = 64;
pub const MAX_HEADER_BYTES: usize = 16 << 10;

/// The properties a guest may set and read.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Properties {
    pub content_type: Option<String>,
    pub correlation_id: Option<String>,
    pub message_id: Option<String>,
    pub reply_to: Option<String>,
    pub persistent: bool,
    pub expiration_ms: Option<u32>,
    pub headers: Vec<(String, String)>,
}

impl Properties {
    pub fn check(&self, payload: &[u8]) -> Result<(), CapabilityError> {
        if payload.len() > MAX_PAYLOAD {
            return Err(CapabilityError::LimitExceeded(format!(
                "payload is {} bytes, above {MAX_PAYLOAD}",
                payload.len()
            )));
        }
        if self.headers.len() > MAX_HEADERS {
            return Err(CapabilityError::LimitExceeded(format!(
                "{} headers, above {MAX_HEADERS}",
                self.headers.len()
            )));
        }
        let bytes: usize = self.headers.iter().map(|(k, v)| k.len() + v.len()).sum();
        if bytes > MAX_HEADER_BYTES {
            return Err(CapabilityError::LimitExceeded(format!(
                "headers are {bytes} bytes, above {MAX_HEADER_BYTES}"
            )));
        }
        for (key, value) in self.headers.iter().map(|(k, _)| ("header name", k)).chain(
            [
                ("content-type", &self.content_type),
                ("correlation-id", &self.correlation_id),
                ("message-id", &self.message_id),
                ("reply-to", &self.reply_to),
            ]
            .into_iter()
            .filter_map(|(k, v)| v.as_ref().map(|v| (k, v))),
        ) {
            if value.len() > 255 {
                return Err(CapabilityError::Invalid(format!(
                    "{key} is longer than 255 bytes"
                )));
            }
        }
        Ok(())
    }

    pub(crate) fn to_amqp(&self) -> BasicProperties {
        let mut p = BasicProperties::default();
        if let Some(v) = &self.content_type {
            p = p.with_content_type(v.as_str().into());
        }
        if let Some(v) = &self.correlation_id {
            p = p.with_correlation_id(v.as_str().into());
        }
        if let Some(v) = &self.message_id {
            p = p.with_message_id(v.as_str().into());
        }
        if let Some(v) = &self.reply_to {
            p = p.with_reply_to(v.as_str().into());
        }
        if self.persistent {
            p = p.with_delivery_mode(2);
        }
        if let Some(ms) = self.expiration_ms {
            p = p.with_expiration(ms.to_string().into());
        }
        if !self.headers.is_empty() {
            let mut table = FieldTable::default();
            for (k, v) in &self.headers {
                table.insert(
                    ShortString::from(k.as_str()),
                    AMQPValue::LongString(LongString::from(v.as_bytes())),
                );
            }
            p = p.with_headers(table);
        }
        p
    }

    pub(crate) fn from_amqp(p: &BasicProperties) -> Self {
        let text = |s: &Option<ShortString>| s.as_ref().map(|s| s.as_str().to_string());
        let headers = p
            .headers()
            .as_ref()
            .map(|t| {
                t.inner()
                    .iter()
                    .map(|(k, v)| (k.as_str().to_string(), value_text(v)))
                    .collect()
            })
            .unwrap_or_default();
        Self {
            content_type: text(p.content_type()),
            correlation_id: text(p.correlation_id()),
            message_id: text(p.message_id()),
            reply_to: text(p.reply_to()),
            persistent: *p.delivery_mode() == Some(2),
            expiration_ms: p
                .expiration()
                .as_ref()
                .and_then(|e| e.as_str().parse().ok()),
            headers,
        }
    }
}

/// A header value as text (other publishers may use any AMQP type).
fn value_text(v: &AMQPValue) -> String {
    match v {
        AMQPValue::LongString(s) => String::from_utf8_lossy(s.as_bytes()).into_owned(),
        AMQPValue::ShortString(s) => s.as_str().to_string(),
        AMQPValue::Boolean(b) => b.to_string(),
        AMQPValue::ShortShortInt(i) => i.to_string(),
        AMQPValue::ShortShortUInt(i) => i.to_string(),
        AMQPValue::ShortInt(i) => i.to_string(),
        AMQPValue::ShortUInt(i) => i.to_string(),
        AMQPValue::LongInt(i) => i.to_string(),
        AMQPValue::LongUInt(i) => i.to_string(),
        AMQPValue::LongLongInt(i) => i.to_string(),
        other => format!("{other:?}"),
    }
}

/// Exchange, queue and routing-key names: at most 255 bytes, printable.
pub(crate) fn check_name(what: &str, name: &str) -> Result<(), CapabilityError> {
    if name.len() > 255 || name.chars().any(char::is_control) {
        return Err(CapabilityError::Invalid(format!(
            "{what} {name:?} must be at most 255 printable bytes"
        )));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn payload_headers_and_property_lengths_are_capped() {
        let ok = Properties::default();
        assert!(ok.check(&vec![0; MAX_PAYLOAD]).is_ok());
        assert!(matches!(
            ok.check(&vec![0; MAX_PAYLOAD + 1]),
            Err(CapabilityError::LimitExceeded(_))
        ));
        let flood = Properties {
            headers: (0..=MAX_HEADERS)
                .map(|i| (format!("h{i}"), "v".into()))
                .collect(),
            ..Properties::default()
        };
        assert!(matches!(
            flood.check(b""),
            Err(CapabilityError::LimitExceeded(_))
        ));
        let heavy = Properties {
            headers: vec![("h".into(), "v".repeat(MAX_HEADER_BYTES))],
            ..Properties::default()
        };
        assert!(matches!(
            heavy.check(b""),
            Err(CapabilityError::LimitExceeded(_))
        ));
        let long = Properties {
            reply_to: Some("r".repeat(256)),
            ..Properties::default()
        };
        assert!(
            matches!(long.check(b""), Err(CapabilityError::Invalid(m)) if m.contains("reply-to"))
        );
        let long_name = Properties {
            headers: vec![("h".repeat(256), "v".into())],
            ..Properties::default()
        };
        assert!(matches!(
            long_name.check(b""),
            Err(CapabilityError::Invalid(_))
        ));
    }

    #[test]
    fn properties_survive_the_round_trip_through_amqp() {
        let p = Properties {
            content_type: Some("text/plain".into()),
            correlation_id: Some("c".into()),
            message_id: Some("m".into()),
            reply_to: Some("r".into()),
            persistent: true,
            expiration_ms: Some(1500),
            headers: vec![("a".into(), "1".into()), ("b".into(), "two".into())],
        };
        assert_eq!(Properties::from_amqp(&p.to_amqp()), p);
    }

    #[test]
    fn names_are_short_and_printable() {
        assert!(check_name("queue", "orders-work").is_ok());
        assert!(check_name("queue", "").is_ok());
        assert!(check_name("queue", &"q".repeat(256)).is_err());
        assert!(check_name("queue", "a\nb").is_err());
    }
}
