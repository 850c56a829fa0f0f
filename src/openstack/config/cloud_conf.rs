//! The cloud controller manager's `cloud.conf`: gcfg (git-config-like INI) syntax, `[Global]` keys.
//!
//! Syntax, as gcfg reads it: `[section]` or `[section "subsection"]` headers (case-insensitive);
//! `key = value` lines (keys case-insensitive: letters, digits, `-`); `;` and `#` start a comment
//! outside double quotes; values are trimmed, may be quoted in whole or in part, with the escapes
//! `\"`, `\\`, `\n`, `\t`, `\b`; a `\` at the end of a line continues the value on the next line;
//! a key without `=` means `true` (booleans only); a repeated key keeps its last value.
//!
//! Only `[Global]` is read; other sections (`[LoadBalancer]`, `[BlockStorage]`, `[Networking]`,
//! `[Metadata]`, ...) must parse but are ignored. As the cloud controller manager reads the same
//! file (gcfg with `FatalOnly`), an unknown key in `[Global]` or an unknown section is not fatal:
//! it is named in a warning, and in the error when a setting it may have meant is missing.

use std::path::{Path, PathBuf};

use super::{
    ConfigError, ConfigSource, Dialect, OpenStackConfig, Place, Raw, Setting, Source, clouds_yaml,
    insecure_warning, parse_bool,
};

/// What a `[Global]` key does.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Key {
    Setting(Setting),
    UseClouds,
    CloudsFile,
    Cloud,
    TlsInsecure,
    /// Accepted by the cloud controller manager, refused here with this reason.
    Unsupported(&'static str),
}

const CLIENT_CERT: &str = "client certificates are not supported: remove it and authenticate with a password or an application credential";
const TRUST: &str = "Keystone trusts are not supported: remove it and authenticate with a password or an application credential";

/// The `[Global]` keys, lowercase.
const KEYS: &[(&str, Key)] = &[
    ("auth-url", Key::Setting(Setting::AuthUrl)),
    ("username", Key::Setting(Setting::Username)),
    ("user-id", Key::Setting(Setting::UserId)),
    ("password", Key::Setting(Setting::Password)),
    ("tenant-id", Key::Setting(Setting::ProjectId)),
    ("project-id", Key::Setting(Setting::ProjectId)),
    ("tenant-name", Key::Setting(Setting::ProjectName)),
    ("project-name", Key::Setting(Setting::ProjectName)),
    ("tenant-domain-id", Key::Setting(Setting::ProjectDomainId)),
    ("project-domain-id", Key::Setting(Setting::ProjectDomainId)),
    (
        "tenant-domain-name",
        Key::Setting(Setting::ProjectDomainName),
    ),
    (
        "project-domain-name",
        Key::Setting(Setting::ProjectDomainName),
    ),
    ("domain-id", Key::Setting(Setting::DomainId)),
    ("domain-name", Key::Setting(Setting::DomainName)),
    ("user-domain-id", Key::Setting(Setting::UserDomainId)),
    ("user-domain-name", Key::Setting(Setting::UserDomainName)),
    ("region", Key::Setting(Setting::Region)),
    ("ca-file", Key::Setting(Setting::CaFile)),
    (
        "application-credential-id",
        Key::Setting(Setting::AppCredId),
    ),
    (
        "application-credential-name",
        Key::Setting(Setting::AppCredName),
    ),
    (
        "application-credential-secret",
        Key::Setting(Setting::AppCredSecret),
    ),
    ("os-endpoint-type", Key::Setting(Setting::Interface)),
    ("endpoint-type", Key::Setting(Setting::Interface)),
    ("use-clouds", Key::UseClouds),
    ("clouds-file", Key::CloudsFile),
    ("cloud", Key::Cloud),
    ("tls-insecure", Key::TlsInsecure),
    ("cert-file", Key::Unsupported(CLIENT_CERT)),
    ("key-file", Key::Unsupported(CLIENT_CERT)),
    ("trust-id", Key::Unsupported(TRUST)),
    ("trustee-id", Key::Unsupported(TRUST)),
    ("trustee-password", Key::Unsupported(TRUST)),
];

/// Reads a `cloud.conf` (and, with `use-clouds = true`, the `clouds.yaml` it names).
pub(super) fn load(path: &Path, source: &Source) -> Result<OpenStackConfig, ConfigError> {
    let text = std::fs::read_to_string(path).map_err(|err| ConfigError::Read {
        what: "cloud config",
        path: path.to_owned(),
        hint: "check the path given to --cloud-config (the cloud controller manager's cloud.conf)",
        source: err,
    })?;
    let global = parse(path, &text)?;
    let mut raw = Raw::new(
        Dialect::CloudConf,
        Place::File {
            path: path.to_owned(),
            line: global.line,
            key: Some("[Global]".into()),
        },
    );
    let mut unknown: Vec<String> = global
        .unknown_sections
        .iter()
        .map(|(line, name)| {
            format!(
                "{}:{line}: unknown section [{name}] ignored{}",
                path.display(),
                if distance(&name.to_ascii_lowercase(), "global") <= 2 {
                    ": did you mean [Global]?"
                } else {
                    ""
                }
            )
        })
        .collect();
    let mut use_clouds = false;
    let mut clouds_file = None;
    let mut cloud = None;
    for entry in global.entries {
        let at = Place::File {
            path: path.to_owned(),
            line: Some(entry.line),
            key: Some(entry.key.clone()),
        };
        let lower = entry.key.to_ascii_lowercase();
        let Some((_, key)) = KEYS.iter().find(|(name, _)| *name == lower) else {
            if entry.value.is_none() {
                // A bare word that is no known key is most likely a value that wrapped onto a
                // line of its own (a long password or secret): never echo it.
                return Err(ConfigError::Invalid {
                    at: Place::File {
                        path: path.to_owned(),
                        line: Some(entry.line),
                        key: None,
                    },
                    message: "a word with no `key =` before it; if a value wrapped onto this \
                              line, join it to its key's line (quote it if it holds ; or #)"
                        .into(),
                });
            }
            unknown.push(format!(
                "{}:{}: unknown key `{}` in [Global] ignored: {}",
                path.display(),
                entry.line,
                entry.key,
                unknown_key_hint(&lower)
            ));
            continue;
        };
        let bool_value = |value: &Option<String>| -> Result<bool, ConfigError> {
            match value {
                None => Ok(true),
                Some(text) if text.is_empty() => Ok(false),
                Some(text) => parse_bool(text).ok_or_else(|| ConfigError::Invalid {
                    at: at.clone(),
                    message: "expected true or false".into(),
                }),
            }
        };
        match *key {
            Key::UseClouds => use_clouds = bool_value(&entry.value)?,
            Key::TlsInsecure => {
                if bool_value(&entry.value)? {
                    raw.warnings
                        .push(insecure_warning("tls-insecure = true", "ca-file"));
                } else {
                    raw.warnings.retain(|w| !w.starts_with("tls-insecure"));
                }
            }
            Key::Setting(_) | Key::CloudsFile | Key::Cloud | Key::Unsupported(_) => {
                let Some(value) = entry.value else {
                    return Err(ConfigError::Invalid {
                        at,
                        message: format!("no value: write `{lower} = VALUE`"),
                    });
                };
                match *key {
                    Key::Setting(setting) => raw.set(setting, value, at),
                    Key::CloudsFile => clouds_file = Some(value).filter(|v| !v.is_empty()),
                    Key::Cloud => cloud = Some(value).filter(|v| !v.is_empty()),
                    Key::Unsupported(reason) if !value.is_empty() => {
                        return Err(ConfigError::Invalid {
                            at,
                            message: reason.into(),
                        });
                    }
                    _ => {}
                }
            }
        }
    }
    raw.warnings.extend(unknown.iter().cloned());
    let mut clouds_yaml_path = None;
    if use_clouds {
        let Some(cloud) = cloud.or_else(|| source.var("OS_CLOUD").map(str::to_owned)) else {
            return Err(raw.missing(
                "use-clouds = true needs the cloud to read: set cloud = NAME (or OS_CLOUD)".into(),
            ));
        };
        let found = clouds_yaml::locate(source, clouds_file.map(PathBuf::from), &cloud)?;
        let from_yaml = clouds_yaml::load(&found, &cloud)?;
        clouds_yaml_path = Some(found.path);
        // As the cloud controller manager does: cloud.conf values win, clouds.yaml fills the rest.
        raw.fill_from(from_yaml);
    }
    raw.build(ConfigSource::CloudConfig {
        path: path.to_owned(),
        clouds_yaml: clouds_yaml_path,
    })
    .map_err(|err| match err {
        // A missing or wrong setting may be what a misspelt key or section meant to give.
        ConfigError::Invalid { at, message } if !unknown.is_empty() => ConfigError::Invalid {
            at,
            message: format!("{message} (note: {})", unknown.join("; ")),
        },
        other => other,
    })
}

fn unknown_key_hint(key: &str) -> String {
    let closest = KEYS
        .iter()
        .map(|(name, _)| (distance(key, name), *name))
        .min();
    match closest {
        Some((d, name)) if d <= 3 => {
            format!("did you mean `{name}`? (keys are not case-sensitive)")
        }
        _ => {
            "remove it; see the cloud-provider-openstack documentation for the [Global] keys".into()
        }
    }
}

/// Levenshtein distance, for "did you mean".
fn distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut previous: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut current = vec![i + 1];
        for (j, cb) in b.iter().enumerate() {
            let substitute = previous[j] + usize::from(ca != *cb);
            let insert = current[j] + 1;
            let delete = previous[j + 1] + 1;
            current.push(substitute.min(insert).min(delete));
        }
        previous = current;
    }
    previous.last().copied().unwrap_or_default()
}

/// One `key = value` of `[Global]`.
#[derive(Debug, PartialEq, Eq)]
struct Entry {
    key: String,
    /// `None` for a key without `=`.
    value: Option<String>,
    line: u64,
}

/// The `[Global]` section.
#[derive(Debug, Default, PartialEq, Eq)]
struct Global {
    /// The line of its first header.
    line: Option<u64>,
    entries: Vec<Entry>,
    /// Sections the cloud controller manager does not read either, with their line.
    unknown_sections: Vec<(u64, String)>,
}

/// The sections of the cloud controller manager's and Cinder CSI's `cloud.conf`, lowercase.
const SECTIONS: &[&str] = &[
    "global",
    "loadbalancer",
    "loadbalancerclass",
    "blockstorage",
    "networking",
    "metadata",
    "route",
    "router",
];

/// Parses the whole file, returning the `[Global]` entries in order.
fn parse(path: &Path, text: &str) -> Result<Global, ConfigError> {
    let syntax = |line: usize, message: String| ConfigError::Syntax {
        path: path.to_owned(),
        line: line as u64 + 1,
        message,
    };
    let text = text.strip_prefix('\u{feff}').unwrap_or(text);
    let lines: Vec<&str> = text.lines().collect();
    let mut global = Global::default();
    let mut section: Option<String> = None;
    let mut index = 0;
    while index < lines.len() {
        let start = index;
        let line = lines[index].trim_start();
        index += 1;
        if line.is_empty() || line.starts_with(';') || line.starts_with('#') {
            continue;
        }
        if let Some(rest) = line.strip_prefix('[') {
            let name = parse_header(rest).map_err(|message| syntax(start, message))?;
            if name.eq_ignore_ascii_case("global") && global.line.is_none() {
                global.line = Some(start as u64 + 1);
            }
            if !SECTIONS.contains(&name.to_ascii_lowercase().as_str()) {
                global
                    .unknown_sections
                    .push((start as u64 + 1, name.clone()));
            }
            section = Some(name.to_ascii_lowercase());
            continue;
        }
        let key_len = line
            .char_indices()
            .find(|(_, c)| !(c.is_ascii_alphanumeric() || *c == '-'))
            .map_or(line.len(), |(i, _)| i);
        let key = &line[..key_len];
        if key.is_empty() || !key.starts_with(|c: char| c.is_ascii_alphabetic()) {
            return Err(syntax(
                start,
                "expected `[section]` or `key = value` (keys start with a letter and hold letters, digits and -)".into(),
            ));
        }
        let rest = line[key_len..].trim_start();
        let value = if rest.is_empty() || rest.starts_with(';') || rest.starts_with('#') {
            None
        } else if let Some(after_eq) = rest.strip_prefix('=') {
            let (value, next) = parse_value(after_eq, &lines, index)
                .map_err(|(line, message)| syntax(line, message))?;
            index = next;
            Some(value)
        } else {
            return Err(syntax(start, "expected `=` after the key".to_owned()));
        };
        match section.as_deref() {
            None => {
                return Err(syntax(
                    start,
                    format!("key `{key}` is outside any section: put it under [Global]"),
                ));
            }
            Some("global") => global.entries.push(Entry {
                key: key.to_owned(),
                value,
                line: start as u64 + 1,
            }),
            Some(_) => {}
        }
    }
    Ok(global)
}

/// Parses what follows `[` in a section header; returns the section name.
fn parse_header(rest: &str) -> Result<String, String> {
    let Some(close) = rest.rfind(']') else {
        return Err("section header without `]`".into());
    };
    let after = rest[close + 1..].trim_start();
    if !(after.is_empty() || after.starts_with(';') || after.starts_with('#')) {
        return Err("unexpected text after the section header".into());
    }
    let inner = rest[..close].trim();
    let name = inner.split_whitespace().next().unwrap_or_default();
    let subsection = inner[name.len()..].trim();
    if name.is_empty()
        || !name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '.')
    {
        return Err("bad section name: use letters, digits, - and . (e.g. [Global])".into());
    }
    let quoted = subsection.len() >= 2 && subsection.starts_with('"') && subsection.ends_with('"');
    if !subsection.is_empty() && !quoted {
        return Err("a subsection name must be double-quoted: [section \"name\"]".into());
    }
    Ok(name.to_owned())
}

/// Parses a value starting right after `=`, continuing on the next lines after a trailing `\`.
/// Returns the value and the index of the next unread line; errors carry a 0-based line index.
/// Error messages never repeat the value.
fn parse_value(
    first: &str,
    lines: &[&str],
    mut next: usize,
) -> Result<(String, usize), (usize, String)> {
    let mut value = String::new();
    let mut pending_space = String::new();
    let mut quoted = false;
    let mut current = first;
    let mut line_index = next - 1;
    let quote_line = |line: usize| {
        (
            line,
            "unterminated quoted value: add the closing `\"`".to_owned(),
        )
    };
    loop {
        let mut chars = current.chars();
        let mut continued = false;
        while let Some(c) = chars.next() {
            match c {
                '\\' => match chars.next() {
                    None => {
                        continued = true;
                        break;
                    }
                    Some(escaped) => {
                        let out = match escaped {
                            '\\' => '\\',
                            '"' => '"',
                            'n' => '\n',
                            't' => '\t',
                            'b' => '\u{8}',
                            other => {
                                return Err((
                                    line_index,
                                    format!(
                                        "unknown escape `\\{other}` in a value: write `\\\\` for a backslash"
                                    ),
                                ));
                            }
                        };
                        value.push_str(&pending_space);
                        pending_space.clear();
                        value.push(out);
                    }
                },
                '"' => {
                    value.push_str(&pending_space);
                    pending_space.clear();
                    quoted = !quoted;
                }
                _ if quoted => value.push(c),
                ';' | '#' => break,
                c if c.is_whitespace() => {
                    if !value.is_empty() {
                        pending_space.push(c);
                    }
                }
                c => {
                    value.push_str(&pending_space);
                    pending_space.clear();
                    value.push(c);
                }
            }
        }
        if !continued {
            if quoted {
                return Err(quote_line(line_index));
            }
            return Ok((value, next));
        }
        let Some(line) = lines.get(next) else {
            if quoted {
                return Err(quote_line(line_index));
            }
            return Ok((value, next));
        };
        current = line;
        line_index = next;
        next += 1;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn global(text: &str) -> Global {
        parse(Path::new("cloud.conf"), text).unwrap()
    }

    fn value(text: &str) -> Option<String> {
        global(&format!("[Global]\nkey = {text}\n"))
            .entries
            .pop()
            .and_then(|e| e.value)
    }

    #[test]
    fn values_quotes_escapes_comments() {
        assert_eq!(value("plain").as_deref(), Some("plain"));
        assert_eq!(
            value("  spaced  out  ; comment").as_deref(),
            Some("spaced  out")
        );
        assert_eq!(value("\"a;b#c\"").as_deref(), Some("a;b#c"));
        assert_eq!(value("x\"  y  \"z").as_deref(), Some("x  y  z"));
        assert_eq!(
            value(r#""q\"uote\\d\n\t""#).as_deref(),
            Some("q\"uote\\d\n\t")
        );
        assert_eq!(value("").as_deref(), Some(""));
        assert_eq!(value("\"\"").as_deref(), Some(""));
        assert_eq!(value("a # b").as_deref(), Some("a"));
    }

    #[test]
    fn continuation_and_sections() {
        let g = global(
            "; top comment\n[LoadBalancer]\nlb-version = v2\n[Global]\nregion = one\\\n-two\n[BlockStorage \"x\"]\nbs-version = v3\n[global]\nRegion = last\n",
        );
        assert_eq!(g.line, Some(4));
        let values: Vec<_> = g
            .entries
            .iter()
            .map(|e| (e.key.as_str(), e.value.as_deref(), e.line))
            .collect();
        assert_eq!(
            values,
            vec![("region", Some("one-two"), 5), ("Region", Some("last"), 10)]
        );
    }

    #[test]
    fn syntax_errors_name_the_line_not_the_value() {
        let cases = [
            ("[Global]\npassword = \"hunter2\n", 2, "unterminated"),
            ("[Global]\npassword = \"hunter2\\q\"\n", 2, "escape"),
            ("password = hunter2\n", 1, "outside any section"),
            ("[Global\n", 1, "]"),
            ("[Global]\n= hunter2\n", 2, "expected"),
            ("[Global]\npassword hunter2\n", 2, "expected `=`"),
        ];
        for (text, line, needle) in cases {
            let err = parse(Path::new("c.conf"), text).unwrap_err();
            let msg = err.to_string();
            assert!(msg.starts_with(&format!("c.conf:{line}: ")), "{msg}");
            assert!(msg.contains(needle), "{msg}");
            assert!(!msg.contains("hunter2"), "{msg}");
        }
    }

    proptest::proptest! {
        #[test]
        fn never_panics(text in "(\\PC|[\\[\\]\"\\\\;#= \n-])*") {
            let _ = parse(Path::new("c.conf"), &text);
        }

        #[test]
        fn errors_are_one_line(text in "\\[Global\\]\n[a-z-]{1,12} ?=? ?[\"\\\\a-z;# ]{0,20}\n") {
            if let Err(err) = parse(Path::new("c.conf"), &text) {
                proptest::prop_assert!(!err.to_string().contains('\n'));
            }
        }
    }

    #[test]
    fn did_you_mean() {
        assert!(unknown_key_hint("auth-ur1").contains("`auth-url`"));
        assert!(unknown_key_hint("completely-different-thing").contains("remove it"));
    }
}
