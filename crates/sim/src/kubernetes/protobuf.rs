//! Request bodies in Kubernetes' protobuf encoding, as client-go's typed clients send them (the
//! `k8s\0` magic, then a `runtime.Unknown` holding the object's type and its protobuf bytes):
//! `kubectl create namespace|serviceaccount|secret|configmap|token` and `kubectl auth can-i`.
//! Such a body is read into the JSON the API takes, for the kinds of [`KINDS`] and the fields
//! listed here (field numbers of k8s.io/api's `generated.proto`); an empty string is no value
//! (client-go writes every string field), and time fields, and fields the emulator does not
//! keep, are skipped. A body of any other kind is refused (415), as before.

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use serde_json::{Map, Value};

/// What a field holds.
#[derive(Clone, Copy)]
enum Wire {
    Text,
    /// Bytes, written in JSON as base64.
    Bytes,
    Int,
    Bool,
    Message(&'static [Field]),
    /// `map<string, string>`.
    TextMap,
    /// `map<string, bytes>` (values base64 in JSON).
    BytesMap,
    /// `repeated string`.
    Texts,
}

/// A message field: its number, JSON name and content.
struct Field(u64, &'static str, Wire);

const OBJECT_META: &[Field] = &[
    Field(1, "name", Wire::Text),
    Field(2, "generateName", Wire::Text),
    Field(3, "namespace", Wire::Text),
    Field(5, "uid", Wire::Text),
    Field(6, "resourceVersion", Wire::Text),
    Field(11, "labels", Wire::TextMap),
    Field(12, "annotations", Wire::TextMap),
    Field(14, "finalizers", Wire::Texts),
];
const NAMESPACE: &[Field] = &[Field(1, "metadata", Wire::Message(OBJECT_META))];
const SERVICE_ACCOUNT: &[Field] = &[
    Field(1, "metadata", Wire::Message(OBJECT_META)),
    Field(4, "automountServiceAccountToken", Wire::Bool),
];
const SECRET: &[Field] = &[
    Field(1, "metadata", Wire::Message(OBJECT_META)),
    Field(2, "data", Wire::BytesMap),
    Field(3, "type", Wire::Text),
    Field(4, "stringData", Wire::TextMap),
    Field(5, "immutable", Wire::Bool),
];
const CONFIG_MAP: &[Field] = &[
    Field(1, "metadata", Wire::Message(OBJECT_META)),
    Field(2, "data", Wire::TextMap),
    Field(3, "binaryData", Wire::BytesMap),
    Field(4, "immutable", Wire::Bool),
];
const BOUND_OBJECT: &[Field] = &[
    Field(1, "kind", Wire::Text),
    Field(2, "apiVersion", Wire::Text),
    Field(3, "name", Wire::Text),
    Field(4, "uid", Wire::Text),
];
const TOKEN_REQUEST_SPEC: &[Field] = &[
    Field(1, "audiences", Wire::Texts),
    Field(3, "boundObjectRef", Wire::Message(BOUND_OBJECT)),
    Field(4, "expirationSeconds", Wire::Int),
];
const TOKEN_REQUEST: &[Field] = &[
    Field(1, "metadata", Wire::Message(OBJECT_META)),
    Field(2, "spec", Wire::Message(TOKEN_REQUEST_SPEC)),
];
const RESOURCE_ATTRIBUTES: &[Field] = &[
    Field(1, "namespace", Wire::Text),
    Field(2, "verb", Wire::Text),
    Field(3, "group", Wire::Text),
    Field(4, "version", Wire::Text),
    Field(5, "resource", Wire::Text),
    Field(6, "subresource", Wire::Text),
    Field(7, "name", Wire::Text),
];
const NON_RESOURCE_ATTRIBUTES: &[Field] =
    &[Field(1, "path", Wire::Text), Field(2, "verb", Wire::Text)];
const ACCESS_REVIEW_SPEC: &[Field] = &[
    Field(1, "resourceAttributes", Wire::Message(RESOURCE_ATTRIBUTES)),
    Field(
        2,
        "nonResourceAttributes",
        Wire::Message(NON_RESOURCE_ATTRIBUTES),
    ),
];
const ACCESS_REVIEW: &[Field] = &[
    Field(1, "metadata", Wire::Message(OBJECT_META)),
    Field(2, "spec", Wire::Message(ACCESS_REVIEW_SPEC)),
];

/// The kinds read from protobuf: (apiVersion, kind, fields).
const KINDS: &[(&str, &str, &[Field])] = &[
    ("v1", "Namespace", NAMESPACE),
    ("v1", "ServiceAccount", SERVICE_ACCOUNT),
    ("v1", "Secret", SECRET),
    ("v1", "ConfigMap", CONFIG_MAP),
    ("authentication.k8s.io/v1", "TokenRequest", TOKEN_REQUEST),
    (
        "authorization.k8s.io/v1",
        "SelfSubjectAccessReview",
        ACCESS_REVIEW,
    ),
];

/// The `runtime.Unknown` envelope: type meta (1: apiVersion 1, kind 2) and raw bytes (2).
const TYPE_META: &[Field] = &[
    Field(1, "apiVersion", Wire::Text),
    Field(2, "kind", Wire::Text),
];
const UNKNOWN: &[Field] = &[
    Field(1, "typeMeta", Wire::Message(TYPE_META)),
    Field(2, "raw", Wire::Bytes),
];

/// The object a protobuf body holds, as JSON; `None` for a body that is not one, or of a kind
/// not in [`KINDS`].
pub(super) fn decode(body: &[u8]) -> Option<Value> {
    let envelope = message(body.strip_prefix(b"k8s\0")?, UNKNOWN)?;
    let api_version = envelope.pointer("/typeMeta/apiVersion")?.as_str()?;
    let kind = envelope.pointer("/typeMeta/kind")?.as_str()?;
    let (_, _, fields) = KINDS
        .iter()
        .find(|(v, k, _)| *v == api_version && *k == kind)?;
    let raw = STANDARD.decode(envelope.get("raw")?.as_str()?).ok()?;
    let mut object = message(&raw, fields)?;
    object["apiVersion"] = api_version.into();
    object["kind"] = kind.into();
    Some(object)
}

/// A varint, and the rest of the input.
fn varint(mut input: &[u8]) -> Option<(u64, &[u8])> {
    let mut value = 0_u64;
    for shift in (0..64).step_by(7) {
        let (byte, rest) = input.split_first()?;
        input = rest;
        value |= u64::from(byte & 0x7f) << shift;
        if byte & 0x80 == 0 {
            return Some((value, input));
        }
    }
    None
}

/// The fields of a message, as a JSON object (unknown fields skipped).
fn message(mut input: &[u8], fields: &[Field]) -> Option<Value> {
    let mut object = Map::new();
    while !input.is_empty() {
        let (key, rest) = varint(input)?;
        let (number, wire_type) = (key >> 3, key & 7);
        let (value, rest): (Option<&[u8]>, &[u8]) = match wire_type {
            0 => {
                let (v, rest) = varint(rest)?;
                input = rest;
                if let Some(Field(_, name, wire)) = fields.iter().find(|f| f.0 == number) {
                    match wire {
                        // int64 as two's complement.
                        #[allow(clippy::cast_possible_wrap)]
                        Wire::Int => object.insert((*name).to_owned(), (v as i64).into()),
                        Wire::Bool => object.insert((*name).to_owned(), (v != 0).into()),
                        _ => return None,
                    };
                }
                continue;
            }
            1 => (None, rest.get(8..)?),
            5 => (None, rest.get(4..)?),
            2 => {
                let (length, rest) = varint(rest)?;
                let length = usize::try_from(length).ok()?;
                (Some(rest.get(..length)?), rest.get(length..)?)
            }
            _ => return None,
        };
        input = rest;
        let (Some(bytes), Some(Field(_, name, wire))) =
            (value, fields.iter().find(|f| f.0 == number))
        else {
            continue;
        };
        let name = (*name).to_owned();
        match wire {
            // client-go writes every string field, empty ones too: empty is unset, as in JSON.
            Wire::Text if bytes.is_empty() => {}
            Wire::Text => {
                object.insert(name, String::from_utf8(bytes.to_vec()).ok()?.into());
            }
            Wire::Bytes => {
                object.insert(name, STANDARD.encode(bytes).into());
            }
            Wire::Message(inner) => {
                object.insert(name, message(bytes, inner)?);
            }
            Wire::Texts => {
                let text = String::from_utf8(bytes.to_vec()).ok()?;
                let list = object
                    .entry(name)
                    .or_insert_with(|| Value::Array(Vec::new()));
                list.as_array_mut()?.push(text.into());
            }
            Wire::TextMap | Wire::BytesMap => {
                let value_wire = if matches!(wire, Wire::TextMap) {
                    Wire::Text
                } else {
                    Wire::Bytes
                };
                let entry = [Field(1, "key", Wire::Text), Field(2, "value", value_wire)];
                let pair = message(bytes, &entry)?;
                let key = pair.get("key").and_then(Value::as_str).unwrap_or_default();
                let map = object
                    .entry(name)
                    .or_insert_with(|| Value::Object(Map::new()));
                let value = pair.get("value").cloned().unwrap_or_else(|| "".into());
                map.as_object_mut()?.insert(key.to_owned(), value);
            }
            Wire::Int | Wire::Bool => return None,
        }
    }
    Some(Value::Object(object))
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::decode;

    /// A length-delimited field.
    fn field(number: u8, bytes: &[u8]) -> Vec<u8> {
        let mut out = vec![number << 3 | 2, u8::try_from(bytes.len()).unwrap()];
        out.extend_from_slice(bytes);
        out
    }

    #[test]
    fn a_secret_reads_as_its_json() {
        let meta = [
            field(1, b"cloud-config"),
            field(2, b""),
            field(3, b"kube-system"),
        ]
        .concat();
        let entry = [field(1, b"cloud.conf"), field(2, b"[Global]")].concat();
        let secret = [field(1, &meta), field(2, &entry), field(3, b"Opaque")].concat();
        let type_meta = [field(1, b"v1"), field(2, b"Secret")].concat();
        let envelope = [
            b"k8s\0".to_vec(),
            field(1, &type_meta),
            field(2, &secret),
            field(4, b"application/vnd.kubernetes.protobuf"),
        ]
        .concat();
        assert_eq!(
            decode(&envelope),
            Some(json!({
                "apiVersion": "v1", "kind": "Secret",
                "metadata": {"name": "cloud-config", "namespace": "kube-system"},
                "data": {"cloud.conf": "W0dsb2JhbF0="}, "type": "Opaque",
            }))
        );
        let pod = [field(1, b"v1"), field(2, b"Pod")].concat();
        let other = [b"k8s\0".to_vec(), field(1, &pod), field(2, &secret)].concat();
        assert_eq!(decode(&other), None, "a kind not read from protobuf");
        assert_eq!(decode(b"{}"), None);
    }
}
