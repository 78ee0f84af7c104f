//! Checking a JSON value against a JSON Schema: how an agent's tool loop refuses a model's
//! tool arguments before the tool runs, with an error the model can act on.
//!
//! Why not the `jsonschema` crate: it resolves remote references, compiles regular expressions
//! and brings a large dependency tree for what tool schemas use. This check covers the subset
//! tool and response schemas are written in (what `schemars`, Pydantic and OpenAI's strict mode
//! produce), and says so:
//!
//! - `type` (one or a list); `integer` is a whole number written without a fraction or
//!   exponent (`3`, not `3.0`), as serde's integer types read it; the integer `format`s
//!   schemars writes (`uint8` … `int64`, `uint`, `int`) bound the value to their type's range;
//! - `enum`, `const`;
//! - objects: `properties`, `required`, `additionalProperties` (`false` or a schema),
//!   `minProperties`, `maxProperties`;
//! - arrays: `items` (a schema, or draft 7's list of schemas with `additionalItems`),
//!   `prefixItems`, `minItems`, `maxItems`, `uniqueItems`;
//! - strings: `minLength`, `maxLength` (in characters);
//! - numbers: `minimum`, `maximum`, `exclusiveMinimum`, `exclusiveMaximum`, `multipleOf`;
//! - `anyOf`, `oneOf` (exactly one), `allOf`, `not`, boolean schemas, `$ref` within the
//!   document (`#`, `#/$defs/…`, `#/definitions/…`).
//!
//! Other keywords (`pattern`, `patternProperties`, other `format`s, `if`/`then`/`else`, draft
//! 4's boolean `exclusiveMinimum`, …) are not checked (an object with `patternProperties` is
//! not refused for properties `additionalProperties: false` would refuse): the tool's own
//! decoding of its argument type is the final word, and refuses what its type refuses.
//!
//! Bounded work, whatever the schema (it may come from another node) and the value (a model
//! wrote it): a `$ref` this check cannot resolve, schema and value followed together deeper
//! than [`MAX_DEPTH`], or more than [`MAX_STEPS`] schema-value pairs visited (alternatives of
//! `anyOf`/`oneOf` over a recursive schema multiply) are violations, never a pass.

use serde_json::{Map, Value};

/// The deepest a schema and a value are followed together (`$ref` hops included).
pub const MAX_DEPTH: usize = 64;
/// The most schema-value pairs one check visits (100 000).
pub const MAX_STEPS: usize = 100_000;
/// Above this many items, `uniqueItems` compares canonical forms by hash instead of pairs.
const PAIRWISE_UNIQUE: usize = 64;

/// Why a value does not satisfy a schema: where (a JSON pointer into the value, `""` for the
/// value itself) and what was expected there.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize, thiserror::Error)]
#[error("at `{}`: {expected}", if pointer.is_empty() { "/" } else { pointer })]
pub struct SchemaViolation {
    /// A JSON pointer to the offending part of the value.
    pub pointer: String,
    /// What the schema asked for there.
    pub expected: String,
}

/// Whether `value` satisfies `schema` (the subset in the module docs); the first violation
/// found otherwise.
///
/// ```
/// use foundation_actors::providers::check_against_schema;
/// use serde_json::json;
///
/// let schema = json!({
///     "type": "object",
///     "properties": {"city": {"type": "string"}, "days": {"type": "integer", "minimum": 1}},
///     "required": ["city", "days"],
///     "additionalProperties": false,
/// });
/// assert!(check_against_schema(&schema, &json!({"city": "Lisbon", "days": 3})).is_ok());
/// let err = check_against_schema(&schema, &json!({"city": "Lisbon", "days": 0})).unwrap_err();
/// assert_eq!(err.to_string(), "at `/days`: a number ≥ 1");
/// ```
pub fn check_against_schema(schema: &Value, value: &Value) -> Result<(), SchemaViolation> {
    Checker { root: schema, steps: std::cell::Cell::new(0) }.check(schema, value, &mut String::new(), 0)
}

struct Checker<'a> {
    root: &'a Value,
    /// Schema-value pairs visited so far.
    steps: std::cell::Cell<usize>,
}

fn violation(pointer: &str, expected: impl Into<String>) -> SchemaViolation {
    SchemaViolation { pointer: pointer.to_string(), expected: expected.into() }
}

fn kind_of(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "boolean",
        Value::Number(n) if n.is_i64() || n.is_u64() => "integer",
        Value::Number(_) => "number",
        Value::String(_) => "string",
        Value::Array(_) => "array",
        Value::Object(_) => "object",
    }
}

fn is_type(value: &Value, kind: &str) -> bool {
    match kind {
        "number" => value.is_number(),
        other => kind_of(value) == other,
    }
}

/// A short rendering of a value for an error (at most 64 characters).
fn show(value: &Value) -> String {
    let text = value.to_string();
    if text.chars().count() <= 64 {
        text
    } else {
        format!("{}…", text.chars().take(63).collect::<String>())
    }
}

/// Escapes a property name for a JSON pointer (RFC 6901).
fn push_segment(pointer: &mut String, segment: &str) {
    pointer.push('/');
    pointer.push_str(&segment.replace('~', "~0").replace('/', "~1"));
}

impl<'a> Checker<'a> {
    /// Whether the step budget ran out (every later check fails: the result is a refusal).
    fn exhausted(&self) -> bool {
        self.steps.get() > MAX_STEPS
    }

    fn resolve(&self, reference: &str, pointer: &str) -> Result<&'a Value, SchemaViolation> {
        let unresolved = || {
            violation(pointer, format!("a value for the reference `{reference}`, which cannot be resolved"))
        };
        let path = reference.strip_prefix('#').ok_or_else(unresolved)?;
        let path = percent_decode(path);
        self.root.pointer(&path).ok_or_else(unresolved)
    }

    fn check(
        &self,
        schema: &Value,
        value: &Value,
        pointer: &mut String,
        depth: usize,
    ) -> Result<(), SchemaViolation> {
        if depth > MAX_DEPTH {
            return Err(violation(pointer, format!("a value nested at most {MAX_DEPTH} deep")));
        }
        self.steps.set(self.steps.get() + 1);
        if self.steps.get() > MAX_STEPS {
            return Err(violation(
                pointer,
                format!("a value checkable in {MAX_STEPS} steps (the schema is too complex to check)"),
            ));
        }
        let schema = match schema {
            Value::Bool(true) => return Ok(()),
            Value::Bool(false) => {
                return Err(violation(pointer, "nothing (the schema allows no value here)"));
            }
            Value::Object(schema) => schema,
            _ => return Err(violation(pointer, "a value for a schema that is not an object or a boolean")),
        };
        if let Some(reference) = schema.get("$ref").and_then(Value::as_str) {
            let target = self.resolve(reference, pointer)?;
            self.check(target, value, pointer, depth + 1)?;
        }
        self.check_type(schema, value, pointer)?;
        if let Some(constant) = schema.get("const")
            && !json_equal(constant, value)
        {
            return Err(violation(pointer, format!("exactly {}", show(constant))));
        }
        if let Some(options) = schema.get("enum").and_then(Value::as_array)
            && !options.iter().any(|o| json_equal(o, value))
        {
            let listed: Vec<String> = options.iter().take(16).map(show).collect();
            let more = if options.len() > 16 { ", …" } else { "" };
            return Err(violation(pointer, format!("one of {}{more}", listed.join(", "))));
        }
        match value {
            Value::Object(object) => self.check_object(schema, object, pointer, depth)?,
            Value::Array(items) => self.check_array(schema, items, pointer, depth)?,
            Value::String(text) => check_string(schema, text, pointer)?,
            Value::Number(_) => check_number(schema, value, pointer)?,
            Value::Null | Value::Bool(_) => {}
        }
        self.check_combinators(schema, value, pointer, depth)
    }

    fn check_type(
        &self,
        schema: &Map<String, Value>,
        value: &Value,
        pointer: &str,
    ) -> Result<(), SchemaViolation> {
        let wanted: Vec<&str> = match schema.get("type") {
            None => return Ok(()),
            Some(Value::String(kind)) => vec![kind.as_str()],
            Some(Value::Array(kinds)) => kinds.iter().filter_map(Value::as_str).collect(),
            Some(other) => {
                return Err(violation(
                    pointer,
                    format!("a value of type {}, which is not a type", show(other)),
                ));
            }
        };
        if wanted.iter().any(|kind| is_type(value, kind)) {
            return Ok(());
        }
        let article = |k: &str| {
            if k.starts_with(['a', 'e', 'i', 'o', 'u']) { format!("an {k}") } else { format!("a {k}") }
        };
        let wanted: Vec<String> =
            wanted.iter().map(|k| if *k == "null" { "null".to_string() } else { article(k) }).collect();
        Err(violation(pointer, format!("{}, not {}", wanted.join(" or "), show(value))))
    }

    fn check_object(
        &self,
        schema: &Map<String, Value>,
        object: &Map<String, Value>,
        pointer: &mut String,
        depth: usize,
    ) -> Result<(), SchemaViolation> {
        if let Some(required) = schema.get("required").and_then(Value::as_array) {
            for name in required.iter().filter_map(Value::as_str) {
                if !object.contains_key(name) {
                    return Err(violation(pointer, format!("the property `{name}`, which is required")));
                }
            }
        }
        let count = object.len() as u64;
        if let Some(min) = schema.get("minProperties").and_then(Value::as_u64)
            && count < min
        {
            return Err(violation(pointer, format!("at least {min} properties")));
        }
        if let Some(max) = schema.get("maxProperties").and_then(Value::as_u64)
            && count > max
        {
            return Err(violation(pointer, format!("at most {max} properties")));
        }
        let properties = schema.get("properties").and_then(Value::as_object);
        // Properties that match a pattern are not known here: not refused as additional.
        let additional =
            schema.get("additionalProperties").filter(|_| !schema.contains_key("patternProperties"));
        for (name, item) in object {
            let len = pointer.len();
            push_segment(pointer, name);
            match (properties.and_then(|p| p.get(name)), additional) {
                (Some(sub), _) => self.check(sub, item, pointer, depth + 1)?,
                (None, Some(Value::Bool(false))) => {
                    pointer.truncate(len);
                    let known: Vec<&str> =
                        properties.map(|p| p.keys().map(String::as_str).collect()).unwrap_or_default();
                    return Err(violation(
                        pointer,
                        format!("no property `{name}` (the properties are: {})", known.join(", ")),
                    ));
                }
                (None, Some(sub)) => self.check(sub, item, pointer, depth + 1)?,
                (None, None) => {}
            }
            pointer.truncate(len);
        }
        Ok(())
    }

    fn check_array(
        &self,
        schema: &Map<String, Value>,
        items: &[Value],
        pointer: &mut String,
        depth: usize,
    ) -> Result<(), SchemaViolation> {
        let count = items.len() as u64;
        if let Some(min) = schema.get("minItems").and_then(Value::as_u64)
            && count < min
        {
            return Err(violation(pointer, format!("at least {min} items, not {count}")));
        }
        if let Some(max) = schema.get("maxItems").and_then(Value::as_u64)
            && count > max
        {
            return Err(violation(pointer, format!("at most {max} items, not {count}")));
        }
        if schema.get("uniqueItems") == Some(&Value::Bool(true))
            && let Some(repeated) = first_repeated(items)
        {
            return Err(violation(pointer, format!("unique items ({} is repeated)", show(repeated))));
        }
        // Draft 7 writes a tuple as a list of `items` and the rest as `additionalItems`.
        let (prefix, rest) = match (schema.get("prefixItems"), schema.get("items")) {
            (Some(Value::Array(prefix)), rest) => (prefix.as_slice(), rest),
            (None, Some(Value::Array(prefix))) => (prefix.as_slice(), schema.get("additionalItems")),
            (_, rest) => (&[][..], rest),
        };
        for (i, item) in items.iter().enumerate() {
            let sub = match prefix.get(i) {
                Some(sub) => sub,
                None => match rest {
                    Some(sub) => sub,
                    None => continue,
                },
            };
            let len = pointer.len();
            push_segment(pointer, &i.to_string());
            self.check(sub, item, pointer, depth + 1)?;
            pointer.truncate(len);
        }
        Ok(())
    }

    fn check_combinators(
        &self,
        schema: &Map<String, Value>,
        value: &Value,
        pointer: &mut String,
        depth: usize,
    ) -> Result<(), SchemaViolation> {
        if let Some(all) = schema.get("allOf").and_then(Value::as_array) {
            for sub in all {
                self.check(sub, value, pointer, depth + 1)?;
            }
        }
        if let Some(any) = schema.get("anyOf").and_then(Value::as_array) {
            if any.is_empty() {
                return Err(violation(pointer, "a value matching one of 0 alternatives (an empty `anyOf`)"));
            }
            let mut first = None;
            for sub in any {
                match self.check(sub, value, &mut pointer.clone(), depth + 1) {
                    Ok(()) => {
                        first = None;
                        break;
                    }
                    Err(e) if self.exhausted() => return Err(e),
                    Err(e) => {
                        first.get_or_insert(e);
                    }
                }
            }
            if let Some(first) = first {
                let said: String = first.to_string().chars().take(200).collect();
                return Err(violation(
                    pointer,
                    format!("a value matching one of {} alternatives (the first says {said})", any.len()),
                ));
            }
        }
        if let Some(one) = schema.get("oneOf").and_then(Value::as_array) {
            let mut matching = 0;
            for sub in one {
                match self.check(sub, value, &mut pointer.clone(), depth + 1) {
                    Ok(()) => matching += 1,
                    Err(e) if self.exhausted() => return Err(e),
                    Err(_) => {}
                }
            }
            if matching != 1 {
                return Err(violation(
                    pointer,
                    format!("a value matching exactly one of {} alternatives, not {matching}", one.len()),
                ));
            }
        }
        if let Some(not) = schema.get("not") {
            match self.check(not, value, &mut pointer.clone(), depth + 1) {
                Ok(()) => return Err(violation(pointer, "a value the `not` schema refuses")),
                Err(e) if self.exhausted() => return Err(e),
                Err(_) => {}
            }
        }
        Ok(())
    }
}

fn check_string(schema: &Map<String, Value>, text: &str, pointer: &str) -> Result<(), SchemaViolation> {
    let min = schema.get("minLength").and_then(Value::as_u64);
    let max = schema.get("maxLength").and_then(Value::as_u64);
    if min.is_none() && max.is_none() {
        return Ok(());
    }
    let count = text.chars().count() as u64;
    if let Some(min) = min
        && count < min
    {
        return Err(violation(pointer, format!("a string of at least {min} characters, not {count}")));
    }
    if let Some(max) = max
        && count > max
    {
        return Err(violation(pointer, format!("a string of at most {max} characters, not {count}")));
    }
    Ok(())
}

/// The range of the integer formats schemars writes for Rust's integer types.
fn format_range(format: &str) -> Option<(i128, i128)> {
    Some(match format {
        "uint8" => (0, u8::MAX as i128),
        "uint16" => (0, u16::MAX as i128),
        "uint32" => (0, u32::MAX as i128),
        "uint64" | "uint" => (0, u64::MAX as i128),
        "int8" => (i8::MIN as i128, i8::MAX as i128),
        "int16" => (i16::MIN as i128, i16::MAX as i128),
        "int32" => (i32::MIN as i128, i32::MAX as i128),
        "int64" | "int" => (i64::MIN as i128, i64::MAX as i128),
        _ => return None,
    })
}

fn check_number(schema: &Map<String, Value>, value: &Value, pointer: &str) -> Result<(), SchemaViolation> {
    if let Some(format) = schema.get("format").and_then(Value::as_str)
        && let Some((min, max)) = format_range(format)
    {
        let whole = value.as_i64().map(i128::from).or_else(|| value.as_u64().map(i128::from));
        if !whole.is_some_and(|n| (min..=max).contains(&n)) {
            return Err(violation(pointer, format!("an integer from {min} to {max} (format {format})")));
        }
    }
    let Some(n) = value.as_f64() else { return Ok(()) };
    let bound = |key: &str| schema.get(key).and_then(Value::as_f64);
    if let Some(min) = bound("minimum")
        && n < min
    {
        return Err(violation(pointer, format!("a number ≥ {min}")));
    }
    if let Some(max) = bound("maximum")
        && n > max
    {
        return Err(violation(pointer, format!("a number ≤ {max}")));
    }
    if let Some(min) = bound("exclusiveMinimum")
        && n <= min
    {
        return Err(violation(pointer, format!("a number > {min}")));
    }
    if let Some(max) = bound("exclusiveMaximum")
        && n >= max
    {
        return Err(violation(pointer, format!("a number < {max}")));
    }
    if let Some(step) = bound("multipleOf").filter(|s| *s > 0.0) {
        let ratio = n / step;
        if (ratio - ratio.round()).abs() > 1e-9 * ratio.abs().max(1.0) {
            return Err(violation(pointer, format!("a multiple of {step}")));
        }
    }
    Ok(())
}

/// The first item equal (as [`json_equal`] says) to an earlier one: pairwise for a few
/// items, by canonical form for more (linear).
fn first_repeated(items: &[Value]) -> Option<&Value> {
    if items.len() <= PAIRWISE_UNIQUE {
        return items
            .iter()
            .enumerate()
            .find(|(i, a)| items[..*i].iter().any(|b| json_equal(a, b)))
            .map(|(_, a)| a);
    }
    let mut seen = std::collections::HashSet::with_capacity(items.len());
    items.iter().find(|item| {
        let mut form = String::new();
        canonical(item, &mut form, 0);
        !seen.insert(form)
    })
}

/// A text equal for values [`json_equal`] calls equal: integral numbers as integers, object
/// keys sorted (serde_json's maps are), depth-bounded.
fn canonical(value: &Value, out: &mut String, depth: usize) {
    use std::fmt::Write as _;
    if depth > MAX_DEPTH {
        out.push('…');
        return;
    }
    match value {
        Value::Number(n) => match (n.as_i64(), n.as_u64(), n.as_f64()) {
            (Some(i), _, _) => write!(out, "{i}").unwrap_or_default(),
            (_, Some(u), _) => write!(out, "{u}").unwrap_or_default(),
            (_, _, Some(f)) if f.fract() == 0.0 && f.abs() < 9.0e15 => {
                write!(out, "{}", f as i64).unwrap_or_default()
            }
            (_, _, f) => write!(out, "{f:?}").unwrap_or_default(),
        },
        Value::Array(items) => {
            out.push('[');
            for item in items {
                canonical(item, out, depth + 1);
                out.push(',');
            }
            out.push(']');
        }
        Value::Object(map) => {
            out.push('{');
            for (k, v) in map {
                write!(out, "{k:?}:").unwrap_or_default();
                canonical(v, out, depth + 1);
                out.push(',');
            }
            out.push('}');
        }
        other => out.push_str(&other.to_string()),
    }
}

/// Equality as JSON Schema means it: numbers by value (`1` equals `1.0`).
fn json_equal(a: &Value, b: &Value) -> bool {
    match (a, b) {
        (Value::Number(x), Value::Number(y)) => match (x.as_i64(), y.as_i64(), x.as_u64(), y.as_u64()) {
            (Some(x), Some(y), _, _) => x == y,
            (_, _, Some(x), Some(y)) => x == y,
            _ => x.as_f64() == y.as_f64(),
        },
        (Value::Array(x), Value::Array(y)) => {
            x.len() == y.len() && x.iter().zip(y).all(|(a, b)| json_equal(a, b))
        }
        (Value::Object(x), Value::Object(y)) => {
            x.len() == y.len() && x.iter().all(|(k, v)| y.get(k).is_some_and(|w| json_equal(v, w)))
        }
        _ => a == b,
    }
}

/// `%XX` escapes in a reference's fragment decoded (a `$defs` name with a space, say).
fn percent_decode(path: &str) -> String {
    let bytes = path.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%'
            && i + 2 < bytes.len()
            && let Some(byte) =
                std::str::from_utf8(&bytes[i + 1..i + 3]).ok().and_then(|h| u8::from_str_radix(h, 16).ok())
        {
            out.push(byte);
            i += 3;
            continue;
        }
        out.push(bytes[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn fails_at(schema: &Value, value: Value) -> String {
        check_against_schema(schema, &value).expect_err("should be refused").pointer
    }

    #[test]
    fn checks_the_subset_and_points_at_the_offending_part() {
        let schema = json!({
            "type": "object",
            "properties": {
                "name": {"type": "string", "minLength": 1, "maxLength": 4},
                "tags": {"type": "array", "items": {"enum": ["a", "b"]}, "uniqueItems": true, "maxItems": 2},
                "pair": {"type": "array", "prefixItems": [{"type": "integer"}, {"type": "boolean"}], "items": false},
                "n": {"type": ["integer", "null"], "minimum": 0, "maximum": 255},
                "x": {"type": "number", "exclusiveMinimum": 0, "multipleOf": 0.5},
                "kind": {"$ref": "#/$defs/Kind"},
                "a/b": {"const": 1},
            },
            "required": ["name"],
            "additionalProperties": false,
            "$defs": {"Kind": {"oneOf": [{"const": "cat"}, {"const": "dog"}]}},
        });
        let ok = json!({"name": "abc", "tags": ["a", "b"], "pair": [1, true], "n": null, "x": 1.5, "kind": "dog", "a/b": 1.0});
        assert_eq!(check_against_schema(&schema, &ok), Ok(()));
        assert_eq!(fails_at(&schema, json!({})), "");
        assert_eq!(fails_at(&schema, json!({"name": ""})), "/name");
        assert_eq!(fails_at(&schema, json!({"name": "abcde"})), "/name");
        assert_eq!(fails_at(&schema, json!({"name": "é", "tags": ["a", "a"]})), "/tags");
        assert_eq!(fails_at(&schema, json!({"name": "é", "tags": ["c"]})), "/tags/0");
        assert_eq!(fails_at(&schema, json!({"name": "é", "pair": [1, 2]})), "/pair/1");
        assert_eq!(fails_at(&schema, json!({"name": "é", "pair": [1, true, 3]})), "/pair/2");
        assert_eq!(fails_at(&schema, json!({"name": "é", "n": 3.0})), "/n");
        assert_eq!(fails_at(&schema, json!({"name": "é", "n": 256})), "/n");
        assert_eq!(fails_at(&schema, json!({"name": "é", "x": 0})), "/x");
        assert_eq!(fails_at(&schema, json!({"name": "é", "x": 0.7})), "/x");
        assert_eq!(fails_at(&schema, json!({"name": "é", "kind": "cow"})), "/kind");
        assert_eq!(fails_at(&schema, json!({"name": "é", "a/b": 2})), "/a~1b");
        let err = check_against_schema(&schema, &json!({"name": "é", "extra": 1})).unwrap_err();
        assert!(err.expected.contains("no property `extra`") && err.expected.contains("name"), "{err}");
        let err = check_against_schema(&schema, &json!({"name": 7})).unwrap_err();
        assert_eq!(err.to_string(), "at `/name`: a string, not 7");
    }

    #[test]
    fn unresolvable_references_and_runaway_nesting_are_refusals_not_passes() {
        let schema = json!({"$ref": "#/$defs/Missing"});
        assert!(
            check_against_schema(&schema, &json!(1)).unwrap_err().expected.contains("cannot be resolved")
        );
        let schema = json!({"$ref": "https://example.com/schema.json"});
        assert!(check_against_schema(&schema, &json!(1)).is_err());
        // A schema that refers to itself forever.
        let schema = json!({"$defs": {"Loop": {"$ref": "#/$defs/Loop"}}, "$ref": "#/$defs/Loop"});
        assert!(check_against_schema(&schema, &json!(1)).unwrap_err().expected.contains("nested"));
        // A recursive schema and a deep value: refused past the depth bound, not a stack overflow.
        let schema = json!({"type": "array", "items": {"$ref": "#"}});
        let mut deep = json!([]);
        for _ in 0..200 {
            deep = json!([deep]);
        }
        assert!(check_against_schema(&schema, &deep).is_err());
        assert!(check_against_schema(&schema, &json!([[[]]])).is_ok());
        // Alternatives over a recursive schema: exponential without the step budget.
        let schema = json!({"anyOf": [{"$ref": "#"}, {"$ref": "#"}, {"$ref": "#"}, {"$ref": "#"}]});
        let err = check_against_schema(&schema, &json!(1)).unwrap_err();
        assert!(err.expected.contains("the schema is too complex"), "{err}");
        let schema = json!({"oneOf": [{"$ref": "#"}, {"$ref": "#"}]});
        assert!(check_against_schema(&schema, &json!(1)).is_err());
        assert!(check_against_schema(&json!({"anyOf": []}), &json!(1)).is_err());
    }

    #[test]
    fn integer_formats_tuples_and_large_unique_arrays() {
        let byte = json!({"type": "integer", "format": "uint8", "minimum": 0});
        assert!(check_against_schema(&byte, &json!(255)).is_ok());
        assert!(check_against_schema(&byte, &json!(256)).is_err());
        let wide = json!({"type": "integer", "format": "uint32"});
        assert!(check_against_schema(&wide, &json!(4_294_967_295u64)).is_ok());
        assert!(check_against_schema(&wide, &json!(4_294_967_296u64)).is_err());
        assert!(check_against_schema(&json!({"format": "int8"}), &json!(-129)).is_err());
        // Draft 7's tuple form.
        let pair = json!({"type": "array", "items": [{"type": "integer"}, {"type": "string"}], "additionalItems": false});
        assert!(check_against_schema(&pair, &json!([1, "a"])).is_ok());
        assert_eq!(fails_at(&pair, json!(["a", "a"])), "/0");
        assert_eq!(fails_at(&pair, json!([1, "a", 2])), "/2");
        // Many items: linear, and equal numbers written differently are repeats.
        let set = json!({"type": "array", "uniqueItems": true});
        let distinct: Vec<Value> = (0..100_000).map(|i| json!(i)).collect();
        assert!(check_against_schema(&set, &Value::Array(distinct.clone())).is_ok());
        let mut repeated = distinct;
        repeated.push(json!(5.0));
        assert!(
            check_against_schema(&set, &Value::Array(repeated))
                .unwrap_err()
                .expected
                .contains("5.0 is repeated")
        );
        // Properties matched by a pattern are not refused as additional.
        let patterned = json!({"patternProperties": {"^x-": {}}, "additionalProperties": false});
        assert!(check_against_schema(&patterned, &json!({"x-a": 1})).is_ok());
    }
}
