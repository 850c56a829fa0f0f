//! The four patch types: JSON merge patch (RFC 7386), JSON patch (RFC 6902), strategic merge
//! patch, and server-side apply (applied as a strategic merge of the given fields).
//!
//! Strategic merge knows the merge keys of the lists the served kinds have (finalizers merge as a
//! set, conditions by `type`, containers by `name` ...); every other list is replaced, as the
//! real API does for lists without a patch strategy (node taints among them). The directives
//! `$patch: replace|delete|merge`, `$deleteFromPrimitiveList/FIELD`, `$retainKeys` and
//! `$setElementOrder/FIELD` are understood (element order is not changed).

use serde_json::{Map, Value};

/// How the request body changes the object, from its `Content-Type`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PatchType {
    /// `application/merge-patch+json`.
    Merge,
    /// `application/json-patch+json`.
    Json,
    /// `application/strategic-merge-patch+json`.
    Strategic,
    /// `application/apply-patch+yaml` (server-side apply).
    Apply,
}

impl PatchType {
    /// The patch type of a `Content-Type`, if it names one.
    #[must_use]
    pub fn from_content_type(content_type: &str) -> Option<Self> {
        let essence = content_type.split(';').next().unwrap_or_default().trim();
        match essence {
            "application/merge-patch+json" => Some(Self::Merge),
            "application/json-patch+json" => Some(Self::Json),
            "application/strategic-merge-patch+json" => Some(Self::Strategic),
            "application/apply-patch+yaml" | "application/apply-patch+json" => Some(Self::Apply),
            _ => None,
        }
    }
}

/// How a list is merged by strategic merge patch.
#[derive(Debug, Clone, Copy)]
enum ListMerge {
    /// A set of primitives: items are added when missing.
    Primitives,
    /// Maps merged by the value of this key.
    Key(&'static str),
}

/// Lists with a merge strategy, by their field path (list indices left out).
const MERGE_LISTS: &[(&str, ListMerge)] = &[
    ("metadata.finalizers", ListMerge::Primitives),
    ("metadata.ownerReferences", ListMerge::Key("uid")),
    ("status.conditions", ListMerge::Key("type")),
    ("status.addresses", ListMerge::Key("type")),
    ("spec.containers", ListMerge::Key("name")),
    ("spec.initContainers", ListMerge::Key("name")),
    ("spec.ephemeralContainers", ListMerge::Key("name")),
    ("spec.volumes", ListMerge::Key("name")),
    ("spec.imagePullSecrets", ListMerge::Key("name")),
    ("spec.containers.volumeMounts", ListMerge::Key("mountPath")),
    ("spec.containers.env", ListMerge::Key("name")),
    ("spec.containers.ports", ListMerge::Key("containerPort")),
    ("spec.drivers", ListMerge::Key("name")),
];

/// Applies a patch body to `object`.
///
/// # Errors
/// A message for a body that is not a patch of that type, or a JSON patch that does not apply
/// (a failed `test`, a missing path).
pub fn apply(object: &mut Value, patch_type: PatchType, body: &[u8]) -> Result<(), String> {
    match patch_type {
        PatchType::Merge => {
            let patch: Value = parse_json(body)?;
            require_object(&patch)?;
            json_patch::merge(object, &patch);
        }
        PatchType::Json => {
            let patch: json_patch::Patch = serde_json::from_slice(body)
                .map_err(|err| format!("the body is not a JSON patch: {err}"))?;
            json_patch::patch(object, &patch.0).map_err(|err| err.to_string())?;
        }
        PatchType::Strategic => {
            let patch: Value = parse_json(body)?;
            require_object(&patch)?;
            strategic_merge(object, &patch, "");
        }
        PatchType::Apply => {
            let patch = parse_yaml(body)?;
            require_object(&patch)?;
            strategic_merge(object, &patch, "");
        }
    }
    Ok(())
}

/// Parses a JSON body.
///
/// # Errors
/// A message saying why it is not JSON.
pub fn parse_json(body: &[u8]) -> Result<Value, String> {
    serde_json::from_slice(body).map_err(|err| format!("the body is not valid JSON: {err}"))
}

/// Parses a YAML (or JSON) body, as server-side apply takes.
///
/// # Errors
/// A message saying why it is not YAML.
pub fn parse_yaml(body: &[u8]) -> Result<Value, String> {
    let text = std::str::from_utf8(body).map_err(|_| "the body is not UTF-8".to_owned())?;
    serde_saphyr::from_str(text).map_err(|err| format!("the body is not valid YAML: {err}"))
}

fn require_object(patch: &Value) -> Result<(), String> {
    if patch.is_object() {
        Ok(())
    } else {
        Err("the patch must be a JSON object".to_owned())
    }
}

fn child_path(path: &str, key: &str) -> String {
    if path.is_empty() {
        key.to_owned()
    } else {
        format!("{path}.{key}")
    }
}

fn list_merge(path: &str) -> Option<ListMerge> {
    MERGE_LISTS
        .iter()
        .find(|(p, _)| *p == path)
        .map(|(_, m)| *m)
}

/// Strategic merge of `patch` into `target` at field path `path`.
fn strategic_merge(target: &mut Value, patch: &Value, path: &str) {
    let Some(patch) = patch.as_object() else {
        *target = patch.clone();
        return;
    };
    match patch.get("$patch").and_then(Value::as_str) {
        Some("replace") => {
            let mut replaced = patch.clone();
            replaced.remove("$patch");
            *target = Value::Object(replaced);
            return;
        }
        Some("delete") => {
            *target = Value::Null;
            return;
        }
        _ => {}
    }
    if !target.is_object() {
        *target = Value::Object(Map::new());
    }
    let Some(fields) = target.as_object_mut() else {
        return;
    };
    if let Some(keep) = patch.get("$retainKeys").and_then(Value::as_array) {
        let keep: Vec<&str> = keep.iter().filter_map(Value::as_str).collect();
        fields.retain(|k, _| keep.contains(&k.as_str()) || patch.contains_key(k));
    }
    for (key, value) in patch {
        if let Some(field) = key.strip_prefix("$deleteFromPrimitiveList/") {
            let remove = value.as_array().cloned().unwrap_or_default();
            if let Some(Value::Array(items)) = fields.get_mut(field) {
                items.retain(|item| !remove.contains(item));
            }
            continue;
        }
        if key.starts_with('$') {
            continue;
        }
        if value.is_null() {
            fields.remove(key);
            continue;
        }
        let field_path = child_path(path, key);
        let slot = fields.entry(key.clone()).or_insert(Value::Null);
        match (value, list_merge(&field_path)) {
            (Value::Array(items), Some(merge)) => merge_list(slot, items, merge, &field_path),
            (Value::Array(items), None) => *slot = Value::Array(items.clone()),
            (Value::Object(_), _) => {
                strategic_merge(slot, value, &field_path);
                if slot.is_null() {
                    fields.remove(key);
                }
            }
            _ => *slot = value.clone(),
        }
    }
}

fn merge_list(slot: &mut Value, patch: &[Value], merge: ListMerge, path: &str) {
    if !slot.is_array() {
        *slot = Value::Array(Vec::new());
    }
    let Some(items) = slot.as_array_mut() else {
        return;
    };
    match merge {
        ListMerge::Primitives => {
            for item in patch {
                if !items.contains(item) {
                    items.push(item.clone());
                }
            }
        }
        ListMerge::Key(key) => {
            if patch
                .iter()
                .any(|p| p.get("$patch").and_then(Value::as_str) == Some("replace"))
            {
                *items = patch
                    .iter()
                    .filter(|p| p.get("$patch").is_none())
                    .cloned()
                    .collect();
                return;
            }
            for entry in patch {
                let id = entry.get(key);
                let position = id.and_then(|id| items.iter().position(|i| i.get(key) == Some(id)));
                let delete = entry.get("$patch").and_then(Value::as_str) == Some("delete");
                match (position, delete) {
                    (Some(i), true) => {
                        items.remove(i);
                    }
                    (None, true) => {}
                    (Some(i), false) => strategic_merge(&mut items[i], entry, path),
                    (None, false) => {
                        let mut added = Value::Null;
                        strategic_merge(&mut added, entry, path);
                        items.push(added);
                    }
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::{PatchType, apply};

    fn node() -> serde_json::Value {
        json!({
            "metadata": {"name": "n", "finalizers": ["a", "b"], "annotations": {"x": "1"}},
            "spec": {"taints": [{"key": "k1", "effect": "NoSchedule"}]},
            "status": {"conditions": [{"type": "Ready", "status": "True"}, {"type": "DiskPressure", "status": "False"}]},
        })
    }

    #[test]
    fn strategic_replaces_taints_and_merges_finalizers_and_conditions() {
        let mut object = node();
        let patch = json!({
            "metadata": {"finalizers": ["c"], "$deleteFromPrimitiveList/finalizers": ["a"],
                         "$setElementOrder/finalizers": ["b", "c"], "annotations": {"x": null, "y": "2"}},
            "spec": {"taints": [{"key": "k2", "effect": "NoExecute"}]},
            "status": {"conditions": [{"type": "Ready", "status": "Unknown"}, {"type": "Gone", "$patch": "delete"}]},
        });
        apply(
            &mut object,
            PatchType::Strategic,
            patch.to_string().as_bytes(),
        )
        .expect("applies");
        assert_eq!(object["metadata"]["finalizers"], json!(["b", "c"]));
        assert_eq!(object["metadata"]["annotations"], json!({"y": "2"}));
        assert_eq!(
            object["spec"]["taints"],
            json!([{"key": "k2", "effect": "NoExecute"}])
        );
        assert_eq!(object["status"]["conditions"][0]["status"], "Unknown");
        assert_eq!(object["status"]["conditions"][1]["type"], "DiskPressure");
    }

    #[test]
    fn strategic_directives_replace_and_delete() {
        let mut object = node();
        let patch = json!({"status": {"conditions": [{"type": "Only", "status": "True"}, {"$patch": "replace"}]},
                           "metadata": {"annotations": {"$patch": "replace", "z": "3"}}});
        apply(
            &mut object,
            PatchType::Strategic,
            patch.to_string().as_bytes(),
        )
        .expect("applies");
        assert_eq!(
            object["status"]["conditions"],
            json!([{"type": "Only", "status": "True"}])
        );
        assert_eq!(object["metadata"]["annotations"], json!({"z": "3"}));
    }

    #[test]
    fn merge_json_and_apply() {
        let mut object = node();
        apply(
            &mut object,
            PatchType::Merge,
            br#"{"metadata":{"finalizers":null}}"#,
        )
        .expect("merge");
        assert!(object["metadata"].get("finalizers").is_none());
        let ops =
            br#"[{"op":"add","path":"/spec/taints/-","value":{"key":"k3","effect":"NoSchedule"}}]"#;
        apply(&mut object, PatchType::Json, ops).expect("json patch");
        assert_eq!(object["spec"]["taints"][1]["key"], "k3");
        let failing = br#"[{"op":"test","path":"/metadata/name","value":"other"}]"#;
        assert!(apply(&mut object, PatchType::Json, failing).is_err());
        let yaml = b"metadata:\n  labels:\n    role: db\n";
        apply(&mut object, PatchType::Apply, yaml).expect("apply");
        assert_eq!(object["metadata"]["labels"]["role"], "db");
        assert!(apply(&mut object, PatchType::Merge, b"[1]").is_err());
        assert!(apply(&mut object, PatchType::Strategic, b"{").is_err());
    }
}
