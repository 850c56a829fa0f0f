//! The error bodies each real service sends, so injected faults and emulated refusals look to a
//! client exactly as the real service's would.

use axum::Json;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde_json::json;

use super::scenario::Service;

/// An error in the shape `service` uses.
#[must_use]
pub fn error(service: Service, status: StatusCode, message: &str) -> Response {
    match service {
        Service::Nova | Service::Cinder => openstack(status, message),
        Service::Keystone => keystone(status, message),
        Service::Kubernetes => kubernetes(status, message),
        Service::Linstor => linstor(status, message),
    }
}

/// A Nova or Cinder fault: `{"itemNotFound": {"code": 404, "message": "..."}}`.
#[must_use]
pub fn openstack(status: StatusCode, message: &str) -> Response {
    let name = match status.as_u16() {
        400 => "badRequest",
        401 => "unauthorized",
        403 => "forbidden",
        404 => "itemNotFound",
        405 => "badMethod",
        409 => "conflictingRequest",
        413 => "overLimit",
        415 => "badMediaType",
        501 => "notImplemented",
        503 => "serviceUnavailable",
        _ => "computeFault",
    };
    let body = json!({ name: { "code": status.as_u16(), "message": message } });
    (status, Json(body)).into_response()
}

/// A Keystone error: `{"error": {"code": 401, "message": "...", "title": "Unauthorized"}}`.
#[must_use]
pub fn keystone(status: StatusCode, message: &str) -> Response {
    let title = status.canonical_reason().unwrap_or("Error");
    let body = json!({ "error": { "code": status.as_u16(), "message": message, "title": title } });
    (status, Json(body)).into_response()
}

/// A Kubernetes `Status` error with the reason the API server gives for its code.
#[must_use]
pub fn kubernetes(status: StatusCode, message: &str) -> Response {
    let reason = match status.as_u16() {
        400 => "BadRequest",
        401 => "Unauthorized",
        403 => "Forbidden",
        404 => "NotFound",
        405 => "MethodNotAllowed",
        409 => "Conflict",
        410 => "Expired",
        415 => "UnsupportedMediaType",
        422 => "Invalid",
        429 => "TooManyRequests",
        504 => "Timeout",
        503 => "ServiceUnavailable",
        _ => "InternalError",
    };
    (status, Json(kubernetes_status(status, reason, message))).into_response()
}

/// A failure `Status` object, as sent in a response body or an ERROR watch event.
#[must_use]
pub fn kubernetes_status(status: StatusCode, reason: &str, message: &str) -> serde_json::Value {
    json!({
        "kind": "Status",
        "apiVersion": "v1",
        "metadata": {},
        "status": "Failure",
        "message": message,
        "reason": reason,
        "code": status.as_u16(),
    })
}

/// A LINSTOR error: a list of `ApiCallRc` entries with an error bit set in `ret_code`.
#[must_use]
pub fn linstor(status: StatusCode, message: &str) -> Response {
    // MASK_ERROR (0xC000000000000000) as the signed 64-bit value LINSTOR sends.
    let error_mask: i64 = -4_611_686_018_427_387_904;
    let body = json!([{ "ret_code": error_mask, "message": message }]);
    (status, Json(body)).into_response()
}
