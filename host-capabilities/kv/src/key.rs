//! Prefix confinement: the one place guest-supplied names become Redis keys.

/// Longest key or channel name a guest may use (before the prefix).
pub const MAX_KEY_LEN: usize = 1024;

/// A grant's prefix, checked once.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Confined {
    prefix: String,
}

impl Confined {
    pub fn new(prefix: &str) -> Result<Self, String> {
        if prefix.is_empty() {
            return Err(
                "prefix must not be empty: a module may not own the whole key space".into(),
            );
        }
        if prefix.len() > 256 || prefix.chars().any(|c| c.is_control() || c.is_whitespace()) {
            return Err(format!(
                "prefix {prefix:?} must be at most 256 characters, without spaces or control characters"
            ));
        }
        if prefix.contains(['*', '?', '[', ']', '\\']) {
            return Err(format!(
                "prefix {prefix:?} must not contain glob characters * ? [ ] \\"
            ));
        }
        Ok(Self {
            prefix: prefix.to_string(),
        })
    }

    pub fn prefix(&self) -> &str {
        &self.prefix
    }

    /// The Redis key for a guest key. Any byte sequence the guest chooses
    /// stays under the prefix; only empty, oversized or control-character
    /// names are refused.
    pub fn key(&self, key: &str) -> Result<String, String> {
        if key.is_empty() {
            return Err("key must not be empty".into());
        }
        if key.len() > MAX_KEY_LEN {
            return Err(format!(
                "key is {} bytes; the limit is {MAX_KEY_LEN}",
                key.len()
            ));
        }
        if key.chars().any(char::is_control) {
            return Err("key must not contain control characters".into());
        }
        Ok(format!("{}{key}", self.prefix))
    }

    /// A SCAN MATCH pattern for guest keys starting with `start`: both the
    /// prefix and the guest's text are escaped, so the guest cannot widen it.
    pub fn scan_pattern(&self, start: &str) -> Result<String, String> {
        if start.len() > MAX_KEY_LEN || start.chars().any(char::is_control) {
            return Err("invalid key prefix".into());
        }
        Ok(format!(
            "{}{}*",
            escape_glob(&self.prefix),
            escape_glob(start)
        ))
    }

    /// Strips the prefix from a key the scan returned.
    pub fn guest_key<'a>(&self, redis_key: &'a str) -> Option<&'a str> {
        redis_key.strip_prefix(&self.prefix)
    }
}

fn escape_glob(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        if matches!(c, '*' | '?' | '[' | ']' | '\\') {
            out.push('\\');
        }
        out.push(c);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_stay_under_the_prefix() {
        let c = Confined::new("orders:").unwrap();
        for k in [
            "a",
            "..",
            "../other:x",
            "*",
            "a b",
            "ключ",
            "other:secret",
            "orders:",
        ] {
            assert!(c.key(k).unwrap().starts_with("orders:"), "{k}");
        }
        assert!(c.key("").is_err());
        assert!(c.key(&"x".repeat(MAX_KEY_LEN + 1)).is_err());
        assert!(c.key("a\r\nFLUSHALL").is_err());
    }

    #[test]
    fn scan_patterns_cannot_be_widened() {
        let c = Confined::new("m1:").unwrap();
        assert_eq!(c.scan_pattern("").unwrap(), "m1:*");
        assert_eq!(c.scan_pattern("*").unwrap(), "m1:\\**");
        assert_eq!(c.scan_pattern("[a-z]?").unwrap(), "m1:\\[a-z\\]\\?*");
    }

    #[test]
    fn prefixes_are_checked() {
        for bad in ["", "a*", "a b", "x\n"] {
            assert!(Confined::new(bad).is_err(), "{bad:?}");
        }
    }
}
