//! `[config-schema]`: a JSON Schema (written as TOML) the module's
//! `[config]` must satisfy, checked before anything runs or is stored.
//! Remote and file `$ref`s are not resolved: a manifest cannot make the
//! host fetch anything.

use serde_json::{Map, Value};

use super::{ConfigValue, ManifestError};

pub fn check(
    schema: &toml::Table,
    config: &std::collections::BTreeMap<String, ConfigValue>,
) -> Vec<ManifestError> {
    let schema = match serde_json::to_value(schema) {
        Ok(s) => s,
        Err(e) => return vec![ManifestError::new("config-schema", e.to_string())],
    };
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
