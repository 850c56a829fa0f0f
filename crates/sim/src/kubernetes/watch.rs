//! Watches: a stream of `{"type": ..., "object": ...}` lines from a resourceVersion on, with
//! bookmarks, `timeoutSeconds`, selectors (objects entering or leaving the selection are ADDED
//! or DELETED, as the API server does), and 410 Gone as an ERROR event when the history that
//! was asked for is no longer kept.

use std::convert::Infallible;
use std::time::Duration;

use axum::body::{Body, Bytes};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use jiff::Timestamp;
use serde_json::{Value, json};
use tokio::sync::mpsc;
use tokio::time::{Instant, sleep_until};

use super::convert;
use super::output::Output;
use super::resource::Resource;
use super::selector::Selector;
use super::store::{Change, ChangeKind, Store};
use super::table::{self, Include};
use crate::fault::kubernetes_status;
use crate::world::World;

/// How often a watch that asked for bookmarks gets one.
const BOOKMARK_EVERY: Duration = Duration::from_secs(2);
/// How long a watch lasts when the client does not say (the API server picks 30 to 60 minutes).
const DEFAULT_TIMEOUT: Duration = Duration::from_secs(1800);

/// What one watch request asked for.
#[derive(Debug, Clone)]
pub struct Request {
    /// The resource (view) watched.
    pub resource: &'static Resource,
    /// The namespace, or every namespace.
    pub namespace: Option<String>,
    /// Label and field selectors.
    pub selector: Selector,
    /// `resourceVersion`: `None` (unset or `0`) starts with ADDED events for every object.
    pub from: Option<u64>,
    /// `allowWatchBookmarks`.
    pub bookmarks: bool,
    /// `sendInitialEvents`: ADDED for every object, then a bookmark marking their end.
    pub initial_events: bool,
    /// `timeoutSeconds`.
    pub timeout: Option<Duration>,
    /// How objects are encoded.
    pub output: Output,
    /// What Table rows carry.
    pub include: Include,
}

/// Starts a watch: takes the lock once to check the start and take the initial events, then
/// streams from a task that wakes on every change.
pub fn start(world: World, request: Request) -> Response {
    let (first, start, epoch, notified) = {
        let state = world.lock();
        let store = &state.kube;
        if store.closed() {
            return super::store::ApiError::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "the server is shutting down",
            )
            .into_response();
        }
        let now = Timestamp::now();
        let mut first = Vec::new();
        let start = match request.from {
            Some(from) if from < store.oldest() && !request.initial_events => {
                first.push(gone(from, store.oldest()));
                None
            }
            Some(from) if !request.initial_events => Some(from),
            _ => {
                let namespace = request.namespace.as_deref();
                for (_, view) in store.select(request.resource, namespace, &request.selector, None)
                {
                    first.push(line("ADDED", encode(&request, &view, now)));
                }
                if request.initial_events {
                    first.push(bookmark(&request, store.revision(), true));
                }
                Some(store.revision())
            }
        };
        (first, start, store.epoch(), store.subscribe())
    };
    let (sender, receiver) = mpsc::channel::<Bytes>(64);
    tokio::spawn(async move {
        for bytes in first {
            if sender.send(bytes).await.is_err() {
                return;
            }
        }
        if let Some(from) = start {
            stream(world, request, from, epoch, notified, sender).await;
        }
    });
    let body = futures::stream::unfold(receiver, |mut receiver| async move {
        receiver
            .recv()
            .await
            .map(|bytes| (Ok::<_, Infallible>(bytes), receiver))
    });
    (
        [(header::CONTENT_TYPE, "application/json")],
        Body::from_stream(body),
    )
        .into_response()
}

async fn stream(
    world: World,
    request: Request,
    mut last: u64,
    epoch: u64,
    mut notified: tokio::sync::watch::Receiver<u64>,
    sender: mpsc::Sender<Bytes>,
) {
    let deadline = Instant::now() + request.timeout.unwrap_or(DEFAULT_TIMEOUT);
    let mut next_bookmark = Instant::now() + BOOKMARK_EVERY;
    loop {
        notified.borrow_and_update();
        let (lines, end) = {
            let state = world.lock();
            collect(&state.kube, &request, &mut last, epoch)
        };
        for bytes in lines {
            if sender.send(bytes).await.is_err() {
                return;
            }
        }
        if end {
            return;
        }
        tokio::select! {
            changed = notified.changed() => if changed.is_err() { return },
            () = sleep_until(deadline) => return,
            () = sender.closed() => return,
            () = sleep_until(next_bookmark), if request.bookmarks => {
                next_bookmark = Instant::now() + BOOKMARK_EVERY;
                if sender.send(bookmark(&request, last, false)).await.is_err() {
                    return;
                }
            }
        }
    }
}

/// The lines for changes after `last`, and whether the watch ends.
fn collect(store: &Store, request: &Request, last: &mut u64, epoch: u64) -> (Vec<Bytes>, bool) {
    if store.closed() {
        return (Vec::new(), true);
    }
    if store.epoch() != epoch {
        return (vec![gone(*last, store.revision())], true);
    }
    let Some(changes) = store.changes_since(*last) else {
        return (vec![gone(*last, store.oldest())], true);
    };
    let now = Timestamp::now();
    let lines = changes
        .filter_map(|change| event(request, change, now))
        .collect();
    *last = store.revision();
    (lines, false)
}

/// The event a change is for this watcher, if any.
fn event(request: &Request, change: &Change, now: Timestamp) -> Option<Bytes> {
    let key = &change.key;
    if key.storage != request.resource.storage
        || request
            .namespace
            .as_deref()
            .is_some_and(|ns| ns != key.namespace)
    {
        return None;
    }
    let view = convert::view(request.resource, &change.object);
    let now_matches = request.selector.matches(&view);
    let was_matching = change.previous.as_ref().is_some_and(|p| {
        request
            .selector
            .matches(&convert::view(request.resource, p))
    });
    let kind = match (change.kind, was_matching, now_matches) {
        (ChangeKind::Added, _, true) | (ChangeKind::Modified, false, true) => "ADDED",
        (ChangeKind::Modified, true, true) => "MODIFIED",
        (ChangeKind::Modified, true, false) => "DELETED",
        (ChangeKind::Deleted, true, _) | (ChangeKind::Deleted, false, true) => "DELETED",
        _ => return None,
    };
    Some(line(kind, encode(request, &view, now)))
}

fn encode(request: &Request, view: &Value, now: Timestamp) -> Value {
    match request.output {
        Output::Json => view.clone(),
        Output::Partial { api_version } => table::partial_metadata(view, api_version),
        Output::Table { api_version } => table::table(
            request.resource,
            &[view],
            json!({}),
            request.include,
            api_version,
            now,
        ),
    }
}

fn bookmark(request: &Request, revision: u64, initial_events_end: bool) -> Bytes {
    let mut metadata = json!({"resourceVersion": revision.to_string()});
    if initial_events_end {
        metadata["annotations"] = json!({"k8s.io/initial-events-end": "true"});
    }
    let object = match request.output {
        Output::Partial { api_version } => {
            json!({"kind": "PartialObjectMetadata", "apiVersion": api_version, "metadata": metadata})
        }
        Output::Json | Output::Table { .. } => json!({
            "kind": request.resource.kind,
            "apiVersion": request.resource.api_version(),
            "metadata": metadata,
        }),
    };
    line("BOOKMARK", object)
}

fn gone(asked: u64, oldest: u64) -> Bytes {
    line(
        "ERROR",
        kubernetes_status(
            StatusCode::GONE,
            "Expired",
            &format!("too old resource version: {asked} ({oldest})"),
        ),
    )
}

fn line(kind: &str, object: Value) -> Bytes {
    let mut text = json!({"type": kind, "object": object}).to_string();
    text.push('\n');
    Bytes::from(text)
}
