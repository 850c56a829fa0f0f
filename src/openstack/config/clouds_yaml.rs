//! `clouds.yaml` (and `secure.yaml`), as the `openstack` CLI reads them.
//!
//! The file is `OS_CLIENT_CONFIG_FILE` when set, else the first of [`Source::clouds_yaml_search`]
//! that exists. `secure.yaml` beside it (or `OS_CLIENT_SECURE_FILE`) is merged over the entry,
//! key by key. Unknown keys are ignored (these files carry many tool-specific keys); `profile`
//! (vendor profiles from `clouds-public.yaml`) is not resolved.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::Deserialize;
use serde_saphyr::Spanned;

use super::{ConfigError, Dialect, Place, Raw, Setting, Source, insecure_warning, parse_bool};

/// A located `clouds.yaml` and its `secure.yaml`, if any.
#[derive(Debug, Clone)]
pub(super) struct Found {
    pub(super) path: PathBuf,
    pub(super) secure: Option<PathBuf>,
}

/// Finds the `clouds.yaml` to read: `explicit` (cloud.conf's `clouds-file`), else
/// `OS_CLIENT_CONFIG_FILE`, else the first existing file of the search path.
pub(super) fn locate(
    source: &Source,
    explicit: Option<PathBuf>,
    cloud: &str,
) -> Result<Found, ConfigError> {
    let path = match explicit.or_else(|| source.var("OS_CLIENT_CONFIG_FILE").map(PathBuf::from)) {
        Some(path) => path,
        None => source
            .clouds_yaml_search
            .iter()
            .find(|path| path.is_file())
            .cloned()
            .ok_or_else(|| ConfigError::NoCloudsFile {
                cloud: cloud.to_owned(),
                searched: source
                    .clouds_yaml_search
                    .iter()
                    .map(|p| p.display().to_string())
                    .collect::<Vec<_>>()
                    .join(", "),
            })?,
    };
    let secure = match source.var("OS_CLIENT_SECURE_FILE") {
        Some(secure) => Some(PathBuf::from(secure)),
        None => path
            .parent()
            .map(|dir| dir.join("secure.yaml"))
            .filter(|secure| secure.is_file()),
    };
    Ok(Found { path, secure })
}

/// Reads the entry `cloud` of the located files.
pub(super) fn load(found: &Found, cloud: &str) -> Result<Raw, ConfigError> {
    let file = read(&found.path)?;
    let Some(entry) = file.clouds.get(cloud) else {
        let known: Vec<&str> = file.clouds.keys().map(String::as_str).collect();
        return Err(ConfigError::UnknownCloud {
            path: found.path.clone(),
            cloud: cloud.to_owned(),
            known: if known.is_empty() {
                "no clouds".into()
            } else {
                known.join(", ")
            },
        });
    };
    let mut raw = Raw::new(
        Dialect::CloudsYaml,
        Place::File {
            path: found.path.clone(),
            line: Some(entry.referenced.line()),
            key: Some(format!("clouds.{cloud}")),
        },
    );
    apply(&mut raw, &found.path, cloud, &entry.value)?;
    if let Some(secure_path) = &found.secure {
        let secure = read(secure_path)?;
        if let Some(entry) = secure.clouds.get(cloud) {
            apply(&mut raw, secure_path, cloud, &entry.value)?;
        }
    }
    Ok(raw)
}

fn read(path: &Path) -> Result<File, ConfigError> {
    let text = std::fs::read_to_string(path).map_err(|err| ConfigError::Read {
        what: "clouds.yaml",
        path: path.to_owned(),
        hint: "check the path (OS_CLIENT_CONFIG_FILE, OS_CLIENT_SECURE_FILE or clouds-file)",
        source: err,
    })?;
    if text.trim().is_empty() {
        return Ok(File::default());
    }
    serde_saphyr::from_str::<File>(&text).map_err(|err| {
        let plain = err.without_snippet();
        ConfigError::Syntax {
            path: path.to_owned(),
            line: plain.location().map_or(1, |at| at.line().max(1)),
            message: format!(
                "{}: fix the YAML",
                without_quoted(first_line_without_location(&plain.to_string()))
            ),
        }
    })
}

/// serde-saphyr appends ` at line L column C`; the line is printed apart.
fn first_line_without_location(message: &str) -> &str {
    let first = message.lines().next().unwrap_or_default();
    match first.rfind(" at line ") {
        Some(at) => &first[..at],
        None => first,
    }
}

/// Replaces quoted fragments (`"…"`, `` `…` ``) of a parser message by `…`: they may quote a
/// value of the file, and that value may be a secret.
fn without_quoted(message: &str) -> String {
    let mut out = String::with_capacity(message.len());
    let mut open: Option<char> = None;
    for c in message.chars() {
        match open {
            Some(quote) if c == quote => {
                out.push('…');
                out.push(c);
                open = None;
            }
            Some(_) => {}
            None => {
                out.push(c);
                if matches!(c, '"' | '`') {
                    open = Some(c);
                }
            }
        }
    }
    if open.is_some() {
        out.push('…');
    }
    out
}

/// Copies the values of one entry into `raw` (later calls override earlier ones).
fn apply(raw: &mut Raw, path: &Path, cloud: &str, entry: &Cloud) -> Result<(), ConfigError> {
    let place = |key: &str, value: &Spanned<String>| Place::File {
        path: path.to_owned(),
        line: Some(value.referenced.line()),
        key: Some(format!("clouds.{cloud}.{key}")),
    };
    let set = |raw: &mut Raw, setting: Setting, key: &str, value: &Option<Spanned<String>>| {
        if let Some(value) = value {
            raw.set(setting, value.value.trim().to_owned(), place(key, value));
        }
    };
    use Setting as S;
    set(raw, S::AuthType, "auth_type", &entry.auth_type);
    set(raw, S::Region, "region_name", &entry.region_name);
    set(raw, S::Interface, "endpoint_type", &entry.endpoint_type);
    set(raw, S::Interface, "interface", &entry.interface);
    set(raw, S::CaFile, "cacert", &entry.cacert);
    if let Some(auth) = &entry.auth {
        let a = |key: &str| format!("auth.{key}");
        set(raw, S::AuthUrl, &a("auth_url"), &auth.auth_url);
        set(raw, S::Username, &a("username"), &auth.username);
        set(raw, S::UserId, &a("user_id"), &auth.user_id);
        set(raw, S::Password, &a("password"), &auth.password);
        set(raw, S::ProjectName, &a("tenant_name"), &auth.tenant_name);
        set(raw, S::ProjectName, &a("project_name"), &auth.project_name);
        set(raw, S::ProjectId, &a("tenant_id"), &auth.tenant_id);
        set(raw, S::ProjectId, &a("project_id"), &auth.project_id);
        set(
            raw,
            S::UserDomainName,
            &a("user_domain_name"),
            &auth.user_domain_name,
        );
        set(
            raw,
            S::UserDomainId,
            &a("user_domain_id"),
            &auth.user_domain_id,
        );
        set(
            raw,
            S::ProjectDomainName,
            &a("project_domain_name"),
            &auth.project_domain_name,
        );
        set(
            raw,
            S::ProjectDomainId,
            &a("project_domain_id"),
            &auth.project_domain_id,
        );
        set(raw, S::DomainName, &a("domain_name"), &auth.domain_name);
        set(raw, S::DomainId, &a("domain_id"), &auth.domain_id);
        set(
            raw,
            S::AppCredId,
            &a("application_credential_id"),
            &auth.application_credential_id,
        );
        set(
            raw,
            S::AppCredName,
            &a("application_credential_name"),
            &auth.application_credential_name,
        );
        set(
            raw,
            S::AppCredSecret,
            &a("application_credential_secret"),
            &auth.application_credential_secret,
        );
    }
    for (key, value) in [("cert", &entry.cert), ("key", &entry.key)] {
        if let Some(value) = value.as_ref().filter(|v| !v.value.trim().is_empty()) {
            return Err(ConfigError::Invalid {
                at: place(key, value),
                message: "client certificates are not supported: remove it and authenticate with a password or an application credential".into(),
            });
        }
    }
    if let Some(version) = &entry.identity_api_version
        && version.value.trim().starts_with('2')
    {
        return Err(ConfigError::Invalid {
            at: place("identity_api_version", version),
            message: "Keystone v2 is not supported: set identity_api_version: 3 and a v3 auth_url"
                .into(),
        });
    }
    if let Some(verify) = &entry.verify
        && parse_bool(&verify.value) == Some(false)
    {
        raw.warnings.push(insecure_warning(
            &format!("clouds.{cloud}.verify: false"),
            "cacert",
        ));
    }
    if raw.get(Setting::AuthUrl).is_none()
        && let Some(profile) = &entry.profile
    {
        return Err(ConfigError::Invalid {
            at: place("profile", profile),
            message: "vendor profiles (clouds-public.yaml) are not supported: set auth.auth_url in the cloud entry".into(),
        });
    }
    Ok(())
}

/// The parts of `clouds.yaml` read here; everything else is ignored.
#[derive(Debug, Default, Deserialize)]
struct File {
    #[serde(default)]
    clouds: BTreeMap<String, Spanned<Cloud>>,
}

/// One entry of `clouds:`. Scalars are read as strings (`verify: false` gives `"false"`).
#[derive(Debug, Default, Deserialize)]
struct Cloud {
    #[serde(default)]
    auth: Option<Auth>,
    #[serde(default)]
    auth_type: Option<Spanned<String>>,
    #[serde(default)]
    region_name: Option<Spanned<String>>,
    #[serde(default)]
    interface: Option<Spanned<String>>,
    #[serde(default)]
    endpoint_type: Option<Spanned<String>>,
    #[serde(default)]
    cacert: Option<Spanned<String>>,
    #[serde(default)]
    verify: Option<Spanned<String>>,
    #[serde(default)]
    cert: Option<Spanned<String>>,
    #[serde(default)]
    key: Option<Spanned<String>>,
    #[serde(default)]
    identity_api_version: Option<Spanned<String>>,
    #[serde(default)]
    profile: Option<Spanned<String>>,
}

/// `clouds.NAME.auth`.
#[derive(Default, Deserialize)]
struct Auth {
    #[serde(default)]
    auth_url: Option<Spanned<String>>,
    #[serde(default)]
    username: Option<Spanned<String>>,
    #[serde(default)]
    user_id: Option<Spanned<String>>,
    #[serde(default)]
    password: Option<Spanned<String>>,
    #[serde(default)]
    project_name: Option<Spanned<String>>,
    #[serde(default)]
    project_id: Option<Spanned<String>>,
    #[serde(default)]
    tenant_name: Option<Spanned<String>>,
    #[serde(default)]
    tenant_id: Option<Spanned<String>>,
    #[serde(default)]
    user_domain_name: Option<Spanned<String>>,
    #[serde(default)]
    user_domain_id: Option<Spanned<String>>,
    #[serde(default)]
    project_domain_name: Option<Spanned<String>>,
    #[serde(default)]
    project_domain_id: Option<Spanned<String>>,
    #[serde(default)]
    domain_name: Option<Spanned<String>>,
    #[serde(default)]
    domain_id: Option<Spanned<String>>,
    #[serde(default)]
    application_credential_id: Option<Spanned<String>>,
    #[serde(default)]
    application_credential_name: Option<Spanned<String>>,
    #[serde(default)]
    application_credential_secret: Option<Spanned<String>>,
}

impl std::fmt::Debug for Auth {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Auth { .. }")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parser_messages_lose_quoted_values() {
        assert_eq!(
            without_quoted(r#"invalid type: string "hunter2", expected struct Auth"#),
            "invalid type: string \"…\", expected struct Auth"
        );
        assert_eq!(without_quoted("unterminated `abc"), "unterminated `…");
        assert_eq!(without_quoted("plain message"), "plain message");
    }

    #[test]
    fn a_secret_in_the_wrong_place_is_not_echoed() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("clouds.yaml");
        std::fs::write(
            &path,
            "clouds:\n  c:\n    auth: \"Yaml-Misplaced-Secret\"\n",
        )
        .unwrap();
        let message = read(&path).unwrap_err().to_string();
        assert!(message.contains(":3:"), "{message}");
        assert!(!message.contains("Yaml-Misplaced-Secret"), "{message}");
    }
}
