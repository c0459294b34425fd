//! `[config-schema]`: a JSON Schema (written as TOML) the module's
//! `[config]` must satisfy, checked before anything runs or is stored.
//! Remote and file `$ref`s are refused: a manifest cannot make the host
//! fetch anything. A schema is also refused when it would cost too much to
//! check: its size with every local `$ref` expanded is bounded, so nested
//! `$ref`/`allOf` chains cannot cost 2^depth.

use std::collections::HashMap;

use serde_json::{Map, Value};

use super::{ConfigValue, ManifestError};

/// Schema nodes a `[config-schema]` may expand to (each `$ref` counted at
/// its target's full size every time it is used).
pub const MAX_EXPANDED_NODES: u64 = 10_000;
/// Nesting of a `[config-schema]`, `$ref`s followed.
pub const MAX_DEPTH: usize = 32;

pub fn check(
    schema: &toml::Table,
    config: &std::collections::BTreeMap<String, ConfigValue>,
) -> Vec<ManifestError> {
    let schema = match serde_json::to_value(schema) {
        Ok(s) => s,
        Err(e) => return vec![ManifestError::new("config-schema", e.to_string())],
    };
    if let Err(e) = Cost::of(&schema) {
        return vec![ManifestError::new("config-schema", e)];
    }
    let validator = match jsonschema::validator_for(&schema) {
        Ok(v) => v,
        Err(e) => {
            return vec![ManifestError::new(
                "config-schema",
                format!("not a usable JSON Schema: {e}"),
            )];
        }
    };
    let instance = Value::Object(
        config
            .iter()
            .map(|(k, v)| (k.clone(), to_json(v)))
            .collect::<Map<_, _>>(),
    );
    validator
        .iter_errors(&instance)
        .map(|e| {
            let at = e.instance_path().to_string();
            let path = if at.is_empty() {
                "config".to_string()
            } else {
                format!("config{}", at.replace('/', "."))
            };
            ManifestError::new(path, format!("{e} (config-schema)"))
        })
        .collect()
}

fn to_json(v: &ConfigValue) -> Value {
    match v {
        ConfigValue::String(s) => Value::String(s.clone()),
        ConfigValue::Integer(i) => Value::from(*i),
        ConfigValue::Float(f) => {
            serde_json::Number::from_f64(*f).map_or(Value::Null, Value::Number)
        }
        ConfigValue::Bool(b) => Value::Bool(*b),
    }
}

/// The size of a schema with its local `$ref`s expanded, memoized per
/// target so that measuring it is linear in the text.
struct Cost<'a> {
    root: &'a Value,
    known: HashMap<String, u64>,
    resolving: Vec<String>,
}

impl<'a> Cost<'a> {
    fn of(root: &'a Value) -> Result<u64, String> {
        let mut cost = Cost {
            root,
            known: HashMap::new(),
            resolving: Vec::new(),
        };
        let n = cost.node(root, 0)?;
        if n > MAX_EXPANDED_NODES {
            return Err(too_big());
        }
        Ok(n)
    }

    fn node(&mut self, v: &'a Value, depth: usize) -> Result<u64, String> {
        if depth > MAX_DEPTH {
            return Err(format!(
                "nested deeper than {MAX_DEPTH} levels ($ref targets included)"
            ));
        }
        let mut total: u64 = 1;
        match v {
            Value::Object(map) => {
                for key in ["$dynamicRef", "$recursiveRef"] {
                    if map.contains_key(key) {
                        return Err(format!("{key} is not supported; use a local $ref"));
                    }
                }
                if let Some(r) = map.get("$ref") {
                    total += self.reference(r, depth)?;
                }
                for (k, child) in map {
                    if k != "$ref" {
                        total += self.node(child, depth + 1)?;
                    }
                }
            }
            Value::Array(items) => {
                for child in items {
                    total += self.node(child, depth + 1)?;
                }
            }
            _ => {}
        }
        // Stop adding as soon as the bound is passed.
        if total > MAX_EXPANDED_NODES {
            return Err(too_big());
        }
        Ok(total)
    }

    fn reference(&mut self, r: &Value, depth: usize) -> Result<u64, String> {
        let Some(pointer) = r.as_str().and_then(|r| r.strip_prefix('#')) else {
            return Err(format!(
                "$ref {r} is not local; only references into this schema (#/...) are allowed"
            ));
        };
        if let Some(n) = self.known.get(pointer) {
            return Ok(*n);
        }
        if self.resolving.iter().any(|p| p == pointer) {
            return Err(format!(
                "$ref \"#{pointer}\" refers to itself (recursive schemas are not allowed)"
            ));
        }
        let target = self
            .root
            .pointer(pointer)
            .ok_or_else(|| format!("$ref \"#{pointer}\" points at nothing in the schema"))?;
        self.resolving.push(pointer.to_string());
        let n = self.node(target, depth + 1);
        self.resolving.pop();
        let n = n?;
        self.known.insert(pointer.to_string(), n);
        Ok(n)
    }
}

fn too_big() -> String {
    format!(
        "too costly to check: more than {MAX_EXPANDED_NODES} schema nodes with every $ref expanded"
    )
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::Cost;

    /// `$defs.d0` uses d1 `width` times, d1 uses d2 `width` times, ...:
    /// width^depth to check.
    fn fan_out(depth: usize, width: usize) -> serde_json::Value {
        let mut defs = serde_json::Map::new();
        for i in 0..depth {
            let next = json!({"$ref": format!("#/$defs/d{}", i + 1)});
            defs.insert(format!("d{i}"), json!({"allOf": vec![next; width]}));
        }
        defs.insert(format!("d{depth}"), json!({"type": "object"}));
        json!({"$defs": defs, "$ref": "#/$defs/d0"})
    }

    #[test]
    fn exponential_ref_chains_are_refused_and_small_ones_pass() {
        assert!(Cost::of(&fan_out(4, 2)).is_ok());
        let err = Cost::of(&fan_out(9, 4)).unwrap_err();
        assert!(err.contains("too costly"), "{err}");
        let err = Cost::of(&fan_out(30, 1)).unwrap_err();
        assert!(err.contains("nested deeper"), "{err}");
    }

    #[test]
    fn recursive_remote_and_dangling_refs_are_refused() {
        let err = Cost::of(&json!({"$defs": {"a": {"$ref": "#/$defs/a"}}, "$ref": "#/$defs/a"}))
            .unwrap_err();
        assert!(err.contains("itself"), "{err}");
        let err = Cost::of(&json!({"$ref": "https://example.com/s.json"})).unwrap_err();
        assert!(err.contains("not local"), "{err}");
        let err = Cost::of(&json!({"$ref": "#/nowhere"})).unwrap_err();
        assert!(err.contains("nothing"), "{err}");
    }
}
