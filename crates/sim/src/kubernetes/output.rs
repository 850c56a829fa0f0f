//! Content negotiation: the `Accept` header picks plain objects, a `meta.k8s.io` Table
//! (`kubectl get`) or `PartialObjectMetadata` (kube's metadata API).

/// How objects are sent back.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Output {
    /// The objects themselves.
    Json,
    /// A `Table` of the given `meta.k8s.io` apiVersion.
    Table {
        /// `meta.k8s.io/v1` or `meta.k8s.io/v1beta1`.
        api_version: &'static str,
    },
    /// `PartialObjectMetadata` (lists: `PartialObjectMetadataList`).
    Partial {
        /// `meta.k8s.io/v1` or `meta.k8s.io/v1beta1`.
        api_version: &'static str,
    },
}

impl Output {
    /// The first media range of an `Accept` header the emulator can produce; plain JSON when
    /// none is (protobuf included: clients fall back to JSON).
    #[must_use]
    pub fn from_accept(accept: Option<&str>) -> Self {
        for range in accept.unwrap_or_default().split(',') {
            let mut parts = range.split(';').map(str::trim);
            let essence = parts.next().unwrap_or_default();
            if !matches!(essence, "application/json" | "*/*" | "application/*") {
                continue;
            }
            let (mut kind, mut group, mut version) = (None, None, None);
            for param in parts {
                match param.split_once('=') {
                    Some(("as", v)) => kind = Some(v),
                    Some(("g", v)) => group = Some(v),
                    Some(("v", v)) => version = Some(v),
                    _ => {}
                }
            }
            let api_version = match (group, version) {
                (Some("meta.k8s.io"), Some("v1")) => "meta.k8s.io/v1",
                (Some("meta.k8s.io"), Some("v1beta1")) => "meta.k8s.io/v1beta1",
                (None, None) => "",
                _ => continue,
            };
            match kind {
                None => return Self::Json,
                Some("Table") if !api_version.is_empty() => return Self::Table { api_version },
                Some("PartialObjectMetadata" | "PartialObjectMetadataList")
                    if !api_version.is_empty() =>
                {
                    return Self::Partial { api_version };
                }
                Some(_) => {}
            }
        }
        Self::Json
    }
}

#[cfg(test)]
mod tests {
    use super::Output;

    #[test]
    fn accept_headers_of_kubectl_and_kube() {
        let kubectl = "application/json;as=Table;v=v1;g=meta.k8s.io,application/json;as=Table;v=v1beta1;g=meta.k8s.io,application/json";
        assert_eq!(
            Output::from_accept(Some(kubectl)),
            Output::Table {
                api_version: "meta.k8s.io/v1"
            }
        );
        let discovery =
            "application/json;g=apidiscovery.k8s.io;v=v2;as=APIGroupDiscoveryList,application/json";
        assert_eq!(Output::from_accept(Some(discovery)), Output::Json);
        let metadata = "application/json;as=PartialObjectMetadataList;g=meta.k8s.io;v=v1";
        assert_eq!(
            Output::from_accept(Some(metadata)),
            Output::Partial {
                api_version: "meta.k8s.io/v1"
            }
        );
        assert_eq!(
            Output::from_accept(Some("application/vnd.kubernetes.protobuf")),
            Output::Json
        );
        assert_eq!(Output::from_accept(None), Output::Json);
    }
}
