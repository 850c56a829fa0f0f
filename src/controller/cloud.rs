//! The cloud-side watch (`run --watch-cloud`): Nova's servers changed since the last answer,
//! one paged list per interval for the whole project, turned into reports of dead servers
//! ([`CloudDeath`]) that start their nodes' grace. Pure: the controller sends the poll and
//! passes each answer in.
//!
//! Clocks: `changes-since` is on Nova's clock. Each poll asks from the newest `updated` time
//! Nova has shown, or from [`CLOCK_SKEW`] before the previous poll on ours, whichever is later:
//! no change is missed while the clocks agree within that (NTP keeps them far closer), and the
//! servers stamped in one busy second are not read again at every poll forever, only for a
//! minute. A Nova clock further behind loses the cloud-side reports, never the node's Ready
//! condition. A death's time, from which the grace
//! runs, is the later of Nova's `updated` plus its precision (a second: Nova keeps whole seconds,
//! rounded) and the moment the previous poll was sent on our clock (a change the previous
//! answer did not show happened after it): a Nova clock behind ours never shortens the grace;
//! one ahead only lengthens it.

use std::collections::BTreeMap;
use std::time::Duration;

use jiff::{SignedDuration, Timestamp};

use crate::backend::ChangedServer;
use fencing::model::{CloudDeath, ServerId};
use fencing::plan::dead_in_list;

/// Nova keeps `updated_at` in whole seconds (a MySQL `DATETIME`, rounded): a change shown at
/// second S happened at most this long after S.
const NOVA_PRECISION: SignedDuration = SignedDuration::from_secs(1);

/// How far Nova's clock may be behind ours for no change to be missed.
pub const CLOCK_SKEW: SignedDuration = SignedDuration::from_secs(60);

/// What the cloud-side watch knows.
#[derive(Debug, Clone)]
pub struct CloudWatch {
    /// How often Nova is asked.
    pub interval: Duration,
    since: Timestamp,
    previous_poll: Timestamp,
    dead: BTreeMap<ServerId, CloudDeath>,
}

impl CloudWatch {
    /// A watch starting at `now`: its first poll asks for the changes of the last
    /// [`CLOCK_SKEW`].
    #[must_use]
    pub fn new(interval: Duration, now: Timestamp) -> Self {
        let start = now.checked_sub(CLOCK_SKEW).unwrap_or(now);
        Self {
            interval,
            since: start,
            previous_poll: start,
            dead: BTreeMap::new(),
        }
    }

    /// Before a poll sent at `now`: after a pause of more than [`CLOCK_SKEW`] (a follower does
    /// not poll), asks for no more than the last [`CLOCK_SKEW`], as a new watch does, and
    /// forgets every report (a server started again during the pause would not show): returns
    /// the servers forgotten. Their nodes are left to their Ready condition.
    pub fn resume(&mut self, now: Timestamp) -> Vec<ServerId> {
        let floor = now.checked_sub(CLOCK_SKEW).unwrap_or(now);
        if self.previous_poll >= floor {
            return Vec::new();
        }
        self.since = self.since.max(floor);
        self.previous_poll = floor;
        std::mem::take(&mut self.dead).into_keys().collect()
    }

    /// The `changes-since` of the next poll.
    #[must_use]
    pub fn since(&self) -> Timestamp {
        self.since
    }

    /// Takes in the answer to a poll sent at `sent` (our clock) and returns the servers whose
    /// report changed: newly dead, or alive again (any state not dead by [`dead_in_list`]).
    pub fn take(&mut self, changed: &[ChangedServer], sent: Timestamp) -> Vec<ServerId> {
        let mut touched = Vec::new();
        for server in changed {
            let id = &server.view.id;
            if dead_in_list(&server.view) {
                if !self.dead.contains_key(id) {
                    self.dead.insert(
                        id.clone(),
                        CloudDeath {
                            server: id.clone(),
                            at: (server.updated + NOVA_PRECISION).max(self.previous_poll),
                        },
                    );
                    touched.push(id.clone());
                }
            } else if self.dead.remove(id).is_some() {
                touched.push(id.clone());
            }
            self.since = self.since.max(server.updated);
        }
        self.since = self.since.max(sent.checked_sub(CLOCK_SKEW).unwrap_or(sent));
        self.previous_poll = sent;
        touched
    }

    /// The report about `server`, if Nova showed it dead and not alive since.
    #[must_use]
    pub fn death(&self, server: &ServerId) -> Option<&CloudDeath> {
        self.dead.get(server)
    }

    /// Forgets a server (its node was deleted).
    pub fn forget(&mut self, server: &ServerId) {
        self.dead.remove(server);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use fencing::model::{MatchRoute, ServerView};

    fn at(secs: i64) -> Timestamp {
        Timestamp::from_second(1_800_000_000 + secs).unwrap()
    }

    fn changed(id: &str, status: &str, power: u8, updated: i64) -> ChangedServer {
        ChangedServer {
            view: ServerView {
                id: ServerId::new(id),
                name: id.to_owned(),
                matched_by: MatchRoute::ProviderId,
                addresses: None,
                status: status.to_owned(),
                power_state: Some(power),
                task_state: None,
                vm_state: None,
                host: None,
                host_state: None,
                host_hidden: false,
            },
            updated: at(updated),
        }
    }

    #[test]
    fn a_server_shut_off_is_reported_until_it_runs_again() {
        let mut watch = CloudWatch::new(Duration::from_secs(2), at(100));
        assert_eq!(watch.since(), at(40));
        let touched = watch.take(&[changed("a", "SHUTOFF", 4, 99)], at(100));
        assert_eq!(touched, [ServerId::new("a")]);
        // Nova's second, plus the second it may have rounded away.
        assert_eq!(watch.death(&ServerId::new("a")).unwrap().at, at(100));
        assert_eq!(watch.since(), at(99), "Nova's own clock from now on");
        // Shown again (changes-since is inclusive): nothing new.
        assert!(
            watch
                .take(&[changed("a", "SHUTOFF", 4, 99)], at(102))
                .is_empty()
        );
        // Started again.
        let touched = watch.take(&[changed("a", "ACTIVE", 1, 104)], at(104));
        assert_eq!(touched, [ServerId::new("a")]);
        assert!(watch.death(&ServerId::new("a")).is_none());
        assert_eq!(watch.since(), at(104));
    }

    #[test]
    fn a_nova_clock_behind_never_shortens_the_grace() {
        let mut watch = CloudWatch::new(Duration::from_secs(2), at(100));
        assert!(watch.take(&[], at(100)).is_empty());
        // Nova says 50 s ago; the previous answer, at 100, did not show it: it died after 100.
        watch.take(&[changed("a", "SHUTOFF", 4, 52)], at(102));
        assert_eq!(watch.death(&ServerId::new("a")).unwrap().at, at(100));
        // Nova's own time, 52: a minute behind ours is still read.
        assert_eq!(watch.since(), at(52));
        // Nothing new for a while: the window moves with our clock, a minute back, so a busy
        // second is not read again at every poll.
        watch.take(&[], at(200));
        assert_eq!(watch.since(), at(140));
    }

    #[test]
    fn after_a_pause_a_poll_asks_for_the_last_minute_only() {
        let mut watch = CloudWatch::new(Duration::from_secs(2), at(100));
        watch.take(&[changed("a", "SHUTOFF", 4, 99)], at(100));
        // Polled again within the minute: nothing forgotten.
        assert!(watch.resume(at(150)).is_empty());
        assert!(watch.death(&ServerId::new("a")).is_some());
        // A follower for an hour, then the actor again: its reports are forgotten (the server
        // may have started meanwhile), and it asks for the last minute only.
        assert_eq!(watch.resume(at(3700)), [ServerId::new("a")]);
        assert!(watch.death(&ServerId::new("a")).is_none());
        assert_eq!(watch.since(), at(3640));
        // A death seen now counts from no earlier than a minute before.
        watch.take(&[changed("b", "SHUTOFF", 4, 3000)], at(3700));
        assert_eq!(watch.death(&ServerId::new("b")).unwrap().at, at(3640));
    }

    #[test]
    fn deleted_and_crashed_servers_are_dead_a_rebooting_one_is_not() {
        let mut watch = CloudWatch::new(Duration::from_secs(2), at(100));
        let mut rebooting = changed("c", "REBOOT", 1, 101);
        rebooting.view.task_state = Some("reboot_started".to_owned());
        let touched = watch.take(
            &[
                changed("a", "DELETED", 0, 101),
                changed("b", "ERROR", 6, 101),
                rebooting,
            ],
            at(102),
        );
        assert_eq!(touched, [ServerId::new("a"), ServerId::new("b")]);
        watch.forget(&ServerId::new("a"));
        assert!(watch.death(&ServerId::new("a")).is_none());
    }
}
