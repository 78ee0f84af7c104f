//! Values that satisfy a JSON Schema, built deterministically from hints: how the simulated
//! model writes tool arguments and structured answers.
//!
//! The subset is what tool and response schemas use in practice (and what `schemars` and
//! Pydantic write): `type` (one or a list), `properties`, `items`, `enum`, `const`, `anyOf`,
//! `oneOf`, `allOf` (the first branch), `$ref` into `$defs`/`definitions`, `minimum`/`maximum`,
//! `minItems`/`maxItems`, `minLength`/`maxLength`. Every property is written (strict schemas
//! require them all). Recursion stops at [`MAX_DEPTH`] with `null`.

use serde_json::{Map, Value, json};

use super::simulated::similarity;

/// The deepest a generated value nests.
pub const MAX_DEPTH: usize = 16;
/// The most values (objects, arrays, scalars) one generated value holds: a schema whose
/// recursion or `minItems` would make more gets `null`s past this.
pub const MAX_NODES: usize = 4096;
/// The longest string generated (a larger `minLength` is not met).
pub const MAX_STRING: usize = 4096;

/// What the value is built from: named values (a property takes the one named like it) and a
/// free text (strings with no named value are taken from it).
#[derive(Debug, Clone, Default)]
pub struct Hints {
    /// Values by name (matched ignoring case, spaces and underscores).
    pub named: Vec<(String, String)>,
    /// The text a value is guessed from otherwise (the question).
    pub text: String,
}

impl Hints {
    fn named(&self, property: &str) -> Option<&str> {
        let key = normalize(property);
        self.named.iter().find(|(n, _)| normalize(n) == key).map(|(_, v)| v.as_str())
    }

    /// A guess for a string property from the free text: `property: value` or `property=value`
    /// in it, else its last capitalized word that does not start a sentence, else its last word.
    fn guess(&self, property: &str) -> String {
        if let Some(value) = self.explicit(property) {
            return value;
        }
        let text = &self.text;
        let words: Vec<&str> = text.split_whitespace().collect();
        let clean = |w: &str| w.trim_matches(|c: char| !c.is_alphanumeric()).to_string();
        let capitalized = words.iter().enumerate().rev().find(|(i, w)| {
            *i > 0
                && w.chars().next().is_some_and(char::is_uppercase)
                && !words[i - 1].ends_with(['.', '?', '!'])
        });
        match capitalized {
            Some((_, w)) => clean(w),
            None => words.last().map(|w| clean(w)).unwrap_or_default(),
        }
    }
}

impl Hints {
    /// `property: value`, `property=value` or `property is value` in the free text (the first
    /// whole-word mention).
    fn explicit(&self, property: &str) -> Option<String> {
        let text = &self.text;
        // ASCII lower-casing keeps byte offsets, so a place found in `lower` is one in `text`.
        let lower = text.to_ascii_lowercase();
        for sep in [": ", "=", " is "] {
            let needle = format!("{}{sep}", property.to_ascii_lowercase());
            let whole_word = |at: usize| at == 0 || !lower.as_bytes()[at - 1].is_ascii_alphanumeric();
            if let Some((at, _)) = lower.match_indices(&needle).find(|(at, _)| whole_word(*at)) {
                let rest = &text[at + needle.len()..];
                let value: String = rest
                    .split([',', '\n', ';', '?', '!'])
                    .next()
                    .unwrap_or("")
                    .trim()
                    .trim_end_matches('.')
                    .to_string();
                if !value.is_empty() {
                    return Some(value);
                }
            }
        }
        None
    }
}

fn normalize(name: &str) -> String {
    name.chars().filter(|c| c.is_alphanumeric()).flat_map(char::to_lowercase).collect()
}

/// A value satisfying `schema` (its `$ref`s resolved against `schema` itself), from `hints`.
pub fn generate(schema: &Value, hints: &Hints) -> Value {
    let mut budget = MAX_NODES;
    build(schema, schema, hints, "", 0, &mut budget)
}

fn resolve<'a>(root: &'a Value, schema: &'a Value) -> &'a Value {
    let mut current = schema;
    for _ in 0..MAX_DEPTH {
        let Some(reference) = current.get("$ref").and_then(Value::as_str) else { return current };
        let Some(path) = reference.strip_prefix('#') else { return current };
        match root.pointer(path) {
            Some(target) => current = target,
            None => return current,
        }
    }
    current
}

fn build(
    root: &Value,
    schema: &Value,
    hints: &Hints,
    property: &str,
    depth: usize,
    budget: &mut usize,
) -> Value {
    if depth > MAX_DEPTH || *budget == 0 {
        return Value::Null;
    }
    *budget -= 1;
    let schema = resolve(root, schema);
    if let Some(value) = schema.get("const") {
        return value.clone();
    }
    if let Some(options) = schema.get("enum").and_then(Value::as_array) {
        let wanted = hints.named(property).map(str::to_string).unwrap_or_else(|| hints.text.clone());
        let best = options
            .iter()
            .enumerate()
            .max_by(|(i, a), (j, b)| {
                let score = |v: &Value| {
                    similarity(&wanted, &v.as_str().map_or_else(|| v.to_string(), str::to_string))
                };
                score(a).total_cmp(&score(b)).then(j.cmp(i))
            })
            .map(|(_, v)| v.clone());
        return best.unwrap_or(Value::Null);
    }
    for key in ["anyOf", "oneOf", "allOf"] {
        if let Some(branches) = schema.get(key).and_then(Value::as_array) {
            let branch = branches
                .iter()
                .find(|b| resolve(root, b).get("type").and_then(Value::as_str) != Some("null"))
                .or(branches.first());
            if let Some(branch) = branch {
                return build(root, branch, hints, property, depth + 1, budget);
            }
        }
    }
    let kind = match schema.get("type") {
        Some(Value::String(t)) => t.as_str(),
        Some(Value::Array(types)) => {
            types.iter().filter_map(Value::as_str).find(|t| *t != "null").unwrap_or("null")
        }
        _ if schema.get("properties").is_some() => "object",
        _ if schema.get("items").is_some() => "array",
        _ => "string",
    };
    let named = hints.named(property);
    match kind {
        "object" => {
            let mut object = Map::new();
            if let Some(properties) = schema.get("properties").and_then(Value::as_object) {
                for (name, sub) in properties {
                    object.insert(name.clone(), build(root, sub, hints, name, depth + 1, budget));
                }
            }
            Value::Object(object)
        }
        "array" => {
            let min = schema.get("minItems").and_then(Value::as_u64).unwrap_or(1);
            let max = schema.get("maxItems").and_then(Value::as_u64).unwrap_or(u64::MAX);
            let n = min.max(1).min(max).min(16);
            let items = schema.get("items").cloned().unwrap_or_else(|| json!({}));
            Value::Array((0..n).map(|_| build(root, &items, hints, property, depth + 1, budget)).collect())
        }
        "integer" | "number" => {
            let min = schema.get("minimum").and_then(Value::as_f64);
            let max = schema.get("maximum").and_then(Value::as_f64);
            let mut n = named
                .and_then(|v| v.trim().parse::<f64>().ok())
                .or_else(|| hints.explicit(property).and_then(|v| v.parse::<f64>().ok()))
                .or_else(|| first_number(&hints.text))
                .unwrap_or(0.0);
            if let Some(min) = min {
                n = n.max(min);
            }
            if let Some(max) = max {
                n = n.min(max);
            }
            if kind == "integer" { json!(n.round() as i64) } else { json!(n) }
        }
        "boolean" => {
            json!(named.is_some_and(|v| matches!(v.trim().to_lowercase().as_str(), "true" | "yes" | "1")))
        }
        "null" => Value::Null,
        _ => {
            let mut text = named.map(str::to_string).unwrap_or_else(|| hints.guess(property));
            let min = schema
                .get("minLength")
                .and_then(Value::as_u64)
                .map_or(0, |m| m.min(MAX_STRING as u64) as usize);
            let max = schema.get("maxLength").and_then(Value::as_u64).map_or(usize::MAX, |m| m as usize);
            let have = text.chars().count();
            if have < min {
                text.push_str(&"x".repeat(min - have));
            }
            if text.chars().count() > max {
                text = text.chars().take(max).collect();
            }
            Value::String(text)
        }
    }
}

fn first_number(text: &str) -> Option<f64> {
    text.split(|c: char| !(c.is_ascii_digit() || c == '.' || c == '-'))
        .find(|w| w.chars().any(|c| c.is_ascii_digit()))
        .and_then(|w| w.trim_matches('.').parse().ok())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fills_a_schema_from_hints_and_the_question() {
        let schema = json!({
            "type": "object",
            "properties": {
                "city": {"type": "string"},
                "days": {"type": "integer", "minimum": 1, "maximum": 7},
                "unit": {"enum": ["celsius", "fahrenheit"]},
                "tags": {"type": "array", "items": {"$ref": "#/$defs/Tag"}},
                "note": {"anyOf": [{"type": "null"}, {"type": "string", "maxLength": 3}]},
            },
            "$defs": {"Tag": {"type": "object", "properties": {"name": {"const": "t"}}}},
        });
        let hints =
            Hints { named: vec![], text: "What is the weather in Paris for 3 days in fahrenheit?".into() };
        let value = generate(&schema, &hints);
        assert_eq!(value["city"], "Paris");
        assert_eq!(value["days"], 3);
        assert_eq!(value["unit"], "fahrenheit");
        assert_eq!(value["tags"], json!([{"name": "t"}]));
        assert_eq!(value["note"].as_str().map(|s| s.chars().count() <= 3), Some(true));
        let named = Hints { named: vec![("City".into(), "Rome".into())], text: String::new() };
        assert_eq!(generate(&schema, &named)["city"], "Rome");
        // Text that lower-cases to other lengths, and schemas that would grow without end.
        let odd = Hints { named: vec![], text: "İ city: Élan, K".into() };
        assert_eq!(generate(&schema, &odd)["city"], "Élan");
        let wide = json!({"type": "array", "minItems": 16, "items": {"$ref": "#"}});
        assert!(generate(&wide, &hints).to_string().len() < 1 << 20);
        let long = json!({"type": "string", "minLength": 1_000_000_000_000u64});
        assert_eq!(generate(&long, &hints).as_str().map(str::len), Some(MAX_STRING));
        // A schema that refers to itself ends.
        let endless = json!({"$ref": "#"});
        let _ = generate(&endless, &hints);
        let nested = json!({"type": "object", "properties": {"me": {"$ref": "#"}}});
        let _ = generate(&nested, &hints);
    }
}
