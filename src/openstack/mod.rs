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

/// Sends a request and returns the body of a 2xx answer; anything else becomes an [`ApiError`]
/// that says which call failed and how.
async fn send<S: ServiceType + Send>(
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
            osauth::ErrorKind::AuthenticationFailed | osauth::ErrorKind::AccessDenied => {
                ErrorKind::Denied(err.to_string())
            }
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
