//! The adapter: renders a predictor's signature, demonstrations and inputs as a chat prompt,
//! and parses the output fields back out of the answer.
//!
//! Prompts are blocks of `Field: value` lines separated by `---` lines: the instructions first,
//! then one block per demonstration, then the query with its output fields left empty. The
//! answer is expected as `Field: value` lines for the output fields, in any order; a value may
//! continue on the following lines.

use std::collections::BTreeMap;

use foundation_actors::providers::{ChatMessage, ChatRequest};

use crate::example::Example;
use crate::signature::Signature;

/// An answer that does not hold every output field.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("the answer has no `{field}` field: {text:?}")]
pub struct ParseError {
    /// The missing field.
    pub field: String,
    /// The answer (its start).
    pub text: String,
}

/// The chat request for one call.
pub fn render(
    signature: &Signature,
    demos: &[Example],
    inputs: &BTreeMap<String, String>,
    max_tokens: u64,
) -> ChatRequest {
    let mut system = String::new();
    let names = |fields: &[crate::signature::Field]| {
        fields.iter().map(|f| format!("`{}`", f.name)).collect::<Vec<_>>().join(", ")
    };
    if signature.instructions.is_empty() {
        system.push_str(&format!(
            "Given the fields {}, produce the fields {}.",
            names(&signature.inputs),
            names(&signature.outputs)
        ));
    } else {
        system.push_str(&signature.instructions);
    }
    for f in signature.inputs.iter().chain(&signature.outputs).filter(|f| !f.description.is_empty()) {
        system.push_str(&format!("\n- {}: {}", f.name, f.description));
    }
    system.push_str("\nAnswer with one line per output field, `Field: value`.");

    let mut user = String::new();
    for demo in demos {
        user.push_str("---\n");
        for f in signature.inputs.iter().chain(&signature.outputs) {
            // A labelled demonstration may lack intermediate fields (such as a rationale).
            if let Some(value) = demo.get(&f.name) {
                user.push_str(&format!("{}: {}\n", f.prefix(), one_line(value)));
            }
        }
    }
    user.push_str("---\n");
    for f in &signature.inputs {
        let value = inputs.get(&f.name).map_or("", String::as_str);
        user.push_str(&format!("{}: {}\n", f.prefix(), one_line(value)));
    }
    for f in &signature.outputs {
        user.push_str(&format!("{}:\n", f.prefix()));
    }
    ChatRequest::new(vec![ChatMessage::system(system), ChatMessage::user(user.trim_end())])
        .max_tokens(max_tokens)
}

/// Field values are kept on one line: a newline followed by `Other: ...` would read as a field.
fn one_line(value: &str) -> String {
    value.split_whitespace().collect::<Vec<_>>().join(" ")
}

/// The output fields of an answer.
pub fn parse(signature: &Signature, text: &str) -> Result<BTreeMap<String, String>, ParseError> {
    let mut found: BTreeMap<String, String> = BTreeMap::new();
    let mut current: Option<String> = None;
    for line in text.lines() {
        let field = line.split_once(':').and_then(|(name, value)| {
            let name = name.trim().trim_matches('*').trim();
            signature
                .outputs
                .iter()
                .find(|f| f.prefix().eq_ignore_ascii_case(name) || f.name == name)
                .map(|f| (f, value))
        });
        match field {
            Some((f, value)) => {
                found.insert(f.name.clone(), value.trim().to_string());
                current = Some(f.name.clone());
            }
            None => {
                if let Some(value) = current.as_ref().and_then(|c| found.get_mut(c))
                    && !line.trim().is_empty()
                {
                    if !value.is_empty() {
                        value.push(' ');
                    }
                    value.push_str(line.trim());
                }
            }
        }
    }
    for f in &signature.outputs {
        if !found.contains_key(&f.name) {
            return Err(ParseError { field: f.name.clone(), text: text.chars().take(200).collect() });
        }
    }
    Ok(found)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_blocks_and_parses_fields_back() {
        let sig = Signature::parse("question -> reasoning, answer").unwrap().describe("answer", "one word");
        let demo = Example::new().input("question", "2+2?").label("answer", "4");
        let inputs: BTreeMap<String, String> = [("question".to_string(), "3+3?\nsoon".to_string())].into();
        let request = render(&sig, &[demo], &inputs, 50);
        let user = &request.messages[1].text();
        assert_eq!(user, "---\nQuestion: 2+2?\nAnswer: 4\n---\nQuestion: 3+3? soon\nReasoning:\nAnswer:");
        assert!(request.messages[0].text().contains("- answer: one word"));
        let parsed = parse(&sig, "Reasoning: add them\nthree and three\n**Answer**: 6").unwrap();
        assert_eq!(parsed["reasoning"], "add them three and three");
        assert_eq!(parsed["answer"], "6");
        let err = parse(&sig, "Reasoning: hmm").unwrap_err();
        assert_eq!(err.field, "answer");
    }
}
