//! What the API server fills in on a write, per kind: a new pod is `Pending` and a new
//! namespace `Active`; a Secret's `stringData` is merged into `data` (base64) and never stored,
//! and its `type` defaults to `Opaque`; a Service is a `ClusterIP` Service with the lowest free
//! address of the service range (10.96.0.0/12, 10.96.0.1 being the `kubernetes` Service's),
//! keeps the address it has on an update, and its ports default to TCP with the port as target.

use std::collections::BTreeSet;
use std::net::Ipv4Addr;

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use serde_json::{Value, json};

use super::store::{Store, set_path, str_at};

/// The service range: 10.96.0.0/12.
const SERVICE_RANGE: (u32, u32) = (0x0A60_0000, 0x0A6F_FFFF);

/// Fills in what the API server defaults in a new object of the storage `storage`.
pub(super) fn on_create(store: &Store, storage: &str, object: &mut Value) {
    match storage {
        "pods" if object.get("status").is_none() => {
            set_path(object, &["status", "phase"], "Pending".into());
        }
        "namespaces" if object.get("status").is_none() => {
            set_path(object, &["status", "phase"], "Active".into());
        }
        "secrets" => secret(object),
        "services" => {
            service(object);
            let none = str_at(object, &["spec", "clusterIP"]).is_some_and(|ip| ip == "None");
            let external = str_at(object, &["spec", "type"]) == Some("ExternalName");
            if !none
                && !external
                && str_at(object, &["spec", "clusterIP"]).is_none_or(str::is_empty)
            {
                let ip = free_cluster_ip(store).to_string();
                set_path(object, &["spec", "clusterIP"], ip.clone().into());
                set_path(object, &["spec", "clusterIPs"], json!([ip]));
            }
        }
        _ => {}
    }
}

/// Fills in what the API server defaults in a replaced object of the storage `storage` (`old`
/// is the stored one).
pub(super) fn on_update(storage: &str, old: &Value, object: &mut Value) {
    match storage {
        "secrets" => secret(object),
        "services" => {
            service(object);
            for field in ["clusterIP", "clusterIPs"] {
                if object.pointer(&format!("/spec/{field}")).is_none()
                    && let Some(kept) = old.pointer(&format!("/spec/{field}"))
                {
                    set_path(object, &["spec", field], kept.clone());
                }
            }
        }
        _ => {}
    }
}

fn secret(object: &mut Value) {
    if let Some(Value::Object(strings)) =
        object.as_object_mut().and_then(|o| o.remove("stringData"))
    {
        for (key, value) in strings {
            let encoded = STANDARD.encode(value.as_str().unwrap_or_default());
            set_path(object, &["data", &key], encoded.into());
        }
    }
    if str_at(object, &["type"]).is_none_or(str::is_empty) {
        set_path(object, &["type"], "Opaque".into());
    }
}

fn service(object: &mut Value) {
    if str_at(object, &["spec", "type"]).is_none_or(str::is_empty) {
        set_path(object, &["spec", "type"], "ClusterIP".into());
    }
    if let Some(Value::Array(ports)) = object.pointer_mut("/spec/ports") {
        for port in ports {
            if str_at(port, &["protocol"]).is_none() {
                set_path(port, &["protocol"], "TCP".into());
            }
            if port.get("targetPort").is_none()
                && let Some(number) = port.get("port").cloned()
            {
                set_path(port, &["targetPort"], number);
            }
        }
    }
}

/// The lowest address of the service range no Service has, after the `kubernetes` Service's.
fn free_cluster_ip(store: &Store) -> Ipv4Addr {
    let taken: BTreeSet<u32> = store
        .objects_of("services", None)
        .filter_map(|(_, service)| str_at(service, &["spec", "clusterIP"]))
        .filter_map(|ip| ip.parse::<Ipv4Addr>().ok())
        .map(u32::from)
        .collect();
    let (first, last) = SERVICE_RANGE;
    (first + 2..last)
        .find(|ip| !taken.contains(ip))
        .map_or(Ipv4Addr::from(last), Ipv4Addr::from)
}
