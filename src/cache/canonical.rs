//! Canonical JSON: the text that cache keys and content IDs hash, independent of field order.

use serde_json::Value;

/// JSON with object keys sorted at every level: the same content always gives the same text.
pub fn canonical_json(v: &Value) -> String {
    fn sort(v: &Value) -> Value {
        match v {
            Value::Object(m) => {
                let mut keys: Vec<&String> = m.keys().collect();
                keys.sort();
                let mut out = serde_json::Map::new();
                for k in keys {
                    out.insert(k.clone(), sort(&m[k]));
                }
                Value::Object(out)
            }
            Value::Array(a) => Value::Array(a.iter().map(sort).collect()),
            other => other.clone(),
        }
    }
    serde_json::to_string(&sort(v)).unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::canonical_json;
    use serde_json::json;

    #[test]
    fn keys_are_sorted_at_every_level() {
        assert_eq!(
            canonical_json(&json!({"b": 1, "a": {"d": [2, {"z": 0, "y": 1}], "c": 3}})),
            r#"{"a":{"c":3,"d":[2,{"y":1,"z":0}]},"b":1}"#
        );
    }
}
