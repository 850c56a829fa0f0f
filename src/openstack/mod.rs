//! The OpenStack side of the remediator: connection settings, the authenticated session, and the
//! Nova and Cinder calls the backend makes (raw calls over the `osauth` session, with tolerant
//! types of our own where the `openstack` crate lacks fields or rejects real responses).

pub mod cinder;
pub mod config;
pub mod error;
pub mod nova;
pub mod session;

use osauth::ServiceRequestBuilder;
use osauth::services::ServiceType;

use error::{ApiError, ErrorKind, classify};

use crate::metrics::Metrics;

/// The most OpenStack calls in flight at once, in the whole process: however many nodes die
/// together, the cloud's APIs see at most this many concurrent requests from us.
pub const CONCURRENT_CALLS: usize = 16;

static IN_FLIGHT: tokio::sync::Semaphore = tokio::sync::Semaphore::const_new(CONCURRENT_CALLS);

/// Sends the request `build` makes (waiting for one of the [`CONCURRENT_CALLS`] slots) and
/// returns the body of a 2xx answer; anything else becomes an [`ApiError`] that says which call
/// failed and how. A 401 from the service means Keystone revoked the token before it expired (a
/// password or role change, an operator's revocation): the request is built again once on a
/// new token. The service's auth middleware refused it before doing anything, so sending it
/// again cannot do twice what was asked.
async fn send<S: ServiceType + Send>(
    session: &osauth::Session,
    build: impl Fn(&osauth::Session) -> ServiceRequestBuilder<S>,
    service: &'static str,
    operation: &str,
    timing: Option<(&Metrics, String)>,
) -> Result<String, ApiError> {
    let _slot = IN_FLIGHT.acquire().await;
    let started = std::time::Instant::now();
    let mut result = send_unmeasured(build(session), service, operation).await;
    if matches!(&result, Err(err) if matches!(err.kind, ErrorKind::Unauthorized(_))) {
        let mut renewed = session.clone();
        match renewed.refresh().await {
            Ok(()) => result = send_unmeasured(build(&renewed), service, operation).await,
            Err(err) => {
                result = Err(ApiError {
                    service,
                    operation: operation.to_owned(),
                    kind: ErrorKind::Unauthorized(err.to_string()),
                });
            }
        }
    }
    if let Some((metrics, route)) = timing {
        metrics.openstack_request(service, &route, started.elapsed().as_secs_f64());
        if let Err(err) = &result {
            metrics.openstack_failure(service, err.metric_label());
        }
    }
    result
}

/// A request to `service` at `version`: `method` on `path`, with `query` (when any) and a JSON
/// `body` (when given).
fn request<S, K, V>(
    session: &osauth::Session,
    service: S,
    version: osauth::ApiVersion,
    (method, path): (&reqwest::Method, &[&str]),
    query: &[(K, V)],
    body: Option<&serde_json::Value>,
) -> ServiceRequestBuilder<S>
where
    S: osauth::services::VersionedService + Send,
    K: serde::Serialize,
    V: serde::Serialize,
{
    let mut request = session
        .request(service, method.clone(), path)
        .api_version(version);
    if !query.is_empty() {
        request = request.query(query);
    }
    if let Some(body) = body {
        request = request.json(body);
    }
    request
}

/// A request's route as a bounded metric label: the method and the path with every id
/// replaced by `{id}` (`DELETE /servers/{id}/os-volume_attachments/{id}`).
fn route(method: &reqwest::Method, path: &[&str]) -> String {
    const WORDS: [&str; 7] = [
        "servers",
        "detail",
        "os-volume_attachments",
        "action",
        "os-services",
        "volumes",
        "attachments",
    ];
    let segments: Vec<&str> = path
        .iter()
        .map(|segment| {
            if WORDS.contains(segment) {
                *segment
            } else {
                "{id}"
            }
        })
        .collect();
    format!("{method} /{}", segments.join("/"))
}

async fn send_unmeasured<S: ServiceType + Send>(
    request: ServiceRequestBuilder<S>,
    service: &'static str,
    operation: &str,
) -> Result<String, ApiError> {
    let failed = |kind| ApiError {
        service,
        operation: operation.to_owned(),
        kind,
    };
    let response = request.send_unchecked().await.map_err(|err| {
        failed(match err.kind() {
            osauth::ErrorKind::AuthenticationFailed => ErrorKind::Unauthorized(err.to_string()),
            osauth::ErrorKind::AccessDenied => ErrorKind::Denied(err.to_string()),
            osauth::ErrorKind::EndpointNotFound | osauth::ErrorKind::InvalidConfig => {
                ErrorKind::Invalid(err.to_string())
            }
            _ => ErrorKind::Unavailable(err.to_string()),
        })
    })?;
    let status = response.status().as_u16();
    let body = response
        .text()
        .await
        .map_err(|err| failed(ErrorKind::Unavailable(err.to_string())))?;
    if (200..300).contains(&status) {
        Ok(body)
    } else {
        Err(failed(classify(status, &body)))
    }
}

#[cfg(test)]
mod tests {
    use super::route;
    use reqwest::Method;

    #[test]
    fn routes_are_bounded_labels() {
        assert_eq!(
            route(
                &Method::DELETE,
                &["servers", "9454752c", "os-volume_attachments", "4e41d530"]
            ),
            "DELETE /servers/{id}/os-volume_attachments/{id}"
        );
        assert_eq!(
            route(&Method::GET, &["servers", "detail"]),
            "GET /servers/detail"
        );
        assert_eq!(route(&Method::GET, &["volumes", "x"]), "GET /volumes/{id}");
    }
}
