//! List paging (`limit` and `continue`) as the API server does it: a page holds at most `limit`
//! matching objects in key order; when more remain, the list carries an opaque `continue`
//! token (the API server's own format: URL-safe base64 of `{"v": "meta.k8s.io/v1", "rv": ...,
//! "start": ...}`) and, without selectors, `remainingItemCount`.
//!
//! The token carries the resourceVersion of the first page, which every later page reports (so
//! a watch started from the last page replays whatever changed meanwhile), and the key the next
//! page resumes after. Later pages are served from the present state, not from a snapshot.

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde_json::{Value, json};

use super::resource::Resource;
use super::store::{ApiError, Key};

/// The format version of a token, as the API server writes it.
const VERSION: &str = "meta.k8s.io/v1";

/// Where the next page starts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct Continue {
    /// The resourceVersion of the first page.
    pub revision: u64,
    /// The last key the previous page returned.
    pub after: Key,
}

impl Continue {
    /// The token that asks for the page after this one.
    pub(super) fn encode(&self) -> String {
        let key = &self.after;
        let start = if key.namespace.is_empty() {
            format!("{}\0", key.name)
        } else {
            format!("{}/{}\0", key.namespace, key.name)
        };
        let token = json!({"v": VERSION, "rv": self.revision, "start": start});
        URL_SAFE_NO_PAD.encode(token.to_string())
    }

    /// Reads a token sent back for `resource`.
    ///
    /// # Errors
    /// 400 BadRequest, with the API server's message, for a token it did not write.
    pub(super) fn decode(resource: &Resource, token: &str) -> Result<Self, ApiError> {
        let invalid = |why: &str| {
            ApiError::bad_request(format!(
                "invalid continue token: continue key is not valid: {why}"
            ))
        };
        let bytes = URL_SAFE_NO_PAD
            .decode(token)
            .map_err(|err| invalid(&err.to_string()))?;
        let token: Value =
            serde_json::from_slice(&bytes).map_err(|err| invalid(&err.to_string()))?;
        if token.get("v").and_then(Value::as_str) != Some(VERSION) {
            return Err(invalid("server does not recognize this encoded version"));
        }
        let revision = token
            .get("rv")
            .and_then(Value::as_u64)
            .filter(|rv| *rv > 0)
            .ok_or_else(|| {
                invalid("incorrect encoded start resourceVersion (version meta.k8s.io/v1)")
            })?;
        let start = token
            .get("start")
            .and_then(Value::as_str)
            .map(|start| start.strip_suffix('\0').unwrap_or(start))
            .filter(|start| !start.is_empty())
            .ok_or_else(|| invalid("encoded start key empty (version meta.k8s.io/v1)"))?;
        let (namespace, name) = match start.split_once('/') {
            Some((namespace, name)) if resource.namespaced => (Some(namespace), name),
            _ => (None, start),
        };
        Ok(Self {
            revision,
            after: Key::new(resource.storage, namespace, name),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::Continue;
    use crate::kubernetes::resource::find;
    use crate::kubernetes::store::Key;

    #[test]
    fn tokens_round_trip_and_bad_ones_are_refused() {
        let pods = find("", "v1", "pods").expect("pods");
        let page = Continue {
            revision: 42,
            after: Key::new("pods", Some("default"), "db-7"),
        };
        let token = page.encode();
        assert!(
            token
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
        );
        assert_eq!(Continue::decode(pods, &token), Ok(page));

        let nodes = find("", "v1", "nodes").expect("nodes");
        let page = Continue {
            revision: 7,
            after: Key::new("nodes", None, "node-1"),
        };
        assert_eq!(Continue::decode(nodes, &page.encode()), Ok(page));

        for bad in [
            "%%%",
            "bm90IGpzb24",
            "eyJ2IjoidjEiLCJydiI6MSwic3RhcnQiOiJhIn0",
        ] {
            let refused = Continue::decode(pods, bad).expect_err(bad);
            assert_eq!(refused.status.as_u16(), 400, "{bad}");
            assert!(
                refused.message.starts_with("invalid continue token: "),
                "{}",
                refused.message
            );
        }
    }
}
