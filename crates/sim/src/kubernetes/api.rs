//! The HTTP side: parses a request path into a resource, namespace, name and subresource, and
//! runs the verb (get, list, watch, create, update, patch, delete, deletecollection) against the
//! store, generically for every row of the resource table.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use axum::body::Bytes;
use axum::extract::{Query, State};
use axum::http::{HeaderMap, Method, StatusCode, Uri, header};
use axum::response::{IntoResponse, Response};
use jiff::Timestamp;
use serde::{Serialize, Serializer};
use serde_json::{Value, json};

use super::auth::{self, User};
use super::convert;
use super::discovery;
use super::output::Output;
use super::paging::Continue;
use super::patch::{self, PatchType};
use super::protobuf;
use super::rbac::{self, Access, Attributes};
use super::resource::{self, Resource};
use super::selector::Selector;
use super::store::{ApiError, DeleteOptions, Key, Part, Store};
use super::table::{self, Include};
use super::watch;
use crate::fault;
use crate::world::World;

/// What a path names.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Target {
    Version,
    CoreVersions,
    Groups,
    Group(String),
    Resources(String, String),
    Collection {
        resource: &'static Resource,
        namespace: Option<String>,
    },
    Object {
        resource: &'static Resource,
        namespace: Option<String>,
        name: String,
        part: Part,
    },
    /// A ServiceAccount's `token` subresource (TokenRequest).
    Token {
        resource: &'static Resource,
        namespace: String,
        name: String,
    },
    /// `SelfSubjectAccessReview`.
    AccessReview,
    /// `/openapi/v3`.
    OpenApiRoot,
    /// `/openapi/v3/...` of a group and version.
    OpenApi(String, String),
}

fn parse_path(path: &str) -> Option<Target> {
    let segments: Vec<&str> = path.trim_matches('/').split('/').collect();
    match segments.as_slice() {
        ["version"] => Some(Target::Version),
        ["api"] => Some(Target::CoreVersions),
        ["apis"] => Some(Target::Groups),
        ["api", version] => Some(Target::Resources(String::new(), (*version).to_owned())),
        ["apis", group] => Some(Target::Group((*group).to_owned())),
        ["apis", group, version] => Some(Target::Resources(
            (*group).to_owned(),
            (*version).to_owned(),
        )),
        [
            "apis",
            "authorization.k8s.io",
            "v1",
            "selfsubjectaccessreviews",
        ] => Some(Target::AccessReview),
        ["openapi", "v3"] => Some(Target::OpenApiRoot),
        ["openapi", "v3", "api", version] => {
            Some(Target::OpenApi(String::new(), (*version).to_owned()))
        }
        ["openapi", "v3", "apis", group, version] => {
            Some(Target::OpenApi((*group).to_owned(), (*version).to_owned()))
        }
        ["api", version, rest @ ..] => resource_path("", version, rest),
        ["apis", group, version, rest @ ..] => resource_path(group, version, rest),
        _ => None,
    }
}

fn resource_path(group: &str, version: &str, rest: &[&str]) -> Option<Target> {
    let (namespace, rest) = match rest {
        ["namespaces", namespace, plural, tail @ ..] if *plural != "status" => (
            Some((*namespace).to_owned()),
            [&[*plural][..], tail].concat(),
        ),
        _ => (None, rest.to_vec()),
    };
    let resource = resource::find(group, version, rest.first()?)?;
    if namespace.is_some() && !resource.namespaced {
        return None;
    }
    let object = |name: &str, part| {
        (namespace.is_some() || !resource.namespaced).then(|| Target::Object {
            resource,
            namespace: namespace.clone(),
            name: name.to_owned(),
            part,
        })
    };
    match rest.as_slice() {
        [_] => Some(Target::Collection {
            resource,
            namespace: namespace.clone(),
        }),
        [_, name] => object(name, Part::Main),
        [_, name, "status"] if resource.has_status => object(name, Part::Status),
        [_, name, "token"] if resource.plural == "serviceaccounts" => {
            namespace.clone().map(|namespace| Target::Token {
                resource,
                namespace,
                name: (*name).to_owned(),
            })
        }
        _ => None,
    }
}

/// Every request to the Kubernetes API: authenticated (401 without a known token), authorized
/// (403 when RBAC refuses), then served. The response carries what the API server made of the
/// request ([`Access`]) for the request log.
pub async fn handle(
    State(world): State<World>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let pairs: Vec<(String, String)> = Query::try_from_uri(&uri)
        .map(|Query(pairs)| pairs)
        .unwrap_or_default();
    let attributes = Attributes::of(&method, uri.path(), &pairs);
    let (user, decision) = {
        let state = world.lock();
        let authorization = header_text(&headers, header::AUTHORIZATION);
        let Some(user) = auth::authenticate(&state.kube, authorization, Timestamp::now()) else {
            return fault::kubernetes(StatusCode::UNAUTHORIZED, "Unauthorized");
        };
        let decision = rbac::authorize(&state.kube, &user, &attributes);
        (user, decision)
    };
    let mut response = if decision.allowed {
        serve(&world, &method, &uri, &headers, body, &user).await
    } else {
        rbac::forbidden(&user, &attributes, &decision.reason)
    };
    response.extensions_mut().insert(Access {
        user,
        attributes,
        allowed: decision.allowed,
    });
    response
}

/// Serves an authorized request.
async fn serve(
    world: &World,
    method: &Method,
    uri: &Uri,
    headers: &HeaderMap,
    body: Bytes,
    user: &User,
) -> Response {
    let Some(target) = parse_path(uri.path()) else {
        return not_found_path(uri.path());
    };
    let query: HashMap<String, String> = match Query::try_from_uri(uri) {
        Ok(Query(query)) => query,
        Err(err) => return ApiError::bad_request(err.body_text()).into_response(),
    };
    let request = Call {
        query,
        output: Output::from_accept(header_text(headers, header::ACCEPT)),
        content_type: header_text(headers, header::CONTENT_TYPE)
            .unwrap_or("application/json")
            .to_owned(),
        body,
    };
    let result = match (target, method) {
        (Target::Version, &Method::GET) => Ok(ok(discovery::version())),
        (Target::CoreVersions, &Method::GET) => Ok(ok(discovery::core_versions())),
        (Target::Groups, &Method::GET) => Ok(ok(discovery::groups())),
        (Target::Group(group), &Method::GET) => discovery::group(&group)
            .map(ok)
            .ok_or_else(|| path_error(uri.path())),
        (Target::Resources(group, version), &Method::GET) => discovery::resources(&group, &version)
            .map(ok)
            .ok_or_else(|| path_error(uri.path())),
        (Target::OpenApiRoot, &Method::GET) => Ok(ok(discovery::openapi_root())),
        (Target::OpenApi(group, version), &Method::GET) => {
            discovery::openapi_document(&group, &version)
                .map(ok)
                .ok_or_else(|| path_error(uri.path()))
        }
        (
            Target::Collection {
                resource,
                namespace,
            },
            method,
        ) => request.collection(world, method, resource, namespace).await,
        (
            Target::Object {
                resource,
                namespace,
                name,
                part,
            },
            method,
        ) => request.object(
            world,
            method,
            &Place {
                resource,
                namespace,
                name,
                part,
            },
        ),
        (
            Target::Token {
                resource,
                namespace,
                name,
            },
            &Method::POST,
        ) => request.json_body().and_then(|body| {
            let state = world.lock();
            let answer = auth::token_request(
                &state.kube,
                resource,
                &namespace,
                &name,
                body,
                Timestamp::now(),
            )?;
            Ok(respond(StatusCode::CREATED, &answer))
        }),
        (Target::AccessReview, &Method::POST) => request.json_body().and_then(|body| {
            let answer = rbac::review(&world.lock().kube, user, body)?;
            Ok(respond(StatusCode::CREATED, &answer))
        }),
        _ => Err(ApiError::new(
            StatusCode::METHOD_NOT_ALLOWED,
            format!("the server does not allow this method on the requested resource ({method})"),
        )),
    };
    result.unwrap_or_else(IntoResponse::into_response)
}

fn header_text(headers: &HeaderMap, name: header::HeaderName) -> Option<&str> {
    headers.get(name).and_then(|v| v.to_str().ok())
}

fn path_error(path: &str) -> ApiError {
    ApiError::new(
        StatusCode::NOT_FOUND,
        format!("the server could not find the requested resource ({path})"),
    )
}

fn not_found_path(path: &str) -> Response {
    path_error(path).into_response()
}

fn ok(body: Value) -> Response {
    respond(StatusCode::OK, &body)
}

fn respond(status: StatusCode, body: &impl Serialize) -> Response {
    match serde_json::to_vec(body) {
        Ok(bytes) => (status, [(header::CONTENT_TYPE, "application/json")], bytes).into_response(),
        Err(err) => {
            ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, err.to_string()).into_response()
        }
    }
}

/// A list of objects as JSON, written from the shared objects without copying them.
#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct List<'a> {
    kind: String,
    api_version: String,
    metadata: &'a Value,
    #[serde(serialize_with = "shared")]
    items: &'a [Arc<Value>],
}

fn shared<S: Serializer>(items: &&[Arc<Value>], serializer: S) -> Result<S::Ok, S::Error> {
    serializer.collect_seq(items.iter().map(AsRef::<Value>::as_ref))
}

/// One page of a list: the objects as the resource shows them, and the list's metadata.
struct Page {
    items: Vec<Arc<Value>>,
    metadata: Value,
}

impl Page {
    fn render(&self, resource: &Resource, output: Output, include: Include) -> Response {
        let Self { items, metadata } = self;
        match output {
            Output::Json => respond(
                StatusCode::OK,
                &List {
                    kind: format!("{}List", resource.kind),
                    api_version: resource.api_version(),
                    metadata,
                    items,
                },
            ),
            Output::Partial { api_version } => ok(json!({
                "kind": "PartialObjectMetadataList",
                "apiVersion": api_version,
                "metadata": metadata,
                "items": items.iter().map(|i| table::partial_metadata(i, api_version)).collect::<Vec<_>>(),
            })),
            Output::Table { api_version } => ok(table::table(
                resource,
                items,
                metadata.clone(),
                include,
                api_version,
                Timestamp::now(),
            )),
        }
    }
}

/// One object's address.
struct Place {
    resource: &'static Resource,
    namespace: Option<String>,
    name: String,
    part: Part,
}

/// The parts of a request every verb reads.
struct Call {
    query: HashMap<String, String>,
    output: Output,
    content_type: String,
    body: Bytes,
}

impl Call {
    fn param(&self, name: &str) -> Option<&str> {
        self.query.get(name).map(String::as_str)
    }

    fn flag(&self, name: &str) -> bool {
        matches!(self.param(name), Some("true" | "1"))
    }

    fn selector(&self) -> Result<Selector, ApiError> {
        Selector::parse(self.param("labelSelector"), self.param("fieldSelector"))
            .map_err(ApiError::bad_request)
    }

    fn json_body(&self) -> Result<Value, ApiError> {
        if self.content_type.contains("protobuf") {
            if let Some(object) = protobuf::decode(&self.body) {
                return Ok(object);
            }
            return Err(ApiError::new(
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                format!(
                    "the body of the request was in an unknown format - accepted media types include: application/json, application/yaml (got {})",
                    self.content_type
                ),
            ));
        }
        let value = if self.content_type.contains("yaml") {
            patch::parse_yaml(&self.body)
        } else {
            patch::parse_json(&self.body)
        };
        value.map_err(ApiError::bad_request)
    }

    /// One object in the form the client asked for.
    fn render(&self, resource: &Resource, view: Value) -> Value {
        match self.output {
            Output::Json => view,
            Output::Partial { api_version } => table::partial_metadata(&view, api_version),
            Output::Table { api_version } => table::table(
                resource,
                &[view],
                json!({}),
                Include::parse(self.param("includeObject")),
                api_version,
                Timestamp::now(),
            ),
        }
    }

    async fn collection(
        &self,
        world: &World,
        method: &Method,
        resource: &'static Resource,
        namespace: Option<String>,
    ) -> Result<Response, ApiError> {
        match *method {
            Method::GET if self.flag("watch") => Ok(self.watch(world, resource, namespace)?),
            Method::GET => {
                let selector = self.selector()?;
                let page = self.page(
                    &world.lock().kube,
                    resource,
                    namespace.as_deref(),
                    &selector,
                )?;
                let (output, include) = (self.output, Include::parse(self.param("includeObject")));
                // Rendered once the world is unlocked (the page shares the stored objects), on a
                // blocking thread: a list of every pod is hundreds of megabytes, and would hold up
                // every request queued behind it on an async worker.
                let render =
                    tokio::task::spawn_blocking(move || page.render(resource, output, include));
                Ok(render.await.unwrap_or_else(|err| {
                    ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, err.to_string())
                        .into_response()
                }))
            }
            Method::POST => {
                if namespace.is_none() && resource.namespaced {
                    return Err(ApiError::new(
                        StatusCode::METHOD_NOT_ALLOWED,
                        "the server does not allow this method on the requested resource",
                    ));
                }
                let body = convert::to_storage(resource, self.json_body()?);
                let mut state = world.lock();
                let created =
                    state
                        .kube
                        .create(resource, namespace.as_deref(), body, Timestamp::now())?;
                let view = convert::to_view(resource, &created);
                Ok(respond(StatusCode::CREATED, &self.render(resource, view)))
            }
            Method::DELETE => {
                let selector = self.selector()?;
                let options = self.delete_options()?;
                let mut state = world.lock();
                let now = Timestamp::now();
                let names: Vec<Key> = state
                    .kube
                    .select(resource, namespace.as_deref(), &selector, None)
                    .map(|(key, _)| key.clone())
                    .collect();
                let mut items = Vec::new();
                for key in names {
                    let namespace = (!key.namespace.is_empty()).then_some(key.namespace.as_str());
                    let deleted = state
                        .kube
                        .delete(resource, namespace, &key.name, &options, now)?;
                    items.push(convert::to_view(resource, &deleted));
                }
                Ok(ok(json!({
                    "kind": format!("{}List", resource.kind),
                    "apiVersion": resource.api_version(),
                    "metadata": {"resourceVersion": state.kube.revision().to_string()},
                    "items": items,
                })))
            }
            _ => Err(ApiError::new(
                StatusCode::METHOD_NOT_ALLOWED,
                "the server does not allow this method on the requested resource",
            )),
        }
    }

    /// The page of a list that `limit` and `continue` ask for (all of it without a limit).
    fn page(
        &self,
        store: &Store,
        resource: &Resource,
        namespace: Option<&str>,
        selector: &Selector,
    ) -> Result<Page, ApiError> {
        let limit = match self.param("limit") {
            None => None,
            Some(text) => {
                let limit: i64 = text
                    .parse()
                    .map_err(|_| ApiError::bad_request(format!("invalid limit {text:?}")))?;
                usize::try_from(limit).ok().filter(|limit| *limit > 0)
            }
        };
        let from = match self.param("continue").filter(|token| !token.is_empty()) {
            None => None,
            Some(_) if !matches!(self.param("resourceVersion"), None | Some("" | "0")) => {
                return Err(ApiError::bad_request(
                    "specifying resource version is not allowed when using continue",
                ));
            }
            Some(token) => Some(Continue::decode(resource, token)?),
        };
        let revision = from.as_ref().map_or(store.revision(), |from| from.revision);
        let after = from.map(|from| from.after);
        let mut matching = store.select(resource, namespace, selector, after.as_ref());
        let mut items = Vec::new();
        let mut last = None;
        for (key, view) in matching.by_ref().take(limit.unwrap_or(usize::MAX)) {
            items.push(view);
            last = Some(key);
        }
        let mut metadata = json!({"resourceVersion": revision.to_string()});
        if let Some(last) = last.filter(|_| limit.is_some()) {
            // Without selectors every object of the range matches: the API server counts them.
            let remaining = if selector.is_empty() {
                store.count_after(resource.storage, namespace, last)
            } else {
                usize::from(matching.next().is_some())
            };
            if remaining > 0 {
                let next = Continue {
                    revision,
                    after: last.clone(),
                };
                metadata["continue"] = next.encode().into();
                if selector.is_empty() {
                    metadata["remainingItemCount"] = remaining.into();
                }
            }
        }
        Ok(Page { items, metadata })
    }

    fn watch(
        &self,
        world: &World,
        resource: &'static Resource,
        namespace: Option<String>,
    ) -> Result<Response, ApiError> {
        let from = match self.param("resourceVersion").unwrap_or_default() {
            "" | "0" => None,
            text => Some(text.parse::<u64>().map_err(|_| {
                ApiError::bad_request(format!("invalid resource version {text:?}"))
            })?),
        };
        let timeout = match self.param("timeoutSeconds") {
            Some(text) => Some(Duration::from_secs(text.parse().map_err(|_| {
                ApiError::bad_request(format!("invalid timeoutSeconds {text:?}"))
            })?)),
            None => None,
        };
        Ok(watch::start(
            world.clone(),
            watch::Request {
                resource,
                namespace,
                selector: self.selector()?,
                from,
                bookmarks: self.flag("allowWatchBookmarks"),
                initial_events: self.flag("sendInitialEvents"),
                timeout,
                output: self.output,
                include: Include::parse(self.param("includeObject")),
            },
        ))
    }

    fn object(&self, world: &World, method: &Method, place: &Place) -> Result<Response, ApiError> {
        let resource = place.resource;
        let namespace = place.namespace.as_deref();
        let name = place.name.as_str();
        match *method {
            Method::GET => {
                let state = world.lock();
                let object = state
                    .kube
                    .object(&Key::new(resource.storage, namespace, name))
                    .ok_or_else(|| ApiError::not_found(resource, name))?;
                let view = convert::to_view(resource, object);
                Ok(ok(self.render(resource, view)))
            }
            Method::PUT => {
                let body = convert::to_storage(resource, self.json_body()?);
                let mut state = world.lock();
                let updated = state
                    .kube
                    .update(resource, namespace, name, body, place.part)?;
                Ok(ok(
                    self.render(resource, convert::to_view(resource, &updated))
                ))
            }
            Method::PATCH => self.patch(world, place),
            Method::DELETE => {
                let options = self.delete_options()?;
                let mut state = world.lock();
                let result =
                    state
                        .kube
                        .delete(resource, namespace, name, &options, Timestamp::now())?;
                let still_there = state
                    .kube
                    .object(&Key::new(resource.storage, namespace, name))
                    .is_some();
                let status = if still_there {
                    StatusCode::ACCEPTED
                } else {
                    StatusCode::OK
                };
                Ok(respond(status, &convert::to_view(resource, &result)))
            }
            _ => Err(ApiError::new(
                StatusCode::METHOD_NOT_ALLOWED,
                "the server does not allow this method on the requested resource",
            )),
        }
    }

    fn patch(&self, world: &World, place: &Place) -> Result<Response, ApiError> {
        let resource = place.resource;
        let namespace = place.namespace.as_deref();
        let name = place.name.as_str();
        let Some(patch_type) = PatchType::from_content_type(&self.content_type) else {
            return Err(ApiError::new(
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                format!(
                    "the body of the request was in an unknown format - accepted media types include: application/json-patch+json, application/merge-patch+json, application/apply-patch+yaml (got {})",
                    self.content_type
                ),
            ));
        };
        if patch_type == PatchType::Apply && self.param("fieldManager").is_none_or(str::is_empty) {
            return Err(ApiError::new(
                StatusCode::UNPROCESSABLE_ENTITY,
                "PatchOptions.meta.k8s.io \"\" is invalid: fieldManager: Required value: is required for apply patch",
            ));
        }
        let mut state = world.lock();
        let key = Key::new(resource.storage, namespace, name);
        let Some(current) = state.kube.object(&key) else {
            if patch_type != PatchType::Apply {
                return Err(ApiError::not_found(resource, name));
            }
            let mut body = patch::parse_yaml(&self.body).map_err(ApiError::bad_request)?;
            if !body.is_object() {
                return Err(ApiError::bad_request("the patch must be a JSON object"));
            }
            super::store::set_path(&mut body, &["metadata", "name"], name.into());
            let body = convert::to_storage(resource, body);
            let created = state
                .kube
                .create(resource, namespace, body, Timestamp::now())?;
            let view = convert::to_view(resource, &created);
            return Ok(respond(StatusCode::CREATED, &self.render(resource, view)));
        };
        let mut view = convert::to_view(resource, current);
        patch::apply(&mut view, patch_type, &self.body)
            .map_err(|message| ApiError::new(StatusCode::UNPROCESSABLE_ENTITY, message))?;
        let stored = convert::to_storage(resource, view);
        let updated = state
            .kube
            .update(resource, namespace, name, stored, place.part)?;
        Ok(ok(
            self.render(resource, convert::to_view(resource, &updated))
        ))
    }

    fn delete_options(&self) -> Result<DeleteOptions, ApiError> {
        let mut options = DeleteOptions::default();
        if !self.body.is_empty() {
            let body = patch::parse_json(&self.body).map_err(ApiError::bad_request)?;
            options.grace_period_seconds = body.get("gracePeriodSeconds").and_then(Value::as_i64);
            options.uid = body
                .pointer("/preconditions/uid")
                .and_then(Value::as_str)
                .map(str::to_owned);
            options.resource_version = body
                .pointer("/preconditions/resourceVersion")
                .and_then(Value::as_str)
                .map(str::to_owned);
        }
        if let Some(text) = self.param("gracePeriodSeconds") {
            options.grace_period_seconds = Some(text.parse().map_err(|_| {
                ApiError::bad_request(format!("invalid gracePeriodSeconds {text:?}"))
            })?);
        }
        Ok(options)
    }
}

#[cfg(test)]
mod tests {
    use super::{Target, parse_path};
    use crate::kubernetes::store::Part;

    fn object(path: &str) -> Option<(String, Option<String>, String, Part)> {
        match parse_path(path)? {
            Target::Object {
                resource,
                namespace,
                name,
                part,
            } => Some((resource.plural.to_owned(), namespace, name, part)),
            _ => None,
        }
    }

    #[test]
    fn paths() {
        assert_eq!(
            object("/api/v1/namespaces/default/pods/p"),
            Some((
                "pods".into(),
                Some("default".into()),
                "p".into(),
                Part::Main
            ))
        );
        assert_eq!(
            object("/api/v1/namespaces/default"),
            Some(("namespaces".into(), None, "default".into(), Part::Main))
        );
        assert_eq!(
            object("/api/v1/namespaces/default/status"),
            Some(("namespaces".into(), None, "default".into(), Part::Status))
        );
        assert_eq!(
            object("/api/v1/nodes/n/status"),
            Some(("nodes".into(), None, "n".into(), Part::Status))
        );
        assert_eq!(
            object("/apis/storage.k8s.io/v1/volumeattachments/va"),
            Some(("volumeattachments".into(), None, "va".into(), Part::Main))
        );
        assert!(object("/api/v1/pods/p").is_none());
        assert!(object("/api/v1/namespaces/default/nodes/n").is_none());
        assert!(object("/apis/coordination.k8s.io/v1/namespaces/x/leases/l/status").is_none());
        assert!(matches!(
            parse_path("/api/v1/pods"),
            Some(Target::Collection {
                namespace: None,
                ..
            })
        ));
        assert!(matches!(
            parse_path("/apis/events.k8s.io/v1/namespaces/default/events"),
            Some(Target::Collection {
                namespace: Some(_),
                ..
            })
        ));
        assert_eq!(parse_path("/apis"), Some(Target::Groups));
    }
}
