//! Tests of the fencing core: table tests (one per safety rule and verdict row) and proptest
//! properties over generated observations.

mod apply;
mod builder;
mod cloud_side;
mod dead_host;
mod evidence;
mod linstor;
mod properties;
mod rules;
mod seed;
mod verdicts;

use crate::model::{NodeName, Observation};
use crate::plan::{Action, Plan, Policy, Skip, plan};

/// The manual commands of a plan's steps, in order: a readable summary of what it does.
fn commands(plan: &Plan) -> Vec<String> {
    plan.steps
        .iter()
        .map(|s| s.action.manual_command())
        .collect()
}

/// `(server, volume)` of every release.
fn releases(plan: &Plan) -> Vec<(String, String)> {
    plan.steps
        .iter()
        .filter_map(|s| match &s.action {
            Action::ReleaseVolume { server, volume, .. } => {
                Some((server.to_string(), volume.to_string()))
            }
            _ => None,
        })
        .collect()
}

fn skip_of<'p>(plan: &'p Plan, node: &str) -> Option<&'p Skip> {
    plan.skipped
        .iter()
        .find(|s| s.node == NodeName::new(node))
        .map(|s| &s.skip)
}

fn plan_default(observation: &Observation) -> Plan {
    plan(observation, &Policy::default())
}
