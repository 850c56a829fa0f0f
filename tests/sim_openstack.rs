//! Contract and behaviour tests of the emulated Keystone, Nova and Cinder.
//!
//! Contract tests compare each response with the official API sample of the same microversion
//! (`tests/fixtures/openstack`, see `tests/fixtures/NOTICE`): every key of the sample must be
//! there, recursively (list elements against the sample's element shape), and no key the sample
//! lacks, except the few listed with a reason. Values may differ. Behaviour tests drive the
//! rules: Nova's detach checks, Cinder's refusals, time, faults, microversions, paging. The last
//! test authenticates and reads with the production client library, `osauth`.

use std::collections::BTreeSet;
use std::path::Path;
use std::time::Duration;

use reqwest::{Method, StatusCode};
use serde_json::{Value, json};
use sim::{self, Running, Scenario};

const NODE_A: &str = "11111111-1111-4111-8111-111111111111";
const NODE_B: &str = "22222222-2222-4222-8222-222222222222";
const NODE_ERROR: &str = "33333333-3333-4333-8333-333333333333";
const NODE_DEAD: &str = "44444444-4444-4444-8444-444444444444";
const NODE_GONE: &str = "55555555-5555-4555-8555-555555555555";
const NODE_SUSPENDED: &str = "66666666-6666-4666-8666-666666666666";
const PVC_B: &str = "aaaaaaaa-0000-4000-8000-00000000000b";
const ROOT_B: &str = "aaaaaaaa-0000-4000-8000-0000000000f0";
const PVC_ERROR: &str = "aaaaaaaa-0000-4000-8000-00000000000e";
const PVC_DEAD: &str = "aaaaaaaa-0000-4000-8000-00000000000d";
const PVC_GONE: &str = "aaaaaaaa-0000-4000-8000-0000000000a0";
const PVC_FREE: &str = "aaaaaaaa-0000-4000-8000-0000000000ff";
const PVC_STUCK: &str = "aaaaaaaa-0000-4000-8000-00000000005c";
const PVC_SUSPENDED: &str = "aaaaaaaa-0000-4000-8000-000000000055";
const PVC_MULTI: &str = "aaaaaaaa-0000-4000-8000-0000000000aa";

/// One cloud with a server in each interesting state; detaches take 0.3 s.
const CLOUD: &str = r#"
name: openstack-contract
openstack:
  compute_hosts:
    - {name: compute-1, state: up}
    - {name: compute-2, state: up}
    - {name: compute-dead, state: down}
  servers:
    - {id: 11111111-1111-4111-8111-111111111111, name: node-a, status: ACTIVE, host: compute-1, addresses: [10.0.0.11]}
    - {id: 22222222-2222-4222-8222-222222222222, name: node-b, status: SHUTOFF, host: compute-2, addresses: [10.0.0.12]}
    - {id: 33333333-3333-4333-8333-333333333333, name: node-error, status: ERROR, host: compute-1, addresses: [10.0.0.130]}
    - {id: 44444444-4444-4444-8444-444444444444, name: node-dead, status: ACTIVE, host: compute-dead, addresses: [10.0.0.14]}
    - {id: 55555555-5555-4555-8555-555555555555, name: node-gone, status: ACTIVE, host: compute-1, deleted: true, addresses: [10.0.0.15]}
    - {id: 66666666-6666-4666-8666-666666666666, name: node-suspended, status: SUSPENDED, host: compute-2, addresses: [10.0.0.16]}
  volumes:
    - id: aaaaaaaa-0000-4000-8000-00000000000b
      name: pvc-b
      attachments: [{server: 22222222-2222-4222-8222-222222222222, device: /dev/vdb}]
    - id: aaaaaaaa-0000-4000-8000-0000000000f0
      name: root-b
      bootable: true
      attachments: [{server: 22222222-2222-4222-8222-222222222222, device: /dev/vda}]
    - id: aaaaaaaa-0000-4000-8000-00000000000e
      name: pvc-error
      attachments: [{server: 33333333-3333-4333-8333-333333333333}]
    - id: aaaaaaaa-0000-4000-8000-00000000000d
      name: pvc-dead
      attachments: [{server: 44444444-4444-4444-8444-444444444444}]
    - id: aaaaaaaa-0000-4000-8000-0000000000a0
      name: pvc-gone
      attachments: [{server: 55555555-5555-4555-8555-555555555555}]
    - {id: aaaaaaaa-0000-4000-8000-0000000000ff}
    - id: aaaaaaaa-0000-4000-8000-00000000005c
      name: pvc-stuck
      detach_stuck: true
      attachments: [{server: 11111111-1111-4111-8111-111111111111, device: /dev/vdc}]
    - id: aaaaaaaa-0000-4000-8000-000000000055
      name: pvc-suspended
      attachments: [{server: 66666666-6666-4666-8666-666666666666}]
    - id: aaaaaaaa-0000-4000-8000-0000000000aa
      name: pvc-multi
      multiattach: true
      attachments:
        - {server: 22222222-2222-4222-8222-222222222222, device: /dev/vdc}
        - {server: 11111111-1111-4111-8111-111111111111, device: /dev/vdd}
  behaviour:
    detach_seconds: 0.3
"#;

/// Keys the emulator adds to what a sample shows, each with its reason.
const NOVA_ADMIN_ONLY: [&str; 11] = [
    // Nova's 2.90+ samples are rendered for a non-admin user; the emulated user is an admin.
    "OS-EXT-SRV-ATTR:host",
    "OS-EXT-SRV-ATTR:hypervisor_hostname",
    "OS-EXT-SRV-ATTR:instance_name",
    "OS-EXT-SRV-ATTR:kernel_id",
    "OS-EXT-SRV-ATTR:launch_index",
    "OS-EXT-SRV-ATTR:ramdisk_id",
    "OS-EXT-SRV-ATTR:reservation_id",
    "OS-EXT-SRV-ATTR:root_device_name",
    "OS-EXT-SRV-ATTR:user_data",
    "host_status",
    "OS-EXT-SRV-ATTR:hostname",
];

/// Maps whose keys are data, not schema: only their presence is compared.
const OPAQUE: [&str; 4] = ["metadata", "extra_specs", "connection_info", "properties"];

// ----- Harness ---------------------------------------------------------------------------------

struct Sim {
    running: Running,
    http: reqwest::Client,
    token: String,
}

impl Sim {
    async fn start(yaml: &str) -> Self {
        let scenario = Scenario::parse(yaml, Path::new("inline.yaml")).unwrap();
        Self::serve(&scenario).await
    }

    async fn serve(scenario: &Scenario) -> Self {
        let running = sim::serve(scenario).await.unwrap();
        let http = reqwest::Client::builder()
            .timeout(Duration::from_secs(10))
            .build()
            .unwrap();
        let mut sim = Self {
            running,
            http,
            token: String::new(),
        };
        let (status, headers, _) = sim.authenticate(&sim.password_request()).await;
        assert_eq!(status, StatusCode::CREATED);
        sim.token = headers["x-subject-token"].to_str().unwrap().to_owned();
        sim
    }

    fn password_request(&self) -> Value {
        let credentials = self.running.world.lock().credentials.clone();
        json!({"auth": {
            "identity": {"methods": ["password"], "password": {"user": {
                "name": credentials.username,
                "domain": {"name": credentials.domain},
                "password": credentials.password,
            }}},
            "scope": {"project": {"name": credentials.project, "domain": {"name": credentials.domain}}}
        }})
    }

    async fn authenticate(&self, body: &Value) -> (StatusCode, reqwest::header::HeaderMap, Value) {
        let url = format!("{}/v3/auth/tokens", self.running.endpoints.keystone);
        let response = self.http.post(url).json(body).send().await.unwrap();
        let (status, headers) = (response.status(), response.headers().clone());
        (
            status,
            headers,
            response.json().await.unwrap_or(Value::Null),
        )
    }

    fn project_id(&self) -> String {
        self.running.world.lock().cloud.project_id().to_owned()
    }

    fn nova(&self, path: &str) -> String {
        format!("{}/v2.1{path}", self.running.endpoints.nova)
    }

    fn cinder(&self, path: &str) -> String {
        format!(
            "{}/v3/{}{path}",
            self.running.endpoints.cinder,
            self.project_id()
        )
    }

    /// A request with the token and, when given, an `OpenStack-API-Version` header.
    async fn call(
        &self,
        method: Method,
        url: &str,
        version: Option<&str>,
        body: Option<Value>,
    ) -> (StatusCode, reqwest::header::HeaderMap, Value) {
        let mut request = self
            .http
            .request(method, url)
            .header("X-Auth-Token", &self.token);
        if let Some(version) = version {
            request = request.header("OpenStack-API-Version", version);
        }
        if let Some(body) = body {
            request = request.json(&body);
        }
        let response = request.send().await.unwrap();
        let (status, headers) = (response.status(), response.headers().clone());
        let text = response.text().await.unwrap();
        let value = serde_json::from_str(&text).unwrap_or(Value::Null);
        (status, headers, value)
    }

    async fn get(&self, url: &str, version: Option<&str>) -> (StatusCode, Value) {
        let (status, _, body) = self.call(Method::GET, url, version, None).await;
        (status, body)
    }

    async fn detach(&self, server: &str, volume: &str) -> (StatusCode, Value) {
        let url = self.nova(&format!("/servers/{server}/os-volume_attachments/{volume}"));
        let (status, _, body) = self.call(Method::DELETE, &url, None, None).await;
        (status, body)
    }

    async fn volume(&self, volume: &str) -> Value {
        let (status, body) = self
            .get(
                &self.cinder(&format!("/volumes/{volume}")),
                Some("volume 3.70"),
            )
            .await;
        assert_eq!(status, StatusCode::OK, "{body}");
        body["volume"].clone()
    }

    /// `DELETE /attachments/{id}` of the volume's first attachment: the URL and the answer.
    async fn delete_first_attachment(&self, volume: &str) -> (String, StatusCode, Value) {
        let attachment = self.volume(volume).await["attachments"][0]["attachment_id"]
            .as_str()
            .unwrap()
            .to_owned();
        let url = self.cinder(&format!("/attachments/{attachment}"));
        let (status, _, body) = self
            .call(Method::DELETE, &url, Some("volume 3.27"), None)
            .await;
        (url, status, body)
    }

    async fn volume_action(&self, volume: &str, action: Value) -> (StatusCode, Value) {
        let url = self.cinder(&format!("/volumes/{volume}/action"));
        let (status, _, body) = self
            .call(Method::POST, &url, Some("volume 3.70"), Some(action))
            .await;
        (status, body)
    }

    /// Polls the volume until it has `status`, for at most `timeout`.
    async fn wait_status(&self, volume: &str, status: &str, timeout: Duration) -> Value {
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            let current = self.volume(volume).await;
            if current["status"] == status {
                return current;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "volume {volume} not {status} within {timeout:?}: {current}"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    async fn action(&self, server: &str, name: &str) -> StatusCode {
        let url = self.nova(&format!("/servers/{server}/action"));
        let body = json!({ name: null });
        self.call(Method::POST, &url, None, Some(body)).await.0
    }

    async fn server(&self, server: &str, version: &str) -> Value {
        let (status, body) = self
            .get(&self.nova(&format!("/servers/{server}")), Some(version))
            .await;
        assert_eq!(status, StatusCode::OK, "{body}");
        body["server"].clone()
    }
}

fn sample(path: &str) -> Value {
    let file = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/openstack")
        .join(path);
    let text = std::fs::read_to_string(&file).unwrap();
    serde_json::from_str(&text).unwrap()
}

/// Compares key sets recursively: `missing` collects sample keys absent from `ours`, `extra`
/// keys of `ours` absent from the sample. A list in `ours` must be non-empty when the sample's
/// is. When the sample's elements all have the same keys, each of ours is compared with the
/// first; when they differ (a `links` list: `self` without `type`, `describedby` with), the
/// union of ours is compared with the union of the sample's.
fn compare(
    sample: &Value,
    ours: &Value,
    path: &str,
    missing: &mut BTreeSet<String>,
    extra: &mut BTreeSet<String>,
) {
    match (sample, ours) {
        (Value::Object(expected), Value::Object(actual)) => {
            if OPAQUE.iter().any(|key| path.ends_with(&format!("/{key}"))) {
                return;
            }
            for (key, value) in expected {
                let child = format!("{path}/{key}");
                match actual.get(key) {
                    Some(ours) => compare(value, ours, &child, missing, extra),
                    None => {
                        missing.insert(child);
                    }
                }
            }
            for key in actual.keys().filter(|key| !expected.contains_key(*key)) {
                extra.insert(format!("{path}/{key}"));
            }
        }
        (Value::Array(expected), Value::Array(actual)) => {
            let Some(first) = expected.first() else {
                return;
            };
            if actual.is_empty() {
                missing.insert(format!("{path}[] (empty list)"));
                return;
            }
            let keys = |value: &Value| {
                value
                    .as_object()
                    .map(|map| map.keys().cloned().collect::<Vec<_>>())
            };
            let child = format!("{path}[]");
            if expected.iter().all(|element| keys(element) == keys(first)) {
                for element in actual {
                    compare(first, element, &child, missing, extra);
                }
            } else {
                compare(&union(expected), &union(actual), &child, missing, extra);
            }
        }
        (Value::Object(_) | Value::Array(_), _) => {
            missing.insert(format!("{path} (not an object or list: {ours})"));
        }
        _ => {}
    }
}

/// The union of the shapes of list elements: objects merged key by key, lists concatenated.
fn union(values: &[Value]) -> Value {
    let Some(first) = values.first() else {
        return Value::Null;
    };
    match first {
        Value::Object(_) => {
            let mut merged = serde_json::Map::new();
            for value in values {
                for (key, child) in value.as_object().into_iter().flatten() {
                    let entry = merged.entry(key.clone()).or_insert(Value::Null);
                    *entry = union(
                        &[child.clone(), entry.clone()]
                            .into_iter()
                            .filter(|v| !v.is_null())
                            .collect::<Vec<_>>(),
                    );
                }
            }
            Value::Object(merged)
        }
        Value::Array(_) => Value::Array(
            values
                .iter()
                .filter_map(Value::as_array)
                .flatten()
                .cloned()
                .collect(),
        ),
        other => other.clone(),
    }
}

/// Asserts that `ours` has exactly the keys of the sample, but for `allowed` extra leaf names.
fn assert_shape(sample_path: &str, ours: &Value, allowed: &[&str]) {
    let expected = sample(sample_path);
    let (mut missing, mut extra) = (BTreeSet::new(), BTreeSet::new());
    compare(&expected, ours, "", &mut missing, &mut extra);
    extra.retain(|path| !allowed.iter().any(|key| path.ends_with(&format!("/{key}"))));
    assert!(
        missing.is_empty() && extra.is_empty(),
        "{sample_path}: missing {missing:?}, extra {extra:?}\nours: {ours:#}"
    );
}

#[test]
fn key_comparison_catches_missing_extra_and_empty() {
    let links = json!({"links": [{"rel": "self"}, {"rel": "describedby", "type": "t"}]});
    let (mut missing, mut extra) = (BTreeSet::new(), BTreeSet::new());
    compare(
        &links,
        &json!({"links": [{"rel": "self"}]}),
        "",
        &mut missing,
        &mut extra,
    );
    assert_eq!(missing.iter().collect::<Vec<_>>(), ["/links[]/type"]);

    let (mut missing, mut extra) = (BTreeSet::new(), BTreeSet::new());
    let sample = json!({"a": 1, "l": [{"x": 1}], "metadata": {"k": 1}});
    let ours = json!({"b": 1, "l": [], "metadata": {}});
    compare(&sample, &ours, "", &mut missing, &mut extra);
    assert_eq!(
        missing.into_iter().collect::<Vec<_>>(),
        ["/a", "/l[] (empty list)"]
    );
    assert_eq!(extra.into_iter().collect::<Vec<_>>(), ["/b"]);
}

// ----- Contract: Keystone ------------------------------------------------------------------------

#[tokio::test]
async fn keystone_versions_match_samples() {
    let sim = Sim::serve(&Scenario::seed()).await;
    let keystone = &sim.running.endpoints.keystone;
    let response = sim.http.get(format!("{keystone}/")).send().await.unwrap();
    assert_eq!(response.status(), StatusCode::MULTIPLE_CHOICES);
    let body: Value = response.json().await.unwrap();
    assert_shape("keystone/admin/identity-versions-response.json", &body, &[]);
    let (status, body) = sim.get(&format!("{keystone}/v3"), None).await;
    assert_eq!(status, StatusCode::OK);
    assert_shape("keystone/admin/identity-version-response.json", &body, &[]);
    assert_eq!(
        body["version"]["links"][0]["href"],
        format!("{keystone}/v3/")
    );
}

#[tokio::test]
async fn keystone_password_token_matches_samples_and_publishes_the_catalog() {
    let sim = Sim::serve(&Scenario::seed()).await;
    let (status, headers, body) = sim.authenticate(&sim.password_request()).await;
    assert_eq!(status, StatusCode::CREATED);
    assert!(headers.contains_key("x-subject-token"));
    assert_shape(
        "keystone/admin/auth-password-project-scoped-response.json",
        &body,
        &[],
    );
    assert_shape(
        "keystone/auth/responses/project-scoped-password.json",
        &body,
        &[],
    );
    assert_eq!(body["token"]["methods"], json!(["password"]));

    let endpoints = &sim.running.endpoints;
    let project_id = sim.project_id();
    let catalog = body["token"]["catalog"].as_array().unwrap();
    let url = |kind: &str| {
        let service = catalog.iter().find(|s| s["type"] == kind).unwrap();
        let interfaces: Vec<&str> = service["endpoints"]
            .as_array()
            .unwrap()
            .iter()
            .map(|e| {
                assert_eq!(e["region"], "RegionOne");
                assert_eq!(e["region_id"], "RegionOne");
                e["interface"].as_str().unwrap()
            })
            .collect();
        assert_eq!(interfaces, ["public", "internal"]);
        service["endpoints"][0]["url"].as_str().unwrap().to_owned()
    };
    assert_eq!(url("identity"), format!("{}/v3", endpoints.keystone));
    assert_eq!(url("compute"), format!("{}/v2.1", endpoints.nova));
    let cinder = format!("{}/v3/{project_id}", endpoints.cinder);
    assert_eq!(url("block-storage"), cinder);
    assert_eq!(url("volumev3"), cinder);
}

#[tokio::test]
async fn keystone_application_credential_token_matches_sample() {
    let sim = Sim::serve(&Scenario::seed()).await;
    let credentials = sim.running.world.lock().credentials.clone();
    let by_id = json!({"auth": {"identity": {
        "methods": ["application_credential"],
        "application_credential": {
            "id": credentials.application_credential_id,
            "secret": credentials.application_credential_secret,
        }
    }}});
    let (status, headers, body) = sim.authenticate(&by_id).await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    assert!(headers.contains_key("x-subject-token"));
    assert_shape(
        "keystone/admin/auth-application-credential-response.json",
        &body,
        &[],
    );
    assert_eq!(body["token"]["methods"], json!(["application_credential"]));

    let user_id = body["token"]["user"]["id"].clone();
    let name = body["token"]["application_credential"]["name"].clone();
    let by_name = json!({"auth": {"identity": {
        "methods": ["application_credential"],
        "application_credential": {
            "name": name,
            "user": {"id": user_id},
            "secret": credentials.application_credential_secret,
        }
    }}});
    assert_eq!(sim.authenticate(&by_name).await.0, StatusCode::CREATED);
    let wrong_secret = json!({"auth": {"identity": {
        "methods": ["application_credential"],
        "application_credential": {"id": credentials.application_credential_id, "secret": "no"}
    }}});
    assert_eq!(
        sim.authenticate(&wrong_secret).await.0,
        StatusCode::UNAUTHORIZED
    );
}

// ----- Contract: Nova ----------------------------------------------------------------------------

#[tokio::test]
async fn nova_versions_match_samples() {
    let sim = Sim::start(CLOUD).await;
    let nova = &sim.running.endpoints.nova;
    let (status, body) = sim.get(&format!("{nova}/"), None).await;
    assert_eq!(status, StatusCode::OK);
    assert_shape("nova/versions/versions-get-resp.json", &body, &[]);
    let (status, body) = sim.get(&format!("{nova}/v2.1"), None).await;
    assert_eq!(status, StatusCode::OK);
    assert_shape("nova/versions/v21-version-get-resp.json", &body, &[]);
    assert_eq!(body["version"]["min_version"], "2.1");
    assert_eq!(body["version"]["version"], "2.96");
    assert_eq!(body["version"]["links"][0]["href"], format!("{nova}/v2.1/"));
}

#[tokio::test]
async fn nova_servers_match_samples_per_microversion() {
    let sim = Sim::start(CLOUD).await;
    for (version, dir) in [
        ("2.1", ""),
        ("2.16", "v2.16/"),
        ("2.47", "v2.47/"),
        ("2.96", "v2.96/"),
    ] {
        let header = format!("compute {version}");
        let allowed: &[&str] = if version == "2.96" {
            &NOVA_ADMIN_ONLY
        } else {
            &[]
        };
        let (status, list) = sim
            .get(&sim.nova("/servers?name=^node-a$&limit=1"), Some(&header))
            .await;
        assert_eq!(status, StatusCode::OK);
        assert_shape(
            &format!("nova/servers/{dir}servers-list-resp.json"),
            &list,
            &[],
        );
        let (status, detail) = sim
            .get(
                &sim.nova("/servers/detail?name=^node-a$&limit=1"),
                Some(&header),
            )
            .await;
        assert_eq!(status, StatusCode::OK);
        assert_shape(
            &format!("nova/servers/{dir}servers-details-resp.json"),
            &detail,
            allowed,
        );
        let show = json!({ "server": sim.server(NODE_A, &header).await });
        assert_shape(
            &format!("nova/servers/{dir}server-get-resp.json"),
            &show,
            allowed,
        );
    }
}

#[tokio::test]
async fn nova_server_show_reports_state_host_and_volumes() {
    let sim = Sim::start(CLOUD).await;
    let server = sim.server(NODE_B, "compute 2.16").await;
    assert_eq!(server["status"], "SHUTOFF");
    assert_eq!(server["OS-EXT-STS:power_state"], 4);
    assert_eq!(server["OS-EXT-STS:vm_state"], "stopped");
    assert_eq!(server["OS-EXT-STS:task_state"], Value::Null);
    assert_eq!(server["OS-EXT-SRV-ATTR:host"], "compute-2");
    assert_eq!(server["OS-EXT-AZ:availability_zone"], "nova");
    assert_eq!(server["host_status"], "UP");
    assert_eq!(server["addresses"]["private"][0]["addr"], "10.0.0.12");
    assert_eq!(server["image"], "", "node-b boots from its root volume");
    let volumes: BTreeSet<&str> = server["os-extended-volumes:volumes_attached"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v["id"].as_str().unwrap())
        .collect();
    assert_eq!(volumes, BTreeSet::from([PVC_B, ROOT_B, PVC_MULTI]));
    // A host that stopped reporting is UNKNOWN to Nova (DOWN needs a forced-down service).
    let dead = sim.server(NODE_DEAD, "compute 2.16").await;
    assert_eq!(dead["host_status"], "UNKNOWN");
    let old = sim.server(NODE_B, "compute 2.15").await;
    assert!(old.get("host_status").is_none());
}

#[tokio::test]
async fn nova_volume_attachments_match_samples_per_microversion() {
    let sim = Sim::start(CLOUD).await;
    for (version, dir) in [
        ("2.1", ""),
        ("2.70", "v2.70/"),
        ("2.79", "v2.79/"),
        ("2.89", "v2.89/"),
    ] {
        let header = format!("compute {version}");
        let base = format!("/servers/{NODE_B}/os-volume_attachments");
        let (status, list) = sim.get(&sim.nova(&base), Some(&header)).await;
        assert_eq!(status, StatusCode::OK);
        assert_shape(
            &format!("nova/os-volume_attachments/{dir}list-volume-attachments-resp.json"),
            &list,
            &[],
        );
        assert_eq!(list["volumeAttachments"].as_array().unwrap().len(), 3);
        let (status, show) = sim
            .get(&sim.nova(&format!("{base}/{PVC_B}")), Some(&header))
            .await;
        assert_eq!(status, StatusCode::OK);
        assert_shape(
            &format!("nova/os-volume_attachments/{dir}volume-attachment-detail-resp.json"),
            &show,
            &[],
        );
        assert_eq!(show["volumeAttachment"]["device"], "/dev/vdb");
    }
}

#[tokio::test]
async fn nova_services_match_samples_per_microversion() {
    let sim = Sim::start(CLOUD).await;
    for (version, dir) in [("2.1", ""), ("2.11", "v2.11/"), ("2.53", "v2.53/")] {
        let (status, body) = sim
            .get(
                &sim.nova("/os-services"),
                Some(&format!("compute {version}")),
            )
            .await;
        assert_eq!(status, StatusCode::OK);
        assert_shape(
            &format!("nova/os-services/{dir}services-list-get-resp.json"),
            &body,
            &[],
        );
    }
    let (_, body) = sim
        .get(&sim.nova("/os-services"), Some("compute 2.53"))
        .await;
    let computes: Vec<(&str, &str)> = body["services"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|s| s["binary"] == "nova-compute")
        .map(|s| (s["host"].as_str().unwrap(), s["state"].as_str().unwrap()))
        .collect();
    assert_eq!(
        computes,
        [
            ("compute-1", "up"),
            ("compute-2", "up"),
            ("compute-dead", "down")
        ]
    );
    assert!(uuid::Uuid::parse_str(body["services"][0]["id"].as_str().unwrap()).is_ok());
}

#[tokio::test]
async fn nova_force_down_matches_samples_and_sets_host_status_down() {
    let sim = Sim::start(CLOUD).await;
    let (_, body) = sim
        .get(
            &sim.nova("/os-services?host=compute-2"),
            Some("compute 2.53"),
        )
        .await;
    let uuid = body["services"][0]["id"].as_str().unwrap().to_owned();
    let url = sim.nova(&format!("/os-services/{uuid}"));
    let (status, _, body) = sim
        .call(
            Method::PUT,
            &url,
            Some("compute 2.53"),
            Some(json!({"forced_down": true})),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_shape(
        "nova/os-services/v2.53/service-force-down-put-resp.json",
        &body,
        &[],
    );
    assert_eq!(body["service"]["forced_down"], true);
    assert_eq!(body["service"]["state"], "down");
    assert_eq!(
        sim.server(NODE_B, "compute 2.16").await["host_status"],
        "DOWN"
    );

    // 2.11..2.52 spell it PUT /os-services/force-down {host, binary, forced_down}.
    let legacy = json!({"host": "compute-2", "binary": "nova-compute", "forced_down": false});
    let (status, _, body) = sim
        .call(
            Method::PUT,
            &sim.nova("/os-services/force-down"),
            Some("compute 2.11"),
            Some(legacy),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_shape(
        "nova/os-services/v2.11/service-force-down-put-resp.json",
        &body,
        &[],
    );
    assert_eq!(
        sim.server(NODE_B, "compute 2.16").await["host_status"],
        "UP"
    );
}

#[tokio::test]
async fn nova_unknown_and_deleted_servers_are_item_not_found() {
    let sim = Sim::start(CLOUD).await;
    for id in [NODE_GONE, "99999999-9999-4999-8999-999999999999"] {
        let (status, body) = sim.get(&sim.nova(&format!("/servers/{id}")), None).await;
        assert_eq!(status, StatusCode::NOT_FOUND);
        assert_shape("nova/errors/fault-itemNotFound-resp.json", &body, &[]);
        assert_eq!(body["itemNotFound"]["code"], 404);
    }
    let (_, list) = sim.get(&sim.nova("/servers"), None).await;
    let names: Vec<&str> = list["servers"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["name"].as_str().unwrap())
        .collect();
    assert!(!names.contains(&"node-gone"), "{names:?}");
}

// ----- Contract: Cinder --------------------------------------------------------------------------

#[tokio::test]
async fn cinder_versions_match_samples() {
    let sim = Sim::start(CLOUD).await;
    let cinder = &sim.running.endpoints.cinder;
    let response = sim.http.get(format!("{cinder}/")).send().await.unwrap();
    assert_eq!(response.status(), StatusCode::MULTIPLE_CHOICES);
    let body: Value = response.json().await.unwrap();
    assert_shape("cinder/versions/versions-response.json", &body, &[]);
    let (status, body) = sim.get(&format!("{cinder}/v3/"), None).await;
    assert_eq!(status, StatusCode::OK);
    assert_shape("cinder/versions/version-show-response.json", &body, &[]);
    assert_eq!(body["versions"][0]["version"], "3.70");
    assert_eq!(body["versions"][0]["min_version"], "3.0");
}

#[tokio::test]
async fn cinder_volumes_match_samples_per_microversion() {
    let sim = Sim::start(CLOUD).await;
    let (status, list) = sim.get(&sim.cinder("/volumes"), None).await;
    assert_eq!(status, StatusCode::OK);
    assert_shape("cinder/volumes/volumes-list-response.json", &list, &[]);
    for (version, dir) in [
        ("3.0", ""),
        ("3.13", "v3.13/"),
        ("3.21", "v3.21/"),
        ("3.48", "v3.48/"),
        ("3.61", "v3.61/"),
        ("3.63", "v3.63/"),
        ("3.65", "v3.65/"),
        ("3.69", "v3.69/"),
    ] {
        let header = format!("volume {version}");
        let (status, detail) = sim.get(&sim.cinder("/volumes/detail"), Some(&header)).await;
        assert_eq!(status, StatusCode::OK);
        assert_shape(
            &format!("cinder/volumes/{dir}volumes-list-detailed-response.json"),
            &detail,
            &[],
        );
        let (status, show) = sim
            .get(&sim.cinder(&format!("/volumes/{PVC_B}")), Some(&header))
            .await;
        assert_eq!(status, StatusCode::OK);
        assert_shape(
            &format!("cinder/volumes/{dir}volume-show-response.json"),
            &show,
            &[],
        );
    }
}

#[tokio::test]
async fn cinder_volume_shows_attachments_and_cinder_value_types() {
    let sim = Sim::start(CLOUD).await;
    let volume = sim.volume(PVC_B).await;
    assert_eq!(volume["status"], "in-use");
    assert_eq!(volume["bootable"], "false");
    assert_eq!(volume["multiattach"], false);
    assert_eq!(volume["name"], "pvc-b");
    let attachment = &volume["attachments"][0];
    let keys: BTreeSet<&str> = attachment
        .as_object()
        .unwrap()
        .keys()
        .map(String::as_str)
        .collect();
    assert_eq!(
        keys,
        BTreeSet::from([
            "attached_at",
            "attachment_id",
            "device",
            "host_name",
            "id",
            "server_id",
            "volume_id"
        ])
    );
    assert_eq!(attachment["server_id"], NODE_B);
    assert_eq!(attachment["host_name"], "compute-2");
    assert_eq!(attachment["id"], PVC_B);
    assert_eq!(sim.volume(ROOT_B).await["bootable"], "true");
    let free = sim.volume(PVC_FREE).await;
    assert_eq!(free["name"], Value::Null);
    assert_eq!(free["status"], "available");
    // The project-less URL form (Cinder since Yoga) serves the same volume.
    let url = format!("{}/v3/volumes/{PVC_B}", sim.running.endpoints.cinder);
    assert_eq!(sim.get(&url, None).await.0, StatusCode::OK);
    let (status, body) = sim.get(&sim.cinder("/volumes/nope"), None).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert_eq!(
        body["itemNotFound"]["message"],
        "Volume nope could not be found."
    );
}

#[tokio::test]
async fn cinder_attachments_match_samples() {
    let sim = Sim::start(CLOUD).await;
    let version = Some("volume 3.27");
    let (status, list) = sim.get(&sim.cinder("/attachments"), version).await;
    assert_eq!(status, StatusCode::OK);
    assert_shape("cinder/attachment-list-response.json", &list, &[]);
    let (status, detail) = sim.get(&sim.cinder("/attachments/detail"), version).await;
    assert_eq!(status, StatusCode::OK);
    assert_shape(
        "cinder/attachment-list-detailed-response.json",
        &detail,
        &[],
    );
    let id = sim.volume(PVC_B).await["attachments"][0]["attachment_id"]
        .as_str()
        .unwrap()
        .to_owned();
    let (status, show) = sim
        .get(&sim.cinder(&format!("/attachments/{id}")), version)
        .await;
    assert_eq!(status, StatusCode::OK);
    assert_shape("cinder/attachment-show-response.json", &show, &[]);
    assert_eq!(show["attachment"]["instance"], NODE_B);
    assert_eq!(show["attachment"]["volume_id"], PVC_B);
    // Before 3.27 the attachments API does not exist.
    let (status, _) = sim
        .get(&sim.cinder("/attachments"), Some("volume 3.26"))
        .await;
    assert_eq!(status, StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn cinder_lists_only_attached_attachments_in_the_volume_and_all_in_the_attachments_api() {
    let yaml = format!(
        "name: attach-status
openstack:
  compute_hosts: [{{name: compute-1}}]
  servers:
    - {{id: {NODE_A}, name: node-a, status: ACTIVE, host: compute-1}}
    - {{id: {NODE_B}, name: node-b, status: ACTIVE, host: compute-1}}
  volumes:
    - id: {PVC_MULTI}
      multiattach: true
      attachments:
        - {{server: {NODE_A}, device: /dev/vdb}}
        - {{server: {NODE_B}, device: /dev/vdc, status: reserved}}
    - id: {PVC_B}
      attachments: [{{server: {NODE_B}, status: attaching}}]
    - id: {PVC_FREE}
      attachments: [{{server: {NODE_A}, status: reserved}}]
"
    );
    let sim = Sim::start(&yaml).await;
    let multi = sim.volume(PVC_MULTI).await;
    assert_eq!(multi["status"], "in-use");
    let listed: Vec<&Value> = multi["attachments"]
        .as_array()
        .unwrap()
        .iter()
        .map(|attachment| &attachment["server_id"])
        .collect();
    assert_eq!(listed, [NODE_A], "{multi}");
    let attaching = sim.volume(PVC_B).await;
    assert_eq!(attaching["status"], "attaching");
    assert_eq!(attaching["attachments"], json!([]));
    let reserved = sim.volume(PVC_FREE).await;
    assert_eq!(reserved["status"], "reserved");
    assert_eq!(reserved["attachments"], json!([]));
    // The attachments API lists every one, with its own status.
    let version = Some("volume 3.27");
    let (status, list) = sim.get(&sim.cinder("/attachments"), version).await;
    assert_eq!(status, StatusCode::OK);
    let statuses: BTreeSet<(String, String, String)> = list["attachments"]
        .as_array()
        .unwrap()
        .iter()
        .map(|attachment| {
            let text = |key: &str| attachment[key].as_str().unwrap().to_owned();
            (text("volume_id"), text("instance"), text("status"))
        })
        .collect();
    let expected = [
        (PVC_MULTI, NODE_A, "attached"),
        (PVC_MULTI, NODE_B, "reserved"),
        (PVC_B, NODE_B, "attaching"),
        (PVC_FREE, NODE_A, "reserved"),
    ]
    .map(|(volume, server, status)| (volume.to_owned(), server.to_owned(), status.to_owned()));
    assert_eq!(statuses, BTreeSet::from(expected));
    let url = sim.cinder(&format!("/attachments/detail?volume_id={PVC_B}"));
    let (status, detail) = sim.get(&url, version).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(detail["attachments"][0]["status"], "attaching");
    assert_eq!(detail["attachments"][0]["attached_at"], "");
    // A reserved attachment has no connection: the guard lets a user delete it, and the
    // volume's status follows the attachments that remain.
    let reserved_id = list["attachments"]
        .as_array()
        .unwrap()
        .iter()
        .find(|attachment| attachment["volume_id"] == PVC_FREE)
        .unwrap()["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let url = sim.cinder(&format!("/attachments/{reserved_id}"));
    let (status, _, body) = sim.call(Method::DELETE, &url, version, None).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(sim.volume(PVC_FREE).await["status"], "available");
}

// ----- Behaviour: Keystone -----------------------------------------------------------------------

#[tokio::test]
async fn keystone_rejects_bad_credentials_with_its_error_shape() {
    let sim = Sim::serve(&Scenario::seed()).await;
    let mut request = sim.password_request();
    request["auth"]["identity"]["password"]["user"]["password"] = json!("wrong");
    let (status, headers, body) = sim.authenticate(&request).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    assert!(!headers.contains_key("x-subject-token"));
    assert_eq!(body["error"]["code"], 401);
    assert_eq!(body["error"]["title"], "Unauthorized");
    assert!(body["error"]["message"].is_string());

    let mut unknown_project = sim.password_request();
    unknown_project["auth"]["scope"]["project"]["name"] = json!("other");
    assert_eq!(
        sim.authenticate(&unknown_project).await.0,
        StatusCode::UNAUTHORIZED
    );

    let url = format!("{}/v3/auth/tokens", sim.running.endpoints.keystone);
    let response = sim.http.post(url).body("{not json").send().await.unwrap();
    assert_eq!(response.status(), StatusCode::BAD_REQUEST);
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["error"]["code"], 400);
}

#[tokio::test]
async fn keystone_accepts_ids_and_validates_tokens() {
    let sim = Sim::serve(&Scenario::seed()).await;
    let (user_id, project_id, password) = {
        let state = sim.running.world.lock();
        (
            state.cloud.user_id().to_owned(),
            state.cloud.project_id().to_owned(),
            state.credentials.password.clone(),
        )
    };
    let by_ids = json!({"auth": {
        "identity": {"methods": ["password"], "password": {"user": {"id": user_id, "password": password}}},
        "scope": {"project": {"id": project_id}}
    }});
    let (status, headers, _) = sim.authenticate(&by_ids).await;
    assert_eq!(status, StatusCode::CREATED);
    let subject = headers["x-subject-token"].to_str().unwrap().to_owned();

    let url = format!("{}/v3/auth/tokens", sim.running.endpoints.keystone);
    let validate = |subject: String| {
        sim.http
            .get(&url)
            .header("X-Auth-Token", &sim.token)
            .header("X-Subject-Token", subject)
            .send()
    };
    let response = validate(subject).await.unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["token"]["project"]["id"], project_id.as_str());
    assert_eq!(
        validate("bogus".to_owned()).await.unwrap().status(),
        StatusCode::NOT_FOUND
    );
}

#[tokio::test]
async fn nova_and_cinder_require_a_valid_token() {
    let sim = Sim::start(CLOUD).await;
    for url in [sim.nova("/servers"), sim.cinder("/volumes")] {
        let response = sim.http.get(&url).send().await.unwrap();
        assert_eq!(response.status(), StatusCode::UNAUTHORIZED, "{url}");
        assert!(response.headers().contains_key("www-authenticate"));
        let response = sim
            .http
            .get(&url)
            .header("X-Auth-Token", "gAAAAAforged")
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), StatusCode::UNAUTHORIZED, "{url}");
        let ok = sim
            .http
            .get(&url)
            .header("X-Auth-Token", &sim.token)
            .send()
            .await
            .unwrap();
        assert_eq!(ok.status(), StatusCode::OK, "{url}");
    }
}

// ----- Behaviour: detaching ----------------------------------------------------------------------

#[tokio::test]
async fn detach_goes_through_detaching_to_available() {
    let sim = Sim::start(CLOUD).await;
    let (status, _) = sim.detach(NODE_B, PVC_B).await;
    assert_eq!(status, StatusCode::ACCEPTED);
    assert_eq!(sim.volume(PVC_B).await["status"], "detaching");
    // Nova keeps the attachment (its BDM) until the compute host is done.
    let url = sim.nova(&format!("/servers/{NODE_B}/os-volume_attachments/{PVC_B}"));
    assert_eq!(sim.get(&url, None).await.0, StatusCode::OK);
    let volume = sim
        .wait_status(PVC_B, "available", Duration::from_secs(5))
        .await;
    assert_eq!(volume["attachments"], json!([]));
    assert_eq!(sim.get(&url, None).await.0, StatusCode::NOT_FOUND);
    // A second detach finds nothing attached.
    assert_eq!(sim.detach(NODE_B, PVC_B).await.0, StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn detach_of_a_multiattach_volume_keeps_the_other_attachment() {
    let sim = Sim::start(CLOUD).await;
    assert_eq!(sim.detach(NODE_B, PVC_MULTI).await.0, StatusCode::ACCEPTED);
    assert_eq!(sim.volume(PVC_MULTI).await["status"], "detaching");
    let volume = sim
        .wait_status(PVC_MULTI, "in-use", Duration::from_secs(5))
        .await;
    let servers: Vec<&Value> = volume["attachments"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| &a["server_id"])
        .collect();
    assert_eq!(servers, [&json!(NODE_A)]);
}

#[tokio::test]
async fn detach_is_refused_with_409_for_error_suspended_and_busy_servers() {
    let sim = Sim::start(CLOUD).await;
    let (status, body) = sim.detach(NODE_ERROR, PVC_ERROR).await;
    assert_eq!(status, StatusCode::CONFLICT);
    assert_eq!(
        body["conflictingRequest"]["message"],
        format!("Cannot 'detach_volume' instance {NODE_ERROR} while it is in vm_state error")
    );
    let (status, body) = sim.detach(NODE_SUSPENDED, PVC_SUSPENDED).await;
    assert_eq!(status, StatusCode::CONFLICT);
    assert!(
        body["conflictingRequest"]["message"]
            .as_str()
            .unwrap()
            .ends_with("vm_state suspended")
    );
    // A task in progress (a stop the dead host never does) blocks a detach too.
    let url = sim.nova(&format!("/servers/{NODE_DEAD}/action"));
    let (status, _, _) = sim
        .call(Method::POST, &url, None, Some(json!({"os-stop": null})))
        .await;
    assert_eq!(status, StatusCode::ACCEPTED);
    let (status, body) = sim.detach(NODE_DEAD, PVC_DEAD).await;
    assert_eq!(status, StatusCode::CONFLICT);
    assert!(
        body["conflictingRequest"]["message"]
            .as_str()
            .unwrap()
            .ends_with("task_state powering-off")
    );
    assert_eq!(sim.volume(PVC_ERROR).await["status"], "in-use");
}

#[tokio::test]
async fn detach_is_404_when_not_attached_or_no_such_server() {
    let sim = Sim::start(CLOUD).await;
    let (status, body) = sim.detach(NODE_A, PVC_B).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert_eq!(
        body["itemNotFound"]["message"],
        format!("Volume {PVC_B} is not attached to the instance {NODE_A}")
    );
    assert_eq!(
        sim.detach(NODE_GONE, PVC_GONE).await.0,
        StatusCode::NOT_FOUND
    );
    assert_eq!(
        sim.detach(NODE_A, "no-such-volume").await.0,
        StatusCode::NOT_FOUND
    );
    assert_eq!(sim.volume(PVC_B).await["status"], "in-use");
}

#[tokio::test]
async fn detach_is_400_for_a_root_volume_or_a_volume_not_in_use() {
    let sim = Sim::start(CLOUD).await;
    let (status, body) = sim.detach(NODE_B, ROOT_B).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(
        body["badRequest"]["message"],
        "Cannot detach a root device volume"
    );
    assert_eq!(sim.detach(NODE_B, PVC_B).await.0, StatusCode::ACCEPTED);
    let (status, body) = sim.detach(NODE_B, PVC_B).await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "already detaching: {body}");
    // A status reset to error_detaching also leaves the volume not in-use.
    let (status, _) = sim
        .volume_action(
            PVC_SUSPENDED,
            json!({"os-reset_status": {"status": "error_detaching"}}),
        )
        .await;
    assert_eq!(status, StatusCode::ACCEPTED);
    assert_eq!(sim.volume(PVC_SUSPENDED).await["status"], "error_detaching");
}

/// Forces a compute service down (or lets it report again) through `PUT /os-services/{id}`.
async fn force_down(sim: &Sim, host: &str, forced_down: bool) {
    let version = Some("compute 2.53");
    let (_, body) = sim
        .get(&sim.nova(&format!("/os-services?host={host}")), version)
        .await;
    let uuid = body["services"][0]["id"].as_str().unwrap().to_owned();
    let url = sim.nova(&format!("/os-services/{uuid}"));
    let body = json!({ "forced_down": forced_down });
    let (status, _, _) = sim.call(Method::PUT, &url, version, Some(body)).await;
    assert_eq!(status, StatusCode::OK);
}

/// The `state` os-services shows for a compute host.
async fn service_state(sim: &Sim, host: &str) -> String {
    let url = sim.nova(&format!("/os-services?host={host}&binary=nova-compute"));
    let (status, body) = sim.get(&url, Some("compute 2.53")).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    body["services"][0]["state"].as_str().unwrap().to_owned()
}

fn conflict_message(body: &Value) -> &str {
    body["conflictingRequest"]["message"]
        .as_str()
        .unwrap_or_default()
}

#[tokio::test]
async fn detach_on_a_dead_or_forced_down_host_is_409_and_cinder_is_untouched() {
    let sim = Sim::start(CLOUD).await;
    // compute-dead stopped reporting long before: Nova says its service is down.
    assert_eq!(service_state(&sim, "compute-dead").await, "down");
    let (status, body) = sim.detach(NODE_DEAD, PVC_DEAD).await;
    assert_eq!(status, StatusCode::CONFLICT, "{body}");
    assert_eq!(
        conflict_message(&body),
        "Service is unavailable at this time."
    );
    let volume = sim.volume(PVC_DEAD).await;
    assert_eq!(volume["status"], "in-use");
    assert_eq!(volume["attachments"][0]["server_id"], NODE_DEAD);
    // A live host forced down is down to Nova too: the detach is refused the same way.
    force_down(&sim, "compute-2", true).await;
    assert_eq!(service_state(&sim, "compute-2").await, "down");
    let (status, body) = sim.detach(NODE_B, PVC_B).await;
    assert_eq!(status, StatusCode::CONFLICT, "{body}");
    assert_eq!(
        conflict_message(&body),
        "Service is unavailable at this time."
    );
    assert_eq!(sim.volume(PVC_B).await["status"], "in-use");
    // Once it is no longer forced down, the same detach goes through.
    force_down(&sim, "compute-2", false).await;
    assert_eq!(sim.detach(NODE_B, PVC_B).await.0, StatusCode::ACCEPTED);
    sim.wait_status(PVC_B, "available", Duration::from_secs(5))
        .await;
}

#[tokio::test]
async fn detach_on_a_host_dead_within_service_down_time_is_accepted_and_waits_for_it() {
    // compute-dead dies at once; Nova counts it up for one more second, then down.
    let scenario = CLOUD
        .replace("{name: compute-dead, state: down}", "{name: compute-dead}")
        .replace(
            "  behaviour:\n    detach_seconds: 0.3\n",
            "  behaviour:\n    detach_seconds: 0.3\n    service_down_time: 1\ntimeline:\n  - {at: 0ms, host_state: {host: compute-dead, state: down}}\n  - {at: 2500ms, host_state: {host: compute-dead, state: up}}\n",
        );
    let sim = Sim::start(&scenario).await;
    assert_eq!(service_state(&sim, "compute-dead").await, "up");
    assert_eq!(
        sim.server(NODE_DEAD, "compute 2.16").await["host_status"],
        "UP"
    );
    assert_eq!(
        sim.detach(NODE_DEAD, PVC_DEAD).await.0,
        StatusCode::ACCEPTED
    );
    assert_eq!(sim.detach(NODE_A, PVC_STUCK).await.0, StatusCode::ACCEPTED);
    tokio::time::sleep(Duration::from_millis(600)).await;
    // Due, but the host is dead: nothing is done.
    assert_eq!(sim.volume(PVC_DEAD).await["status"], "detaching");
    // Past the window Nova says down, and the server's host UNKNOWN.
    tokio::time::sleep(Duration::from_millis(700)).await;
    assert_eq!(service_state(&sim, "compute-dead").await, "down");
    assert_eq!(
        sim.server(NODE_DEAD, "compute 2.16").await["host_status"],
        "UNKNOWN"
    );
    assert_eq!(sim.volume(PVC_DEAD).await["status"], "detaching");
    // When the compute host reports again it does the work it was sent.
    sim.wait_status(PVC_DEAD, "available", Duration::from_secs(5))
        .await;
    assert_eq!(service_state(&sim, "compute-dead").await, "up");
    // A stuck volume never gets there.
    assert_eq!(sim.volume(PVC_STUCK).await["status"], "detaching");
    assert!(
        sim.running
            .world
            .lock()
            .cloud
            .is_attached(PVC_STUCK, NODE_A)
    );
}

#[tokio::test]
async fn past_service_down_time_a_second_detach_is_refused() {
    let scenario = CLOUD
        .replace("{name: compute-2, state: up}", "{name: compute-2}")
        .replace(
            "  behaviour:\n    detach_seconds: 0.3\n",
            "  behaviour:\n    detach_seconds: 0.3\n    service_down_time: 0.5\ntimeline:\n  - {at: 0ms, host_state: {host: compute-2, state: down}}\n",
        );
    let sim = Sim::start(&scenario).await;
    assert_eq!(sim.detach(NODE_B, PVC_B).await.0, StatusCode::ACCEPTED);
    tokio::time::sleep(Duration::from_millis(800)).await;
    let (status, body) = sim.detach(NODE_B, PVC_MULTI).await;
    assert_eq!(status, StatusCode::CONFLICT, "{body}");
    assert_eq!(
        conflict_message(&body),
        "Service is unavailable at this time."
    );
    assert_eq!(sim.volume(PVC_B).await["status"], "detaching");
    assert_eq!(sim.volume(PVC_MULTI).await["status"], "in-use");
    // os-services shows the last heartbeat, from before compute-1's.
    let (_, body) = sim
        .get(&sim.nova("/os-services?binary=nova-compute"), None)
        .await;
    let updated = |host: &str| {
        body["services"]
            .as_array()
            .unwrap()
            .iter()
            .find(|service| service["host"] == host)
            .unwrap()["updated_at"]
            .as_str()
            .unwrap()
            .to_owned()
    };
    assert!(updated("compute-2") < updated("compute-1"), "{body}");
}

#[tokio::test]
async fn host_status_follows_novas_precedence() {
    let sim = Sim::start(CLOUD).await;
    let status = |server: &'static str| {
        let sim = &sim;
        async move { sim.server(server, "compute 2.16").await["host_status"].clone() }
    };
    assert_eq!(status(NODE_A).await, "UP");
    assert_eq!(status(NODE_DEAD).await, "UNKNOWN");
    let disable = |host: &str| {
        sim.running
            .world
            .lock()
            .cloud
            .update_service(host, None, Some((true, Some("drain".into()))))
            .is_some()
    };
    // Disabled comes before whether it is up; forced down before disabled.
    assert!(disable("compute-1") && disable("compute-dead"));
    assert_eq!(status(NODE_A).await, "MAINTENANCE");
    assert_eq!(status(NODE_DEAD).await, "MAINTENANCE");
    force_down(&sim, "compute-dead", true).await;
    assert_eq!(status(NODE_DEAD).await, "DOWN");
    // A disabled service is still up: a detach from it is accepted.
    assert_eq!(sim.detach(NODE_A, PVC_MULTI).await.0, StatusCode::ACCEPTED);
}

#[tokio::test]
async fn forced_down_does_not_stop_a_live_host_from_doing_its_work() {
    let sim = Sim::start(CLOUD).await;
    // Sent while compute-2 is up; forced down before it is done: a live nova-compute does it.
    assert_eq!(sim.detach(NODE_B, PVC_B).await.0, StatusCode::ACCEPTED);
    assert_eq!(sim.action(NODE_B, "os-start").await, StatusCode::ACCEPTED);
    force_down(&sim, "compute-2", true).await;
    sim.wait_status(PVC_B, "available", Duration::from_secs(5))
        .await;
    let server = sim.server(NODE_B, "compute 2.16").await;
    assert_eq!(server["host_status"], "DOWN");
    assert_eq!(server["status"], "ACTIVE", "{server}");
    assert_eq!(server["OS-EXT-STS:task_state"], Value::Null);
    assert_eq!(server["OS-EXT-STS:power_state"], 1);
    // Nova checks only that a stop's server has a host: a stop to the forced-down live host is
    // accepted and done.
    assert_eq!(sim.action(NODE_B, "os-stop").await, StatusCode::ACCEPTED);
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    while sim.server(NODE_B, "compute 2.1").await["status"] != "SHUTOFF" {
        assert!(tokio::time::Instant::now() < deadline);
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test]
async fn a_stop_on_a_dead_host_stays_powering_off_and_its_task_refuses_the_detach_first() {
    let sim = Sim::start(CLOUD).await;
    force_down(&sim, "compute-dead", true).await;
    assert_eq!(sim.action(NODE_DEAD, "os-stop").await, StatusCode::ACCEPTED);
    tokio::time::sleep(Duration::from_millis(700)).await;
    let (_, list) = sim
        .get(
            &sim.nova("/servers/detail?name=node-dead"),
            Some("compute 2.1"),
        )
        .await;
    for server in [
        sim.server(NODE_DEAD, "compute 2.1").await,
        list["servers"][0].clone(),
    ] {
        assert_eq!(server["status"], "ACTIVE", "{server}");
        assert_eq!(server["OS-EXT-STS:vm_state"], "active");
        assert_eq!(server["OS-EXT-STS:task_state"], "powering-off");
        assert_eq!(server["OS-EXT-STS:power_state"], 1);
    }
    // Nova checks the instance state before the host: the task's 409 comes first.
    let (status, body) = sim.detach(NODE_DEAD, PVC_DEAD).await;
    assert_eq!(status, StatusCode::CONFLICT);
    assert_eq!(
        conflict_message(&body),
        format!(
            "Cannot 'detach_volume' instance {NODE_DEAD} while it is in task_state powering-off"
        )
    );
    assert_eq!(sim.action(NODE_DEAD, "os-stop").await, StatusCode::CONFLICT);
    assert_eq!(sim.volume(PVC_DEAD).await["status"], "in-use");
}

// ----- Behaviour: roles ------------------------------------------------------------------------

/// The contract cloud with the credentials of a project `member`.
fn member_cloud() -> String {
    CLOUD.replace("  behaviour:\n", "  role: member\n  behaviour:\n")
}

fn role_names(token: &Value) -> Vec<String> {
    token["token"]["roles"]
        .as_array()
        .unwrap()
        .iter()
        .map(|role| role["name"].as_str().unwrap().to_owned())
        .collect()
}

#[tokio::test]
async fn tokens_carry_the_scenarios_role() {
    let admin = Sim::start(CLOUD).await;
    let (_, _, body) = admin.authenticate(&admin.password_request()).await;
    assert_eq!(role_names(&body), ["admin", "member", "reader"]);
    let member = Sim::start(&member_cloud()).await;
    let (_, _, body) = member.authenticate(&member.password_request()).await;
    assert_eq!(role_names(&body), ["member", "reader"]);
}

fn forbidden_message(body: &Value) -> &str {
    body["forbidden"]["message"].as_str().unwrap_or_default()
}

#[tokio::test]
async fn nova_shows_a_member_no_host_fields_and_refuses_it_os_services() {
    let sim = Sim::start(&member_cloud()).await;
    // Nova's 2.96 samples are a non-admin's view: they match with nothing added.
    let show = json!({ "server": sim.server(NODE_A, "compute 2.96").await });
    assert_shape("nova/servers/v2.96/server-get-resp.json", &show, &[]);
    let (status, detail) = sim
        .get(
            &sim.nova("/servers/detail?name=^node-a$&limit=1"),
            Some("compute 2.96"),
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    assert_shape("nova/servers/v2.96/servers-details-resp.json", &detail, &[]);
    for version in [
        "compute 2.1",
        "compute 2.16",
        "compute 2.89",
        "compute 2.96",
    ] {
        let server = sim.server(NODE_DEAD, version).await;
        let hidden: Vec<&String> = server
            .as_object()
            .unwrap()
            .keys()
            .filter(|key| key.starts_with("OS-EXT-SRV-ATTR:") || *key == "host_status")
            .filter(|key| !(version == "compute 2.96" && *key == "OS-EXT-SRV-ATTR:hostname"))
            .collect();
        assert!(hidden.is_empty(), "{version}: {hidden:?}");
        assert_eq!(server["OS-EXT-STS:vm_state"], "active");
        assert_eq!(server["OS-EXT-STS:power_state"], 1);
        assert_eq!(server["OS-EXT-AZ:availability_zone"], "nova");
    }
    let (status, body) = sim.get(&sim.nova("/os-services"), None).await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    assert_eq!(
        forbidden_message(&body),
        "Policy doesn't allow os_compute_api:os-services:list to be performed."
    );
    let (status, _, body) = sim
        .call(
            Method::PUT,
            &sim.nova("/os-services/force-down"),
            Some("compute 2.11"),
            Some(json!({"host": "compute-dead", "binary": "nova-compute", "forced_down": true})),
        )
        .await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    assert_eq!(
        forbidden_message(&body),
        "Policy doesn't allow os_compute_api:os-services:update to be performed."
    );
    assert!(
        !sim.running
            .world
            .lock()
            .cloud
            .host("compute-dead")
            .unwrap()
            .forced_down
    );
    // Asking for every project's servers is admin-only (Nova refuses, it does not ignore it).
    let (status, body) = sim
        .get(&sim.nova("/servers/detail?all_tenants=1"), None)
        .await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    assert_eq!(
        forbidden_message(&body),
        "Policy doesn't allow os_compute_api:servers:detail:get_all_tenants to be performed."
    );
    let (status, _) = sim.get(&sim.nova("/servers?all_tenants=true"), None).await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    let (status, _) = sim.get(&sim.nova("/servers?all_tenants=0"), None).await;
    assert_eq!(status, StatusCode::OK);
    // A member may still detach and stop its servers.
    assert_eq!(sim.detach(NODE_B, PVC_B).await.0, StatusCode::ACCEPTED);
    assert_eq!(sim.action(NODE_A, "os-stop").await, StatusCode::ACCEPTED);
}

#[tokio::test]
async fn an_admin_may_list_every_projects_servers() {
    let sim = Sim::start(CLOUD).await;
    assert_eq!(server_names(&sim, "all_tenants=1").await.len(), 5);
    let (status, _) = sim.get(&sim.nova("/servers?all_tenants=maybe"), None).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
}

#[tokio::test]
async fn cinder_refuses_a_member_its_admin_actions_and_hides_the_hosts() {
    let sim = Sim::start(&member_cloud()).await;
    let (status, body) = sim
        .volume_action(PVC_DEAD, json!({"os-force_detach": {}}))
        .await;
    assert_eq!(status, StatusCode::FORBIDDEN, "{body}");
    assert_eq!(
        forbidden_message(&body),
        "Policy doesn't allow volume_extension:volume_admin_actions:force_detach to be performed."
    );
    let (status, body) = sim
        .volume_action(
            PVC_DEAD,
            json!({"os-reset_status": {"status": "available"}}),
        )
        .await;
    assert_eq!(status, StatusCode::FORBIDDEN, "{body}");
    assert_eq!(
        forbidden_message(&body),
        "Policy doesn't allow volume_extension:volume_admin_actions:reset_status to be performed."
    );
    let missing = "aaaaaaaa-0000-4000-8000-999999999999";
    let (status, _) = sim
        .volume_action(missing, json!({"os-force_detach": {}}))
        .await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    // os-detach is not an admin action: the guard answers.
    let (status, _) = sim.volume_action(PVC_DEAD, json!({"os-detach": {}})).await;
    assert_eq!(status, StatusCode::CONFLICT);
    let volume = sim.volume(PVC_DEAD).await;
    assert_eq!(volume["status"], "in-use");
    assert_eq!(volume["attachments"][0]["host_name"], Value::Null);
    for admin_only in [
        "os-vol-host-attr:host",
        "os-vol-mig-status-attr:migstat",
        "migration_status",
        "provider_id",
        "cluster_name",
    ] {
        assert!(volume.get(admin_only).is_none(), "{admin_only}: {volume}");
    }
    assert_eq!(volume["os-vol-tenant-attr:tenant_id"], sim.project_id());
}

#[tokio::test]
async fn cinder_refuses_user_detach_while_the_server_holds_the_attachment() {
    let sim = Sim::start(CLOUD).await;
    let attachment = sim.volume(PVC_B).await["attachments"][0]["attachment_id"].clone();
    let message = format!("Detach volume from instance {NODE_B} using the Compute API");
    for action in [
        json!({"os-force_detach": {"attachment_id": attachment, "connector": {"initiator": "iqn"}}}),
        json!({"os-detach": {"attachment_id": attachment}}),
    ] {
        let (status, body) = sim.volume_action(PVC_B, action).await;
        assert_eq!(status, StatusCode::CONFLICT);
        assert_eq!(body["conflictingRequest"]["message"], message.as_str());
    }
    let url = sim.cinder(&format!("/attachments/{}", attachment.as_str().unwrap()));
    let (status, _, body) = sim
        .call(Method::DELETE, &url, Some("volume 3.27"), None)
        .await;
    assert_eq!(status, StatusCode::CONFLICT, "{body}");
    assert_eq!(sim.volume(PVC_B).await["status"], "in-use");
}

#[tokio::test]
async fn without_the_attachment_guard_cinder_removes_a_live_servers_attachment() {
    let unpatched = CLOUD.replace(
        "detach_seconds: 0.3",
        "detach_seconds: 0.3\n    cinder_attachment_guard: false",
    );
    let sim = Sim::start(&unpatched).await;
    assert!(sim.running.world.lock().cloud.server(NODE_B).is_some());
    let (_, status, body) = sim.delete_first_attachment(PVC_B).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body, json!({"attachments": []}));
    let volume = sim.volume(PVC_B).await;
    assert_eq!(volume["status"], "available");
    assert_eq!(volume["attachments"], json!([]));
    // os-detach of one attachment of a multi-attach volume leaves the other.
    let volume = sim.volume(PVC_MULTI).await;
    let to_a = volume["attachments"]
        .as_array()
        .unwrap()
        .iter()
        .find(|attachment| attachment["server_id"] == NODE_A)
        .unwrap()["attachment_id"]
        .clone();
    let action = json!({"os-detach": {"attachment_id": to_a}});
    let (status, body) = sim.volume_action(PVC_MULTI, action).await;
    assert_eq!(status, StatusCode::ACCEPTED, "{body}");
    let volume = sim.volume(PVC_MULTI).await;
    assert_eq!(volume["status"], "in-use");
    let servers: Vec<&Value> = volume["attachments"]
        .as_array()
        .unwrap()
        .iter()
        .map(|attachment| &attachment["server_id"])
        .collect();
    assert_eq!(servers, [NODE_B]);
}

#[tokio::test]
async fn cinder_releases_attachments_of_a_deleted_server() {
    let sim = Sim::start(CLOUD).await;
    let volume = sim.volume(PVC_GONE).await;
    assert_eq!(volume["status"], "in-use");
    assert_eq!(volume["attachments"][0]["server_id"], NODE_GONE);
    let attachment = volume["attachments"][0]["attachment_id"].clone();
    let action = json!({"os-force_detach": {"attachment_id": attachment, "connector": null}});
    let (status, body) = sim.volume_action(PVC_GONE, action).await;
    assert_eq!(status, StatusCode::ACCEPTED, "{body}");
    let volume = sim.volume(PVC_GONE).await;
    assert_eq!(volume["status"], "available");
    assert_eq!(volume["attachments"], json!([]));
}

#[tokio::test]
async fn cinder_attachment_delete_succeeds_for_a_deleted_server() {
    let sim = Sim::start(CLOUD).await;
    let (url, status, body) = sim.delete_first_attachment(PVC_GONE).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body, json!({"attachments": []}));
    assert_eq!(sim.volume(PVC_GONE).await["status"], "available");
    let (status, _, _) = sim
        .call(Method::DELETE, &url, Some("volume 3.27"), None)
        .await;
    assert_eq!(status, StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn cinder_reset_status_and_bad_action_bodies() {
    let sim = Sim::start(CLOUD).await;
    let reset = json!({"os-reset_status": {"status": "available", "attach_status": "detached"}});
    assert_eq!(
        sim.volume_action(PVC_ERROR, reset).await.0,
        StatusCode::ACCEPTED
    );
    let volume = sim.volume(PVC_ERROR).await;
    assert_eq!(volume["status"], "available");
    assert_eq!(volume["attachments"], json!([]));
    let bad = json!({"os-reset_status": {"status": "sideways"}});
    assert_eq!(
        sim.volume_action(PVC_B, bad).await.0,
        StatusCode::BAD_REQUEST
    );
    let unknown = json!({"os-fly": {}});
    assert_eq!(
        sim.volume_action(PVC_B, unknown).await.0,
        StatusCode::BAD_REQUEST
    );
    let url = sim.cinder(&format!("/volumes/{PVC_B}/action"));
    let response = sim
        .http
        .post(url)
        .header("X-Auth-Token", &sim.token)
        .body("{broken")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::BAD_REQUEST);
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["badRequest"]["code"], 400);
}

// ----- Behaviour: server actions ----------------------------------------------------------------

#[tokio::test]
async fn stop_and_start_go_through_their_tasks() {
    let sim = Sim::start(CLOUD).await;
    assert_eq!(sim.action(NODE_A, "os-stop").await, StatusCode::ACCEPTED);
    assert_eq!(
        sim.server(NODE_A, "compute 2.1").await["OS-EXT-STS:task_state"],
        "powering-off"
    );
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    loop {
        let server = sim.server(NODE_A, "compute 2.1").await;
        if server["status"] == "SHUTOFF" {
            assert_eq!(server["OS-EXT-STS:power_state"], 4);
            assert_eq!(server["OS-EXT-STS:task_state"], Value::Null);
            break;
        }
        assert!(tokio::time::Instant::now() < deadline, "{server}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(sim.action(NODE_A, "os-stop").await, StatusCode::CONFLICT);
    assert_eq!(sim.action(NODE_A, "os-start").await, StatusCode::ACCEPTED);
    assert_eq!(
        sim.action(NODE_B, "os-reboot-ish").await,
        StatusCode::BAD_REQUEST
    );
    assert_eq!(
        sim.action(NODE_GONE, "os-stop").await,
        StatusCode::NOT_FOUND
    );

    // On a host that does not answer the stop never completes.
    assert_eq!(sim.action(NODE_DEAD, "os-stop").await, StatusCode::ACCEPTED);
    tokio::time::sleep(Duration::from_millis(700)).await;
    let dead = sim.server(NODE_DEAD, "compute 2.1").await;
    assert_eq!(dead["status"], "ACTIVE");
    assert_eq!(dead["OS-EXT-STS:task_state"], "powering-off");
}

// ----- Behaviour: server delete and evacuate -----------------------------------------------------

impl Sim {
    async fn delete_server(&self, server: &str) -> (StatusCode, Value) {
        let url = self.nova(&format!("/servers/{server}"));
        let (status, _, body) = self.call(Method::DELETE, &url, None, None).await;
        (status, body)
    }

    async fn evacuate(&self, server: &str, version: &str, request: Value) -> (StatusCode, Value) {
        let url = self.nova(&format!("/servers/{server}/action"));
        let body = json!({ "evacuate": request });
        let (status, _, body) = self
            .call(Method::POST, &url, Some(version), Some(body))
            .await;
        (status, body)
    }

    /// Polls the server until its task is none, for at most `timeout`.
    async fn wait_task_done(&self, server: &str, timeout: Duration) -> Value {
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            let current = self.server(server, "compute 2.53").await;
            if current["OS-EXT-STS:task_state"].is_null() {
                return current;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "server {server}'s task not done within {timeout:?}: {current}"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// The Cinder attachment ids of a volume, with their server.
    async fn attachment_ids(&self, volume: &str) -> Vec<(String, String)> {
        self.volume(volume).await["attachments"]
            .as_array()
            .unwrap()
            .iter()
            .map(|a| {
                let id = a["attachment_id"].as_str().unwrap().to_owned();
                (id, a["server_id"].as_str().unwrap().to_owned())
            })
            .collect()
    }
}

fn bad_request_message(body: &Value) -> &str {
    body["badRequest"]["message"].as_str().unwrap_or_default()
}

#[tokio::test]
async fn server_delete_on_a_down_host_is_a_local_delete_that_frees_the_volumes() {
    let sim = Sim::start(CLOUD).await;
    let (status, body) = sim.delete_server(NODE_DEAD).await;
    assert_eq!(status, StatusCode::NO_CONTENT, "{body}");
    // Gone at once, and Nova removed the attachment itself (past Cinder's guard).
    let (status, _) = sim
        .get(&sim.nova(&format!("/servers/{NODE_DEAD}")), None)
        .await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert!(
        !server_names(&sim, "name=node-")
            .await
            .contains(&"node-dead".to_owned())
    );
    let volume = sim.volume(PVC_DEAD).await;
    assert_eq!(volume["status"], "available");
    assert_eq!(volume["attachments"], json!([]));
    assert_eq!(sim.delete_server(NODE_DEAD).await.0, StatusCode::NOT_FOUND);
    assert_eq!(sim.delete_server(NODE_GONE).await.0, StatusCode::NOT_FOUND);
    // A live host forced down is down to Nova: local delete too. Its boot volume is kept and
    // freed like the others; the multiattach volume stays with the other server.
    force_down(&sim, "compute-2", true).await;
    assert_eq!(sim.delete_server(NODE_B).await.0, StatusCode::NO_CONTENT);
    assert_eq!(sim.volume(PVC_B).await["status"], "available");
    assert_eq!(sim.volume(ROOT_B).await["status"], "available");
    assert_eq!(
        sim.attachment_ids(PVC_MULTI)
            .await
            .iter()
            .map(|(_, s)| s.as_str())
            .collect::<Vec<_>>(),
        [NODE_A]
    );
}

#[tokio::test]
async fn server_delete_on_an_up_host_takes_detach_seconds_and_detaches() {
    let sim = Sim::start(&member_cloud()).await;
    let (status, body) = sim.delete_server(NODE_B).await;
    assert_eq!(status, StatusCode::NO_CONTENT, "{body}");
    let server = sim.server(NODE_B, "compute 2.1").await;
    assert_eq!(server["OS-EXT-STS:task_state"], "deleting");
    assert_eq!(server["status"], "SHUTOFF");
    assert_eq!(server["OS-EXT-STS:vm_state"], "stopped");
    assert_eq!(sim.volume(PVC_B).await["status"], "in-use");
    sim.wait_status(PVC_B, "available", Duration::from_secs(5))
        .await;
    let (status, _) = sim
        .get(&sim.nova(&format!("/servers/{NODE_B}")), None)
        .await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert_eq!(sim.volume(ROOT_B).await["status"], "available");
    assert_eq!(sim.volume(PVC_MULTI).await["status"], "in-use");
}

#[tokio::test]
async fn server_delete_on_a_host_dead_within_service_down_time_is_never_carried_out() {
    let scenario = CLOUD
        .replace("{name: compute-dead, state: down}", "{name: compute-dead}")
        .replace(
            "  behaviour:\n    detach_seconds: 0.3\n",
            "  behaviour:\n    detach_seconds: 0.3\n    service_down_time: 30\ntimeline:\n  - {at: 0ms, host_state: {host: compute-dead, state: down}}\n",
        );
    let sim = Sim::start(&scenario).await;
    assert_eq!(sim.delete_server(NODE_DEAD).await.0, StatusCode::NO_CONTENT);
    tokio::time::sleep(Duration::from_millis(700)).await;
    let server = sim.server(NODE_DEAD, "compute 2.1").await;
    assert_eq!(server["OS-EXT-STS:task_state"], "deleting");
    assert_eq!(server["status"], "ACTIVE");
    assert_eq!(sim.volume(PVC_DEAD).await["status"], "in-use");
}

#[tokio::test]
async fn evacuate_is_refused_while_the_source_is_up_and_to_a_member() {
    let sim = Sim::start(CLOUD).await;
    let (status, body) = sim.evacuate(NODE_A, "compute 2.53", json!({})).await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    assert_eq!(
        bad_request_message(&body),
        "Compute service of compute-1 is still in use."
    );
    assert!(sim.server(NODE_A, "compute 2.1").await["OS-EXT-STS:task_state"].is_null());
    let (status, body) = sim
        .evacuate(NODE_A, "compute 2.53", json!({"host": "nowhere"}))
        .await;
    assert_eq!(status, StatusCode::NOT_FOUND, "{body}");
    let (status, body) = sim
        .evacuate(NODE_A, "compute 2.53", json!({"host": "compute-1"}))
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    assert_eq!(
        bad_request_message(&body),
        "The target host can't be the same one."
    );
    // A suspended server may not be evacuated, whatever its host.
    force_down(&sim, "compute-2", true).await;
    let (status, body) = sim
        .evacuate(NODE_SUSPENDED, "compute 2.53", json!({}))
        .await;
    assert_eq!(status, StatusCode::CONFLICT, "{body}");
    let member = Sim::start(&member_cloud()).await;
    let (status, body) = member.evacuate(NODE_DEAD, "compute 2.53", json!({})).await;
    assert_eq!(status, StatusCode::FORBIDDEN, "{body}");
    assert_eq!(
        forbidden_message(&body),
        "Policy doesn't allow os_compute_api:os-evacuate to be performed."
    );
}

#[tokio::test]
async fn evacuate_once_forced_down_rebuilds_the_server_elsewhere_with_its_volumes() {
    let sim = Sim::start(CLOUD).await;
    force_down(&sim, "compute-1", true).await;
    let before = sim.attachment_ids(PVC_MULTI).await;
    let (status, body) = sim.evacuate(NODE_A, "compute 2.53", json!({})).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body, Value::Null);
    let server = sim.server(NODE_A, "compute 2.53").await;
    assert_eq!(server["OS-EXT-STS:task_state"], "rebuilding");
    assert_eq!(server["status"], "REBUILD");
    assert_eq!(server_names(&sim, "status=REBUILD").await, ["node-a"]);
    let server = sim.wait_task_done(NODE_A, Duration::from_secs(5)).await;
    assert_eq!(server["status"], "ACTIVE");
    assert_eq!(server["OS-EXT-SRV-ATTR:host"], "compute-2");
    assert_eq!(server["id"], NODE_A);
    // Same volumes on the same server, new attachment ids; never `available`.
    let after = sim.attachment_ids(PVC_MULTI).await;
    assert_eq!(after.len(), 2);
    let old_a = before.iter().find(|(_, s)| s == NODE_A).unwrap();
    let new_a = after.iter().find(|(_, s)| s == NODE_A).unwrap();
    assert_ne!(old_a.0, new_a.0);
    assert_eq!(sim.volume(PVC_MULTI).await["status"], "in-use");
    let url = sim.nova(&format!("/servers/{NODE_A}/os-volume_attachments"));
    let (_, body) = sim.get(&url, Some("compute 2.89")).await;
    let ids: BTreeSet<&str> = body["volumeAttachments"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a["volumeId"].as_str().unwrap())
        .collect();
    assert_eq!(ids, BTreeSet::from([PVC_STUCK, PVC_MULTI]));
    // Before 2.14 the answer carries the admin password.
    let (status, body) = sim
        .evacuate(NODE_DEAD, "compute 2.1", json!({"host": "compute-2"}))
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert!(body["adminPass"].is_string(), "{body}");
}

#[tokio::test]
async fn evacuate_at_2_95_leaves_the_server_shutoff_and_no_valid_host_is_error() {
    let sim = Sim::start(CLOUD).await;
    let (status, body) = sim
        .evacuate(NODE_DEAD, "compute 2.95", json!({"host": "compute-2"}))
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let server = sim.wait_task_done(NODE_DEAD, Duration::from_secs(5)).await;
    assert_eq!(server["status"], "SHUTOFF");
    assert_eq!(server["OS-EXT-STS:vm_state"], "stopped");
    assert_eq!(server["OS-EXT-STS:power_state"], 4);
    assert_eq!(server["OS-EXT-SRV-ATTR:host"], "compute-2");
    let volume = sim.volume(PVC_DEAD).await;
    assert_eq!(volume["status"], "in-use");
    assert_eq!(volume["attachments"][0]["server_id"], NODE_DEAD);
    // With every other host down the scheduler finds none: accepted, then ERROR.
    force_down(&sim, "compute-1", true).await;
    force_down(&sim, "compute-2", true).await;
    let (status, body) = sim.evacuate(NODE_B, "compute 2.53", json!({})).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let server = sim.server(NODE_B, "compute 2.53").await;
    assert_eq!(server["status"], "ERROR");
    assert!(server["OS-EXT-STS:task_state"].is_null());
    assert_eq!(server["OS-EXT-SRV-ATTR:host"], "compute-2");
}

// ----- Behaviour: lists, microversions, faults ---------------------------------------------------

async fn server_names(sim: &Sim, query: &str) -> Vec<String> {
    let (status, body) = sim.get(&sim.nova(&format!("/servers?{query}")), None).await;
    assert_eq!(status, StatusCode::OK, "{query}: {body}");
    body["servers"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["name"].as_str().unwrap().to_owned())
        .collect()
}

#[tokio::test]
async fn server_name_and_ip_filters_work_as_novas() {
    let sim = Sim::start(CLOUD).await;
    assert_eq!(server_names(&sim, "name=node-b").await, ["node-b"]);
    // Nova lists the newest first (`created_at`, then `id`, descending): the scenario's servers
    // were created together, node-b after node-a.
    assert_eq!(
        server_names(&sim, "name=node-(a|b)").await,
        ["node-b", "node-a"]
    );
    assert_eq!(server_names(&sim, "name=^node-d").await, ["node-dead"]);
    assert!(server_names(&sim, "name=nomatch").await.is_empty());
    assert_eq!(server_names(&sim, "ip=10.0.0.12").await, ["node-b"]);
    // With Neutron, `ip` is a substring of a fixed address (10.0.0.130 has 10.0.0.13) ...
    assert_eq!(server_names(&sim, "ip=10.0.0.13").await, ["node-error"]);
    assert_eq!(server_names(&sim, "ip=0.0.11").await, ["node-a"]);
    // ... after Nova strips `^`, `$` and `\.` from an anchored, escaped pattern.
    assert_eq!(
        server_names(&sim, "ip=%5E10%5C.0%5C.0%5C.13%24").await,
        ["node-error"]
    );
    let (status, _) = sim.get(&sim.nova("/servers?name=("), None).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
}

#[tokio::test]
async fn pagination_follows_markers_to_an_empty_page() {
    let sim = Sim::start(CLOUD).await;
    for (url, key, links, expected) in [
        (sim.nova("/servers"), "servers", "servers_links", 5),
        (sim.cinder("/volumes"), "volumes", "volumes_links", 9),
    ] {
        let (mut seen, mut pages) = (Vec::new(), 0);
        let mut next = format!("{url}?limit=2");
        loop {
            pages += 1;
            assert!(pages <= 10, "paging does not end");
            let (status, body) = sim.get(&next, None).await;
            assert_eq!(status, StatusCode::OK);
            let items = body[key].as_array().unwrap();
            if items.is_empty() {
                assert!(body.get(links).is_none());
                break;
            }
            seen.extend(items.iter().map(|i| i["id"].as_str().unwrap().to_owned()));
            match body[links][0]["href"].as_str() {
                Some(href) => next = href.to_owned(),
                None => break,
            }
        }
        let unique: BTreeSet<&String> = seen.iter().collect();
        assert_eq!((seen.len(), unique.len()), (expected, expected), "{key}");
    }
    let (status, _) = sim.get(&sim.nova("/servers?marker=nope"), None).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
}

#[tokio::test]
async fn microversions_are_negotiated_echoed_and_refused() {
    let sim = Sim::start(CLOUD).await;
    let url = sim.nova(&format!("/servers/{NODE_A}"));
    let request = |name: &'static str, value: &'static str| {
        sim.http
            .get(&url)
            .header("X-Auth-Token", &sim.token)
            .header(name, value)
            .send()
    };
    let response = request("OpenStack-API-Version", "compute 2.53")
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(response.headers()["openstack-api-version"], "compute 2.53");
    assert_eq!(response.headers()["x-openstack-nova-api-version"], "2.53");
    let vary = response.headers()["vary"].to_str().unwrap().to_owned();
    assert!(
        vary.contains("OpenStack-API-Version") && vary.contains("X-OpenStack-Nova-API-Version")
    );
    let response = request("X-OpenStack-Nova-API-Version", "2.16")
        .await
        .unwrap();
    assert_eq!(response.headers()["openstack-api-version"], "compute 2.16");
    let response = request("OpenStack-API-Version", "compute latest")
        .await
        .unwrap();
    assert_eq!(response.headers()["openstack-api-version"], "compute 2.96");
    let response = request("OpenStack-API-Version", "compute 2.200")
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::NOT_ACCEPTABLE);
    let response = request("OpenStack-API-Version", "compute two")
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::BAD_REQUEST);
    let (_, headers, _) = sim.call(Method::GET, &url, None, None).await;
    assert_eq!(headers["openstack-api-version"], "compute 2.1");

    let volume = sim.cinder(&format!("/volumes/{PVC_B}"));
    let (status, headers, _) = sim
        .call(Method::GET, &volume, Some("volume 3.27"), None)
        .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(headers["openstack-api-version"], "volume 3.27");
    let (_, headers, _) = sim.call(Method::GET, &volume, None, None).await;
    assert_eq!(headers["openstack-api-version"], "volume 3.0");
    let (status, _, body) = sim
        .call(Method::GET, &volume, Some("volume 3.99"), None)
        .await;
    assert_eq!(status, StatusCode::NOT_ACCEPTABLE, "{body}");
}

#[tokio::test]
async fn injected_faults_apply_then_heal() {
    let scenario = CLOUD.replace(
        "    detach_seconds: 0.3\n",
        "    detach_seconds: 0.3\n    faults:\n      - {method: DELETE, path: \"/servers/*/os-volume_attachments/*\", status: 500, times: 1}\n",
    );
    let sim = Sim::start(&scenario).await;
    let (status, body) = sim.detach(NODE_B, PVC_B).await;
    assert_eq!(status, StatusCode::INTERNAL_SERVER_ERROR);
    assert_eq!(body["computeFault"]["code"], 500);
    assert_eq!(sim.volume(PVC_B).await["status"], "in-use");
    assert_eq!(sim.detach(NODE_B, PVC_B).await.0, StatusCode::ACCEPTED);
    let deletes: Vec<u16> = sim
        .running
        .requests()
        .iter()
        .filter(|r| r.method == "DELETE")
        .map(|r| r.status)
        .collect();
    assert_eq!(deletes, [500, 202]);
}

// ----- The emulated CSI attacher's interface ----------------------------------------------------

#[tokio::test]
async fn attacher_interface_follows_novas_rules() {
    let sim = Sim::start(CLOUD).await;
    let world = &sim.running.world;
    let now = world.now_ms();
    let mut state = world.lock();
    let cloud = &mut state.cloud;
    assert_eq!(
        cloud.server_for_node(Some(&format!("openstack:///{NODE_A}")), "x"),
        Some(NODE_A.to_owned())
    );
    assert_eq!(
        cloud.server_for_node(Some(&format!("openstack://RegionOne/{NODE_B}")), "x"),
        Some(NODE_B.to_owned())
    );
    assert_eq!(
        cloud.server_for_node(None, "node-b"),
        Some(NODE_B.to_owned())
    );
    assert_eq!(cloud.server_for_node(None, "node-zzz"), None);

    assert!(cloud.is_attached(PVC_B, NODE_B));
    assert_eq!(
        cloud.attacher_detach(NODE_B, PVC_B, now),
        (Some(202), Ok(()))
    );
    assert!(cloud.is_attached(PVC_B, NODE_B), "detaching still counts");
    assert_eq!(
        cloud.attacher_detach(NODE_B, PVC_B, now),
        (None, Ok(())),
        "already detaching: no call"
    );
    assert_eq!(
        cloud.attacher_detach(NODE_GONE, PVC_GONE, now),
        (Some(404), Ok(())),
        "server gone"
    );
    assert_eq!(
        cloud.attacher_detach(NODE_A, PVC_FREE, now),
        (None, Ok(())),
        "not attached: no call"
    );
    let (called, refused) = cloud.attacher_detach(NODE_ERROR, PVC_ERROR, now);
    assert_eq!(called, Some(409));
    let refused = refused.unwrap_err();
    assert!(refused.contains("vm_state error"), "{refused}");
    assert!(cloud.attacher_detach(NODE_B, ROOT_B, now).1.is_err());
    cloud.advance(now + 300);
    assert!(!cloud.is_attached(PVC_B, NODE_B));
    assert_eq!(cloud.volume(PVC_B).unwrap().status, "available");
}

// ----- The production client -------------------------------------------------------------------

#[tokio::test]
async fn osauth_authenticates_and_reads_through_the_catalog() {
    use osauth::common::IdOrName;
    use osauth::identity::{Password, Scope};

    let sim = Sim::serve(&Scenario::seed()).await;
    let credentials = sim.running.world.lock().credentials.clone();
    let auth_url = format!("{}/v3", sim.running.endpoints.keystone);
    let scope = Scope::Project {
        project: IdOrName::from_name(&credentials.project),
        domain: Some(IdOrName::from_name(&credentials.domain)),
    };
    let auth = Password::new(
        &auth_url,
        credentials.username.as_str(),
        credentials.password.as_str(),
        credentials.domain.as_str(),
    )
    .unwrap()
    .with_scope(scope);
    let session = tokio::time::timeout(Duration::from_secs(10), osauth::Session::new(auth))
        .await
        .unwrap()
        .unwrap()
        .with_region("RegionOne");

    // Nova through the catalog's `compute` endpoint, with a microversion.
    let server: Value = session
        .get(
            osauth::services::COMPUTE,
            &["servers", "9454752c-f0e2-4447-9b7f-16434c49f7ac"],
        )
        .api_version((2, 16))
        .fetch()
        .await
        .unwrap();
    assert_eq!(server["server"]["name"], "node-4-nude");
    assert_eq!(server["server"]["status"], "SHUTOFF");

    // Cinder through the session: osauth finds the `block-storage` endpoint in the catalog.
    let volume: Value = session
        .get(
            osauth::services::BLOCK_STORAGE,
            &["volumes", "4e41d530-cb5f-49a9-9c6f-a591abdb6f11"],
        )
        .header("OpenStack-API-Version", "volume 3.70")
        .fetch()
        .await
        .unwrap();
    assert_eq!(volume["volume"]["status"], "in-use");
    assert_eq!(
        volume["volume"]["attachments"][0]["server_id"],
        "9454752c-f0e2-4447-9b7f-16434c49f7ac"
    );
    let requests = sim.running.requests();
    assert!(
        requests
            .iter()
            .all(|r| !r.is_mutating() || r.service.as_str() == "keystone")
    );
    assert!(requests.iter().any(|r| r.service.as_str() == "cinder"));
}

// ----- Behaviour: attaching ----------------------------------------------------------------------

impl Sim {
    async fn attach(&self, server: &str, volume: &str, version: &str) -> (StatusCode, Value) {
        let url = self.nova(&format!("/servers/{server}/os-volume_attachments"));
        let body = json!({"volumeAttachment": {"volumeId": volume}});
        let (status, _, body) = self
            .call(Method::POST, &url, Some(version), Some(body))
            .await;
        (status, body)
    }
}

#[tokio::test]
async fn attach_goes_through_attaching_to_in_use_with_the_sample_body() {
    for (version, dir) in [
        ("2.1", ""),
        ("2.70", "v2.70/"),
        ("2.79", "v2.79/"),
        ("2.89", "v2.89/"),
    ] {
        let sim = Sim::start(CLOUD).await;
        let (status, body) = sim
            .attach(NODE_A, PVC_FREE, &format!("compute {version}"))
            .await;
        assert_eq!(status, StatusCode::OK, "{body}");
        assert_shape(
            &format!("nova/os-volume_attachments/{dir}attach-volume-to-server-resp.json"),
            &body,
            &[],
        );
        assert_eq!(body["volumeAttachment"]["volumeId"], PVC_FREE);
        assert_eq!(body["volumeAttachment"]["serverId"], NODE_A);
        assert_eq!(sim.volume(PVC_FREE).await["status"], "attaching");
        let volume = sim
            .wait_status(PVC_FREE, "in-use", Duration::from_secs(5))
            .await;
        assert_eq!(volume["attachments"][0]["server_id"], NODE_A);
        // Attached once: a second attach to the same server, or one to another server, is
        // refused by Nova and Cinder.
        assert_eq!(
            sim.attach(NODE_A, PVC_FREE, "compute 2.1").await.0,
            StatusCode::BAD_REQUEST
        );
        assert_eq!(
            sim.attach(NODE_B, PVC_FREE, "compute 2.1").await.0,
            StatusCode::BAD_REQUEST
        );
    }
}

#[tokio::test]
async fn attach_is_refused_as_nova_refuses_it_and_never_completes_on_a_dead_host() {
    let sim = Sim::start(CLOUD).await;
    assert_eq!(
        sim.attach(NODE_GONE, PVC_FREE, "compute 2.1").await.0,
        StatusCode::NOT_FOUND
    );
    assert_eq!(
        sim.attach(
            NODE_A,
            "aaaaaaaa-0000-4000-8000-000000000404",
            "compute 2.1"
        )
        .await
        .0,
        StatusCode::NOT_FOUND
    );
    assert_eq!(
        sim.attach(NODE_ERROR, PVC_FREE, "compute 2.1").await.0,
        StatusCode::CONFLICT
    );
    let (status, _) = sim.attach(NODE_DEAD, PVC_FREE, "compute 2.1").await;
    assert_eq!(status, StatusCode::OK);
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert_eq!(sim.volume(PVC_FREE).await["status"], "attaching");
}

// ----- Behaviour: changes-since and changes-before -----------------------------------------------

impl Sim {
    /// The emulated cloud's wall-clock time now.
    fn now(&self) -> jiff::Timestamp {
        let world = &self.running.world;
        let now_ms = world.now_ms();
        world.lock().cloud.timestamp(now_ms)
    }

    /// `GET /servers/detail?QUERY` at `version`.
    async fn detail(&self, query: &str, version: &str) -> (StatusCode, Value) {
        let url = self.nova(&format!("/servers/detail?{query}"));
        self.get(&url, Some(&format!("compute {version}"))).await
    }

    /// The ids of `GET /servers/detail?QUERY` at `version`, which must answer 200.
    async fn listed(&self, query: &str, version: &str) -> Vec<String> {
        let (status, body) = self.detail(query, version).await;
        assert_eq!(status, StatusCode::OK, "{query}: {body}");
        ids(&body)
    }

    /// Polls the server until it has `status`, for at most five seconds.
    async fn wait_server_status(&self, server: &str, status: &str) -> Value {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
        loop {
            let current = self.server(server, "compute 2.1").await;
            if current["status"] == status {
                return current;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "server {server} not {status}: {current}"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Stops the server and waits until it is SHUTOFF; returns its `updated`.
    async fn stop_server(&self, server: &str) -> String {
        assert_eq!(self.action(server, "os-stop").await, StatusCode::ACCEPTED);
        self.stop_server_done(server).await
    }

    /// Waits until the server is SHUTOFF; returns its `updated`.
    async fn stop_server_done(&self, server: &str) -> String {
        let stopped = self.wait_server_status(server, "SHUTOFF").await;
        stopped["updated"].as_str().unwrap().to_owned()
    }
}

/// The ids in a server list answer, in its order.
fn ids(body: &Value) -> Vec<String> {
    body["servers"]
        .as_array()
        .unwrap()
        .iter()
        .map(|server| server["id"].as_str().unwrap().to_owned())
        .collect()
}

/// The servers of a list answer by id.
fn by_id(body: &Value) -> std::collections::BTreeMap<String, Value> {
    body["servers"]
        .as_array()
        .unwrap()
        .iter()
        .map(|server| (server["id"].as_str().unwrap().to_owned(), server.clone()))
        .collect()
}

/// A time as a query value: whole seconds, UTC (`Z`), `:` and `+` escaped.
fn query_time(time: jiff::Timestamp) -> String {
    time.strftime("%Y-%m-%dT%H:%M:%SZ")
        .to_string()
        .replace(':', "%3A")
}

/// A Nova `updated` time moved by `seconds`, as a query value.
fn shifted(updated: &str, seconds: i64) -> String {
    let time: jiff::Timestamp = updated.parse().unwrap();
    query_time(time + jiff::SignedDuration::from_secs(seconds))
}

#[tokio::test]
async fn changes_since_lists_a_server_changed_since_and_not_one_unchanged() {
    let sim = Sim::start(CLOUD).await;
    let updated = sim.stop_server(NODE_A).await;
    let since = shifted(&updated, 0);
    // `updated_at >= changes-since`: the server changed at `updated` is in; no other server
    // changed (the scenario's are nine days old, node-gone was deleted then).
    assert_eq!(
        sim.listed(&format!("changes-since={since}"), "2.1").await,
        [NODE_A]
    );
    let (status, index) = sim
        .get(&sim.nova(&format!("/servers?changes-since={since}")), None)
        .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(ids(&index), [NODE_A]);
    let (_, body) = sim.detail(&format!("changes-since={since}"), "2.1").await;
    let listed = &body["servers"][0];
    assert_eq!(
        (listed["status"].as_str(), listed["updated"].as_str()),
        (Some("SHUTOFF"), Some(updated.as_str()))
    );
    assert!(
        sim.listed(&format!("changes-since={}", shifted(&updated, 1)), "2.1")
            .await
            .is_empty(),
        "nothing changed after {updated}"
    );
    // The same instant with an offset, and without a zone (UTC).
    let time: jiff::Timestamp = updated.parse().unwrap();
    let offset = time
        .to_zoned(jiff::tz::TimeZone::fixed(jiff::tz::offset(2)))
        .strftime("%Y-%m-%dT%H:%M:%S%:z")
        .to_string()
        .replace(':', "%3A")
        .replace('+', "%2B");
    let naive = time.strftime("%Y-%m-%dT%H:%M:%S").to_string();
    for since in [offset, naive] {
        assert_eq!(
            sim.listed(&format!("changes-since={since}"), "2.1").await,
            [NODE_A],
            "{since}"
        );
    }
    // Combined with the other filters.
    let name = format!("changes-since={}&name=node-a", shifted(&updated, 0));
    assert_eq!(sim.listed(&name, "2.1").await, [NODE_A]);
    let other = format!("changes-since={}&name=node-b", shifted(&updated, 0));
    assert!(sim.listed(&other, "2.1").await.is_empty());
    let status = format!("changes-since={}&status=ACTIVE", shifted(&updated, 0));
    assert!(sim.listed(&status, "2.1").await.is_empty());
}

#[tokio::test]
async fn updated_moves_on_every_save_and_not_on_a_volume_attach_or_detach() {
    let sim = Sim::start(CLOUD).await;
    let before = query_time(sim.now() - jiff::SignedDuration::from_secs(1));
    let since = format!("changes-since={before}");
    // Nova saves no instance to attach or detach a volume.
    let (status, _) = sim.detach(NODE_B, PVC_B).await;
    assert_eq!(status, StatusCode::ACCEPTED);
    sim.wait_status(PVC_B, "available", Duration::from_secs(5))
        .await;
    assert_eq!(
        sim.attach(NODE_A, PVC_FREE, "compute 2.1").await.0,
        StatusCode::OK
    );
    sim.wait_status(PVC_FREE, "in-use", Duration::from_secs(5))
        .await;
    assert!(sim.listed(&since, "2.1").await.is_empty());
    // A stop request saves the task at once.
    assert_eq!(sim.action(NODE_A, "os-stop").await, StatusCode::ACCEPTED);
    let (_, body) = sim.detail(&since, "2.1").await;
    assert_eq!(ids(&body), [NODE_A]);
    assert_eq!(body["servers"][0]["OS-EXT-STS:task_state"], "powering-off");
    // An evacuate (its host forced down first), and its rebuild.
    force_down(&sim, "compute-dead", true).await;
    let (status, body) = sim.evacuate(NODE_DEAD, "compute 2.29", json!({})).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let listed: BTreeSet<String> = sim.listed(&since, "2.1").await.into_iter().collect();
    assert_eq!(
        listed,
        BTreeSet::from([NODE_A.to_owned(), NODE_DEAD.to_owned()])
    );
    // The compute host's save when the stop is done, well after the request's.
    let slow = Sim::start(&CLOUD.replace("detach_seconds: 0.3", "detach_seconds: 1.5")).await;
    assert_eq!(slow.action(NODE_A, "os-stop").await, StatusCode::ACCEPTED);
    let requested = slow.server(NODE_A, "compute 2.1").await["updated"].clone();
    let done = slow.stop_server_done(NODE_A).await;
    assert!(
        done.as_str() > requested.as_str().unwrap(),
        "{requested} then {done}"
    );
    assert_eq!(
        slow.listed(&format!("changes-since={}", shifted(&done, 0)), "2.1")
            .await,
        [NODE_A]
    );
    // A change on the timeline (as a compute host reports it).
    let timeline = r#"
name: timeline-save
openstack:
  compute_hosts: [{name: compute-1}]
  servers:
    - {id: 11111111-1111-4111-8111-111111111111, name: node-a, status: ACTIVE, host: compute-1}
    - {id: 22222222-2222-4222-8222-222222222222, name: node-b, status: ACTIVE, host: compute-1}
timeline:
  - {at: 500ms, server_status: {server: 11111111-1111-4111-8111-111111111111, status: SHUTOFF}}
  - {at: 500ms, server_status: {server: 22222222-2222-4222-8222-222222222222, status: ACTIVE}}
"#;
    let sim = Sim::start(timeline).await;
    let since = format!(
        "changes-since={}",
        query_time(sim.now() - jiff::SignedDuration::from_secs(1))
    );
    sim.wait_server_status(NODE_A, "SHUTOFF").await;
    tokio::time::sleep(Duration::from_millis(200)).await;
    // node-b's step changes nothing: no save.
    assert_eq!(sim.listed(&since, "2.1").await, [NODE_A]);
}

#[tokio::test]
async fn a_deleted_server_is_listed_as_deleted_only_to_changes_since() {
    let sim = Sim::start(CLOUD).await;
    let since = format!(
        "changes-since={}",
        query_time(sim.now() - jiff::SignedDuration::from_secs(1))
    );
    // On a dead host: a local delete, done at once; on a live one, the compute host's, after
    // detach_seconds.
    assert_eq!(sim.delete_server(NODE_DEAD).await.0, StatusCode::NO_CONTENT);
    assert_eq!(sim.delete_server(NODE_A).await.0, StatusCode::NO_CONTENT);
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    while sim
        .get(&sim.nova(&format!("/servers/{NODE_A}")), None)
        .await
        .0
        != StatusCode::NOT_FOUND
    {
        assert!(tokio::time::Instant::now() < deadline, "node-a not deleted");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let (status, _) = sim
        .get(&sim.nova(&format!("/servers/{NODE_DEAD}")), None)
        .await;
    assert_eq!(
        status,
        StatusCode::NOT_FOUND,
        "an admin gets no deleted server"
    );
    let plain = sim.listed("", "2.1").await;
    assert!(!plain.contains(&NODE_DEAD.to_owned()) && !plain.contains(&NODE_A.to_owned()));

    let (status, body) = sim.detail(&since, "2.96").await;
    assert_eq!(status, StatusCode::OK);
    let listed = by_id(&body);
    assert_eq!(
        listed.keys().collect::<Vec<_>>(),
        [NODE_A, NODE_DEAD],
        "{body:#}"
    );
    for (id, power_state) in [(NODE_A, 0), (NODE_DEAD, 1)] {
        // The compute host's delete sets NOSTATE; a local delete leaves the power state.
        let server = &listed[id];
        assert_eq!(server["status"], "DELETED", "{server:#}");
        assert_eq!(server["OS-EXT-STS:vm_state"], "deleted");
        assert_eq!(server["OS-EXT-STS:task_state"], Value::Null);
        assert_eq!(server["OS-EXT-STS:power_state"], power_state, "{id}");
        assert_eq!(server["addresses"], json!({}));
        assert_eq!(server["os-extended-volumes:volumes_attached"], json!([]));
        assert!(server["OS-SRV-USG:terminated_at"].is_string());
        assert!(server.get("security_groups").is_none());
        assert!(server.get("progress").is_none());
    }
    // The scenario's node-gone was deleted nine days ago.
    let old = "changes-since=2000-01-01T00%3A00%3A00Z";
    let everything: BTreeSet<String> = sim.listed(old, "2.1").await.into_iter().collect();
    assert_eq!(everything.len(), 6);
    let deleted = BTreeSet::from([NODE_A, NODE_DEAD, NODE_GONE].map(str::to_owned));
    // An admin's `deleted` decides alone; `status=DELETED` is the deleted ones.
    let only: BTreeSet<String> = sim
        .listed("deleted=true", "2.1")
        .await
        .into_iter()
        .collect();
    assert_eq!(only, deleted);
    let status: BTreeSet<String> = sim
        .listed("status=DELETED", "2.1")
        .await
        .into_iter()
        .collect();
    assert_eq!(status, deleted);
    let live: BTreeSet<String> = sim
        .listed(&format!("{old}&deleted=false"), "2.1")
        .await
        .into_iter()
        .collect();
    assert_eq!(live, everything.difference(&deleted).cloned().collect());

    // A member: the same 404 and changes-since; `deleted` is not its filter, and it may not ask
    // for the status DELETED.
    let member = Sim::start(&member_cloud()).await;
    let since = format!(
        "changes-since={}",
        query_time(member.now() - jiff::SignedDuration::from_secs(1))
    );
    assert_eq!(
        member.delete_server(NODE_DEAD).await.0,
        StatusCode::NO_CONTENT
    );
    let (status, _) = member
        .get(&member.nova(&format!("/servers/{NODE_DEAD}")), None)
        .await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert_eq!(member.listed(&since, "2.1").await, [NODE_DEAD]);
    let ignored = member.listed("deleted=true", "2.1").await;
    assert_eq!(ignored.len(), 4, "live servers only: {ignored:?}");
    let (status, body) = member.detail("status=DELETED", "2.1").await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    assert_eq!(
        forbidden_message(&body),
        "Only administrators may list deleted instances"
    );
}

#[tokio::test]
async fn changes_before_needs_2_66_and_is_checked() {
    let sim = Sim::start(CLOUD).await;
    let updated = sim.stop_server(NODE_A).await;
    let live = sim.listed("", "2.1").await;
    // Before 2.66 the schema strips it: ignored, whatever its value.
    for value in ["asdf", &shifted(&updated, -1)] {
        assert_eq!(
            sim.listed(&format!("changes-before={value}"), "2.65").await,
            live,
            "{value}"
        );
    }
    let (status, body) = sim.detail("changes-before=asdf", "2.66").await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(
        bad_request_message(&body),
        "Invalid input for query parameters changes-before. Value: asdf. 'asdf' is not a \
         'date-time'"
    );
    let (status, body) = sim
        .detail(
            &format!(
                "changes-since={}&changes-before={}",
                shifted(&updated, 0),
                shifted(&updated, -1)
            ),
            "2.66",
        )
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(
        bad_request_message(&body),
        "The value of changes-since must be less than or equal to changes-before."
    );
    // `updated_at <= changes-before`, deleted servers included; both bounds inclusive.
    let before: BTreeSet<String> = sim
        .listed(&format!("changes-before={}", shifted(&updated, -1)), "2.66")
        .await
        .into_iter()
        .collect();
    let expected = BTreeSet::from(
        [NODE_B, NODE_ERROR, NODE_DEAD, NODE_GONE, NODE_SUSPENDED].map(str::to_owned),
    );
    assert_eq!(before, expected);
    let at = shifted(&updated, 0);
    assert_eq!(
        sim.listed(&format!("changes-since={at}&changes-before={at}"), "2.66")
            .await,
        [NODE_A]
    );
}

#[tokio::test]
async fn invalid_times_and_limits_are_400_with_novas_message() {
    let sim = Sim::start(CLOUD).await;
    for value in [
        "asdf",
        "1",
        "2011-13-01T00:00:00Z",
        "2011-02-30",
        "201101",
        "2011-01-24t17:08:01z",
        "2011-01-24T17:08:01 UTC",
    ] {
        let encoded = value.replace(' ', "%20");
        let (status, body) = sim.detail(&format!("changes-since={encoded}"), "2.1").await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{value}");
        assert_eq!(
            bad_request_message(&body),
            format!(
                "Invalid input for query parameters changes-since. Value: {value}. '{value}' is \
                 not a 'date-time'"
            )
        );
    }
    for value in [
        "2011",
        "2011-01-24",
        "2011-01-24T17:08:01",
        "2011-01-24T17:08:01.123456Z",
        "2011-01-24%2017:08:01-05:30",
        "20110124T170801%2B0100",
    ] {
        let (status, body) = sim.detail(&format!("changes-since={value}"), "2.1").await;
        assert_eq!(status, StatusCode::OK, "{value}: {body}");
    }
    let (status, body) = sim.detail("limit=-1", "2.1").await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(
        bad_request_message(&body),
        "Invalid input for query parameters limit. Value: -1. '-1' does not match '^[0-9]*$'"
    );
    // A status no server can have: an empty list before 2.38, a 400 from it.
    let (status, body) = sim.detail("status=nonsense", "2.37").await;
    assert_eq!((status, body), (StatusCode::OK, json!({"servers": []})));
    let (status, body) = sim.detail("status=nonsense", "2.38").await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(bad_request_message(&body), "Invalid status value");
    // A joined-table filter is an admin's 400; a member's is dropped.
    let (status, body) = sim.detail("metadata=x", "2.1").await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(
        bad_request_message(&body),
        "Invalid filter field: metadata."
    );
    let member = Sim::start(&member_cloud()).await;
    assert_eq!(member.detail("metadata=x", "2.1").await.0, StatusCode::OK);
}

#[tokio::test]
async fn changes_since_pages_through_more_than_the_max_limit_each_server_once() {
    // Ten servers, pages of at most three (Nova's `[api] max_limit`); eight change, two of them
    // deleted, which end a page each (the marker of the next one).
    let servers: String = (1..=10)
        .map(|n| {
            format!(
                "    - {{id: {n:08}-0000-4000-8000-000000000000, name: node-{n}, status: ACTIVE, \
                 host: compute-1, addresses: [10.0.1.{n}]}}\n"
            )
        })
        .collect();
    let yaml = format!(
        "name: paging
openstack:
  compute_hosts: [{{name: compute-1}}]
  servers:
{servers}  behaviour: {{detach_seconds: 0.1, nova_max_limit: 3}}
"
    );
    let sim = Sim::start(&yaml).await;
    let id = |n: u32| format!("{n:08}-0000-4000-8000-000000000000");
    let since = query_time(sim.now() - jiff::SignedDuration::from_secs(1));
    for n in [10, 9, 7, 6, 3, 1] {
        assert_eq!(sim.action(&id(n), "os-stop").await, StatusCode::ACCEPTED);
    }
    for n in [8, 4] {
        assert_eq!(sim.delete_server(&id(n)).await.0, StatusCode::NO_CONTENT);
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    // Newest first: node-10 to node-1.
    let mut next = sim.nova(&format!("/servers/detail?changes-since={since}"));
    let mut pages = Vec::new();
    loop {
        let (status, body) = sim.get(&next, None).await;
        assert_eq!(status, StatusCode::OK, "{next}: {body}");
        pages.push(ids(&body));
        match body["servers_links"][0]["href"].as_str() {
            Some(href) => {
                assert!(href.contains("changes-since="), "{href}");
                next = href.to_owned();
            }
            None => break,
        }
        assert!(pages.len() <= 5, "paging does not end");
    }
    let expected: Vec<Vec<String>> = [vec![10, 9, 8], vec![7, 6, 4], vec![3, 1]]
        .iter()
        .map(|page| page.iter().map(|&n| id(n)).collect())
        .collect();
    assert_eq!(pages, expected);
    // `limit` is capped at max_limit; the next link is the request's parameters sorted, the
    // marker in its place, urlencoded.
    let (_, body) = sim
        .detail(&format!("changes-since={since}&limit=5"), "2.1")
        .await;
    assert_eq!(ids(&body).len(), 3);
    let url = sim.nova(&format!(
        "/servers?name=node&marker={}&limit=1&changes-since={since}",
        id(10)
    ));
    let (_, body) = sim.get(&url, None).await;
    assert_eq!(ids(&body), [id(9)]);
    assert_eq!(
        body["servers_links"][0]["href"],
        sim.nova(&format!(
            "/servers?changes-since={since}&limit=1&marker={}&name=node",
            id(9)
        ))
    );
    // Before 2.75 an unknown parameter is dropped from the link; from 2.75 it is refused.
    let (_, body) = sim.detail("limit=1&foo=bar", "2.74").await;
    assert_eq!(
        body["servers_links"][0]["href"],
        sim.nova(&format!("/servers/detail?limit=1&marker={}", id(10)))
    );
    let (status, body) = sim.detail("limit=1&foo=bar", "2.75").await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(
        bad_request_message(&body),
        "Additional properties are not allowed ('foo' was unexpected)"
    );
}

impl Sim {
    /// Reads a server list to its end, following the next links: the ids, the requests made and
    /// the bytes of the answers.
    async fn read_all(&self, url: &str, version: &str) -> (Vec<String>, usize, usize) {
        let (mut seen, mut requests, mut bytes) = (Vec::new(), 0, 0);
        let mut next = url.to_owned();
        loop {
            let response = self
                .http
                .get(&next)
                .header("X-Auth-Token", &self.token)
                .header("OpenStack-API-Version", format!("compute {version}"))
                .send()
                .await
                .unwrap();
            assert_eq!(response.status(), StatusCode::OK, "{next}");
            let text = response.text().await.unwrap();
            requests += 1;
            bytes += text.len();
            let body: Value = serde_json::from_str(&text).unwrap();
            seen.extend(ids(&body));
            match body["servers_links"][0]["href"].as_str() {
                Some(href) => next = href.to_owned(),
                None => return (seen, requests, bytes),
            }
        }
    }
}

/// The measurement for issue 13 (cloud-side detection): 5,000 servers, five of which change
/// (three stopped, two deleted); what a poll costs read whole (`GET /servers/detail`, pages of
/// Nova's default `max_limit` of 1000) and read by `changes-since`, at the product's
/// microversion 2.16. Prints the figures (run with `-- --nocapture`); asserts what is listed,
/// not how long it takes.
#[tokio::test]
async fn changes_since_at_5000_servers_reads_the_changed_only() {
    const SERVERS: u32 = 5000;
    let hosts: String = (1..=50)
        .map(|n| format!("    - {{name: compute-{n}}}\n"))
        .collect();
    let servers: String = (1..=SERVERS)
        .map(|n| {
            format!(
                "    - {{id: {n:08x}-0000-4000-8000-000000000000, name: node-{n}, status: ACTIVE, \
                 host: compute-{}, addresses: [10.{}.{}.{}]}}\n",
                n % 50 + 1,
                n / 65536,
                n / 256 % 256,
                n % 256
            )
        })
        .collect();
    let yaml = format!(
        "name: five-thousand
openstack:
  compute_hosts:
{hosts}  servers:
{servers}  behaviour: {{detach_seconds: 0.1}}
"
    );
    let sim = Sim::start(&yaml).await;
    let id = |n: u32| format!("{n:08x}-0000-4000-8000-000000000000");
    let since = query_time(sim.now() - jiff::SignedDuration::from_secs(1));
    let stopped = [17, 2500, 4999];
    let deleted = [1, 5000];
    for n in stopped {
        assert_eq!(sim.action(&id(n), "os-stop").await, StatusCode::ACCEPTED);
    }
    for n in deleted {
        assert_eq!(sim.delete_server(&id(n)).await.0, StatusCode::NO_CONTENT);
    }
    for n in stopped {
        sim.wait_server_status(&id(n), "SHUTOFF").await;
    }
    tokio::time::sleep(Duration::from_millis(300)).await;

    let (full, full_requests, full_bytes) =
        sim.read_all(&sim.nova("/servers/detail"), "2.16").await;
    let unique: BTreeSet<&String> = full.iter().collect();
    let live = usize::try_from(SERVERS).unwrap() - deleted.len();
    assert_eq!((full.len(), unique.len()), (live, live));
    // Pages of Nova's default max_limit, 1000: the fifth is not full.
    assert_eq!(full_requests, 5);
    let (changed, changed_requests, changed_bytes) = sim
        .read_all(
            &sim.nova(&format!("/servers/detail?changes-since={since}")),
            "2.16",
        )
        .await;
    // Newest first: the highest ids first.
    assert_eq!(changed, [5000, 4999, 2500, 17, 1].map(id));
    let (_, index_requests, index_bytes) = sim.read_all(&sim.nova("/servers"), "2.16").await;
    println!(
        "{SERVERS} servers, {} changed (3 stopped, 2 deleted), microversion 2.16:\n\
         \x20 GET /servers/detail, whole:      {full_requests} requests, {full_bytes} bytes, \
         {} servers\n\
         \x20 GET /servers, whole:             {index_requests} requests, {index_bytes} bytes\n\
         \x20 GET /servers/detail?changes-since: {changed_requests} request, {changed_bytes} \
         bytes, {} servers ({:.3}% of the whole detail)",
        changed.len(),
        full.len(),
        changed.len(),
        100.0 * changed_bytes as f64 / full_bytes as f64
    );
    assert!(changed_bytes * 100 < full_bytes);
}
