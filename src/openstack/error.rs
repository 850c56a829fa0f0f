//! Errors of Nova and Cinder calls, classified the way the remediator acts on them.

use std::fmt;

/// A failed Nova, Cinder or LINSTOR call.
#[derive(Debug, Clone, thiserror::Error)]
#[error("{service} {operation}: {kind}")]
pub struct ApiError {
    /// `nova`, `cinder` or `linstor`.
    pub service: &'static str,
    /// What was attempted, e.g. `GET server 9454…`.
    pub operation: String,
    /// What went wrong.
    pub kind: ErrorKind,
}

/// What went wrong, as far as the remediator cares.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ErrorKind {
    /// The service refused the request as it stands (400), with its message.
    BadRequest(String),
    /// Keystone refused the credentials, or the service the token (401).
    Unauthorized(String),
    /// The user may not do this (403): a policy, a missing role.
    Denied(String),
    /// The object does not exist (404).
    NotFound,
    /// The request conflicts with the object's state (409), with the service's message.
    Conflict(String),
    /// The service failed or could not be reached (5xx, timeout, connection); worth a retry.
    Unavailable(String),
    /// The response could not be understood.
    Invalid(String),
}

impl fmt::Display for ErrorKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::BadRequest(message) => write!(f, "refused (400): {message}"),
            Self::Unauthorized(message) => write!(
                f,
                "credentials refused (401): {message}; check the cloud.conf credentials"
            ),
            Self::Denied(message) => write!(f, "access denied: {message}"),
            Self::NotFound => f.write_str("not found (404)"),
            Self::Conflict(message) => write!(f, "conflict (409): {message}"),
            Self::Unavailable(message) => write!(f, "unavailable: {message}"),
            Self::Invalid(message) => write!(f, "unexpected response: {message}"),
        }
    }
}

impl ApiError {
    /// Whether a retry later may succeed.
    #[must_use]
    pub fn is_transient(&self) -> bool {
        matches!(self.kind, ErrorKind::Unavailable(_))
    }

    /// A bounded label for metrics.
    #[must_use]
    pub fn metric_label(&self) -> &'static str {
        match self.kind {
            ErrorKind::BadRequest(_) => "bad_request",
            ErrorKind::Unauthorized(_) => "unauthorized",
            ErrorKind::Denied(_) => "denied",
            ErrorKind::NotFound => "not_found",
            ErrorKind::Conflict(_) => "conflict",
            ErrorKind::Unavailable(_) => "unavailable",
            ErrorKind::Invalid(_) => "invalid_response",
        }
    }
}

/// Turns an HTTP status and body into an error kind, taking the message from the OpenStack
/// fault shape (`{"itemNotFound": {"message": ...}}`) when there is one.
#[must_use]
pub fn classify(status: u16, body: &str) -> ErrorKind {
    let message = fault_message(body);
    match status {
        400 => ErrorKind::BadRequest(message),
        401 => ErrorKind::Unauthorized(message),
        403 => ErrorKind::Denied(message),
        // Only the service's own fault is an answer about the object; a 404 from a proxy, a
        // wrong endpoint or an unknown route says nothing about it.
        404 if is_item_not_found(body) => ErrorKind::NotFound,
        404 => ErrorKind::Invalid(format!(
            "HTTP 404 without the service's itemNotFound fault ({message}): check the endpoint"
        )),
        409 => ErrorKind::Conflict(message),
        _ if status >= 500 || status == 429 || status == 408 => {
            ErrorKind::Unavailable(format!("HTTP {status}: {message}"))
        }
        _ => ErrorKind::Invalid(format!("HTTP {status}: {message}")),
    }
}

/// Whether the body is Nova's or Cinder's `{"itemNotFound": {...}}` fault.
fn is_item_not_found(body: &str) -> bool {
    serde_json::from_str::<serde_json::Value>(body)
        .ok()
        .is_some_and(|value| {
            value
                .get("itemNotFound")
                .is_some_and(serde_json::Value::is_object)
        })
}

fn fault_message(body: &str) -> String {
    let parsed: Option<serde_json::Value> = serde_json::from_str(body).ok();
    let from_fault = parsed.as_ref().and_then(|value| {
        value.as_object()?.values().find_map(|inner| {
            inner
                .get("message")
                .and_then(serde_json::Value::as_str)
                .map(str::to_owned)
        })
    });
    from_fault.unwrap_or_else(|| body.chars().take(200).collect::<String>().trim().to_owned())
}

#[cfg(test)]
mod tests {
    use super::{ErrorKind, classify};

    #[test]
    fn nova_faults_give_their_message_and_kind() {
        let body = r#"{"conflictingRequest": {"code": 409, "message": "Cannot 'detach_volume' instance x while it is in vm_state error"}}"#;
        assert_eq!(
            classify(409, body),
            ErrorKind::Conflict(
                "Cannot 'detach_volume' instance x while it is in vm_state error".into()
            )
        );
        let missing =
            r#"{"itemNotFound": {"code": 404, "message": "Instance x could not be found."}}"#;
        assert_eq!(classify(404, missing), ErrorKind::NotFound);
        // A 404 that is not the service's fault (a proxy, a wrong path) proves nothing.
        assert!(matches!(classify(404, "{}"), ErrorKind::Invalid(m) if m.contains("itemNotFound")));
        assert!(matches!(
            classify(404, "<html>Not Found</html>"),
            ErrorKind::Invalid(_)
        ));
        assert!(matches!(classify(503, "down"), ErrorKind::Unavailable(m) if m.contains("503")));
        assert!(matches!(classify(400, "not json"), ErrorKind::BadRequest(m) if m == "not json"));
    }
}
