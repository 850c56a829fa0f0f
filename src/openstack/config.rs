//! OpenStack connection settings, read from the configuration operators already have.
//!
//! Three sources, in this precedence (see [`load`]):
//!
//! 1. `--cloud-config FILE`: the `cloud.conf` of the OpenStack cloud controller manager (gcfg/INI,
//!    only `[Global]` is read; `use-clouds = true` fills the keys it leaves empty from a
//!    `clouds.yaml`, as the cloud controller manager does);
//! 2. `--os-cloud NAME` or `OS_CLOUD`: an entry of `clouds.yaml` (`OS_CLIENT_CONFIG_FILE`, else
//!    `./clouds.yaml`, `~/.config/openstack/clouds.yaml`, `/etc/openstack/clouds.yaml`), merged
//!    with a `secure.yaml` beside it;
//! 3. the `OS_*` environment variables of the `openstack` CLI.
//!
//! Whatever the source, the result is validated into one [`OpenStackConfig`]: an http(s) auth URL
//! (normalised to end in `/v3`, see [`normalise_auth_url`]), a password or application-credential
//! [`Identity`] that Keystone can resolve, an optional project scope, the region, the endpoint
//! interface and an optional CA file. Empty values count as unset (Helm charts render `key=""`).
//!
//! TLS verification is never turned off: `tls-insecure = true`, `verify: false` and `OS_INSECURE`
//! are accepted but ignored with a warning ([`OpenStackConfig::warnings`]). Client certificates
//! and trusts are refused with a clear error.
//!
//! Every [`ConfigError`] is one line naming the file (and line) or the environment variable, the
//! key and what to do; no error, `Debug` or `Display` here ever shows a password, secret or token.

mod cloud_conf;
mod clouds_yaml;

use std::collections::BTreeMap;
use std::fmt;
use std::path::{Path, PathBuf};

use reqwest::Url;
use secrecy::SecretString;

/// Validated OpenStack connection settings.
///
/// `Debug` shows everything but the password or secret.
#[derive(Debug, Clone)]
pub struct OpenStackConfig {
    auth_url: Url,
    identity: Identity,
    scope: Option<ProjectScope>,
    region: Option<String>,
    interface: Interface,
    ca_file: Option<PathBuf>,
    source: ConfigSource,
    warnings: Vec<String>,
}

impl OpenStackConfig {
    /// The Keystone v3 URL, always ending in `/v3` (the token URL is `{auth_url}/auth/tokens`).
    #[must_use]
    pub fn auth_url(&self) -> &Url {
        &self.auth_url
    }

    /// Who authenticates, and with which secret.
    #[must_use]
    pub fn identity(&self) -> &Identity {
        &self.identity
    }

    /// The project the token is scoped to; `None` for application credentials (their project is
    /// fixed) and for password users without a project (Keystone then uses their default project).
    #[must_use]
    pub fn scope(&self) -> Option<&ProjectScope> {
        self.scope.as_ref()
    }

    /// The region whose endpoints are used; `None` accepts any region.
    #[must_use]
    pub fn region(&self) -> Option<&str> {
        self.region.as_deref()
    }

    /// The endpoint interface taken from the catalog (default [`Interface::Public`]).
    #[must_use]
    pub fn interface(&self) -> Interface {
        self.interface
    }

    /// A PEM file of CA certificates trusted in addition to the built-in roots.
    #[must_use]
    pub fn ca_file(&self) -> Option<&Path> {
        self.ca_file.as_deref()
    }

    /// Where these settings were read from.
    #[must_use]
    pub fn source(&self) -> &ConfigSource {
        &self.source
    }

    /// Settings that were accepted but ignored (e.g. `tls-insecure = true`), one sentence each.
    /// [`load`] also logs each of them at `warn` level.
    #[must_use]
    pub fn warnings(&self) -> &[String] {
        &self.warnings
    }
}

/// A Keystone object (user, project, domain) named by its id or by its name.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum IdOrName {
    /// By id.
    Id(String),
    /// By name (unique only within a domain, except for domains themselves).
    Name(String),
}

/// A Keystone user: an id alone, or a name within a domain.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum UserRef {
    /// By id (the domain is implied).
    Id(String),
    /// By name within a domain.
    Name {
        /// The user name.
        name: String,
        /// The user's domain.
        domain: IdOrName,
    },
}

/// The project a token is scoped to: an id alone, or a name within a domain.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ProjectScope {
    /// By id.
    Id(String),
    /// By name within a domain.
    Name {
        /// The project name.
        name: String,
        /// The project's domain.
        domain: IdOrName,
    },
}

/// An application credential: an id alone, or a name plus its owner.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ApplicationCredentialRef {
    /// By id.
    Id(String),
    /// By name; names are unique per user only.
    Name {
        /// The credential name.
        name: String,
        /// The user owning it.
        user: UserRef,
    },
}

/// Who authenticates to Keystone. `Debug` never shows the password or secret.
#[derive(Debug, Clone)]
pub enum Identity {
    /// Keystone `password` method.
    Password {
        /// The user.
        user: UserRef,
        /// The password.
        password: SecretString,
    },
    /// Keystone `application_credential` method (the project is fixed by the credential).
    ApplicationCredential {
        /// Which credential.
        credential: ApplicationCredentialRef,
        /// The credential secret.
        secret: SecretString,
    },
}

/// Which catalog endpoints are used.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Interface {
    /// `public` (the default).
    #[default]
    Public,
    /// `internal`.
    Internal,
    /// `admin`.
    Admin,
}

impl Interface {
    /// Parses `public`, `internal`, `admin`, optionally with the legacy `URL` suffix
    /// (`publicURL`), case-insensitively.
    #[must_use]
    pub fn parse(text: &str) -> Option<Self> {
        let lower = text.trim().to_ascii_lowercase();
        match lower.strip_suffix("url").unwrap_or(&lower) {
            "public" => Some(Self::Public),
            "internal" => Some(Self::Internal),
            "admin" => Some(Self::Admin),
            _ => None,
        }
    }

    /// The catalog spelling: `public`, `internal` or `admin`.
    #[must_use]
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Public => "public",
            Self::Internal => "internal",
            Self::Admin => "admin",
        }
    }
}

impl fmt::Display for Interface {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Where the settings were read from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ConfigSource {
    /// A cloud controller manager `cloud.conf`.
    CloudConfig {
        /// The file.
        path: PathBuf,
        /// With `use-clouds = true`: the `clouds.yaml` that filled the keys it left empty.
        clouds_yaml: Option<PathBuf>,
    },
    /// An entry of a `clouds.yaml`.
    CloudsYaml {
        /// The file.
        path: PathBuf,
        /// The cloud name.
        cloud: String,
        /// The `secure.yaml` merged over it, if any.
        secure: Option<PathBuf>,
    },
    /// The `OS_*` environment variables.
    Environment,
}

impl fmt::Display for ConfigSource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::CloudConfig { path, clouds_yaml } => {
                write!(f, "cloud config {}", path.display())?;
                if let Some(clouds) = clouds_yaml {
                    write!(f, " (with {})", clouds.display())?;
                }
                Ok(())
            }
            Self::CloudsYaml {
                path,
                cloud,
                secure,
            } => {
                write!(f, "cloud {cloud} of {}", path.display())?;
                if let Some(secure) = secure {
                    write!(f, " (with {})", secure.display())?;
                }
                Ok(())
            }
            Self::Environment => f.write_str("OS_* environment variables"),
        }
    }
}

/// What to read the settings from: the command line's choices plus the environment.
///
/// Tests build it from a map, so they never touch the process environment. `Debug` lists the
/// environment variable names only, never their values.
#[derive(Clone, Default)]
pub struct Source {
    /// `--cloud-config FILE`: read this `cloud.conf` (first precedence).
    pub cloud_config: Option<PathBuf>,
    /// `--os-cloud NAME`: read this `clouds.yaml` entry (else `OS_CLOUD` from [`Source::env`]).
    pub os_cloud: Option<String>,
    /// The environment: `OS_*` variables and `HOME`.
    pub env: BTreeMap<String, String>,
    /// Where to look for `clouds.yaml` when `OS_CLIENT_CONFIG_FILE` is unset, first match wins.
    pub clouds_yaml_search: Vec<PathBuf>,
}

impl Source {
    /// A source reading only the given environment, with the standard `clouds.yaml` search
    /// path: `./clouds.yaml`, `$HOME/.config/openstack/clouds.yaml`,
    /// `/etc/openstack/clouds.yaml`.
    #[must_use]
    pub fn from_env<K, V>(env: impl IntoIterator<Item = (K, V)>) -> Self
    where
        K: Into<String>,
        V: Into<String>,
    {
        let env: BTreeMap<String, String> =
            env.into_iter().map(|(k, v)| (k.into(), v.into())).collect();
        let mut search = vec![PathBuf::from("clouds.yaml")];
        if let Some(home) = env.get("HOME").filter(|home| !home.is_empty()) {
            search.push(Path::new(home).join(".config/openstack/clouds.yaml"));
        }
        search.push(PathBuf::from("/etc/openstack/clouds.yaml"));
        Self {
            cloud_config: None,
            os_cloud: None,
            env,
            clouds_yaml_search: search,
        }
    }

    /// [`Source::from_env`] over the process environment (`OS_*` and `HOME`; variables that are
    /// not valid UTF-8 are skipped).
    #[must_use]
    pub fn from_process_env() -> Self {
        Self::from_env(std::env::vars_os().filter_map(|(key, value)| {
            let key = key.into_string().ok()?;
            if key.starts_with("OS_") || key == "HOME" {
                Some((key, value.into_string().ok()?))
            } else {
                None
            }
        }))
    }

    /// Sets `--cloud-config`.
    #[must_use]
    pub fn with_cloud_config(mut self, path: Option<PathBuf>) -> Self {
        self.cloud_config = path;
        self
    }

    /// Sets `--os-cloud`.
    #[must_use]
    pub fn with_os_cloud(mut self, cloud: Option<String>) -> Self {
        self.os_cloud = cloud;
        self
    }

    /// A variable of [`Source::env`]; empty counts as unset.
    fn var(&self, name: &str) -> Option<&str> {
        self.env
            .get(name)
            .map(String::as_str)
            .filter(|v| !v.is_empty())
    }
}

impl fmt::Debug for Source {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Source")
            .field("cloud_config", &self.cloud_config)
            .field("os_cloud", &self.os_cloud)
            .field("env", &self.env.keys().collect::<Vec<_>>())
            .field("clouds_yaml_search", &self.clouds_yaml_search)
            .finish()
    }
}

/// Where a setting (or a missing one) is: a file, line and key, or an environment variable.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Place {
    /// In a file.
    File {
        /// The file.
        path: PathBuf,
        /// The 1-based line, when known.
        line: Option<u64>,
        /// The key (`auth-url`, `clouds.prod.auth.password`) or section (`[Global]`).
        key: Option<String>,
    },
    /// In the environment.
    Env {
        /// The variable; `None` for the `OS_*` variables as a whole.
        var: Option<String>,
    },
}

impl fmt::Display for Place {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::File { path, line, key } => {
                write!(f, "{}", path.display())?;
                if let Some(line) = line {
                    write!(f, ":{line}")?;
                }
                if let Some(key) = key {
                    write!(f, ": {key}")?;
                }
                Ok(())
            }
            Self::Env { var: Some(var) } => write!(f, "environment variable {var}"),
            Self::Env { var: None } => f.write_str("OS_* environment variables"),
        }
    }
}

/// Settings that cannot be used. Every message is one line, names the file (and line) or
/// variable and the key, says what to do, and never contains a secret.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ConfigError {
    /// A file could not be read.
    #[error("cannot read {what} {}: {hint}", path.display())]
    Read {
        /// What the file is (`cloud config`, `clouds.yaml`).
        what: &'static str,
        /// The file.
        path: PathBuf,
        /// What to do.
        hint: &'static str,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// A file is not valid INI or YAML.
    #[error("{}:{line}: {message}", path.display())]
    Syntax {
        /// The file.
        path: PathBuf,
        /// The 1-based line.
        line: u64,
        /// What is wrong and what to do.
        message: String,
    },
    /// A setting is missing, malformed, contradictory or unsupported.
    #[error("{at}: {message}")]
    Invalid {
        /// Where.
        at: Place,
        /// What is wrong and what to do.
        message: String,
    },
    /// The requested cloud is not in `clouds.yaml`.
    #[error(
        "{}: no cloud named `{cloud}`; it defines {known}: pass one of them with --os-cloud or OS_CLOUD",
        path.display()
    )]
    UnknownCloud {
        /// The `clouds.yaml`.
        path: PathBuf,
        /// The requested name.
        cloud: String,
        /// The names it defines, comma-separated (or `no clouds`).
        known: String,
    },
    /// A cloud was requested but no `clouds.yaml` exists.
    #[error(
        "no clouds.yaml found for cloud `{cloud}` (looked at {searched}): set OS_CLIENT_CONFIG_FILE to its path"
    )]
    NoCloudsFile {
        /// The requested name.
        cloud: String,
        /// The paths tried, comma-separated.
        searched: String,
    },
    /// None of the three sources was given.
    #[error(
        "no OpenStack credentials: pass --cloud-config FILE (the cloud controller manager's cloud.conf) or --os-cloud NAME, or set OS_AUTH_URL and the other OS_* variables"
    )]
    NoCredentials,
}

impl ConfigError {
    /// Whether this is the operator's to fix (all configuration errors are; the CLI exits 2).
    #[must_use]
    pub fn is_usage(&self) -> bool {
        true
    }
}

/// Reads and validates the settings from the first source given: `--cloud-config`, then
/// `--os-cloud`/`OS_CLOUD`, then the `OS_*` variables. Warnings (ignored settings) are logged and
/// kept in [`OpenStackConfig::warnings`].
///
/// # Errors
/// A [`ConfigError`] naming the file, line or variable and the key, without any secret.
pub fn load(source: &Source) -> Result<OpenStackConfig, ConfigError> {
    let config = if let Some(path) = &source.cloud_config {
        cloud_conf::load(path, source)?
    } else if let Some(cloud) = source
        .os_cloud
        .as_deref()
        .or_else(|| source.var("OS_CLOUD"))
    {
        let found = clouds_yaml::locate(source, None, cloud)?;
        let raw = clouds_yaml::load(&found, cloud)?;
        let origin = ConfigSource::CloudsYaml {
            path: found.path.clone(),
            cloud: cloud.to_owned(),
            secure: found.secure.clone(),
        };
        raw.build(origin)?
    } else if source.var("OS_AUTH_URL").is_some() {
        from_env(source)?.build(ConfigSource::Environment)?
    } else {
        return Err(ConfigError::NoCredentials);
    };
    for warning in &config.warnings {
        tracing::warn!(source = %config.source, "{warning}");
    }
    Ok(config)
}

/// One setting, whatever its spelling in the source.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Setting {
    AuthUrl,
    AuthType,
    Username,
    UserId,
    Password,
    ProjectName,
    ProjectId,
    ProjectDomainName,
    ProjectDomainId,
    UserDomainName,
    UserDomainId,
    DomainName,
    DomainId,
    Region,
    Interface,
    CaFile,
    AppCredId,
    AppCredName,
    AppCredSecret,
}

/// How a source spells the settings, for messages about missing ones.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Dialect {
    CloudConf,
    CloudsYaml,
    Env,
}

impl Dialect {
    fn name(self, setting: Setting) -> &'static str {
        use Setting as S;
        match self {
            Self::CloudConf => match setting {
                S::AuthUrl => "auth-url",
                S::AuthType => "auth-type",
                S::Username => "username",
                S::UserId => "user-id",
                S::Password => "password",
                S::ProjectName => "tenant-name",
                S::ProjectId => "tenant-id",
                S::ProjectDomainName => "tenant-domain-name",
                S::ProjectDomainId => "tenant-domain-id",
                S::UserDomainName => "user-domain-name",
                S::UserDomainId => "user-domain-id",
                S::DomainName => "domain-name",
                S::DomainId => "domain-id",
                S::Region => "region",
                S::Interface => "os-endpoint-type",
                S::CaFile => "ca-file",
                S::AppCredId => "application-credential-id",
                S::AppCredName => "application-credential-name",
                S::AppCredSecret => "application-credential-secret",
            },
            Self::CloudsYaml => match setting {
                S::AuthUrl => "auth.auth_url",
                S::AuthType => "auth_type",
                S::Username => "auth.username",
                S::UserId => "auth.user_id",
                S::Password => "auth.password",
                S::ProjectName => "auth.project_name",
                S::ProjectId => "auth.project_id",
                S::ProjectDomainName => "auth.project_domain_name",
                S::ProjectDomainId => "auth.project_domain_id",
                S::UserDomainName => "auth.user_domain_name",
                S::UserDomainId => "auth.user_domain_id",
                S::DomainName => "auth.domain_name",
                S::DomainId => "auth.domain_id",
                S::Region => "region_name",
                S::Interface => "interface",
                S::CaFile => "cacert",
                S::AppCredId => "auth.application_credential_id",
                S::AppCredName => "auth.application_credential_name",
                S::AppCredSecret => "auth.application_credential_secret",
            },
            Self::Env => env_var(setting),
        }
    }
}

/// The primary `OS_*` variable of a setting.
fn env_var(setting: Setting) -> &'static str {
    use Setting as S;
    match setting {
        S::AuthUrl => "OS_AUTH_URL",
        S::AuthType => "OS_AUTH_TYPE",
        S::Username => "OS_USERNAME",
        S::UserId => "OS_USER_ID",
        S::Password => "OS_PASSWORD",
        S::ProjectName => "OS_PROJECT_NAME",
        S::ProjectId => "OS_PROJECT_ID",
        S::ProjectDomainName => "OS_PROJECT_DOMAIN_NAME",
        S::ProjectDomainId => "OS_PROJECT_DOMAIN_ID",
        S::UserDomainName => "OS_USER_DOMAIN_NAME",
        S::UserDomainId => "OS_USER_DOMAIN_ID",
        S::DomainName => "OS_DOMAIN_NAME",
        S::DomainId => "OS_DOMAIN_ID",
        S::Region => "OS_REGION_NAME",
        S::Interface => "OS_INTERFACE",
        S::CaFile => "OS_CACERT",
        S::AppCredId => "OS_APPLICATION_CREDENTIAL_ID",
        S::AppCredName => "OS_APPLICATION_CREDENTIAL_NAME",
        S::AppCredSecret => "OS_APPLICATION_CREDENTIAL_SECRET",
    }
}

/// A non-empty value and where it was read.
#[derive(Clone)]
struct Field {
    value: String,
    at: Place,
}

/// Settings as read from one source, before validation. Holds secrets in plain strings, so it has
/// no `Debug` and is dropped as soon as [`Raw::build`] has turned them into `SecretString`s.
struct Raw {
    dialect: Dialect,
    /// Where to point at for a missing setting (the `[Global]` line, the cloud entry, `OS_*`).
    anchor: Place,
    fields: BTreeMap<Setting, Field>,
    warnings: Vec<String>,
}

impl Raw {
    fn new(dialect: Dialect, anchor: Place) -> Self {
        Self {
            dialect,
            anchor,
            fields: BTreeMap::new(),
            warnings: Vec::new(),
        }
    }

    /// Sets a value; empty values count as unset (and unset an earlier one: last wins).
    fn set(&mut self, setting: Setting, value: String, at: Place) {
        if value.is_empty() {
            self.fields.remove(&setting);
        } else {
            self.fields.insert(setting, Field { value, at });
        }
    }

    /// Fills the settings this one lacks from `other` (which loses on conflicts).
    fn fill_from(&mut self, other: Raw) {
        for (setting, field) in other.fields {
            self.fields.entry(setting).or_insert(field);
        }
        self.warnings.extend(other.warnings);
    }

    fn get(&self, setting: Setting) -> Option<&Field> {
        self.fields.get(&setting)
    }

    fn name(&self, setting: Setting) -> &'static str {
        self.dialect.name(setting)
    }

    fn missing(&self, message: String) -> ConfigError {
        ConfigError::Invalid {
            at: self.anchor.clone(),
            message,
        }
    }

    /// The first of `settings` that is set, as an id or a name.
    fn id_or_name(&self, id: Setting, name: Setting) -> Option<IdOrName> {
        self.get(id)
            .map(|f| IdOrName::Id(f.value.clone()))
            .or_else(|| self.get(name).map(|f| IdOrName::Name(f.value.clone())))
    }

    fn user_domain(&self) -> Option<IdOrName> {
        self.id_or_name(Setting::UserDomainId, Setting::UserDomainName)
            .or_else(|| self.id_or_name(Setting::DomainId, Setting::DomainName))
    }

    fn project_domain(&self) -> Option<IdOrName> {
        self.id_or_name(Setting::ProjectDomainId, Setting::ProjectDomainName)
            .or_else(|| self.id_or_name(Setting::DomainId, Setting::DomainName))
    }

    /// The user, by id, or by name within a domain; `None` when neither id nor name is set.
    fn user(&self, purpose: &str) -> Result<Option<UserRef>, ConfigError> {
        if let Some(id) = self.get(Setting::UserId) {
            return Ok(Some(UserRef::Id(id.value.clone())));
        }
        let Some(name) = self.get(Setting::Username) else {
            return Ok(None);
        };
        let Some(domain) = self.user_domain() else {
            return Err(ConfigError::Invalid {
                at: name.at.clone(),
                message: format!(
                    "a user name needs its domain for {purpose}: set {} (or {}, e.g. Default), or use {} instead",
                    self.name(Setting::UserDomainName),
                    self.name(Setting::DomainName),
                    self.name(Setting::UserId)
                ),
            });
        };
        Ok(Some(UserRef::Name {
            name: name.value.clone(),
            domain,
        }))
    }

    fn identity(&mut self) -> Result<Identity, ConfigError> {
        let kind = self.auth_kind()?;
        match kind {
            AuthKind::Password => {
                let user = self.user("password authentication")?.ok_or_else(|| {
                    self.missing(format!(
                        "password authentication needs a user: set {} and {} (or {}), or use an application credential ({} + {})",
                        self.name(Setting::Username),
                        self.name(Setting::UserDomainName),
                        self.name(Setting::UserId),
                        self.name(Setting::AppCredId),
                        self.name(Setting::AppCredSecret)
                    ))
                })?;
                let password = self.get(Setting::Password).ok_or_else(|| {
                    self.missing(format!(
                        "no {}: set the user's password, or use an application credential ({} + {})",
                        self.name(Setting::Password),
                        self.name(Setting::AppCredId),
                        self.name(Setting::AppCredSecret)
                    ))
                })?;
                Ok(Identity::Password {
                    user,
                    password: SecretString::from(password.value.clone()),
                })
            }
            AuthKind::ApplicationCredential => {
                let secret = self.get(Setting::AppCredSecret).ok_or_else(|| {
                    self.missing(format!(
                        "application credential authentication needs {}: set it to the secret shown when the credential was created",
                        self.name(Setting::AppCredSecret)
                    ))
                })?;
                let secret = SecretString::from(secret.value.clone());
                let credential = if let Some(id) = self.get(Setting::AppCredId) {
                    ApplicationCredentialRef::Id(id.value.clone())
                } else if let Some(name) = self.get(Setting::AppCredName) {
                    let user = self
                        .user("an application credential given by name")?
                        .ok_or_else(|| ConfigError::Invalid {
                            at: name.at.clone(),
                            message: format!(
                                "an application credential given by name needs its owner: set {} (or {} with {}), or use {} instead",
                                self.name(Setting::UserId),
                                self.name(Setting::Username),
                                self.name(Setting::UserDomainName),
                                self.name(Setting::AppCredId)
                            ),
                        })?;
                    ApplicationCredentialRef::Name {
                        name: name.value.clone(),
                        user,
                    }
                } else {
                    return Err(self.missing(format!(
                        "application credential authentication needs {} (or {} plus {})",
                        self.name(Setting::AppCredId),
                        self.name(Setting::AppCredName),
                        self.name(Setting::UserId)
                    )));
                };
                if self.get(Setting::Password).is_some() {
                    self.warnings.push(format!(
                        "{} is ignored: the application credential is used instead",
                        self.name(Setting::Password)
                    ));
                }
                Ok(Identity::ApplicationCredential { credential, secret })
            }
        }
    }

    /// Password or application credential: `auth_type` when given, else an application
    /// credential when its secret or id is set (as gophercloud decides), else password.
    fn auth_kind(&self) -> Result<AuthKind, ConfigError> {
        if let Some(field) = self.get(Setting::AuthType) {
            let normal: String = field
                .value
                .to_ascii_lowercase()
                .chars()
                .filter(|c| *c != '_' && *c != '-')
                .collect();
            return match normal.as_str() {
                "password" | "v3password" => Ok(AuthKind::Password),
                "v3applicationcredential" | "applicationcredential" => {
                    Ok(AuthKind::ApplicationCredential)
                }
                _ => Err(ConfigError::Invalid {
                    at: field.at.clone(),
                    message: format!(
                        "authentication type `{}` is not supported: use password (v3password) or v3applicationcredential",
                        field.value
                    ),
                }),
            };
        }
        if self.get(Setting::AppCredSecret).is_some() || self.get(Setting::AppCredId).is_some() {
            Ok(AuthKind::ApplicationCredential)
        } else {
            Ok(AuthKind::Password)
        }
    }

    fn scope(&self) -> Result<Option<ProjectScope>, ConfigError> {
        if let Some(id) = self.get(Setting::ProjectId) {
            return Ok(Some(ProjectScope::Id(id.value.clone())));
        }
        let Some(name) = self.get(Setting::ProjectName) else {
            return Ok(None);
        };
        let domain = self.project_domain().ok_or_else(|| ConfigError::Invalid {
            at: name.at.clone(),
            message: format!(
                "a project name needs its domain: set {} (or {}, e.g. Default), or use {} instead",
                self.name(Setting::ProjectDomainName),
                self.name(Setting::DomainName),
                self.name(Setting::ProjectId)
            ),
        })?;
        Ok(Some(ProjectScope::Name {
            name: name.value.clone(),
            domain,
        }))
    }

    /// Validates everything into a config.
    fn build(mut self, source: ConfigSource) -> Result<OpenStackConfig, ConfigError> {
        let auth_url = match self.get(Setting::AuthUrl) {
            Some(field) => {
                normalise_auth_url(&field.value).map_err(|message| ConfigError::Invalid {
                    at: field.at.clone(),
                    message,
                })?
            }
            None => {
                return Err(self.missing(format!(
                    "no {}: set it to the Keystone v3 URL, e.g. https://keystone.example.com:5000/v3",
                    self.name(Setting::AuthUrl)
                )));
            }
        };
        let identity = self.identity()?;
        let scope = match identity {
            // The credential fixes the project; Keystone refuses another scope.
            Identity::ApplicationCredential { .. } => None,
            Identity::Password { .. } => self.scope()?,
        };
        let interface = match self.get(Setting::Interface) {
            Some(field) => Interface::parse(&field.value).ok_or_else(|| ConfigError::Invalid {
                at: field.at.clone(),
                message: format!(
                    "unknown endpoint interface `{}`: use public, internal or admin",
                    field.value
                ),
            })?,
            None => Interface::Public,
        };
        let ca_file = match self.get(Setting::CaFile) {
            Some(field) => {
                let path = PathBuf::from(&field.value);
                check_ca_file(&path).map_err(|message| ConfigError::Invalid {
                    at: field.at.clone(),
                    message,
                })?;
                Some(path)
            }
            None => None,
        };
        let region = self.get(Setting::Region).map(|f| f.value.clone());
        Ok(OpenStackConfig {
            auth_url,
            identity,
            scope,
            region,
            interface,
            ca_file,
            source,
            warnings: self.warnings,
        })
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum AuthKind {
    Password,
    ApplicationCredential,
}

fn check_ca_file(path: &Path) -> Result<(), String> {
    match std::fs::metadata(path) {
        Ok(meta) if meta.is_file() => Ok(()),
        Ok(_) => Err(format!(
            "CA file {} is not a regular file: point it at a PEM file of CA certificates",
            path.display()
        )),
        Err(err) => Err(format!(
            "CA file {} cannot be read ({err}): fix the path or mount the file",
            path.display()
        )),
    }
}

/// Checks an auth URL and normalises it to end in `/v3`, without a trailing slash.
///
/// - the scheme must be `http` or `https`, with a host and without `user:password@`;
/// - a path ending in `/v3` is kept (`https://k:5000/v3/` becomes `https://k:5000/v3`);
/// - an empty path or `/` gets `/v3` (`https://k:5000` becomes `https://k:5000/v3`), as
///   keystoneauth's version discovery would find it;
/// - any other path (devstack's `https://host/identity`) gets `/v3` appended too, as `osauth`
///   does, so `https://host/identity` becomes `https://host/identity/v3`;
/// - a `/v2.0` path is refused: only Keystone v3 is supported.
///
/// # Errors
/// A sentence saying what is wrong and what to do; it never repeats the URL (which could carry
/// credentials).
pub fn normalise_auth_url(text: &str) -> Result<Url, String> {
    let mut url = Url::parse(text.trim()).map_err(|err| {
        format!(
            "not a URL ({err}): set the Keystone v3 URL, e.g. https://keystone.example.com:5000/v3"
        )
    })?;
    if url.scheme() != "http" && url.scheme() != "https" {
        return Err(
            "the URL must start with https:// or http://, e.g. https://keystone.example.com:5000/v3"
                .into(),
        );
    }
    if !url.username().is_empty() || url.password().is_some() {
        return Err(
            "the URL must not carry user:password@: put the credentials in their own keys".into(),
        );
    }
    if url.host_str().is_none_or(str::is_empty) {
        return Err("the URL has no host: set the Keystone v3 URL, e.g. https://keystone.example.com:5000/v3".into());
    }
    url.set_query(None);
    url.set_fragment(None);
    let path = url.path().trim_end_matches('/').to_owned();
    let last = path.rsplit('/').next().unwrap_or_default();
    if last.starts_with("v2") {
        return Err(format!(
            "Keystone {last} is not supported: use the v3 URL (usually the same URL ending in /v3)"
        ));
    }
    if last == "v3" {
        url.set_path(&path);
    } else {
        url.set_path(&format!("{path}/v3"));
    }
    Ok(url)
}

/// Reads the `OS_*` variables.
fn from_env(source: &Source) -> Result<Raw, ConfigError> {
    use Setting as S;
    let mut raw = Raw::new(Dialect::Env, Place::Env { var: None });
    // (setting, variables in increasing precedence)
    let table: &[(Setting, &[&str])] = &[
        (S::AuthUrl, &["OS_AUTH_URL"]),
        (S::AuthType, &["OS_AUTH_TYPE"]),
        (S::Username, &["OS_USERNAME"]),
        (S::UserId, &["OS_USER_ID"]),
        (S::Password, &["OS_PASSWORD"]),
        (S::ProjectName, &["OS_TENANT_NAME", "OS_PROJECT_NAME"]),
        (S::ProjectId, &["OS_TENANT_ID", "OS_PROJECT_ID"]),
        (S::ProjectDomainName, &["OS_PROJECT_DOMAIN_NAME"]),
        (S::ProjectDomainId, &["OS_PROJECT_DOMAIN_ID"]),
        (S::UserDomainName, &["OS_USER_DOMAIN_NAME"]),
        (S::UserDomainId, &["OS_USER_DOMAIN_ID"]),
        (S::DomainName, &["OS_DOMAIN_NAME"]),
        (S::DomainId, &["OS_DOMAIN_ID"]),
        (S::Region, &["OS_REGION_NAME"]),
        (S::Interface, &["OS_ENDPOINT_TYPE", "OS_INTERFACE"]),
        (S::CaFile, &["OS_CACERT"]),
        (S::AppCredId, &["OS_APPLICATION_CREDENTIAL_ID"]),
        (S::AppCredName, &["OS_APPLICATION_CREDENTIAL_NAME"]),
        (S::AppCredSecret, &["OS_APPLICATION_CREDENTIAL_SECRET"]),
    ];
    for (setting, vars) in table {
        for var in *vars {
            if let Some(value) = source.var(var) {
                raw.set(
                    *setting,
                    value.to_owned(),
                    Place::Env {
                        var: Some((*var).to_owned()),
                    },
                );
            }
        }
    }
    for var in ["OS_CERT", "OS_KEY"] {
        if source.var(var).is_some() {
            return Err(ConfigError::Invalid {
                at: Place::Env {
                    var: Some(var.to_owned()),
                },
                message: "client certificates are not supported: unset it and authenticate with a password or an application credential".into(),
            });
        }
    }
    if let Some(insecure) = source.var("OS_INSECURE")
        && parse_bool(insecure) != Some(false)
    {
        raw.warnings
            .push(insecure_warning("OS_INSECURE", "OS_CACERT"));
    }
    Ok(raw)
}

/// gcfg and YAML booleans.
fn parse_bool(text: &str) -> Option<bool> {
    match text.trim().to_ascii_lowercase().as_str() {
        "true" | "yes" | "on" | "1" => Some(true),
        "false" | "no" | "off" | "0" => Some(false),
        _ => None,
    }
}

fn insecure_warning(key: &str, ca_key: &str) -> String {
    format!(
        "{key} is ignored: TLS certificate verification stays on; set {ca_key} to your cloud's CA certificate instead"
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn auth_url_normalisation() {
        let cases = [
            ("https://k:5000", "https://k:5000/v3"),
            ("https://k:5000/", "https://k:5000/v3"),
            ("https://k:5000/v3", "https://k:5000/v3"),
            ("https://k:5000/v3/", "https://k:5000/v3"),
            ("http://host/identity", "http://host/identity/v3"),
            ("http://host/identity/v3/", "http://host/identity/v3"),
        ];
        for (input, want) in cases {
            assert_eq!(normalise_auth_url(input).unwrap().as_str(), want, "{input}");
        }
        for bad in [
            "ftp://k/v3",
            "k:5000/v3",
            "https://u:pw@k/v3",
            "https://k/v2.0",
            "",
            "not a url",
        ] {
            let err = normalise_auth_url(bad).unwrap_err();
            assert!(!err.contains("pw@"), "{err}");
        }
    }

    #[test]
    fn interface_parse() {
        assert_eq!(Interface::parse("publicURL"), Some(Interface::Public));
        assert_eq!(Interface::parse("Internal"), Some(Interface::Internal));
        assert_eq!(Interface::parse("admin"), Some(Interface::Admin));
        assert_eq!(Interface::parse("private"), None);
    }

    #[test]
    fn source_debug_hides_values() {
        let source = Source::from_env([("OS_PASSWORD", "s3cr3t-env"), ("HOME", "/home/x")]);
        let debug = format!("{source:?}");
        assert!(debug.contains("OS_PASSWORD"));
        assert!(!debug.contains("s3cr3t-env"));
        assert!(
            source
                .clouds_yaml_search
                .contains(&PathBuf::from("/home/x/.config/openstack/clouds.yaml"))
        );
    }
}
