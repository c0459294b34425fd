//! Caps on what one guest call may send, checked before anything reaches
//! the producer queue (shared with every other module).

use warden_capability::CapabilityError;

/// Largest payload of one record.
pub const MAX_PAYLOAD: usize = 1 << 20;
/// Largest key of one record.
pub const MAX_KEY: usize = 16 << 10;
/// Headers per record, and their total bytes.
pub const MAX_HEADERS: usize = 64;
pub const MAX_HEADER_BYTES: usize = 16 << 10;
/// Records per `send-batch`, and their total bytes.
pub const MAX_BATCH: usize = 1000;
pub const MAX_BATCH_BYTES: usize = 16 << 20;

/// A record as the host sends it (the guest's `outgoing`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Outgoing {
    pub key: Option<Vec<u8>>,
    pub payload: Vec<u8>,
    pub headers: Vec<(String, String)>,
}

impl Outgoing {
    /// Bytes this record puts on the wire (roughly: key, payload, headers).
    pub fn size(&self) -> usize {
        self.key.as_ref().map_or(0, Vec::len)
            + self.payload.len()
            + self
                .headers
                .iter()
                .map(|(k, v)| k.len() + v.len())
                .sum::<usize>()
    }

    pub fn check(&self) -> Result<(), CapabilityError> {
        let too_big = |what: &str, n: usize, max: usize| {
            CapabilityError::LimitExceeded(format!("{what} is {n} bytes, above {max}"))
        };
        if self.payload.len() > MAX_PAYLOAD {
            return Err(too_big("payload", self.payload.len(), MAX_PAYLOAD));
        }
        if let Some(key) = &self.key
            && key.len() > MAX_KEY
        {
            return Err(too_big("key", key.len(), MAX_KEY));
        }
        if self.headers.len() > MAX_HEADERS {
            return Err(CapabilityError::LimitExceeded(format!(
                "{} headers, above {MAX_HEADERS}",
                self.headers.len()
            )));
        }
        let header_bytes: usize = self.headers.iter().map(|(k, v)| k.len() + v.len()).sum();
        if header_bytes > MAX_HEADER_BYTES {
            return Err(too_big("headers", header_bytes, MAX_HEADER_BYTES));
        }
        Ok(())
    }
}

/// Checks a batch as a whole and each record in it.
pub fn check_batch(records: &[Outgoing]) -> Result<(), CapabilityError> {
    if records.len() > MAX_BATCH {
        return Err(CapabilityError::LimitExceeded(format!(
            "a batch of {} records, above {MAX_BATCH}",
            records.len()
        )));
    }
    let total: usize = records.iter().map(Outgoing::size).sum();
    if total > MAX_BATCH_BYTES {
        return Err(CapabilityError::LimitExceeded(format!(
            "a batch of {total} bytes, above {MAX_BATCH_BYTES}"
        )));
    }
    records.iter().try_for_each(Outgoing::check)
}

/// Topic names as Kafka allows them; checked so a guest cannot smuggle
/// anything odd into logs, headers or the broker.
pub fn check_topic(topic: &str) -> Result<(), CapabilityError> {
    let valid = !topic.is_empty()
        && topic.len() <= 249
        && topic != "."
        && topic != ".."
        && topic
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'));
    if valid {
        Ok(())
    } else {
        Err(CapabilityError::Invalid(format!(
            "{topic:?} is not a Kafka topic name ([a-zA-Z0-9._-], at most 249)"
        )))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(key: usize, payload: usize, headers: usize, header_size: usize) -> Outgoing {
        Outgoing {
            key: Some(vec![b'k'; key]),
            payload: vec![b'p'; payload],
            headers: (0..headers)
                .map(|i| (format!("h{i}"), "v".repeat(header_size)))
                .collect(),
        }
    }

    fn refused(r: Result<(), CapabilityError>) -> String {
        match r {
            Err(CapabilityError::LimitExceeded(m)) => m,
            other => panic!("expected limit-exceeded, got {other:?}"),
        }
    }

    #[test]
    fn every_cap_of_a_record_and_a_batch_is_enforced_at_its_edge() {
        assert!(record(MAX_KEY, MAX_PAYLOAD, MAX_HEADERS, 1).check().is_ok());
        assert!(refused(record(0, MAX_PAYLOAD + 1, 0, 0).check()).contains("payload"));
        assert!(refused(record(MAX_KEY + 1, 0, 0, 0).check()).contains("key"));
        assert!(refused(record(0, 0, MAX_HEADERS + 1, 0).check()).contains("headers"));
        assert!(refused(record(0, 0, 2, MAX_HEADER_BYTES / 2).check()).contains("headers is"));

        let small = record(1, 10, 0, 0);
        assert!(check_batch(&vec![small.clone(); MAX_BATCH]).is_ok());
        assert!(refused(check_batch(&vec![small; MAX_BATCH + 1])).contains("records"));
        let big = record(0, MAX_PAYLOAD, 0, 0);
        assert!(refused(check_batch(&vec![big; 17])).contains("bytes"));
        // One bad record fails the whole batch.
        let batch = [record(0, 1, 0, 0), record(0, MAX_PAYLOAD + 1, 0, 0)];
        assert!(check_batch(&batch).is_err());
    }

    #[test]
    fn topic_names_are_what_kafka_accepts_and_nothing_else() {
        for ok in ["orders", "orders.created", "a_b-c.1", &"t".repeat(249)] {
            assert!(check_topic(ok).is_ok(), "{ok}");
        }
        for bad in [
            "",
            ".",
            "..",
            "a b",
            "a/b",
            "a*",
            "x\n",
            "ü",
            &"t".repeat(250),
        ] {
            assert!(
                matches!(check_topic(bad), Err(CapabilityError::Invalid(_))),
                "{bad:?}"
            );
        }
    }
}
