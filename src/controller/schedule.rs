//! When each node is looked at: a timer per node, set from what the Node watch shows, never a
//! fixed poll. Pure: no clock of its own (`now` is passed in), no I/O.
//!
//! - A node not Ready, or whose server the cloud-side watch reported dead, is due when its grace
//!   period has run out (from the earlier of `ready_since` and the report), and again
//!   after each look: soon when the look acted (to see it converge), after the resync interval
//!   when it found nothing to do (the cloud can change without a Kubernetes event), after a
//!   jittered exponential backoff when it failed.
//! - A node that turns Ready again within the grace (a flap) is forgotten: nothing is due.
//! - A Ready node that carries the remediator's progress annotation is due at once (recovery).
//! - A node whose look has started is not due again until that look has ended ([`Schedule::start`],
//!   [`Schedule::looked`]): never two looks at one node at once.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use jiff::{SignedDuration, Timestamp};

use fencing::model::{NodeName, NodeView};

/// How a look at a node ended, for its next due time.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Look {
    /// Steps were run (all done): look again shortly, to see it converge.
    Acted,
    /// Nothing to do, or nothing the remediator may do yet: look again after the resync interval.
    Idle,
    /// A step failed or the cluster could not be read: back off.
    Failed,
    /// The API refused the right (401/403): no retries in quick succession; look again after
    /// the resync interval (an operator may have granted it by then).
    Refused,
}

/// Timing of the schedule.
#[derive(Debug, Clone, Copy)]
pub struct Timing {
    /// The policy's grace period.
    pub grace: Duration,
    /// How soon to look again after acting.
    pub settle: Duration,
    /// How often a node not Ready is looked at again when nothing changed.
    pub resync: Duration,
    /// The first backoff after a failure; doubled each time, up to `resync`.
    pub backoff: Duration,
}

#[derive(Debug, Clone)]
struct Entry {
    /// `ready_since` of the not-Ready spell this entry is about (`None`: a recovery).
    spell: Option<Timestamp>,
    due: Timestamp,
    failures: u32,
}

/// The per-node timers.
#[derive(Debug, Clone)]
pub struct Schedule {
    timing: Timing,
    entries: BTreeMap<NodeName, Entry>,
    /// Nodes whose look has started and not ended.
    looking: BTreeSet<NodeName>,
}

impl Schedule {
    /// An empty schedule.
    #[must_use]
    pub fn new(timing: Timing) -> Self {
        Self {
            timing,
            entries: BTreeMap::new(),
            looking: BTreeSet::new(),
        }
    }

    /// Takes in what the Node watch (and the cloud-side watch) shows of a node at `now`.
    pub fn observe(&mut self, node: &NodeView, now: Timestamp) {
        // Unhealthy since: not Ready, or its server reported dead, whichever came first.
        let death = node.reported_dead().map(|death| death.at);
        let since = match (node.ready.is_ready(), death) {
            (true, None) => None,
            (true, Some(at)) => Some(at),
            (false, at) => Some(at.map_or(node.ready_since, |at| at.min(node.ready_since))),
        };
        let Some(since) = since else {
            if node.progress.is_some() || node.progress_error.is_some() {
                let entry = self.entries.entry(node.name.clone()).or_insert(Entry {
                    spell: None,
                    due: now,
                    failures: 0,
                });
                if entry.spell.is_some() {
                    *entry = Entry {
                        spell: None,
                        due: now,
                        failures: 0,
                    };
                }
            } else {
                self.entries.remove(&node.name);
            }
            return;
        };
        let expiry = since + signed(self.timing.grace) + SignedDuration::from_millis(1);
        match self.entries.get_mut(&node.name) {
            Some(entry) if entry.spell == Some(since) => {}
            _ => {
                self.entries.insert(
                    node.name.clone(),
                    Entry {
                        spell: Some(since),
                        due: expiry,
                        failures: 0,
                    },
                );
            }
        }
    }

    /// Forgets a deleted node.
    pub fn forget(&mut self, node: &NodeName) {
        self.entries.remove(node);
    }

    /// The nodes due at `now` and not being looked at, in name order.
    #[must_use]
    pub fn due(&self, now: Timestamp) -> Vec<NodeName> {
        self.waiting()
            .filter(|(_, entry)| entry.due <= now)
            .map(|(name, _)| name.clone())
            .collect()
    }

    /// When the next node not being looked at is due, if any.
    #[must_use]
    pub fn next_due(&self) -> Option<Timestamp> {
        self.waiting().map(|(_, entry)| entry.due).min()
    }

    fn waiting(&self) -> impl Iterator<Item = (&NodeName, &Entry)> {
        self.entries
            .iter()
            .filter(|(name, _)| !self.looking.contains(*name))
    }

    /// A look at `node` starts: it is not due again until [`Schedule::looked`].
    pub fn start(&mut self, node: &NodeName) {
        self.looking.insert(node.clone());
    }

    /// How many nodes are tracked as not Ready.
    #[must_use]
    pub fn not_ready(&self) -> usize {
        self.entries.values().filter(|e| e.spell.is_some()).count()
    }

    /// Records how a look at `node` ended at `now`; `jitter` in `0.0..1.0` spreads backoffs.
    pub fn looked(&mut self, node: &NodeName, look: Look, now: Timestamp, jitter: f64) {
        self.looking.remove(node);
        let Some(entry) = self.entries.get_mut(node) else {
            return;
        };
        let wait = match look {
            Look::Acted => {
                entry.failures = 0;
                self.timing.settle
            }
            Look::Idle | Look::Refused => {
                entry.failures = 0;
                self.timing.resync
            }
            Look::Failed => {
                entry.failures = entry.failures.saturating_add(1);
                let exponent = entry.failures.saturating_sub(1).min(16);
                let base = self
                    .timing
                    .backoff
                    .saturating_mul(1 << exponent)
                    .min(self.timing.resync);
                base.mul_f64(1.0 + jitter.clamp(0.0, 1.0) / 2.0)
            }
        };
        entry.due = now + signed(wait);
    }
}

fn signed(duration: Duration) -> SignedDuration {
    SignedDuration::try_from(duration).unwrap_or(SignedDuration::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;
    use fencing::model::{Progress, Readiness, StorageView};

    fn at(secs: i64) -> Timestamp {
        Timestamp::from_second(1_800_000_000 + secs).unwrap()
    }

    fn node(name: &str, ready: Readiness, since: i64) -> NodeView {
        NodeView {
            name: NodeName::new(name),
            uid: None,
            ready,
            ready_since: at(since),
            taints: Vec::new(),
            provider_id: None,
            addresses: Vec::new(),
            zone: None,
            progress: None,
            progress_error: None,
            satellite: None,
            cloud_death: None,
            kubelet_renewed: None,
            storage: StorageView::Unobserved,
        }
    }

    fn schedule() -> Schedule {
        Schedule::new(Timing {
            grace: Duration::from_secs(30),
            settle: Duration::from_secs(1),
            resync: Duration::from_secs(60),
            backoff: Duration::from_secs(2),
        })
    }

    #[test]
    fn a_node_is_due_just_after_its_grace_runs_out_not_before() {
        let mut s = schedule();
        s.observe(&node("n1", Readiness::Unknown, 0), at(5));
        assert!(s.due(at(30)).is_empty());
        assert_eq!(s.next_due(), Some(at(30) + SignedDuration::from_millis(1)));
        assert_eq!(s.due(at(31)), [NodeName::new("n1")]);
        assert_eq!(s.not_ready(), 1);
        // The same spell seen again does not reset the timer.
        s.looked(&NodeName::new("n1"), Look::Idle, at(31), 0.0);
        s.observe(&node("n1", Readiness::Unknown, 0), at(32));
        assert_eq!(s.next_due(), Some(at(91)));
    }

    #[test]
    fn a_ready_node_reported_dead_is_due_when_the_grace_of_the_report_runs_out() {
        let mut s = schedule();
        let mut n1 = node("n1", Readiness::True, 0);
        n1.provider_id = Some("openstack:///s1".to_owned());
        s.observe(&n1, at(100));
        assert_eq!(s.next_due(), None);
        n1.cloud_death = Some(fencing::model::CloudDeath {
            server: fencing::model::ServerId::new("s1"),
            at: at(100),
        });
        s.observe(&n1, at(101));
        assert_eq!(s.due(at(130)), Vec::<NodeName>::new());
        assert_eq!(s.due(at(131)), [NodeName::new("n1")]);
        // The kubelet's heartbeat expires later: the earlier report still counts.
        n1.ready = Readiness::Unknown;
        n1.ready_since = at(140);
        s.observe(&n1, at(140));
        assert_eq!(s.due(at(131)), [NodeName::new("n1")]);
        // Running again: a Ready node without a report is forgotten.
        n1.ready = Readiness::True;
        n1.cloud_death = None;
        s.observe(&n1, at(150));
        assert_eq!(s.next_due(), None);
    }

    #[test]
    fn a_node_being_looked_at_is_not_due_again_until_its_look_ends() {
        let mut s = schedule();
        let n1 = NodeName::new("n1");
        s.observe(&node("n1", Readiness::Unknown, 0), at(0));
        s.observe(&node("n2", Readiness::Unknown, 10), at(10));
        s.start(&n1);
        assert_eq!(s.due(at(100)), [NodeName::new("n2")]);
        assert_eq!(s.next_due(), Some(at(40) + SignedDuration::from_millis(1)));
        // A new spell seen meanwhile does not start a second look either.
        s.observe(&node("n1", Readiness::False, 50), at(50));
        assert_eq!(s.due(at(100)), [NodeName::new("n2")]);
        s.looked(&n1, Look::Idle, at(100), 0.0);
        assert_eq!(s.due(at(200)), [n1, NodeName::new("n2")]);
    }

    #[test]
    fn a_flapping_node_is_forgotten() {
        let mut s = schedule();
        s.observe(&node("n1", Readiness::False, 0), at(1));
        s.observe(&node("n1", Readiness::True, 10), at(10));
        assert_eq!(s.next_due(), None);
        assert!(s.due(at(100)).is_empty());
        // Not Ready again: a new spell, a new grace.
        s.observe(&node("n1", Readiness::False, 20), at(20));
        assert_eq!(s.next_due(), Some(at(50) + SignedDuration::from_millis(1)));
    }

    #[test]
    fn a_ready_node_with_a_progress_record_is_due_at_once_for_recovery() {
        let mut s = schedule();
        let mut recovered = node("n1", Readiness::True, 0);
        recovered.progress = Some(Progress::default());
        s.observe(&recovered, at(7));
        assert_eq!(s.due(at(7)), [NodeName::new("n1")]);
        assert_eq!(s.not_ready(), 0);
        recovered.progress = None;
        s.observe(&recovered, at(8));
        assert_eq!(s.next_due(), None);
    }

    #[test]
    fn failures_back_off_exponentially_with_jitter_up_to_the_resync() {
        let mut s = schedule();
        let n1 = NodeName::new("n1");
        s.observe(&node("n1", Readiness::Unknown, 0), at(0));
        let mut waits = Vec::new();
        for _ in 0..7 {
            s.looked(&n1, Look::Failed, at(100), 0.0);
            waits.push(s.next_due().unwrap().duration_since(at(100)).as_secs());
        }
        assert_eq!(waits, [2, 4, 8, 16, 32, 60, 60]);
        s.looked(&n1, Look::Failed, at(100), 0.999);
        assert!(s.next_due().unwrap().duration_since(at(100)).as_secs() >= 89);
        s.looked(&n1, Look::Acted, at(100), 0.0);
        assert_eq!(s.next_due(), Some(at(101)));
        // Refused (403): no quick retries, the resync interval.
        s.looked(&n1, Look::Refused, at(100), 0.0);
        assert_eq!(s.next_due(), Some(at(160)));
        s.looked(&n1, Look::Failed, at(200), 0.0);
        assert_eq!(s.next_due(), Some(at(202)));
    }
}
