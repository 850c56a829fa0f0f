//! One actor: leader election over a `coordination.k8s.io/v1` Lease, as client-go does it.
//!
//! The holder renews the Lease every `retry` period. A follower takes it over only when the
//! Lease record has not changed for a whole `duration` of the follower's own clock (never by
//! comparing the holder's timestamps with its own: clocks differ), or when the holder released
//! it. The holder stops acting when it could not renew for `renew_deadline` (two thirds of the
//! duration), so before any follower may take over. On shutdown the holder releases the Lease
//! (empty holder), so that a follower takes over at once.

use std::time::Duration;

use jiff::Timestamp;
use k8s_openapi::api::coordination::v1::{Lease, LeaseSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{MicroTime, ObjectMeta};
use kube::Client;
use kube::api::{Api, PostParams};
use tokio::sync::watch;
use tokio::time::Instant;

/// The permissions on the Lease, in its namespace, as (API group, resource, verbs): the Role of
/// `manifests/base/role.yaml` grants exactly these (a test keeps the two in step).
pub const PERMISSIONS: (&str, &str, &[&str]) = (
    "coordination.k8s.io",
    "leases",
    &["create", "get", "update"],
);

/// Where the Lease is and who competes for it.
#[derive(Debug, Clone)]
pub struct Settings {
    /// Namespace of the Lease.
    pub namespace: String,
    /// Name of the Lease.
    pub name: String,
    /// This replica's identity (`holderIdentity`).
    pub identity: String,
    /// `leaseDurationSeconds`: how long a silent holder keeps the Lease.
    pub duration: Duration,
}

impl Settings {
    fn renew_deadline(&self) -> Duration {
        self.duration.mul_f64(2.0 / 3.0)
    }

    fn retry(&self) -> Duration {
        (self.duration / 7).max(Duration::from_millis(100))
    }
}

/// What a follower last saw of the Lease record, and when (its own clock).
struct Seen {
    resource_version: String,
    at: Instant,
}

/// Runs the election until `stop` turns true, publishing on `leader` whether this replica may
/// act. Errors reading or writing the Lease are retried; they never make a replica leader.
pub async fn elect(
    client: Client,
    settings: Settings,
    leader: watch::Sender<bool>,
    mut stop: watch::Receiver<bool>,
) {
    let api = Api::<Lease>::namespaced(client, &settings.namespace);
    let mut seen: Option<Seen> = None;
    let mut renewed: Option<Instant> = None;
    loop {
        if *stop.borrow() {
            break;
        }
        match attempt(&api, &settings, &mut seen).await {
            Ok(true) => renewed = Some(Instant::now()),
            Ok(false) => renewed = None,
            Err(err) => {
                tracing::warn!(error = %err, lease = %settings.name, "Could not read or write the Lease")
            }
        }
        let acting = renewed.is_some_and(|at| at.elapsed() < settings.renew_deadline());
        leader.send_if_modified(|current| {
            let changed = *current != acting;
            if changed {
                tracing::info!(identity = %settings.identity, leader = acting, "Leadership changed");
            }
            *current = acting;
            changed
        });
        tokio::select! {
            () = tokio::time::sleep(settings.retry()) => {}
            _ = stop.changed() => {}
        }
    }
    if *leader.borrow() {
        leader.send_replace(false);
        if let Err(err) = release(&api, &settings).await {
            tracing::warn!(error = %err, "Could not release the Lease; a follower takes over once it expires");
        }
    }
}

/// One round: create, renew or take over the Lease. `Ok(true)` when this replica holds it now.
async fn attempt(
    api: &Api<Lease>,
    settings: &Settings,
    seen: &mut Option<Seen>,
) -> Result<bool, kube::Error> {
    let now = MicroTime(Timestamp::now());
    let Some(mut lease) = api.get_opt(&settings.name).await? else {
        let lease = Lease {
            metadata: ObjectMeta {
                name: Some(settings.name.clone()),
                namespace: Some(settings.namespace.clone()),
                ..ObjectMeta::default()
            },
            spec: Some(LeaseSpec {
                holder_identity: Some(settings.identity.clone()),
                lease_duration_seconds: Some(seconds(settings.duration)),
                acquire_time: Some(now.clone()),
                renew_time: Some(now),
                lease_transitions: Some(0),
                ..LeaseSpec::default()
            }),
        };
        return conflict_is_false(api.create(&PostParams::default(), &lease).await);
    };
    let version = lease.metadata.resource_version.clone().unwrap_or_default();
    let spec = lease.spec.get_or_insert_with(LeaseSpec::default);
    let holder = spec.holder_identity.clone().unwrap_or_default();
    if holder == settings.identity {
        spec.renew_time = Some(now);
        spec.lease_duration_seconds = Some(seconds(settings.duration));
        return conflict_is_false(
            api.replace(&settings.name, &PostParams::default(), &lease)
                .await,
        );
    }
    let unchanged_for = match seen {
        Some(previous) if previous.resource_version == version => previous.at.elapsed(),
        _ => {
            *seen = Some(Seen {
                resource_version: version,
                at: Instant::now(),
            });
            Duration::ZERO
        }
    };
    let held_for = spec.lease_duration_seconds.map_or(settings.duration, |s| {
        Duration::from_secs(u64::try_from(s).unwrap_or(0))
    });
    if !holder.is_empty() && unchanged_for <= held_for {
        return Ok(false);
    }
    spec.holder_identity = Some(settings.identity.clone());
    spec.lease_duration_seconds = Some(seconds(settings.duration));
    spec.acquire_time = Some(now.clone());
    spec.renew_time = Some(now);
    spec.lease_transitions = Some(spec.lease_transitions.unwrap_or(0).saturating_add(1));
    tracing::info!(previous = %holder, identity = %settings.identity, "Taking over the Lease");
    conflict_is_false(
        api.replace(&settings.name, &PostParams::default(), &lease)
            .await,
    )
}

/// Gives the Lease up: an empty holder that a follower takes at once.
async fn release(api: &Api<Lease>, settings: &Settings) -> Result<(), kube::Error> {
    let Some(mut lease) = api.get_opt(&settings.name).await? else {
        return Ok(());
    };
    let spec = lease.spec.get_or_insert_with(LeaseSpec::default);
    if spec.holder_identity.as_deref() != Some(settings.identity.as_str()) {
        return Ok(());
    }
    spec.holder_identity = None;
    spec.lease_duration_seconds = Some(1);
    spec.renew_time = Some(MicroTime(Timestamp::now()));
    api.replace(&settings.name, &PostParams::default(), &lease)
        .await
        .map(drop)
}

/// A write that lost a race (409) means another replica moved first: not ours.
fn conflict_is_false(result: Result<Lease, kube::Error>) -> Result<bool, kube::Error> {
    match result {
        Ok(_) => Ok(true),
        Err(kube::Error::Api(status)) if status.code == 409 => Ok(false),
        Err(err) => Err(err),
    }
}

fn seconds(duration: Duration) -> i32 {
    i32::try_from(duration.as_secs().max(1)).unwrap_or(i32::MAX)
}
