//! The emulated API server's authentication and authorization, checked as a client sees them:
//! HTTPS only; the admin token, ServiceAccount tokens from the TokenRequest API and their limits;
//! 401 for a request without a valid token; RBAC evaluated from the ClusterRoles, Roles and
//! bindings it holds, as Kubernetes' RBAC authorizer does; the exact 403 Status a real API
//! server sends; `SelfSubjectAccessReview`; and what the request log keeps of each decision.

use std::path::Path;

use k8s_openapi::api::authentication::v1::{TokenRequest, TokenRequestSpec};
use k8s_openapi::api::core::v1::{Node, Pod, ServiceAccount};
use k8s_openapi::api::rbac::v1::{ClusterRole, ClusterRoleBinding, Role, RoleBinding};
use kube::api::{Api, DeleteParams, ListParams, PostParams};
use kube::{Client, Resource};
use serde_json::{Value, json};
use sim::kubernetes::ADMIN_TOKEN;
use sim::{Running, Scenario};

const NAMESPACE: &str = "team";
const ACCOUNT: &str = "robot";
const USER: &str = "system:serviceaccount:team:robot";
const NODE: &str = "node-a";

/// Two nodes, a pod in `team` and one in `default`, and the ServiceAccount `team/robot` with
/// no permission yet.
async fn start() -> (Running, Client) {
    let text = "name: rbac
kubernetes:
  nodes: [{name: node-a}, {name: node-b}]
  pods:
    - {name: p, namespace: team, node: node-a}
    - {name: q, namespace: default, node: node-a}
";
    let scenario = Scenario::parse(text, Path::new("rbac.yaml")).unwrap();
    let running = sim::serve(&scenario).await.unwrap();
    let admin = client_as(&running, ADMIN_TOKEN);
    let account: ServiceAccount =
        serde_json::from_value(json!({"metadata": {"name": ACCOUNT}})).unwrap();
    Api::<ServiceAccount>::namespaced(admin.clone(), NAMESPACE)
        .create(&PostParams::default(), &account)
        .await
        .unwrap();
    (running, admin)
}

fn client_as(running: &Running, token: &str) -> Client {
    let mut config = kube::Config::new(running.endpoints.kubernetes.parse().unwrap());
    config.root_cert = Some(vec![running.kubernetes_ca.clone()]);
    config.auth_info.token = Some(token.to_owned().into());
    Client::try_from(config).unwrap()
}

/// Plain HTTPS to the API server, with `token` when given.
async fn send(
    running: &Running,
    method: reqwest::Method,
    path: &str,
    token: Option<&str>,
) -> (u16, Value) {
    let ca = reqwest::Certificate::from_der(&running.kubernetes_ca).unwrap();
    let http = reqwest::Client::builder()
        .add_root_certificate(ca)
        .build()
        .unwrap();
    let mut request = http.request(method, format!("{}{path}", running.endpoints.kubernetes));
    if let Some(token) = token {
        request = request.bearer_auth(token);
    }
    let response = request.send().await.unwrap();
    let status = response.status().as_u16();
    (status, response.json().await.unwrap_or(Value::Null))
}

/// A token of `team/robot`, issued by the TokenRequest API.
async fn token(admin: &Client, spec: TokenRequestSpec) -> Result<TokenRequest, kube::Error> {
    Api::<ServiceAccount>::namespaced(admin.clone(), NAMESPACE)
        .create_token_request(
            ACCOUNT,
            &PostParams::default(),
            &TokenRequest {
                spec,
                ..TokenRequest::default()
            },
        )
        .await
}

async fn robot_token(admin: &Client) -> String {
    token(admin, TokenRequestSpec::default())
        .await
        .unwrap()
        .status
        .unwrap()
        .token
}

async fn create<K>(api: Api<K>, object: Value)
where
    K: Resource + Clone + std::fmt::Debug + serde::Serialize + serde::de::DeserializeOwned,
{
    let object: K = serde_json::from_value(object).unwrap();
    api.create(&PostParams::default(), &object).await.unwrap();
}

/// A ClusterRole `name` with `rules`.
async fn cluster_role(admin: &Client, name: &str, rules: Value) {
    let role = json!({"metadata": {"name": name}, "rules": rules});
    create(Api::<ClusterRole>::all(admin.clone()), role).await;
}

/// A ClusterRoleBinding of the ClusterRole `role` to `subject`.
async fn bind_cluster(admin: &Client, role: &str, subject: Value) {
    let binding = json!({
        "metadata": {"name": format!("{role}-binding")},
        "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": role},
        "subjects": [subject],
    });
    create(Api::<ClusterRoleBinding>::all(admin.clone()), binding).await;
}

/// A RoleBinding in `namespace` of the role `kind`/`role` to `subject`.
async fn bind(admin: &Client, namespace: &str, kind: &str, role: &str, subject: Value) {
    let binding = json!({
        "metadata": {"name": format!("{role}-binding")},
        "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": kind, "name": role},
        "subjects": [subject],
    });
    create(
        Api::<RoleBinding>::namespaced(admin.clone(), namespace),
        binding,
    )
    .await;
}

fn robot_subject() -> Value {
    json!({"kind": "ServiceAccount", "name": ACCOUNT, "namespace": NAMESPACE})
}

/// The status code of a kube call (200 for a success).
fn code<T>(result: Result<T, kube::Error>) -> u16 {
    match result {
        Ok(_) => 200,
        Err(kube::Error::Api(status)) => status.code,
        Err(other) => panic!("not an API answer: {other}"),
    }
}

#[tokio::test]
async fn the_api_server_speaks_https_and_wants_a_valid_token() {
    let (running, admin) = start().await;
    assert!(running.endpoints.kubernetes.starts_with("https://"));
    let unauthorized = json!({
        "kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
        "message": "Unauthorized", "reason": "Unauthorized", "code": 401,
    });
    for token in [None, Some("not-a-token"), Some("")] {
        let (status, body) = send(&running, reqwest::Method::GET, "/api/v1/nodes", token).await;
        assert_eq!((status, &body), (401, &unauthorized), "{token:?}");
    }
    // Even discovery: this API server lets no anonymous request in.
    let (status, _) = send(&running, reqwest::Method::GET, "/version", None).await;
    assert_eq!(status, 401);
    // The admin is a member of system:masters: allowed whatever RBAC says, even with the
    // binding of cluster-admin gone.
    Api::<ClusterRoleBinding>::all(admin.clone())
        .delete("cluster-admin", &DeleteParams::default())
        .await
        .unwrap();
    let nodes = Api::<Node>::all(admin.clone())
        .list(&ListParams::default())
        .await;
    assert_eq!(nodes.unwrap().items.len(), 2);
    running.shutdown().await;
}

#[tokio::test]
async fn a_token_request_issues_a_token_of_the_service_account() {
    let (running, admin) = start().await;
    let issued = token(&admin, TokenRequestSpec::default()).await.unwrap();
    assert_eq!(issued.metadata.name.as_deref(), Some(ACCOUNT));
    assert_eq!(issued.metadata.namespace.as_deref(), Some(NAMESPACE));
    assert_eq!(issued.spec.expiration_seconds, Some(3600));
    assert_eq!(
        issued.spec.audiences,
        ["https://kubernetes.default.svc.cluster.local"]
    );
    let status = issued.status.unwrap();
    let left = status
        .expiration_timestamp
        .0
        .duration_since(jiff::Timestamp::now());
    assert!(
        (3590..=3600).contains(&left.as_secs()),
        "expires in {left:?}"
    );
    // The token authenticates as the ServiceAccount: discovery, as for every user, but no node.
    let robot = client_as(&running, &status.token);
    assert!(robot.apiserver_version().await.is_ok());
    let refused = Api::<Node>::all(robot).list(&ListParams::default()).await;
    assert_eq!(code(refused), 403);
    let log = running.requests();
    let access = log.last().unwrap().access.as_ref().unwrap();
    assert_eq!(access.user.name, USER);
    assert_eq!(
        access.user.groups,
        [
            "system:serviceaccounts",
            "system:serviceaccounts:team",
            "system:authenticated"
        ]
    );

    // No token for a ServiceAccount that does not exist, nor for under ten minutes.
    let missing = Api::<ServiceAccount>::namespaced(admin.clone(), NAMESPACE)
        .create_token_request("nobody", &PostParams::default(), &TokenRequest::default())
        .await;
    assert_eq!(code(missing), 404);
    let short = TokenRequestSpec {
        expiration_seconds: Some(599),
        ..TokenRequestSpec::default()
    };
    match token(&admin, short).await {
        Err(kube::Error::Api(status)) => {
            assert_eq!((status.code, status.reason.as_str()), (422, "Invalid"));
            assert_eq!(
                status.message,
                "TokenRequest.authentication.k8s.io \"\" is invalid: spec.expirationSeconds: Invalid value: 599: may not specify a duration less than 10 minutes"
            );
        }
        other => panic!("a 599 s token: {other:?}"),
    }
    running.shutdown().await;
}

#[tokio::test]
async fn a_token_is_refused_for_another_audience_or_a_service_account_gone() {
    let (running, admin) = start().await;
    let other = TokenRequestSpec {
        audiences: vec!["vault".to_owned()],
        ..TokenRequestSpec::default()
    };
    let vault = token(&admin, other).await.unwrap().status.unwrap().token;
    let (status, _) = send(&running, reqwest::Method::GET, "/version", Some(&vault)).await;
    assert_eq!(status, 401, "a token for another audience");

    let token = robot_token(&admin).await;
    let (status, _) = send(&running, reqwest::Method::GET, "/version", Some(&token)).await;
    assert_eq!(status, 200);
    let accounts = Api::<ServiceAccount>::namespaced(admin.clone(), NAMESPACE);
    accounts
        .delete(ACCOUNT, &DeleteParams::default())
        .await
        .unwrap();
    let (status, _) = send(&running, reqwest::Method::GET, "/version", Some(&token)).await;
    assert_eq!(status, 401, "the ServiceAccount is gone");
    // Re-created under the same name, it is another account: the old token stays refused.
    let account: ServiceAccount =
        serde_json::from_value(json!({"metadata": {"name": ACCOUNT}})).unwrap();
    accounts
        .create(&PostParams::default(), &account)
        .await
        .unwrap();
    let (status, _) = send(&running, reqwest::Method::GET, "/version", Some(&token)).await;
    assert_eq!(status, 401, "the ServiceAccount was re-created");
    running.shutdown().await;
}

#[tokio::test]
async fn a_refusal_is_the_api_servers_403() {
    let (running, admin) = start().await;
    let token = robot_token(&admin).await;
    let delete = reqwest::Method::DELETE;
    let (status, body) = send(
        &running,
        delete.clone(),
        "/api/v1/nodes/node-a",
        Some(&token),
    )
    .await;
    assert_eq!(status, 403);
    assert_eq!(
        body,
        json!({
            "kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
            "message": format!("nodes \"node-a\" is forbidden: User \"{USER}\" cannot delete resource \"nodes\" in API group \"\" at the cluster scope"),
            "reason": "Forbidden", "details": {"name": "node-a", "kind": "nodes"}, "code": 403,
        })
    );
    let path = "/apis/storage.k8s.io/v1/volumeattachments";
    let (_, body) = send(&running, reqwest::Method::GET, path, Some(&token)).await;
    assert_eq!(
        body["message"],
        format!(
            "volumeattachments.storage.k8s.io is forbidden: User \"{USER}\" cannot list resource \"volumeattachments\" in API group \"storage.k8s.io\" at the cluster scope"
        )
    );
    assert_eq!(
        body["details"],
        json!({"group": "storage.k8s.io", "kind": "volumeattachments"})
    );
    let path = "/api/v1/namespaces/team/pods/p/status";
    let (_, body) = send(&running, reqwest::Method::PATCH, path, Some(&token)).await;
    assert_eq!(
        body["message"],
        format!(
            "pods \"p\" is forbidden: User \"{USER}\" cannot patch resource \"pods/status\" in API group \"\" in the namespace \"team\""
        )
    );
    // Outside the API's resources: the path.
    let (status, body) = send(&running, reqwest::Method::GET, "/metrics", Some(&token)).await;
    assert_eq!(status, 403);
    assert_eq!(
        body["message"],
        format!("forbidden: User \"{USER}\" cannot get path \"/metrics\"")
    );
    // A binding whose role is missing is named after `RBAC:`.
    bind_cluster(&admin, "not-there", robot_subject()).await;
    let (_, body) = send(&running, delete, "/api/v1/nodes/node-a", Some(&token)).await;
    assert_eq!(
        body["message"],
        format!(
            "nodes \"node-a\" is forbidden: User \"{USER}\" cannot delete resource \"nodes\" in API group \"\" at the cluster scope: RBAC: clusterrole.rbac.authorization.k8s.io \"not-there\" not found"
        )
    );
    // The request log keeps who asked what, and the decision.
    let log = running.requests();
    let refused = log.last().unwrap();
    assert_eq!(refused.status, 403);
    let access = refused.access.as_ref().unwrap();
    assert!(!access.allowed);
    assert_eq!(access.attributes.verb, "delete");
    let resource = access.attributes.resource.as_ref().unwrap();
    assert_eq!(
        (
            resource.group.as_str(),
            resource.rule_resource(),
            resource.name.as_str()
        ),
        ("", "nodes".to_owned(), "node-a")
    );
    running.shutdown().await;
}

#[tokio::test]
async fn rules_match_verbs_groups_resources_subresources_and_names_as_rbac_does() {
    let (running, admin) = start().await;
    let token = robot_token(&admin).await;
    let robot = client_as(&running, &token);
    let nodes = Api::<Node>::all(robot.clone());
    cluster_role(
        &admin,
        "nodes-named",
        json!([
            {"apiGroups": [""], "resources": ["nodes"], "verbs": ["get", "list"], "resourceNames": [NODE]},
            {"apiGroups": ["*"], "resources": ["*/status"], "verbs": ["get"]},
        ]),
    )
    .await;
    bind_cluster(&admin, "nodes-named", robot_subject()).await;
    assert_eq!(code(nodes.get(NODE).await), 200);
    assert_eq!(code(nodes.get("node-b").await), 403, "resourceNames");
    // A list names no object, unless its field selector names one.
    assert_eq!(code(nodes.list(&ListParams::default()).await), 403);
    let one = ListParams::default().fields("metadata.name=node-a");
    assert_eq!(code(nodes.list(&one).await), 200);
    // `*/status` is the status of any resource, not the resource.
    assert_eq!(code(nodes.get_status("node-b").await), 200);
    let pods = Api::<Pod>::namespaced(robot.clone(), NAMESPACE);
    assert_eq!(code(pods.get_status("p").await), 200);
    assert_eq!(code(pods.get("p").await), 403);
    // `list` is not `watch` (a list with watch=true).
    let (status, _) = send(
        &running,
        reqwest::Method::GET,
        "/api/v1/nodes?watch=true&fieldSelector=metadata.name%3Dnode-a",
        Some(&token),
    )
    .await;
    assert_eq!(status, 403, "watch");

    // A ClusterRole bound in a namespace grants in that namespace only; a ServiceAccount subject
    // without a namespace is the binding's; `*` is any verb.
    cluster_role(
        &admin,
        "pods-all",
        json!([{"apiGroups": [""], "resources": ["pods"], "verbs": ["*"]}]),
    )
    .await;
    bind(
        &admin,
        NAMESPACE,
        "ClusterRole",
        "pods-all",
        json!({"kind": "ServiceAccount", "name": ACCOUNT}),
    )
    .await;
    assert_eq!(code(pods.list(&ListParams::default()).await), 200);
    let elsewhere = Api::<Pod>::namespaced(robot.clone(), "default");
    assert_eq!(code(elsewhere.list(&ListParams::default()).await), 403);
    // `delete` is not `deletecollection`: both come with `*`.
    let (status, _) = send(
        &running,
        reqwest::Method::DELETE,
        "/api/v1/namespaces/team/pods",
        Some(&token),
    )
    .await;
    assert_eq!(status, 200, "deletecollection under *");

    // A Role, by group: every ServiceAccount of the namespace.
    let role = json!({"metadata": {"name": "sa-reader"},
        "rules": [{"apiGroups": [""], "resources": ["serviceaccounts"], "verbs": ["get"]}]});
    create(Api::<Role>::namespaced(admin.clone(), NAMESPACE), role).await;
    bind(
        &admin,
        NAMESPACE,
        "Role",
        "sa-reader",
        json!({"kind": "Group", "name": "system:serviceaccounts:team"}),
    )
    .await;
    let accounts = Api::<ServiceAccount>::namespaced(robot.clone(), NAMESPACE);
    assert_eq!(code(accounts.get(ACCOUNT).await), 200);
    // The wrong API group matches nothing.
    let (status, _) = send(
        &running,
        reqwest::Method::GET,
        "/apis/apps/v1/namespaces/team/pods",
        Some(&token),
    )
    .await;
    assert_eq!(status, 403, "pods in another API group");
    running.shutdown().await;
}

#[tokio::test]
async fn self_subject_access_reviews_answer_what_the_requester_may_do() {
    let (running, admin) = start().await;
    let token = robot_token(&admin).await;
    cluster_role(
        &admin,
        "node-reader",
        json!([{"apiGroups": [""], "resources": ["nodes"], "verbs": ["list"]}]),
    )
    .await;
    bind_cluster(&admin, "node-reader", robot_subject()).await;
    let ca = reqwest::Certificate::from_der(&running.kubernetes_ca).unwrap();
    let http = reqwest::Client::builder()
        .add_root_certificate(ca)
        .build()
        .unwrap();
    let review = async |attributes: Value| -> Value {
        let url = format!(
            "{}/apis/authorization.k8s.io/v1/selfsubjectaccessreviews",
            running.endpoints.kubernetes
        );
        let response = http
            .post(url)
            .bearer_auth(&token)
            .json(&json!({"apiVersion": "authorization.k8s.io/v1", "kind": "SelfSubjectAccessReview", "spec": attributes}))
            .send()
            .await
            .unwrap();
        assert_eq!(response.status().as_u16(), 201);
        response.json::<Value>().await.unwrap()["status"].clone()
    };
    let list = review(json!({"resourceAttributes": {"verb": "list", "resource": "nodes"}})).await;
    assert_eq!(
        list,
        json!({"allowed": true, "reason": "RBAC: allowed by ClusterRoleBinding \"node-reader-binding\" of ClusterRole \"node-reader\" to ServiceAccount \"robot/team\""})
    );
    let delete =
        review(json!({"resourceAttributes": {"verb": "delete", "resource": "nodes"}})).await;
    assert_eq!(delete, json!({"allowed": false}));
    let version =
        review(json!({"nonResourceAttributes": {"verb": "get", "path": "/version"}})).await;
    assert_eq!(version["allowed"], true);
    running.shutdown().await;
}

#[tokio::test]
async fn every_user_may_read_discovery_and_its_tables_list_the_rbac_kinds() {
    let (running, admin) = start().await;
    let token = robot_token(&admin).await;
    for path in [
        "/api",
        "/api/v1",
        "/apis",
        "/apis/rbac.authorization.k8s.io/v1",
        "/version",
    ] {
        let (status, _) = send(&running, reqwest::Method::GET, path, Some(&token)).await;
        assert_eq!(status, 200, "{path}");
    }
    // OpenAPI v3: each kind's PATCH takes `fieldValidation`, so kubectl validates on the server.
    let (status, root) = send(&running, reqwest::Method::GET, "/openapi/v3", Some(&token)).await;
    assert_eq!(status, 200);
    let url = root["paths"]["api/v1"]["serverRelativeURL"]
        .as_str()
        .unwrap();
    let (_, document) = send(&running, reqwest::Method::GET, url, Some(&token)).await;
    let patch = &document["paths"]["/api/v1/namespaces/{namespace}/secrets/{name}"]["patch"];
    assert_eq!(
        patch["x-kubernetes-group-version-kind"],
        json!({"group": "", "version": "v1", "kind": "Secret"})
    );
    assert!(
        patch["parameters"]
            .as_array()
            .unwrap()
            .iter()
            .any(|p| p["name"] == "fieldValidation" && p["in"] == "query"),
        "{patch}"
    );
    let (_, core) = send(&running, reqwest::Method::GET, "/api/v1", Some(&token)).await;
    let token_subresource = core["resources"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["name"] == "serviceaccounts/token")
        .expect("serviceaccounts/token in discovery");
    assert_eq!(
        (
            &token_subresource["group"],
            &token_subresource["kind"],
            &token_subresource["verbs"]
        ),
        (
            &json!("authentication.k8s.io"),
            &json!("TokenRequest"),
            &json!(["create"])
        )
    );
    let (_, groups) = send(&running, reqwest::Method::GET, "/apis", Some(ADMIN_TOKEN)).await;
    let names: Vec<&str> = groups["groups"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|g| g["name"].as_str())
        .collect();
    for group in ["policy", "rbac.authorization.k8s.io"] {
        assert!(names.contains(&group), "{group} in {names:?}");
    }
    // The bootstrap roles every API server has.
    let roles = Api::<ClusterRole>::all(admin.clone())
        .list(&ListParams::default())
        .await
        .unwrap();
    let names: Vec<String> = roles
        .items
        .iter()
        .filter_map(|r| r.metadata.name.clone())
        .collect();
    assert_eq!(
        names,
        [
            "cluster-admin",
            "system:basic-user",
            "system:discovery",
            "system:public-info-viewer"
        ]
    );
    // Tables, as `kubectl get` prints them.
    let table = async |path: &str| -> Value {
        let ca = reqwest::Certificate::from_der(&running.kubernetes_ca).unwrap();
        reqwest::Client::builder()
            .add_root_certificate(ca)
            .build()
            .unwrap()
            .get(format!("{}{path}", running.endpoints.kubernetes))
            .bearer_auth(ADMIN_TOKEN)
            .header("Accept", "application/json;as=Table;v=v1;g=meta.k8s.io")
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap()
    };
    let columns = |table: &Value| -> Vec<String> {
        table["columnDefinitions"]
            .as_array()
            .unwrap()
            .iter()
            .map(|c| c["name"].as_str().unwrap().to_owned())
            .collect()
    };
    let bindings =
        table("/apis/rbac.authorization.k8s.io/v1/clusterrolebindings/system:discovery").await;
    assert_eq!(
        columns(&bindings),
        ["Name", "Role", "Age", "Users", "Groups", "ServiceAccounts"]
    );
    let cells = &bindings["rows"][0]["cells"];
    assert_eq!(cells[1], "ClusterRole/system:discovery");
    assert_eq!(cells[4], "system:authenticated");
    let accounts = table("/api/v1/namespaces/team/serviceaccounts").await;
    assert_eq!(columns(&accounts), ["Name", "Secrets", "Age"]);
    assert_eq!(accounts["rows"][0]["cells"][1], 0);
    let roles = table("/apis/rbac.authorization.k8s.io/v1/clusterroles/cluster-admin").await;
    assert_eq!(columns(&roles), ["Name", "Created At"]);
    running.shutdown().await;
}
