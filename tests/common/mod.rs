//! What several test crates share: reading what an RBAC role grants.

use std::collections::BTreeSet;

use serde_json::Value;

/// (API group, resource, verb).
pub type Grant = (String, String, String);

/// Every (API group, resource, verb) the `rules` of a Role or ClusterRole grant.
///
/// # Panics
/// When `rules` is not a list of rules with lists of strings (a malformed manifest).
#[must_use]
pub fn grants(rules: &Value) -> BTreeSet<Grant> {
    let strings = |v: &Value| -> Vec<String> {
        v.as_array()
            .expect("a list")
            .iter()
            .map(|s| s.as_str().expect("a string").to_owned())
            .collect()
    };
    let mut granted = BTreeSet::new();
    for rule in rules.as_array().expect("rules") {
        for group in strings(&rule["apiGroups"]) {
            for resource in strings(&rule["resources"]) {
                for verb in strings(&rule["verbs"]) {
                    granted.insert((group.clone(), resource.clone(), verb));
                }
            }
        }
    }
    granted
}
