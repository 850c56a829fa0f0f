//! Label selectors (`=`, `==`, `!=`, `in`, `notin`, `key`, `!key`) and field selectors
//! (`=`, `==`, `!=` on any dotted field path, e.g. `spec.nodeName` or `involvedObject.uid`).

use std::borrow::Cow;

use serde_json::Value;

/// One label requirement.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Label {
    Equals(String, String),
    NotEquals(String, String),
    In(String, Vec<String>),
    NotIn(String, Vec<String>),
    Exists(String),
    NotExists(String),
}

/// One field requirement: the dotted path, whether it must equal, and the value.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Field {
    path: String,
    equal: bool,
    value: String,
}

/// Parsed `labelSelector` and `fieldSelector` of a request.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Selector {
    labels: Vec<Label>,
    fields: Vec<Field>,
}

impl Selector {
    /// Parses both selectors.
    ///
    /// # Errors
    /// A message naming the part that is not a selector.
    pub fn parse(labels: Option<&str>, fields: Option<&str>) -> Result<Self, String> {
        let mut selector = Self::default();
        for term in split_terms(labels.unwrap_or_default()) {
            selector.labels.push(parse_label(&term)?);
        }
        for term in split_terms(fields.unwrap_or_default()) {
            selector.fields.push(parse_field(&term)?);
        }
        Ok(selector)
    }

    /// Whether there is no requirement (the list then says how many items remain).
    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.labels.is_empty() && self.fields.is_empty()
    }

    /// The value an `=` requirement on the field `path` asks for, if there is one.
    #[must_use]
    pub fn equal(&self, path: &str) -> Option<&str> {
        self.fields
            .iter()
            .find(|field| field.equal && field.path == path)
            .map(|field| field.value.as_str())
    }

    /// Whether the object (in the form the client sees) matches.
    #[must_use]
    pub fn matches(&self, object: &Value) -> bool {
        let labels = object.get("metadata").and_then(|m| m.get("labels"));
        let label = |key: &str| labels.and_then(|l| l.get(key)).and_then(Value::as_str);
        let labels_match = self.labels.iter().all(|req| match req {
            Label::Equals(k, v) => label(k) == Some(v.as_str()),
            Label::NotEquals(k, v) => label(k) != Some(v.as_str()),
            Label::In(k, vs) => label(k).is_some_and(|l| vs.iter().any(|v| v == l)),
            Label::NotIn(k, vs) => label(k).is_none_or(|l| vs.iter().all(|v| v != l)),
            Label::Exists(k) => label(k).is_some(),
            Label::NotExists(k) => label(k).is_none(),
        });
        labels_match
            && self
                .fields
                .iter()
                .all(|f| (field_value(object, &f.path) == f.value) == f.equal)
    }
}

/// The value at a dotted path as a field selector compares it; missing is empty.
pub(super) fn field_value<'a>(object: &'a Value, path: &str) -> Cow<'a, str> {
    let mut value = object;
    for part in path.split('.') {
        match value.get(part) {
            Some(next) => value = next,
            None => return Cow::Borrowed(""),
        }
    }
    match value {
        Value::String(s) => Cow::Borrowed(s),
        Value::Null => Cow::Borrowed(""),
        other => Cow::Owned(other.to_string()),
    }
}

/// Splits on commas outside parentheses.
fn split_terms(text: &str) -> Vec<String> {
    let mut terms = Vec::new();
    let mut depth = 0_u32;
    let mut current = String::new();
    for c in text.chars() {
        match c {
            '(' => depth += 1,
            ')' => depth = depth.saturating_sub(1),
            ',' if depth == 0 => {
                terms.push(std::mem::take(&mut current));
                continue;
            }
            _ => {}
        }
        current.push(c);
    }
    terms.push(current);
    terms
        .into_iter()
        .map(|t| t.trim().to_owned())
        .filter(|t| !t.is_empty())
        .collect()
}

fn parse_label(term: &str) -> Result<Label, String> {
    let bad = || format!("unable to parse requirement: {term:?}");
    if let Some(key) = term.strip_prefix('!') {
        return Ok(Label::NotExists(checked_key(key.trim()).ok_or_else(bad)?));
    }
    if let Some(open) = term.find('(') {
        let close = term.rfind(')').filter(|c| *c > open).ok_or_else(bad)?;
        let mut head = term[..open].split_whitespace();
        let (Some(key), Some(op), None) = (head.next(), head.next(), head.next()) else {
            return Err(bad());
        };
        let key = checked_key(key).ok_or_else(bad)?;
        let values = term[open + 1..close]
            .split(',')
            .map(|v| v.trim().to_owned())
            .collect();
        return match op {
            "in" => Ok(Label::In(key, values)),
            "notin" => Ok(Label::NotIn(key, values)),
            _ => Err(bad()),
        };
    }
    for (op, make) in [
        ("!=", Label::NotEquals as fn(String, String) -> Label),
        ("==", Label::Equals),
        ("=", Label::Equals),
    ] {
        if let Some((key, value)) = term.split_once(op) {
            let key = checked_key(key.trim()).ok_or_else(bad)?;
            return Ok(make(key, value.trim().to_owned()));
        }
    }
    Ok(Label::Exists(checked_key(term).ok_or_else(bad)?))
}

fn checked_key(key: &str) -> Option<String> {
    let ok = !key.is_empty()
        && key
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.' | '/'));
    ok.then(|| key.to_owned())
}

fn parse_field(term: &str) -> Result<Field, String> {
    for (op, equal) in [("!=", false), ("==", true), ("=", true)] {
        if let Some((path, value)) = term.split_once(op) {
            let path = path.trim();
            if path.is_empty() {
                break;
            }
            return Ok(Field {
                path: path.to_owned(),
                equal,
                value: value.trim().to_owned(),
            });
        }
    }
    Err(format!("invalid field selector: {term:?}"))
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::Selector;

    fn matches(labels: &str, fields: &str) -> bool {
        let pod = json!({
            "metadata": {"name": "p", "namespace": "default", "labels": {"app": "db", "tier": "x"}},
            "spec": {"nodeName": "node-1"},
        });
        Selector::parse(Some(labels), Some(fields))
            .expect("valid selector")
            .matches(&pod)
    }

    #[test]
    fn labels() {
        assert!(matches("app=db", ""));
        assert!(matches("app==db,tier", ""));
        assert!(!matches("app!=db", ""));
        assert!(matches("app in (db, web)", ""));
        assert!(!matches("app notin (db,web)", ""));
        assert!(matches("!missing", ""));
        assert!(!matches("!app", ""));
        assert!(!matches("missing", ""));
        assert!(matches("missing notin (a)", ""));
        assert!(Selector::parse(Some("app in db"), None).is_err());
    }

    #[test]
    fn fields() {
        assert!(matches("", "spec.nodeName=node-1"));
        assert!(!matches("", "spec.nodeName=node-2"));
        assert!(matches(
            "",
            "spec.nodeName!=node-2,metadata.namespace=default"
        ));
        assert!(matches("", "spec.unset="));
        assert!(Selector::parse(None, Some("nonsense")).is_err());
    }
}
