//! Conversion between a resource's view and its storage: Events are stored as core/v1 Events and
//! served as events.k8s.io/v1 Events too, so both APIs see one set of objects, as in Kubernetes.

use std::sync::Arc;

use serde_json::{Map, Value};

use super::resource::Resource;

/// Field names that differ: (core/v1, events.k8s.io/v1).
const EVENT_FIELDS: &[(&str, &str)] = &[
    ("involvedObject", "regarding"),
    ("related", "related"),
    ("message", "note"),
    ("source", "deprecatedSource"),
    ("firstTimestamp", "deprecatedFirstTimestamp"),
    ("lastTimestamp", "deprecatedLastTimestamp"),
    ("count", "deprecatedCount"),
    ("reportingComponent", "reportingController"),
];

/// The object as the resource `view` shows it, without a copy when the stored object already is
/// (it has the view's kind and apiVersion).
#[must_use]
pub fn view(view: &Resource, stored: &Arc<Value>) -> Arc<Value> {
    let has = |field: &str, value: &str| stored.get(field).and_then(Value::as_str) == Some(value);
    let api_version = match view.group {
        "" => has("apiVersion", view.version),
        group => {
            stored
                .get("apiVersion")
                .and_then(Value::as_str)
                .and_then(|text| text.strip_prefix(group))
                .and_then(|text| text.strip_prefix('/'))
                == Some(view.version)
        }
    };
    if !view.is_events_v1() && api_version && has("kind", view.kind) {
        Arc::clone(stored)
    } else {
        Arc::new(to_view(view, stored))
    }
}

/// The object as the resource `view` shows it (kind and apiVersion set).
#[must_use]
pub fn to_view(view: &Resource, stored: &Value) -> Value {
    let mut object = if view.is_events_v1() {
        rename(stored, false)
    } else {
        stored.clone()
    };
    set_type(&mut object, view);
    object
}

/// The object as it is stored, from a body sent to the resource `view`.
#[must_use]
pub fn to_storage(view: &Resource, body: Value) -> Value {
    if view.is_events_v1() {
        let mut object = rename(&body, true);
        if let Some(fields) = object.as_object_mut() {
            fields.insert("apiVersion".into(), "v1".into());
            fields.insert("kind".into(), "Event".into());
        }
        object
    } else {
        body
    }
}

fn set_type(object: &mut Value, view: &Resource) {
    if let Some(fields) = object.as_object_mut() {
        fields.insert("apiVersion".into(), view.api_version().into());
        fields.insert("kind".into(), view.kind.into());
    }
}

/// Renames event fields: core → events.k8s.io when `to_core` is false, the other way when true.
fn rename(object: &Value, to_core: bool) -> Value {
    let Some(fields) = object.as_object() else {
        return object.clone();
    };
    let mut out = Map::new();
    for (key, value) in fields {
        let renamed = EVENT_FIELDS.iter().find_map(|(core, v1)| {
            if to_core {
                (key == v1).then_some(*core)
            } else {
                (key == core).then_some(*v1)
            }
        });
        out.insert(renamed.unwrap_or(key).to_owned(), value.clone());
    }
    if !to_core && !out.contains_key("eventTime") {
        out.insert("eventTime".into(), Value::Null);
    }
    Value::Object(out)
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::{to_storage, to_view};
    use crate::kubernetes::resource::find;

    #[test]
    fn events_round_trip() {
        let core = find("", "v1", "events").expect("core events");
        let v1 = find("events.k8s.io", "v1", "events").expect("events.k8s.io");
        let stored = json!({"apiVersion": "v1", "kind": "Event", "metadata": {"name": "e"},
            "involvedObject": {"kind": "Pod", "name": "p"}, "message": "m", "count": 2, "reason": "R"});
        let view = to_view(v1, &stored);
        assert_eq!(view["apiVersion"], "events.k8s.io/v1");
        assert_eq!(view["regarding"]["name"], "p");
        assert_eq!(view["note"], "m");
        assert_eq!(view["deprecatedCount"], 2);
        let back = to_storage(v1, view);
        assert_eq!(back["involvedObject"]["name"], "p");
        assert_eq!(back["message"], "m");
        assert_eq!(to_view(core, &back)["kind"], "Event");
    }
}
