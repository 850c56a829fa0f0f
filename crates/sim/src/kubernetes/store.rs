//! The object store: every object as JSON, a global resourceVersion, a bounded history of
//! changes for watches, and the Kubernetes rules for create, update and delete (optimistic
//! concurrency, preconditions, finalizers, graceful pod deletion).
//!
//! Objects are kept in key order (storage, namespace, name), so a list walks only its own
//! range, and are shared (`Arc`) with the history and with the lists being sent. The fields
//! the remediator lists pods by (`spec.nodeName`, `status.phase`) are indexed, so such a list
//! reads only the objects it returns.

use std::collections::btree_map::Entry;
use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::ops::Bound;
use std::sync::Arc;

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use jiff::Timestamp;
use serde_json::{Value, json};

use super::attacher;
use super::convert;
use super::resource::{self, Resource};
use super::selector::{Selector, field_value};
use crate::fault;
use crate::scenario::Readiness;

/// How many changes the store keeps for watches that resume from a resourceVersion.
const HISTORY: usize = 4096;

/// The fields lists are indexed by, as (storage, dotted path in the stored form): the field
/// selectors the remediator lists pods with.
const INDEXED: [(&str, &str); 2] = [("pods", "spec.nodeName"), ("pods", "status.phase")];

/// Where an object lives: its storage, namespace (empty for cluster objects) and name.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub(super) struct Key {
    pub storage: &'static str,
    pub namespace: String,
    pub name: String,
}

impl Key {
    pub(super) fn new(storage: &'static str, namespace: Option<&str>, name: &str) -> Self {
        Self {
            storage,
            namespace: namespace.unwrap_or_default().to_owned(),
            name: name.to_owned(),
        }
    }
}

/// The keys of a storage, in one namespace when given, after a key when given.
struct Range<'a> {
    storage: &'static str,
    namespace: Option<&'a str>,
    from: Bound<Key>,
}

impl<'a> Range<'a> {
    fn new(storage: &'static str, namespace: Option<&'a str>, after: Option<&Key>) -> Self {
        let first = Key::new(storage, namespace, "");
        let from = match after {
            Some(after) if *after >= first => Bound::Excluded(after.clone()),
            _ => Bound::Included(first),
        };
        Self {
            storage,
            namespace,
            from,
        }
    }

    /// Where the walk starts; [`Range::holds`] tells where it ends (keys are ordered by
    /// storage, then namespace).
    fn bounds(&self) -> (Bound<&Key>, Bound<&Key>) {
        (self.from.as_ref(), Bound::Unbounded)
    }

    fn holds(&self, key: &Key) -> bool {
        key.storage == self.storage && self.namespace.is_none_or(|ns| key.namespace == ns)
    }
}

/// What happened to an object.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum ChangeKind {
    Added,
    Modified,
    Deleted,
}

/// One change, as watches replay it.
#[derive(Debug, Clone)]
pub(super) struct Change {
    pub revision: u64,
    pub key: Key,
    pub kind: ChangeKind,
    /// The object after the change (the last state for a deletion).
    pub object: Arc<Value>,
    /// The object before the change, to tell a watcher with a selector that it left the set.
    pub previous: Option<Arc<Value>>,
}

/// A refusal, as a Kubernetes `Status`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApiError {
    /// HTTP status.
    pub status: StatusCode,
    /// The Status message.
    pub message: String,
    already_exists: bool,
}

impl ApiError {
    pub(super) fn new(status: StatusCode, message: impl Into<String>) -> Self {
        Self {
            status,
            message: message.into(),
            already_exists: false,
        }
    }

    pub(super) fn bad_request(message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, message)
    }

    pub(super) fn not_found(resource: &Resource, name: &str) -> Self {
        Self::new(
            StatusCode::NOT_FOUND,
            format!("{} \"{name}\" not found", qualified(resource)),
        )
    }

    /// 422 Invalid, with the message the API server's validation gives.
    pub(super) fn invalid(message: impl Into<String>) -> Self {
        Self::new(StatusCode::UNPROCESSABLE_ENTITY, message)
    }

    fn conflict(resource: &Resource, name: &str, why: &str) -> Self {
        Self::new(
            StatusCode::CONFLICT,
            format!(
                "Operation cannot be fulfilled on {} \"{name}\": {why}",
                qualified(resource)
            ),
        )
    }

    fn already_exists(resource: &Resource, name: &str) -> Self {
        Self {
            status: StatusCode::CONFLICT,
            message: format!("{} \"{name}\" already exists", qualified(resource)),
            already_exists: true,
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        if self.already_exists {
            let body = fault::kubernetes_status(self.status, "AlreadyExists", &self.message);
            return (self.status, axum::Json(body)).into_response();
        }
        fault::kubernetes(self.status, &self.message)
    }
}

/// `plural` or `plural.group`, as the API server names a resource in messages.
fn qualified(resource: &Resource) -> String {
    if resource.group.is_empty() {
        resource.plural.to_owned()
    } else {
        format!("{}.{}", resource.plural, resource.group)
    }
}

/// A time as Kubernetes writes it (`metav1.Time`, whole seconds).
#[must_use]
pub(super) fn time(at: Timestamp) -> String {
    at.strftime("%Y-%m-%dT%H:%M:%SZ").to_string()
}

/// A time with microseconds (`metav1.MicroTime`).
#[must_use]
pub(crate) fn micro_time(at: Timestamp) -> String {
    at.strftime("%Y-%m-%dT%H:%M:%S%.6fZ").to_string()
}

/// Which part of an object an update writes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Part {
    /// The object (status kept as stored, for kinds with a status subresource).
    Main,
    /// Only `status` (the `/status` subresource).
    Status,
}

/// The parts of `DeleteOptions` the store acts on.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(super) struct DeleteOptions {
    pub grace_period_seconds: Option<i64>,
    pub uid: Option<String>,
    pub resource_version: Option<String>,
}

/// Every Kubernetes object the emulator holds.
#[derive(Debug)]
pub struct Store {
    objects: BTreeMap<Key, Arc<Value>>,
    /// The keys of the objects with each value of an [`INDEXED`] field: (storage, path, value).
    fields: BTreeMap<(&'static str, &'static str, String), BTreeSet<Key>>,
    revision: u64,
    history: VecDeque<Change>,
    /// A watch may resume from this resourceVersion or a later one.
    oldest: u64,
    /// Bumped by [`Store::compact`]: watches opened before end with 410 Gone.
    epoch: u64,
    closed: bool,
    notify: tokio::sync::watch::Sender<u64>,
    /// Cinder and LINSTOR VolumeAttachments marked for deletion that still carry their
    /// attacher's finalizer: the emulated attachers' queue.
    deleting_attachments: BTreeSet<String>,
    /// Cinder and LINSTOR VolumeAttachments not marked for deletion and not attached: the
    /// attachers' attach queue.
    attaching_attachments: BTreeSet<String>,
    /// What the emulated external-attacher has done per VolumeAttachment.
    pub(super) attacher: BTreeMap<String, attacher::Progress>,
    /// The key ServiceAccount tokens are signed with.
    pub(super) issuer: super::auth::Issuer,
}

impl Store {
    /// An empty store, with only the namespaces every cluster has.
    pub(super) fn empty() -> Self {
        Self {
            objects: BTreeMap::new(),
            fields: BTreeMap::new(),
            revision: 1,
            history: VecDeque::new(),
            oldest: 1,
            epoch: 0,
            closed: false,
            notify: tokio::sync::watch::channel(1).0,
            deleting_attachments: BTreeSet::new(),
            attaching_attachments: BTreeSet::new(),
            attacher: BTreeMap::new(),
            issuer: super::auth::Issuer::new(),
        }
    }

    /// The current (latest) resourceVersion.
    #[must_use]
    pub fn revision(&self) -> u64 {
        self.revision
    }

    /// One object, in its storage form (Events as core/v1), by plural name (`pods`,
    /// `volumeattachments` ...), namespace (`None` for cluster objects) and name.
    #[must_use]
    pub fn get(&self, plural: &str, namespace: Option<&str>, name: &str) -> Option<&Value> {
        let storage = resource::storage(plural)?.storage;
        self.object(&Key::new(storage, namespace, name))
    }

    /// Every object of a plural name, in every namespace, ordered by namespace and name.
    #[must_use]
    pub fn list(&self, plural: &str) -> Vec<&Value> {
        let Some(storage) = resource::storage(plural).map(|r| r.storage) else {
            return Vec::new();
        };
        self.objects_of(storage, None)
            .map(|(_, object)| object)
            .collect()
    }

    /// Drops the change history, as an API server whose watch cache was reset: every open
    /// watch ends with a 410 Gone ERROR event and every watch resuming from an older
    /// resourceVersion gets 410 too, so clients must relist. Tests use it to force a relist.
    pub fn compact(&mut self) {
        self.history.clear();
        self.oldest = self.revision;
        self.epoch += 1;
        self.notify.send_replace(self.revision);
    }

    /// Ends every open watch (cleanly, as a server going away), so connections close and a
    /// graceful shutdown does not wait for watch timeouts. New watches are refused with 503.
    pub fn stop_watches(&mut self) {
        self.closed = true;
        self.notify.send_replace(self.revision);
    }

    /// Forgets the changes made so far without ending watches (after seeding).
    pub(super) fn forget_history(&mut self) {
        self.history.clear();
        self.oldest = self.revision;
    }

    pub(super) fn closed(&self) -> bool {
        self.closed
    }

    pub(super) fn epoch(&self) -> u64 {
        self.epoch
    }

    pub(super) fn subscribe(&self) -> tokio::sync::watch::Receiver<u64> {
        self.notify.subscribe()
    }

    /// Changes after `revision`, or `None` when they are no longer all kept.
    pub(super) fn changes_since(&self, revision: u64) -> Option<impl Iterator<Item = &Change>> {
        if revision < self.oldest {
            return None;
        }
        let start = self.history.partition_point(|c| c.revision <= revision);
        Some(self.history.range(start..))
    }

    /// The oldest resourceVersion a watch may resume from.
    pub(super) fn oldest(&self) -> u64 {
        self.oldest
    }

    /// Objects of a storage, optionally in one namespace, in key order.
    pub(super) fn objects_of<'a>(
        &'a self,
        storage: &'static str,
        namespace: Option<&'a str>,
    ) -> impl Iterator<Item = (&'a Key, &'a Value)> + 'a {
        let range = Range::new(storage, namespace, None);
        self.objects
            .range(range.bounds())
            .take_while(move |(key, _)| range.holds(key))
            .map(|(key, object)| (key, object.as_ref()))
    }

    /// What a list or a watch shows: the objects of the resource's storage (in one namespace
    /// when given) after the key `after` when given, that the selector matches, in key order, as
    /// the resource shows them. An `=` requirement on an indexed field walks only the objects
    /// with that value (the one with the fewest, when there are several).
    pub(super) fn select<'a>(
        &'a self,
        resource: &'a Resource,
        namespace: Option<&'a str>,
        selector: &'a Selector,
        after: Option<&Key>,
    ) -> impl Iterator<Item = (&'a Key, Arc<Value>)> + 'a {
        let range = Range::new(resource.storage, namespace, after);
        let indexed = INDEXED
            .iter()
            .filter(|(storage, _)| *storage == resource.storage)
            .filter_map(|&(storage, path)| {
                let value = selector.equal(path)?;
                Some(self.fields.get(&(storage, path, value.to_owned())))
            })
            .min_by_key(|keys| keys.map_or(0, BTreeSet::len));
        let candidates: Box<dyn Iterator<Item = (&Key, &Arc<Value>)>> = match indexed {
            Some(Some(keys)) => Box::new(
                keys.range(range.bounds())
                    .filter_map(|key| self.objects.get_key_value(key)),
            ),
            Some(None) => Box::new(std::iter::empty()),
            None => Box::new(self.objects.range(range.bounds())),
        };
        candidates
            .take_while(move |(key, _)| range.holds(key))
            .filter_map(move |(key, stored)| {
                let view = convert::view(resource, stored);
                selector.matches(&view).then_some((key, view))
            })
    }

    /// How many objects of a storage (in one namespace when given) come after the key `after`.
    pub(super) fn count_after(
        &self,
        storage: &'static str,
        namespace: Option<&str>,
        after: &Key,
    ) -> usize {
        let range = Range::new(storage, namespace, Some(after));
        self.objects
            .range(range.bounds())
            .take_while(|(key, _)| range.holds(key))
            .count()
    }

    pub(super) fn object(&self, key: &Key) -> Option<&Value> {
        self.objects.get(key).map(Arc::as_ref)
    }

    /// VolumeAttachments waiting for the attacher (marked for deletion, finalizer present).
    pub(super) fn deleting_attachments(&self) -> &BTreeSet<String> {
        &self.deleting_attachments
    }

    /// VolumeAttachments waiting for the attacher to attach (not marked for deletion, not
    /// attached).
    pub(super) fn attaching_attachments(&self) -> &BTreeSet<String> {
        &self.attaching_attachments
    }

    /// Stores an object under a new resourceVersion and records the change.
    pub(super) fn put(&mut self, key: Key, mut object: Value) -> Arc<Value> {
        self.revision += 1;
        set_path(
            &mut object,
            &["metadata", "resourceVersion"],
            self.revision.to_string().into(),
        );
        let object = Arc::new(object);
        let previous = self.objects.insert(key.clone(), Arc::clone(&object));
        let kind = if previous.is_some() {
            ChangeKind::Modified
        } else {
            ChangeKind::Added
        };
        self.index(&key, previous.as_deref(), Some(&object));
        self.track(&key, Some(&object));
        self.record(key, kind, Arc::clone(&object), previous);
        object
    }

    /// Removes an object; its last state carries the deletion's resourceVersion.
    pub(super) fn remove(&mut self, key: &Key) -> Option<Arc<Value>> {
        let previous = self.objects.remove(key)?;
        let mut object = Value::clone(&previous);
        self.revision += 1;
        set_path(
            &mut object,
            &["metadata", "resourceVersion"],
            self.revision.to_string().into(),
        );
        let object = Arc::new(object);
        self.index(key, Some(&previous), None);
        self.track(key, None);
        self.record(
            key.clone(),
            ChangeKind::Deleted,
            Arc::clone(&object),
            Some(previous),
        );
        Some(object)
    }

    fn record(
        &mut self,
        key: Key,
        kind: ChangeKind,
        object: Arc<Value>,
        previous: Option<Arc<Value>>,
    ) {
        self.history.push_back(Change {
            revision: self.revision,
            key,
            kind,
            object,
            previous,
        });
        while self.history.len() > HISTORY {
            if let Some(dropped) = self.history.pop_front() {
                self.oldest = dropped.revision;
            }
        }
        self.notify.send_replace(self.revision);
    }

    /// Keeps the field index in step with an object that was `before` and is `after`.
    fn index(&mut self, key: &Key, before: Option<&Value>, after: Option<&Value>) {
        for (storage, path) in INDEXED {
            if key.storage != storage {
                continue;
            }
            let old = before.map(|object| field_value(object, path).into_owned());
            let new = after.map(|object| field_value(object, path).into_owned());
            if old == new {
                continue;
            }
            if let Some(old) = old
                && let Entry::Occupied(mut keys) = self.fields.entry((storage, path, old))
            {
                keys.get_mut().remove(key);
                if keys.get().is_empty() {
                    keys.remove();
                }
            }
            if let Some(new) = new {
                let keys = self.fields.entry((storage, path, new)).or_default();
                keys.insert(key.clone());
            }
        }
    }

    /// Keeps the attacher's queue in step with the VolumeAttachments.
    fn track(&mut self, key: &Key, object: Option<&Value>) {
        if key.storage != "volumeattachments" {
            return;
        }
        // The drivers whose external-attacher the emulator plays.
        let attacher = object
            .and_then(|o| str_at(o, &["spec", "attacher"]))
            .filter(|a| [super::seed::CINDER_DRIVER, super::seed::LINSTOR_DRIVER].contains(a));
        let waiting = object.zip(attacher).is_some_and(|(o, attacher)| {
            o.pointer("/metadata/deletionTimestamp").is_some()
                && finalizers(o).contains(&super::seed::attacher_finalizer(attacher))
        });
        let attaching = object.zip(attacher).is_some_and(|(o, _)| {
            o.pointer("/metadata/deletionTimestamp").is_none()
                && o.pointer("/status/attached").and_then(Value::as_bool) != Some(true)
        });
        if attaching {
            self.attaching_attachments.insert(key.name.clone());
        } else {
            self.attaching_attachments.remove(&key.name);
        }
        if waiting {
            self.deleting_attachments.insert(key.name.clone());
        } else {
            self.deleting_attachments.remove(&key.name);
            if object.is_none() {
                self.attacher.remove(&key.name);
            }
        }
    }

    /// Creates an object (storage form) in `namespace` (from the URL).
    pub(super) fn create(
        &mut self,
        resource: &Resource,
        namespace: Option<&str>,
        mut object: Value,
        now: Timestamp,
    ) -> Result<Arc<Value>, ApiError> {
        if !object.is_object() {
            return Err(ApiError::bad_request("the body must be a JSON object"));
        }
        let body_namespace = str_at(&object, &["metadata", "namespace"]).map(str::to_owned);
        if let (Some(url), Some(body)) = (namespace, body_namespace.as_deref())
            && url != body
        {
            return Err(ApiError::bad_request(
                "the namespace of the provided object does not match the namespace sent on the request",
            ));
        }
        if let Some(ns) = namespace
            && !self.objects.contains_key(&Key::new("namespaces", None, ns))
        {
            return Err(ApiError::new(
                StatusCode::NOT_FOUND,
                format!("namespaces \"{ns}\" not found"),
            ));
        }
        let name = match str_at(&object, &["metadata", "name"]) {
            Some(name) if !name.is_empty() => name.to_owned(),
            _ => match str_at(&object, &["metadata", "generateName"]) {
                Some(prefix) if !prefix.is_empty() => format!("{prefix}{}", random_suffix()),
                _ => {
                    return Err(ApiError::new(
                        StatusCode::UNPROCESSABLE_ENTITY,
                        format!(
                            "{} \"\" is invalid: metadata.name: Required value: name or generateName is required",
                            resource.kind
                        ),
                    ));
                }
            },
        };
        let key = Key::new(resource.storage, namespace, &name);
        if self.objects.contains_key(&key) {
            return Err(ApiError::already_exists(resource, &name));
        }
        let metadata = object
            .as_object_mut()
            .map(|o| o.entry("metadata").or_insert_with(|| json!({})));
        let Some(Value::Object(metadata)) = metadata else {
            return Err(ApiError::bad_request("metadata must be an object"));
        };
        metadata.insert("name".into(), name.into());
        if let Some(ns) = namespace {
            metadata.insert("namespace".into(), ns.into());
        } else {
            metadata.remove("namespace");
        }
        metadata.insert("uid".into(), uuid::Uuid::new_v4().to_string().into());
        metadata.insert("creationTimestamp".into(), time(now).into());
        for field in [
            "deletionTimestamp",
            "deletionGracePeriodSeconds",
            "selfLink",
        ] {
            metadata.remove(field);
        }
        if object.get("spec").is_some() {
            set_path(&mut object, &["metadata", "generation"], 1.into());
        }
        super::defaults::on_create(self, resource.storage, &mut object);
        Ok(self.put(key, object))
    }

    /// Replaces an object (or its status) with `object`: a PUT, or the result of a patch.
    pub(super) fn update(
        &mut self,
        resource: &Resource,
        namespace: Option<&str>,
        name: &str,
        mut object: Value,
        part: Part,
    ) -> Result<Arc<Value>, ApiError> {
        let key = Key::new(resource.storage, namespace, name);
        let Some(old) = self.objects.get(&key).cloned() else {
            return Err(ApiError::not_found(resource, name));
        };
        if !object.is_object() {
            return Err(ApiError::bad_request("the body must be a JSON object"));
        }
        if let Some(body_name) = str_at(&object, &["metadata", "name"])
            && body_name != name
        {
            return Err(ApiError::bad_request(format!(
                "the name of the object ({body_name}) does not match the name on the URL ({name})"
            )));
        }
        if let Some(version) = str_at(&object, &["metadata", "resourceVersion"])
            && !version.is_empty()
            && Some(version) != str_at(&old, &["metadata", "resourceVersion"])
        {
            return Err(ApiError::conflict(
                resource,
                name,
                "the object has been modified; please apply your changes to the latest version and try again",
            ));
        }
        let mut new = match part {
            Part::Status => {
                let mut new = Value::clone(&old);
                match object.get("status") {
                    Some(status) => set_path(&mut new, &["status"], status.clone()),
                    None => remove_path(&mut new, "status"),
                }
                new
            }
            Part::Main => {
                super::defaults::on_update(resource.storage, &old, &mut object);
                if resource.has_status {
                    match old.get("status") {
                        Some(status) => set_path(&mut object, &["status"], status.clone()),
                        None => remove_path(&mut object, "status"),
                    }
                }
                for field in [
                    "name",
                    "namespace",
                    "uid",
                    "creationTimestamp",
                    "deletionTimestamp",
                    "deletionGracePeriodSeconds",
                    "generation",
                ] {
                    match old.pointer(&format!("/metadata/{field}")) {
                        Some(value) => set_path(&mut object, &["metadata", field], value.clone()),
                        None => {
                            if let Some(Value::Object(m)) = object.get_mut("metadata") {
                                m.remove(field);
                            }
                        }
                    }
                }
                if object.get("spec") != old.get("spec") {
                    let generation = old
                        .pointer("/metadata/generation")
                        .and_then(Value::as_i64)
                        .unwrap_or(0);
                    set_path(
                        &mut object,
                        &["metadata", "generation"],
                        (generation + 1).into(),
                    );
                }
                object
            }
        };
        let deleting = old.pointer("/metadata/deletionTimestamp").is_some();
        if deleting {
            let before = finalizers(&old);
            if finalizers(&new).iter().any(|f| !before.contains(f)) {
                return Err(ApiError::new(
                    StatusCode::UNPROCESSABLE_ENTITY,
                    format!(
                        "{} \"{name}\" is invalid: metadata.finalizers: Forbidden: no new finalizers can be added if the object is being deleted",
                        resource.kind
                    ),
                ));
            }
        }
        let version = old
            .pointer("/metadata/resourceVersion")
            .cloned()
            .unwrap_or(Value::Null);
        set_path(&mut new, &["metadata", "resourceVersion"], version);
        if let Some(Value::Object(m)) = new.get_mut("metadata")
            && m.get("finalizers")
                .and_then(Value::as_array)
                .is_some_and(Vec::is_empty)
        {
            m.remove("finalizers");
        }
        if new == *old {
            return Ok(old);
        }
        if deleting && finalizers(&new).is_empty() && grace_of(&new) == 0 {
            return Ok(self.remove(&key).unwrap_or_else(|| Arc::new(new)));
        }
        Ok(self.put(key, new))
    }

    /// Deletes an object: at once, or marks it (finalizers, a pod a kubelet must confirm).
    pub(super) fn delete(
        &mut self,
        resource: &Resource,
        namespace: Option<&str>,
        name: &str,
        options: &DeleteOptions,
        now: Timestamp,
    ) -> Result<Arc<Value>, ApiError> {
        let key = Key::new(resource.storage, namespace, name);
        let Some(old) = self.objects.get(&key).cloned() else {
            return Err(ApiError::not_found(resource, name));
        };
        let actual_uid = str_at(&old, &["metadata", "uid"]).unwrap_or_default();
        if let Some(uid) = &options.uid
            && uid != actual_uid
        {
            return Err(ApiError::conflict(
                resource,
                name,
                &format!(
                    "Precondition failed: UID in precondition: {uid}, UID in object meta: {actual_uid}"
                ),
            ));
        }
        let actual_version = str_at(&old, &["metadata", "resourceVersion"]).unwrap_or_default();
        if let Some(version) = &options.resource_version
            && version != actual_version
        {
            return Err(ApiError::conflict(
                resource,
                name,
                &format!(
                    "Precondition failed: ResourceVersion in precondition: {version}, ResourceVersion in object meta: {actual_version}"
                ),
            ));
        }
        let grace = if resource.storage == "pods" {
            self.pod_grace(&old, options)
        } else {
            0
        };
        let has_finalizers = !finalizers(&old).is_empty();
        if old.pointer("/metadata/deletionTimestamp").is_some() {
            let current = grace_of(&old);
            if grace >= current {
                return Ok(old);
            }
            if grace == 0 && !has_finalizers {
                return Ok(self.remove(&key).unwrap_or(old));
            }
            return Ok(self.mark(key, &old, grace, now));
        }
        if !has_finalizers && grace == 0 {
            return Ok(self.remove(&key).unwrap_or(old));
        }
        Ok(self.mark(key, &old, grace, now))
    }

    fn mark(&mut self, key: Key, object: &Value, grace: i64, now: Timestamp) -> Arc<Value> {
        let mut object = object.clone();
        let at = now
            .checked_add(jiff::SignedDuration::from_secs(grace))
            .unwrap_or(now);
        set_path(
            &mut object,
            &["metadata", "deletionTimestamp"],
            time(at).into(),
        );
        set_path(
            &mut object,
            &["metadata", "deletionGracePeriodSeconds"],
            grace.into(),
        );
        self.put(key, object)
    }

    /// The grace period a pod deletion gets: 0 when nothing needs to confirm it (unscheduled,
    /// finished, or on a Ready node whose kubelet stops it at once), else the asked or the pod's.
    fn pod_grace(&self, pod: &Value, options: &DeleteOptions) -> i64 {
        let asked = options.grace_period_seconds.unwrap_or_else(|| {
            pod.pointer("/spec/terminationGracePeriodSeconds")
                .and_then(Value::as_i64)
                .unwrap_or(30)
        });
        if asked <= 0 {
            return 0;
        }
        let node = str_at(pod, &["spec", "nodeName"]).unwrap_or_default();
        let phase = str_at(pod, &["status", "phase"]).unwrap_or_default();
        if node.is_empty() || matches!(phase, "Succeeded" | "Failed") || self.node_ready(node) {
            0
        } else {
            asked
        }
    }

    fn node_ready(&self, node: &str) -> bool {
        self.objects
            .get(&Key::new("nodes", None, node))
            .and_then(|n| n.pointer("/status/conditions"))
            .and_then(Value::as_array)
            .is_some_and(|conditions| {
                conditions.iter().any(|c| {
                    c.get("type").and_then(Value::as_str) == Some("Ready")
                        && c.get("status").and_then(Value::as_str) == Some("True")
                })
            })
    }

    /// Sets a node's Ready condition (a timeline step), as the kubelet and the node lifecycle
    /// controller would: the pressure conditions follow, the `unreachable`/`not-ready` taints
    /// are set or removed, and a node that is Ready again lets its kubelet finish the pods it
    /// was asked to terminate.
    pub fn set_node_ready(&mut self, node: &str, status: Readiness) {
        let now = Timestamp::now();
        let key = Key::new("nodes", None, node);
        let Some(mut object) = self.object(&key).cloned() else {
            return;
        };
        let conditions = super::seed::node_conditions(status, now, now);
        let previous = object
            .pointer("/status/conditions")
            .and_then(Value::as_array)
            .cloned()
            .unwrap_or_default();
        let merged: Vec<Value> = conditions
            .into_iter()
            .map(|mut condition| {
                let kind = condition.get("type").cloned();
                let same = previous.iter().find(|p| p.get("type") == kind.as_ref());
                if let Some(before) = same
                    && before.get("status") == condition.get("status")
                    && let Some(since) = before.get("lastTransitionTime")
                {
                    set_path(&mut condition, &["lastTransitionTime"], since.clone());
                }
                condition
            })
            .collect();
        set_path(&mut object, &["status", "conditions"], Value::Array(merged));
        let mut taints: Vec<Value> = object
            .pointer("/spec/taints")
            .and_then(Value::as_array)
            .cloned()
            .unwrap_or_default();
        taints.retain(|t| {
            !matches!(
                t.get("key").and_then(Value::as_str),
                Some("node.kubernetes.io/unreachable" | "node.kubernetes.io/not-ready")
            )
        });
        let lifecycle_key = match status {
            Readiness::True => None,
            Readiness::False => Some("node.kubernetes.io/not-ready"),
            Readiness::Unknown => Some("node.kubernetes.io/unreachable"),
        };
        if let Some(taint_key) = lifecycle_key {
            taints.push(json!({"key": taint_key, "effect": "NoSchedule"}));
            taints.push(json!({"key": taint_key, "effect": "NoExecute", "timeAdded": time(now)}));
        }
        if taints.is_empty() {
            remove_path(&mut object, "spec/taints");
        } else {
            set_path(&mut object, &["spec", "taints"], Value::Array(taints));
        }
        self.put(key, object);
        if status == Readiness::True {
            let on_node = self.fields.get(&("pods", "spec.nodeName", node.to_owned()));
            let finished: Vec<Key> = on_node
                .into_iter()
                .flatten()
                .filter(|key| {
                    self.object(key).is_some_and(|pod| {
                        pod.pointer("/metadata/deletionTimestamp").is_some()
                            && finalizers(pod).is_empty()
                    })
                })
                .cloned()
                .collect();
            for key in finished {
                self.remove(&key);
            }
        }
    }
}

/// The finalizers of an object.
pub(super) fn finalizers(object: &Value) -> Vec<String> {
    object
        .pointer("/metadata/finalizers")
        .and_then(Value::as_array)
        .map(|items| {
            items
                .iter()
                .filter_map(Value::as_str)
                .map(str::to_owned)
                .collect()
        })
        .unwrap_or_default()
}

fn grace_of(object: &Value) -> i64 {
    object
        .pointer("/metadata/deletionGracePeriodSeconds")
        .and_then(Value::as_i64)
        .unwrap_or(0)
}

/// The string at a path of object keys.
pub(super) fn str_at<'a>(object: &'a Value, path: &[&str]) -> Option<&'a str> {
    let mut value = object;
    for part in path {
        value = value.get(part)?;
    }
    value.as_str()
}

/// Sets the value at a path of object keys, creating objects on the way (replacing non-objects).
pub(super) fn set_path(object: &mut Value, path: &[&str], value: Value) {
    let Some((last, parents)) = path.split_last() else {
        *object = value;
        return;
    };
    let mut current = object;
    for part in parents {
        if !current.is_object() {
            *current = json!({});
        }
        let Some(map) = current.as_object_mut() else {
            return;
        };
        current = map.entry(*part).or_insert_with(|| json!({}));
    }
    if !current.is_object() {
        *current = json!({});
    }
    if let Some(map) = current.as_object_mut() {
        map.insert((*last).to_owned(), value);
    }
}

/// Removes the value at a `/`-separated path, if there.
pub(super) fn remove_path(object: &mut Value, path: &str) {
    let (parent, field) = match path.rsplit_once('/') {
        Some((parent, field)) => (format!("/{parent}"), field),
        None => (String::new(), path),
    };
    if let Some(Value::Object(map)) = object.pointer_mut(&parent) {
        map.remove(field);
    }
}

/// Five characters as the API server appends to a `generateName`.
fn random_suffix() -> String {
    const ALPHABET: &[u8] = b"bcdfghjklmnpqrstvwxz2456789";
    let bytes = uuid::Uuid::new_v4().into_bytes();
    bytes[..5]
        .iter()
        .map(|b| char::from(ALPHABET[usize::from(*b) % ALPHABET.len()]))
        .collect()
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use jiff::Timestamp;
    use serde_json::json;

    use super::{DeleteOptions, Key, Part, Store};
    use crate::kubernetes::resource::find;
    use crate::kubernetes::selector::Selector;
    use crate::scenario::{Readiness, Scenario};

    fn store() -> Store {
        let text = "name: t
kubernetes:
  nodes: [{name: a}, {name: b, ready: Unknown}]
  pods:
    - {name: p1, node: a}
    - {name: p2, node: b}
    - {name: p3, node: a, phase: Pending}
    - {name: p4, namespace: other, node: a}
    - {name: p5}
";
        let scenario = Scenario::parse(text, Path::new("t.yaml")).unwrap();
        Store::new(&scenario, Timestamp::now())
    }

    fn names(
        store: &Store,
        namespace: Option<&str>,
        fields: &str,
        after: Option<&Key>,
    ) -> Vec<String> {
        let pods = find("", "v1", "pods").unwrap();
        let selector = Selector::parse(None, Some(fields)).unwrap();
        store
            .select(pods, namespace, &selector, after)
            .map(|(key, _)| format!("{}/{}", key.namespace, key.name))
            .collect()
    }

    #[test]
    fn indexed_fields_follow_every_change() {
        let mut store = store();
        let pods = find("", "v1", "pods").unwrap();
        assert_eq!(
            names(&store, None, "spec.nodeName=a", None),
            ["default/p1", "default/p3", "other/p4"]
        );
        assert_eq!(
            names(&store, Some("other"), "spec.nodeName=a", None),
            ["other/p4"]
        );
        let after = Key::new("pods", Some("default"), "p1");
        assert_eq!(
            names(&store, None, "spec.nodeName=a", Some(&after)),
            ["default/p3", "other/p4"]
        );
        assert_eq!(names(&store, None, "spec.nodeName=", None), ["default/p5"]);
        assert_eq!(
            names(&store, None, "spec.nodeName=a,status.phase=Pending", None),
            ["default/p3"]
        );
        assert!(names(&store, None, "spec.nodeName=c", None).is_empty());
        // The same answers as a walk over every pod (a selector on no indexed field).
        assert_eq!(
            names(&store, None, "spec.nodeName=a", None),
            names(&store, None, "spec.nodeName!=b,spec.nodeName!=", None)
        );

        let mut moved = store
            .object(&Key::new("pods", Some("default"), "p1"))
            .unwrap()
            .clone();
        moved["spec"]["nodeName"] = json!("b");
        moved["status"]["phase"] = json!("Pending");
        store
            .update(pods, Some("default"), "p1", moved, Part::Main)
            .unwrap();
        let mut status = store
            .object(&Key::new("pods", Some("default"), "p1"))
            .unwrap()
            .clone();
        status["status"]["phase"] = json!("Pending");
        store
            .update(pods, Some("default"), "p1", status, Part::Status)
            .unwrap();
        assert_eq!(
            names(&store, None, "spec.nodeName=a", None),
            ["default/p3", "other/p4"]
        );
        assert_eq!(
            names(&store, None, "spec.nodeName=b", None),
            ["default/p1", "default/p2"]
        );
        assert_eq!(
            names(&store, None, "status.phase=Pending", None),
            ["default/p1", "default/p3"]
        );

        // A pod on the unreachable node waits for its kubelet; once the node is back, the kubelet
        // finishes it.
        let options = DeleteOptions::default();
        store
            .delete(pods, Some("default"), "p2", &options, Timestamp::now())
            .unwrap();
        assert!(
            store
                .object(&Key::new("pods", Some("default"), "p2"))
                .is_some()
        );
        store.set_node_ready("b", Readiness::True);
        assert!(
            store
                .object(&Key::new("pods", Some("default"), "p2"))
                .is_none()
        );
        assert_eq!(names(&store, None, "spec.nodeName=b", None), ["default/p1"]);
    }
}
