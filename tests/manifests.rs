//! The manifests grant exactly the Kubernetes permissions the code uses: no more (least
//! privilege), no less (a missing verb would fail in production, not in the emulator).

use std::collections::BTreeSet;
use std::path::Path;

use cinder_remediator::cluster::PERMISSIONS;
use serde::Deserialize;

#[derive(Deserialize)]
struct Document {
    kind: String,
    #[serde(default)]
    rules: Vec<Rule>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Rule {
    api_groups: Vec<String>,
    resources: Vec<String>,
    verbs: Vec<String>,
}

#[test]
fn the_cluster_role_grants_exactly_what_the_code_uses() {
    let text =
        std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("manifests/rbac.yaml"))
            .unwrap();
    let documents: Vec<Document> = serde_saphyr::from_multiple(&text).unwrap();
    let kinds: Vec<&str> = documents.iter().map(|d| d.kind.as_str()).collect();
    assert_eq!(
        kinds,
        ["ServiceAccount", "ClusterRole", "ClusterRoleBinding"]
    );
    let granted: BTreeSet<(String, String, String)> = documents
        .iter()
        .flat_map(|d| &d.rules)
        .flat_map(|rule| {
            rule.api_groups.iter().flat_map(move |group| {
                rule.resources.iter().flat_map(move |resource| {
                    rule.verbs
                        .iter()
                        .map(move |verb| (group.clone(), resource.clone(), verb.clone()))
                })
            })
        })
        .collect();
    let used: BTreeSet<(String, String, String)> = PERMISSIONS
        .iter()
        .flat_map(|(group, resource, verbs)| {
            verbs.iter().map(move |verb| {
                (
                    (*group).to_owned(),
                    (*resource).to_owned(),
                    (*verb).to_owned(),
                )
            })
        })
        .collect();
    assert_eq!(granted, used);
}
