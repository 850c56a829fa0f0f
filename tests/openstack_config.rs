//! OpenStack settings (`cloud.conf`, `clouds.yaml`, `OS_*`) and the Keystone session, against
//! fixture files and a tiny Keystone of our own on loopback.

use std::collections::BTreeMap;
use std::fmt::{Debug, Display};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use axum::Json;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use cinder_remediator::openstack::config::{
    self, ApplicationCredentialRef, ConfigError, ConfigSource, IdOrName, Identity, Interface,
    OpenStackConfig, ProjectScope, Source, UserRef,
};
use cinder_remediator::openstack::session::{self, ConnectOptions, SessionError};
use secrecy::ExposeSecret;
use serde_json::{Value, json};

fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/config")
        .join(name)
}

/// A source with an empty environment and no clouds.yaml search path.
fn empty_source() -> Source {
    let mut source = Source::from_env(Vec::<(String, String)>::new());
    source.clouds_yaml_search.clear();
    source
}

fn env_source(vars: &[(&str, &str)]) -> Source {
    let mut source = Source::from_env(vars.iter().copied());
    source.clouds_yaml_search.clear();
    source
}

fn conf(name: &str) -> Result<OpenStackConfig, ConfigError> {
    config::load(&empty_source().with_cloud_config(Some(fixture(name))))
}

fn password(config: &OpenStackConfig) -> &str {
    match config.identity() {
        Identity::Password { password, .. } => password.expose_secret(),
        Identity::ApplicationCredential { .. } => panic!("not a password identity"),
    }
}

fn secret(config: &OpenStackConfig) -> &str {
    match config.identity() {
        Identity::ApplicationCredential { secret, .. } => secret.expose_secret(),
        Identity::Password { .. } => panic!("not an application credential"),
    }
}

/// One line, none of the secrets, in `Display` and `Debug`.
fn assert_clean(err: &(impl Display + Debug), secrets: &[&str]) {
    let display = err.to_string();
    let debug = format!("{err:?}");
    assert!(!display.contains('\n'), "more than one line: {display}");
    for secret in secrets {
        assert!(!display.contains(secret), "secret in {display}");
        assert!(!debug.contains(secret), "secret in {debug}");
    }
}

fn name(text: &str) -> IdOrName {
    IdOrName::Name(text.into())
}

fn id(text: &str) -> IdOrName {
    IdOrName::Id(text.into())
}

// ---------------------------------------------------------------- cloud.conf

#[test]
fn cloud_conf_password_with_domain_names_and_other_sections() {
    let config = conf("password-domain-names.conf").unwrap();
    assert_eq!(
        config.auth_url().as_str(),
        "https://keystone.example.com:5000/v3"
    );
    assert!(matches!(
        config.identity(),
        Identity::Password { user: UserRef::Name { name, domain }, .. }
            if name == "k8s-ccm" && *domain == self::name("Default")
    ));
    assert_eq!(password(&config), "Fixture#Pass;word \"quoted\"");
    assert_eq!(
        config.scope(),
        Some(&ProjectScope::Name {
            name: "kubernetes".into(),
            domain: name("Default"),
        })
    );
    assert_eq!(config.region(), Some("RegionOne"));
    assert_eq!(config.interface(), Interface::Internal);
    assert_eq!(
        config.source(),
        &ConfigSource::CloudConfig {
            path: fixture("password-domain-names.conf"),
            clouds_yaml: None
        }
    );
    assert!(config.warnings().is_empty());
    let debug = format!("{config:?}");
    assert!(debug.contains("k8s-ccm"));
    assert!(!debug.contains("Fixture#Pass"), "{debug}");
}

#[test]
fn cloud_conf_ids_only_and_last_value_wins() {
    let config = conf("ids-only.conf").unwrap();
    assert_eq!(
        config.auth_url().as_str(),
        "https://keystone.example.com/identity/v3"
    );
    assert!(matches!(
        config.identity(),
        Identity::Password { user: UserRef::Id(user), .. } if user == "ee4dfb6e5540447cb3741905149d9b6e"
    ));
    assert_eq!(
        config.scope(),
        Some(&ProjectScope::Id("a6944d763bf64ee6a275f1263fae0352".into()))
    );
    assert_eq!(config.region(), Some("RegionTwo"));
    assert_eq!(config.interface(), Interface::Public);
}

#[test]
fn cloud_conf_application_credential_by_id_ignores_empty_keys_and_project() {
    let config = conf("appcred-id.conf").unwrap();
    assert!(matches!(
        config.identity(),
        Identity::ApplicationCredential { credential: ApplicationCredentialRef::Id(id), .. }
            if id == "423f19a4ac1e4f48bbb4180756e6eb6c"
    ));
    assert_eq!(secret(&config), "Fixture-AppCred-Secret");
    assert_eq!(
        config.scope(),
        None,
        "an application credential fixes its project"
    );
    assert!(config.warnings().is_empty(), "{:?}", config.warnings());
    assert!(!format!("{config:?}").contains("Fixture-AppCred-Secret"));
}

#[test]
fn cloud_conf_application_credential_by_name_and_user_id() {
    let config = conf("appcred-name.conf").unwrap();
    assert!(matches!(
        config.identity(),
        Identity::ApplicationCredential {
            credential: ApplicationCredentialRef::Name { name, user: UserRef::Id(user) },
            ..
        } if name == "monitoring" && user == "423f19a4ac1e4f48bbb4180756e6eb6c"
    ));
    assert_eq!(secret(&config), "Fixture-AppCred-Name-Secret");
}

#[test]
fn cloud_conf_tls_insecure_is_ignored_with_a_warning() {
    let config = conf("tls-insecure.conf").unwrap();
    assert_eq!(config.warnings().len(), 1);
    assert!(config.warnings()[0].contains("tls-insecure"));
    assert!(config.warnings()[0].contains("verification stays on"));
}

#[test]
fn cloud_conf_errors_name_file_line_and_key_without_secrets() {
    let cases: &[(&str, &[&str], &str)] = &[
        (
            "unknown-key.conf",
            &[
                "unknown-key.conf:4:",
                "unknown key `auth-ulr`",
                "did you mean `auth-url`",
            ],
            "Fixture-Unknown-Secret",
        ),
        (
            "missing-password.conf",
            &["missing-password.conf:2: [Global]", "no password"],
            "",
        ),
        (
            "bad-auth-url.conf",
            &["bad-auth-url.conf:4: auth-url", "https:// or http://"],
            "Fixture-BadUrl-Secret",
        ),
        (
            "unterminated-quote.conf",
            &["unterminated-quote.conf:3:", "unterminated quoted value"],
            "Fixture-Unterminated-Secret",
        ),
        (
            "cert-file.conf",
            &[
                "cert-file.conf:5: cert-file",
                "client certificates are not supported",
            ],
            "Fixture-Cert-Secret",
        ),
        (
            "no-such-cloud.conf",
            &[
                "cannot read cloud config",
                "no-such-cloud.conf",
                "--cloud-config",
            ],
            "",
        ),
    ];
    for (file, needles, secret) in cases {
        let err = conf(file).unwrap_err();
        assert!(err.is_usage());
        let message = err.to_string();
        for needle in *needles {
            assert!(
                message.contains(needle),
                "{file}: `{needle}` not in: {message}"
            );
        }
        let secrets: &[&str] = if secret.is_empty() { &[] } else { &[secret] };
        assert_clean(&err, secrets);
    }
}

fn temp_conf(dir: &tempfile::TempDir, text: &str) -> PathBuf {
    let path = dir.path().join("cloud.conf");
    std::fs::write(&path, text).unwrap();
    path
}

#[test]
fn cloud_conf_validation_errors() {
    let dir = tempfile::tempdir().unwrap();
    let base = "[Global]\nauth-url = https://k:5000/v3\n";
    let cases: &[(&str, &[&str])] = &[
        (
            "username = u\npassword = Temp-Secret-1\n",
            &["cloud.conf:3: username", "user-domain-name"],
        ),
        (
            "user-id = u\npassword = Temp-Secret-1\ntenant-name = p\n",
            &["cloud.conf:5: tenant-name", "tenant-domain-name"],
        ),
        (
            "application-credential-name = n\napplication-credential-secret = Temp-Secret-1\n",
            &["cloud.conf:3: application-credential-name", "user-id"],
        ),
        (
            "application-credential-id = x\n",
            &["[Global]", "application-credential-secret"],
        ),
        (
            "user-id = u\npassword = Temp-Secret-1\nos-endpoint-type = private\n",
            &[
                "cloud.conf:5: os-endpoint-type",
                "public, internal or admin",
            ],
        ),
        (
            "user-id = u\npassword = Temp-Secret-1\nca-file = /no/such/ca.pem\n",
            &["cloud.conf:5: ca-file", "/no/such/ca.pem"],
        ),
        (
            "user-id = u\npassword = Temp-Secret-1\ntrust-id = t\n",
            &["cloud.conf:5: trust-id", "trusts are not supported"],
        ),
        (
            "user-id = u\npassword = Temp-Secret-1\nuse-clouds = maybe\n",
            &["cloud.conf:5: use-clouds", "true or false"],
        ),
        (
            "user-id = u\npassword\n",
            &["cloud.conf:4: password", "no value"],
        ),
    ];
    for (tail, needles) in cases {
        let path = temp_conf(&dir, &format!("{base}{tail}"));
        let err = config::load(&empty_source().with_cloud_config(Some(path))).unwrap_err();
        let message = err.to_string();
        for needle in *needles {
            assert!(message.contains(needle), "`{needle}` not in: {message}");
        }
        assert_clean(&err, &["Temp-Secret-1"]);
    }
    let path = temp_conf(&dir, "[Global]\nuser-id = u\npassword = Temp-Secret-1\n");
    let err = config::load(&empty_source().with_cloud_config(Some(path))).unwrap_err();
    assert!(err.to_string().contains("no auth-url"), "{err}");
}

#[test]
fn cloud_conf_ca_file_is_kept() {
    let dir = tempfile::tempdir().unwrap();
    let ca = fixture("not-a-ca.pem");
    let path = temp_conf(
        &dir,
        &format!(
            "[Global]\nauth-url = https://k/v3\nuser-id = u\npassword = p\nca-file = \"{}\"\n",
            ca.display()
        ),
    );
    let config = config::load(&empty_source().with_cloud_config(Some(path))).unwrap();
    assert_eq!(config.ca_file(), Some(ca.as_path()));
}

#[test]
fn cloud_conf_use_clouds_fills_what_it_leaves_empty() {
    let dir = tempfile::tempdir().unwrap();
    let path = temp_conf(
        &dir,
        &format!(
            "[Global]\nuse-clouds = true\nclouds-file = {}\ncloud = prod\nregion = Override\n",
            fixture("clouds/clouds.yaml").display()
        ),
    );
    let config = config::load(&empty_source().with_cloud_config(Some(path.clone()))).unwrap();
    assert_eq!(config.region(), Some("Override"), "cloud.conf wins");
    assert_eq!(
        password(&config),
        "Fixture-Yaml-Secret",
        "clouds.yaml fills"
    );
    assert_eq!(
        config.source(),
        &ConfigSource::CloudConfig {
            path,
            clouds_yaml: Some(fixture("clouds/clouds.yaml"))
        }
    );
}

// ---------------------------------------------------------------- clouds.yaml

fn clouds_source(cloud: &str) -> Source {
    env_source(&[(
        "OS_CLIENT_CONFIG_FILE",
        fixture("clouds/clouds.yaml").to_str().unwrap(),
    )])
    .with_os_cloud(Some(cloud.into()))
}

#[test]
fn clouds_yaml_password_cloud() {
    let config = config::load(&clouds_source("prod")).unwrap();
    assert!(matches!(
        config.identity(),
        Identity::Password { user: UserRef::Name { name, domain }, .. }
            if name == "k8s-remediator" && *domain == self::name("Default")
    ));
    assert_eq!(password(&config), "Fixture-Yaml-Secret");
    assert_eq!(
        config.scope(),
        Some(&ProjectScope::Name {
            name: "kubernetes".into(),
            domain: id("default"),
        })
    );
    assert_eq!(config.interface(), Interface::Internal);
    assert_eq!(config.region(), Some("RegionOne"));
}

#[test]
fn clouds_yaml_application_credential_via_os_cloud() {
    let source = env_source(&[
        (
            "OS_CLIENT_CONFIG_FILE",
            fixture("clouds/clouds.yaml").to_str().unwrap(),
        ),
        ("OS_CLOUD", "appcred"),
    ]);
    let config = config::load(&source).unwrap();
    assert_eq!(
        config.auth_url().as_str(),
        "https://keystone.example.com:5000/v3"
    );
    assert_eq!(secret(&config), "Fixture-Yaml-AppCred-Secret");
    assert_eq!(config.region(), Some("RegionTwo"));
    assert!(!format!("{config:?}").contains("Fixture-Yaml-AppCred-Secret"));
}

#[test]
fn clouds_yaml_merges_secure_yaml() {
    let config = config::load(&clouds_source("split")).unwrap();
    assert_eq!(password(&config), "Fixture-Secure-Yaml-Secret");
    assert_eq!(
        config.region(),
        Some("RegionThree"),
        "secure.yaml overrides"
    );
    assert_eq!(
        config.source(),
        &ConfigSource::CloudsYaml {
            path: fixture("clouds/clouds.yaml"),
            cloud: "split".into(),
            secure: Some(fixture("clouds/secure.yaml")),
        }
    );
}

#[test]
fn clouds_yaml_search_path_first_existing_wins() {
    let mut source = empty_source().with_os_cloud(Some("prod".into()));
    source.clouds_yaml_search = vec![
        PathBuf::from("/no/such/clouds.yaml"),
        fixture("clouds/clouds.yaml"),
    ];
    let config = config::load(&source).unwrap();
    assert_eq!(password(&config), "Fixture-Yaml-Secret");

    source.clouds_yaml_search = vec![PathBuf::from("/no/such/clouds.yaml")];
    let err = config::load(&source).unwrap_err();
    let message = err.to_string();
    assert!(message.contains("/no/such/clouds.yaml"), "{message}");
    assert!(message.contains("OS_CLIENT_CONFIG_FILE"), "{message}");
}

#[test]
fn clouds_yaml_unknown_cloud_lists_the_known_ones() {
    let err = config::load(&clouds_source("staging")).unwrap_err();
    let message = err.to_string();
    assert!(message.contains("no cloud named `staging`"), "{message}");
    assert!(
        message.contains("appcred, insecure, prod, split, token"),
        "{message}"
    );
    assert_clean(&err, &["Fixture-Yaml-Secret"]);
}

#[test]
fn clouds_yaml_refuses_token_auth_and_warns_on_verify_false() {
    let err = config::load(&clouds_source("token")).unwrap_err();
    let message = err.to_string();
    assert!(message.contains("clouds.token.auth_type"), "{message}");
    assert!(message.contains("`token` is not supported"), "{message}");
    assert_clean(&err, &["Fixture-Yaml-Token-Secret"]);

    let config = config::load(&clouds_source("insecure")).unwrap();
    assert!(config.warnings()[0].contains("verify: false"));
    assert!(config.warnings()[0].contains("verification stays on"));
}

#[test]
fn clouds_yaml_syntax_error_names_file_and_line() {
    let source = env_source(&[(
        "OS_CLIENT_CONFIG_FILE",
        fixture("bad-syntax.yaml").to_str().unwrap(),
    )])
    .with_os_cloud(Some("prod".into()));
    let err = config::load(&source).unwrap_err();
    let message = err.to_string();
    assert!(
        message.starts_with(&format!("{}:", fixture("bad-syntax.yaml").display())),
        "{message}"
    );
    assert!(
        matches!(err, ConfigError::Syntax { line, .. } if line >= 5),
        "{message}"
    );
    assert_clean(&err, &["Fixture-Bad-Yaml-Secret"]);
}

#[test]
fn clouds_yaml_missing_password_names_the_entry() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("clouds.yaml");
    std::fs::write(
        &path,
        "clouds:\n  c:\n    auth:\n      auth_url: https://k/v3\n      user_id: u\n",
    )
    .unwrap();
    let source = env_source(&[("OS_CLIENT_CONFIG_FILE", path.to_str().unwrap())])
        .with_os_cloud(Some("c".into()));
    let message = config::load(&source).unwrap_err().to_string();
    assert!(message.contains(":3: clouds.c"), "{message}");
    assert!(message.contains("auth.password"), "{message}");
}

// ---------------------------------------------------------------- OS_* variables

#[test]
fn env_password_with_aliases() {
    let config = config::load(&env_source(&[
        ("OS_AUTH_URL", "http://keystone.local:5000/"),
        ("OS_USERNAME", "admin"),
        ("OS_PASSWORD", "Env-Secret-1"),
        ("OS_TENANT_NAME", "admin"),
        ("OS_DOMAIN_ID", "default"),
        ("OS_REGION_NAME", "RegionOne"),
        ("OS_ENDPOINT_TYPE", "adminURL"),
        ("OS_USER_DOMAIN_NAME", ""),
    ]))
    .unwrap();
    assert_eq!(config.auth_url().as_str(), "http://keystone.local:5000/v3");
    assert!(matches!(
        config.identity(),
        Identity::Password { user: UserRef::Name { domain, .. }, .. } if *domain == id("default")
    ));
    assert_eq!(
        config.scope(),
        Some(&ProjectScope::Name {
            name: "admin".into(),
            domain: id("default")
        })
    );
    assert_eq!(config.interface(), Interface::Admin);
    assert_eq!(config.source(), &ConfigSource::Environment);
}

#[test]
fn env_application_credential() {
    let config = config::load(&env_source(&[
        ("OS_AUTH_URL", "https://k/v3"),
        ("OS_AUTH_TYPE", "v3applicationcredential"),
        ("OS_APPLICATION_CREDENTIAL_NAME", "monitoring"),
        ("OS_USERNAME", "admin"),
        ("OS_USER_DOMAIN_NAME", "Default"),
        ("OS_APPLICATION_CREDENTIAL_SECRET", "Env-Secret-2"),
        ("OS_PASSWORD", "Env-Secret-3"),
    ]))
    .unwrap();
    assert!(matches!(
        config.identity(),
        Identity::ApplicationCredential {
            credential: ApplicationCredentialRef::Name {
                user: UserRef::Name { .. },
                ..
            },
            ..
        }
    ));
    assert_eq!(secret(&config), "Env-Secret-2");
    assert!(config.warnings()[0].contains("OS_PASSWORD is ignored"));
}

/// Variables, and what the error must say.
type EnvCase<'a> = (&'a [(&'a str, &'a str)], &'a [&'a str]);

#[test]
fn env_errors_name_the_variable() {
    let cases: &[EnvCase<'_>] = &[
        (
            &[("OS_AUTH_URL", "https://k/v3"), ("OS_USER_ID", "u")],
            &["OS_* environment variables", "OS_PASSWORD"],
        ),
        (
            &[
                ("OS_AUTH_URL", "https://k/v3"),
                ("OS_USER_ID", "u"),
                ("OS_PASSWORD", "Env-Secret-4"),
                ("OS_INTERFACE", "sideways"),
            ],
            &["environment variable OS_INTERFACE", "sideways"],
        ),
        (
            &[
                ("OS_AUTH_URL", "ftp://k/v3"),
                ("OS_USER_ID", "u"),
                ("OS_PASSWORD", "Env-Secret-4"),
            ],
            &["environment variable OS_AUTH_URL", "https:// or http://"],
        ),
        (
            &[
                ("OS_AUTH_URL", "https://k/v3"),
                ("OS_AUTH_TYPE", "v3oidcpassword"),
                ("OS_PASSWORD", "Env-Secret-4"),
            ],
            &["OS_AUTH_TYPE", "not supported"],
        ),
        (
            &[("OS_PASSWORD", "Env-Secret-4")],
            &["no OpenStack credentials"],
        ),
    ];
    for (vars, needles) in cases {
        let err = config::load(&env_source(vars)).unwrap_err();
        let message = err.to_string();
        for needle in *needles {
            assert!(message.contains(needle), "`{needle}` not in: {message}");
        }
        assert_clean(&err, &["Env-Secret-4"]);
    }
}

#[test]
fn precedence_cloud_config_then_os_cloud_then_env() {
    let clouds = fixture("clouds/clouds.yaml");
    let env = [
        ("OS_AUTH_URL", "https://from-env/v3"),
        ("OS_USER_ID", "u"),
        ("OS_PASSWORD", "p"),
        ("OS_CLOUD", "prod"),
        ("OS_CLIENT_CONFIG_FILE", clouds.to_str().unwrap()),
    ];
    let with_conf = env_source(&env).with_cloud_config(Some(fixture("ids-only.conf")));
    assert!(matches!(
        config::load(&with_conf).unwrap().source(),
        ConfigSource::CloudConfig { .. }
    ));
    assert!(matches!(
        config::load(&env_source(&env)).unwrap().source(),
        ConfigSource::CloudsYaml { .. }
    ));
    let env_only: Vec<_> = env
        .iter()
        .copied()
        .filter(|(k, _)| *k != "OS_CLOUD")
        .collect();
    assert_eq!(
        config::load(&env_source(&env_only)).unwrap().source(),
        &ConfigSource::Environment
    );
}

// ---------------------------------------------------------------- session against a fake Keystone

#[derive(Default)]
struct Fake {
    /// Bodies of `POST /v3/auth/tokens`, in order.
    bodies: Vec<Value>,
    /// `X-Auth-Token` of each `GET /ping`.
    seen: Vec<String>,
    /// Answer with this status instead of a token (401, 500, ...).
    fail: Option<StatusCode>,
    /// Seconds until each issued token expires (negative: already expired); default 3600.
    lifetimes: Vec<i64>,
    catalog: Value,
}

type Shared = Arc<Mutex<Fake>>;

async fn issue_token(State(fake): State<Shared>, Json(body): Json<Value>) -> Response {
    let mut fake = fake.lock().unwrap();
    let password = body["auth"]["identity"]["password"]["user"]["password"].clone();
    fake.bodies.push(body);
    if let Some(status) = fake.fail {
        let message = format!("failed for {password}");
        return (
            status,
            Json(json!({"error": {"code": status.as_u16(), "message": message, "title": "x"}})),
        )
            .into_response();
    }
    let n = fake.bodies.len();
    let lifetime = fake.lifetimes.get(n - 1).copied().unwrap_or(3600);
    let expires_at = jiff::Timestamp::now() + jiff::SignedDuration::from_secs(lifetime);
    let mut token: Value = serde_json::from_str(
        &std::fs::read_to_string(fixture("keystone/project-scoped-password.json")).unwrap(),
    )
    .unwrap();
    token["token"]["expires_at"] = json!(expires_at.to_string());
    token["token"]["catalog"] = fake.catalog.clone();
    let mut headers = HeaderMap::new();
    headers.insert("X-Subject-Token", format!("tok-{n}").parse().unwrap());
    (StatusCode::CREATED, headers, Json(token)).into_response()
}

async fn ping(State(fake): State<Shared>, headers: HeaderMap) -> &'static str {
    let token = headers
        .get("x-auth-token")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_owned();
    fake.lock().unwrap().seen.push(token);
    "{}"
}

/// Starts a fake Keystone; returns its base URL (without /v3) and its state.
async fn keystone(catalog: Value) -> (String, Shared) {
    let fake: Shared = Arc::new(Mutex::new(Fake {
        catalog,
        ..Fake::default()
    }));
    let app = axum::Router::new()
        .route("/v3/auth/tokens", post(issue_token))
        .route("/ping", get(ping))
        .with_state(fake.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await });
    (base, fake)
}

fn endpoint(interface: &str, region: &str, url: &str) -> Value {
    json!({"id": format!("{interface}-{region}"), "interface": interface, "region": region,
           "region_id": region, "url": url})
}

fn default_catalog() -> Value {
    json!([
        {"type": "compute", "id": "c", "name": "nova", "endpoints": [
            endpoint("public", "RegionOne", "http://nova-one/v2.1"),
            endpoint("internal", "RegionOne", "http://nova-one-internal/v2.1"),
            endpoint("public", "RegionTwo", "http://nova-two/v2.1"),
        ]},
        {"type": "volumev3", "id": "v", "name": "cinderv3", "endpoints": [
            endpoint("public", "RegionOne", "http://cinder-one/v3/p"),
            endpoint("public", "RegionTwo", "http://cinder-two/v3/p"),
        ]},
    ])
}

fn env_config(vars: &[(&str, &str)]) -> OpenStackConfig {
    config::load(&env_source(vars)).unwrap()
}

fn sample(name: &str) -> Value {
    serde_json::from_str(&std::fs::read_to_string(fixture(&format!("keystone/{name}"))).unwrap())
        .unwrap()
}

#[tokio::test]
async fn token_request_bodies_are_the_keystone_v3_shapes() {
    let (base, fake) = keystone(default_catalog()).await;
    let cases: Vec<(Vec<(&str, &str)>, Value)> = vec![
        (
            vec![
                ("OS_USER_ID", "ee4dfb6e5540447cb3741905149d9b6e"),
                ("OS_PASSWORD", "devstacker"),
                ("OS_PROJECT_ID", "a6944d763bf64ee6a275f1263fae0352"),
            ],
            sample("project-id-password.json"),
        ),
        (
            vec![
                ("OS_USER_ID", "ee4dfb6e5540447cb3741905149d9b6e"),
                ("OS_PASSWORD", "devstacker"),
                ("OS_PROJECT_NAME", "admin"),
                ("OS_PROJECT_DOMAIN_ID", "default"),
            ],
            sample("project-name-password.json"),
        ),
        (
            vec![
                (
                    "OS_APPLICATION_CREDENTIAL_ID",
                    "423f19a4ac1e4f48bbb4180756e6eb6c",
                ),
                ("OS_APPLICATION_CREDENTIAL_SECRET", "rEaqvJka48mpv"),
                ("OS_PROJECT_NAME", "ignored-for-app-creds"),
                ("OS_PROJECT_DOMAIN_ID", "default"),
            ],
            sample("auth-application-credential-id-request.json"),
        ),
        (
            vec![
                ("OS_APPLICATION_CREDENTIAL_NAME", "monitoring"),
                ("OS_USER_ID", "423f19a4ac1e4f48bbb4180756e6eb6c"),
                ("OS_APPLICATION_CREDENTIAL_SECRET", "rEaqvJka48mpv"),
            ],
            sample("auth-application-credential-name-request.json"),
        ),
        (
            vec![
                ("OS_USERNAME", "admin"),
                ("OS_USER_DOMAIN_NAME", "Default"),
                ("OS_PASSWORD", "devstacker"),
                ("OS_PROJECT_NAME", "admin"),
                ("OS_PROJECT_DOMAIN_NAME", "Default"),
            ],
            json!({"auth": {
                "identity": {"methods": ["password"], "password": {"user": {
                    "name": "admin", "domain": {"name": "Default"}, "password": "devstacker"}}},
                "scope": {"project": {"name": "admin", "domain": {"name": "Default"}}}}}),
        ),
        (
            vec![
                ("OS_APPLICATION_CREDENTIAL_NAME", "monitoring"),
                ("OS_USERNAME", "admin"),
                ("OS_USER_DOMAIN_ID", "default"),
                ("OS_APPLICATION_CREDENTIAL_SECRET", "rEaqvJka48mpv"),
            ],
            json!({"auth": {"identity": {"methods": ["application_credential"],
                "application_credential": {"name": "monitoring", "secret": "rEaqvJka48mpv",
                    "user": {"name": "admin", "domain": {"id": "default"}}}}}}),
        ),
    ];
    for (i, (vars, want)) in cases.into_iter().enumerate() {
        let mut vars = vars;
        vars.push(("OS_AUTH_URL", &base));
        session::connect(&env_config(&vars)).await.unwrap();
        let got = fake.lock().unwrap().bodies[i].clone();
        assert_eq!(got, want, "case {i}");
    }
}

fn password_env(base: &str) -> Vec<(&str, &str)> {
    vec![
        ("OS_AUTH_URL", base),
        ("OS_USER_ID", "u1"),
        ("OS_PASSWORD", "Session-Secret"),
        ("OS_PROJECT_ID", "p1"),
    ]
}

async fn ping_with(session: &osauth::Session, base: &str) {
    session
        .client()
        .request(
            reqwest::Method::GET,
            format!("{base}/ping").parse().unwrap(),
        )
        .send()
        .await
        .unwrap();
}

#[tokio::test]
async fn token_is_cached_and_refresh_reauthenticates() {
    let (base, fake) = keystone(default_catalog()).await;
    let mut session = session::connect(&env_config(&password_env(&base)))
        .await
        .unwrap();
    for _ in 0..3 {
        ping_with(&session, &base).await;
    }
    {
        let fake = fake.lock().unwrap();
        assert_eq!(
            fake.bodies.len(),
            1,
            "one POST for connect and three requests"
        );
        assert_eq!(fake.seen, vec!["tok-1"; 3]);
    }
    session.refresh().await.unwrap();
    ping_with(&session, &base).await;
    let fake = fake.lock().unwrap();
    assert_eq!(fake.bodies.len(), 2);
    assert_eq!(fake.seen.last().map(String::as_str), Some("tok-2"));
    let debug = format!("{session:?}");
    assert!(
        !debug.contains("Session-Secret") && !debug.contains("tok-"),
        "{debug}"
    );
}

#[tokio::test]
async fn expired_token_is_renewed() {
    let (base, fake) = keystone(default_catalog()).await;
    fake.lock().unwrap().lifetimes = vec![-5, 3600];
    let session = session::connect(&env_config(&password_env(&base)))
        .await
        .unwrap();
    ping_with(&session, &base).await;
    ping_with(&session, &base).await;
    let fake = fake.lock().unwrap();
    assert_eq!(fake.bodies.len(), 2, "renewed once, then cached");
    assert_eq!(fake.seen, vec!["tok-2", "tok-2"]);
}

#[tokio::test]
async fn unauthorized_names_keystone_not_the_password() {
    let (base, fake) = keystone(default_catalog()).await;
    fake.lock().unwrap().fail = Some(StatusCode::UNAUTHORIZED);
    let err = session::connect(&env_config(&password_env(&base)))
        .await
        .unwrap_err();
    assert!(matches!(err, SessionError::Unauthorized { .. }), "{err:?}");
    assert!(!err.is_transient());
    let message = err.to_string();
    assert!(
        message.contains(&format!("{base}/v3/auth/tokens")),
        "{message}"
    );
    assert!(message.contains("401"), "{message}");
    assert_clean(&err, &["Session-Secret"]);
}

#[tokio::test]
async fn keystone_errors_are_scrubbed_and_5xx_is_transient() {
    let (base, fake) = keystone(default_catalog()).await;
    fake.lock().unwrap().fail = Some(StatusCode::SERVICE_UNAVAILABLE);
    let err = session::connect(&env_config(&password_env(&base)))
        .await
        .unwrap_err();
    assert!(matches!(err, SessionError::Keystone { .. }), "{err:?}");
    assert!(err.is_transient());
    assert!(err.to_string().contains("[REDACTED]"), "{err}");
    assert_clean(&err, &["Session-Secret"]);
}

#[tokio::test]
async fn unreachable_keystone_is_transient_and_named() {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    drop(listener);
    let options = ConnectOptions {
        connect_timeout: std::time::Duration::from_secs(2),
        request_timeout: std::time::Duration::from_secs(5),
    };
    let err = session::connect_with(&env_config(&password_env(&base)), &options)
        .await
        .unwrap_err();
    assert!(matches!(err, SessionError::Unreachable { .. }), "{err:?}");
    assert!(err.is_transient());
    assert!(err.to_string().contains(&base), "{err}");
    assert_clean(&err, &["Session-Secret"]);
}

#[tokio::test]
async fn endpoints_block_storage_alias_region_and_interface() {
    let (base, _fake) = keystone(default_catalog()).await;
    let endpoint_of = |session: &osauth::Session, service: &'static str| {
        let session = session.clone();
        async move {
            session
                .client()
                .get_endpoint(service, session.endpoint_filters())
                .await
        }
    };

    let session = session::connect(&env_config(&password_env(&base)))
        .await
        .unwrap();
    let volume = endpoint_of(&session, "block-storage").await.unwrap();
    assert_eq!(
        volume.as_str(),
        "http://cinder-one/v3/p",
        "volumev3-only catalog"
    );

    let mut vars = password_env(&base);
    vars.push(("OS_REGION_NAME", "RegionTwo"));
    let session = session::connect(&env_config(&vars)).await.unwrap();
    assert_eq!(
        endpoint_of(&session, "compute").await.unwrap().as_str(),
        "http://nova-two/v2.1"
    );
    assert_eq!(
        endpoint_of(&session, "block-storage")
            .await
            .unwrap()
            .as_str(),
        "http://cinder-two/v3/p"
    );

    let mut vars = password_env(&base);
    vars.push(("OS_REGION_NAME", "RegionOne"));
    vars.push(("OS_INTERFACE", "internal"));
    let session = session::connect(&env_config(&vars)).await.unwrap();
    assert_eq!(
        endpoint_of(&session, "compute").await.unwrap().as_str(),
        "http://nova-one-internal/v2.1"
    );
    let err = endpoint_of(&session, "block-storage").await.unwrap_err();
    assert_eq!(err.kind(), osauth::ErrorKind::EndpointNotFound);
    assert!(err.to_string().contains("internal"), "{err}");

    let mut vars = password_env(&base);
    vars.push(("OS_REGION_NAME", "RegionNine"));
    let session = session::connect(&env_config(&vars)).await.unwrap();
    assert!(endpoint_of(&session, "compute").await.is_err());
}

#[tokio::test]
async fn a_file_without_certificates_is_refused_as_ca() {
    let (base, fake) = keystone(default_catalog()).await;
    let ca = fixture("not-a-ca.pem");
    let mut vars = password_env(&base);
    vars.push(("OS_CACERT", ca.to_str().unwrap()));
    let err = session::connect(&env_config(&vars)).await.unwrap_err();
    assert!(matches!(err, SessionError::CaFile { .. }), "{err:?}");
    assert!(err.to_string().contains("not-a-ca.pem"), "{err}");
    assert!(!err.is_transient());
    assert!(fake.lock().unwrap().bodies.is_empty());
}

#[test]
fn env_map_is_what_is_read() {
    // The process environment is never consulted by `Source::from_env`.
    let vars: BTreeMap<String, String> = BTreeMap::new();
    let err = config::load(&Source::from_env(vars)).unwrap_err();
    assert!(matches!(err, ConfigError::NoCredentials));
}

/// The cloud provider reads the same Secret with gcfg's `FatalOnly`: keys and sections it may
/// know and we do not are named in a warning, not fatal; a misspelt `[Global]` is named in the
/// error about what is then missing.
#[test]
fn cloud_conf_unknown_keys_and_sections_warn_and_a_misspelt_global_is_named() {
    let dir = tempfile::tempdir().unwrap();
    let good = "[Global]\nauth-url = https://k:5000/v3\nuser-id = u\npassword = Temp-Secret-9\n\
                tenant-id = p\nnew-ccm-key = 1\n[Shiny]\nx = 1\n";
    let config = config::load(&empty_source().with_cloud_config(Some(temp_conf(&dir, good))))
        .expect("unknown keys and sections are not fatal");
    let warnings = config.warnings().join("\n");
    assert!(
        warnings.contains("cloud.conf:6: unknown key `new-ccm-key` in [Global] ignored"),
        "{warnings}"
    );
    assert!(
        warnings.contains("cloud.conf:7: unknown section [Shiny] ignored"),
        "{warnings}"
    );
    assert!(!warnings.contains("Temp-Secret-9"));

    let misspelt = "[Globl]\nauth-url = https://k:5000/v3\nuser-id = u\npassword = Temp-Secret-9\n";
    let err = config::load(&empty_source().with_cloud_config(Some(temp_conf(&dir, misspelt))))
        .unwrap_err();
    let message = err.to_string();
    assert!(err.is_usage());
    assert!(
        message.contains("cloud.conf:1: unknown section [Globl] ignored: did you mean [Global]?"),
        "{message}"
    );
    assert!(!message.contains("Temp-Secret-9"), "{message}");
}

/// A token Keystone revoked before it expired (a role or password change) is renewed once and
/// the request sent again; credentials Keystone refuses are counted as `unauthorized` failures,
/// the metric the shipped alert `CinderRemediatorOpenStackAuthFailing` watches.
#[tokio::test]
async fn a_revoked_token_is_renewed_and_refused_credentials_are_counted() {
    use cinder_remediator::metrics::Metrics;
    use cinder_remediator::openstack::error::ErrorKind;
    use cinder_remediator::openstack::nova::Nova;

    let running = sim::serve(&sim::Scenario::seed()).await.unwrap();
    let settings = config::load(&cinder_remediator::demo::openstack_source(&running)).unwrap();
    let session = session::connect_with(&settings, &ConnectOptions::default())
        .await
        .unwrap();
    let metrics = Arc::new(Metrics::new());
    let nova = Nova::new(session).with_metrics(Arc::clone(&metrics));
    let server = "3901d974-751e-4ba7-acfa-9cd583c6729d";
    let logins = || {
        running
            .requests()
            .iter()
            .filter(|r| r.method == "POST" && r.path.ends_with("/auth/tokens"))
            .count()
    };
    assert!(nova.server(server).await.unwrap().is_some());
    let before = logins();
    running.world.lock().cloud.revoke_tokens();
    assert!(nova.server(server).await.unwrap().is_some());
    assert_eq!(logins(), before + 1, "one new token");
    assert!(!metrics.encode().contains("reason=\"unauthorized\""));

    running.world.lock().credentials.password = "rotated-elsewhere".to_owned();
    running.world.lock().cloud.revoke_tokens();
    let err = nova.server(server).await.unwrap_err();
    assert!(matches!(err.kind, ErrorKind::Unauthorized(_)), "{err}");
    assert!(
        metrics.encode().lines().any(|l| l
            == "cinder_remediator_openstack_request_failures_total{service=\"nova\",reason=\"unauthorized\"} 1"),
        "{}",
        metrics.encode()
    );
    running.shutdown().await;
}
