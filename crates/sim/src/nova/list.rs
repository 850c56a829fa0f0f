//! The query of Nova's server lists (`GET /servers`, `GET /servers/detail`), read as Nova reads
//! it: the query schema of the microversion (`schemas/servers.py` `index_query*`), then
//! `ServersController._get_servers` (`servers.py`), then the database query
//! (`instance_get_all_by_filters_sort`) and the paging and next link of `api/openstack/common.py`.
//! Filters served: `name`, `ip`, `status`, `changes-since`, `changes-before` (from 2.66),
//! `deleted` (an admin's), `all_tenants`; paging: `limit`, `marker`.

use std::collections::BTreeMap;

use jiff::Timestamp;
use regex::Regex;

use super::isotime;
use crate::cloud::{Microversion, Refusal, Server};

/// The query parameters of `index_query` (2.1), known at every microversion; the schema strips
/// any other from the request before 2.75 and refuses it from 2.75.
const KNOWN: &[&str] = &[
    "user_id",
    "project_id",
    "tenant_id",
    "launch_index",
    "image_ref",
    "image",
    "kernel_id",
    "ramdisk_id",
    "hostname",
    "key_name",
    "power_state",
    "vm_state",
    "task_state",
    "host",
    "node",
    "flavor",
    "reservation_id",
    "launched_at",
    "terminated_at",
    "availability_zone",
    "name",
    "display_name",
    "description",
    "display_description",
    "locked_by",
    "uuid",
    "root_device_name",
    "config_drive",
    "access_ip_v4",
    "access_ip_v6",
    "auto_disk_config",
    "progress",
    "sort_key",
    "sort_dir",
    "all_tenants",
    "soft_deleted",
    "deleted",
    "status",
    "changes-since",
    "ip",
    "ip6",
    "created_at",
    "block_device_mapping",
    "services",
    "metadata",
    "system_metadata",
    "info_cache",
    "security_groups",
    "pci_devices",
    "limit",
    "marker",
];

/// The tag filters `index_query_v226` adds.
const TAGS: [&str; 4] = ["tags", "tags-any", "not-tags", "not-tags-any"];

/// `JOINED_TABLE_QUERY_PARAMS_SERVERS`: in the schema, but a 400 in `_get_servers`.
const JOINED: [&str; 7] = [
    "block_device_mapping",
    "services",
    "metadata",
    "system_metadata",
    "info_cache",
    "security_groups",
    "pci_devices",
];

/// `common._STATE_MAP` flattened: (vm_state, task_state or `default`, the status shown).
const STATE_MAP: &[(&str, &str, &str)] = &[
    ("active", "default", "ACTIVE"),
    ("active", "rebooting", "REBOOT"),
    ("active", "reboot_pending", "REBOOT"),
    ("active", "reboot_started", "REBOOT"),
    ("active", "rebooting_hard", "HARD_REBOOT"),
    ("active", "reboot_pending_hard", "HARD_REBOOT"),
    ("active", "reboot_started_hard", "HARD_REBOOT"),
    ("active", "updating_password", "PASSWORD"),
    ("active", "rebuilding", "REBUILD"),
    ("active", "rebuild_block_device_mapping", "REBUILD"),
    ("active", "rebuild_spawning", "REBUILD"),
    ("active", "migrating", "MIGRATING"),
    ("active", "resize_prep", "RESIZE"),
    ("active", "resize_migrating", "RESIZE"),
    ("active", "resize_migrated", "RESIZE"),
    ("active", "resize_finish", "RESIZE"),
    ("building", "default", "BUILD"),
    ("stopped", "default", "SHUTOFF"),
    ("stopped", "resize_prep", "RESIZE"),
    ("stopped", "resize_migrating", "RESIZE"),
    ("stopped", "resize_migrated", "RESIZE"),
    ("stopped", "resize_finish", "RESIZE"),
    ("stopped", "rebuilding", "REBUILD"),
    ("stopped", "rebuild_block_device_mapping", "REBUILD"),
    ("stopped", "rebuild_spawning", "REBUILD"),
    ("resized", "default", "VERIFY_RESIZE"),
    ("resized", "resize_reverting", "REVERT_RESIZE"),
    ("paused", "default", "PAUSED"),
    ("paused", "migrating", "MIGRATING"),
    ("suspended", "default", "SUSPENDED"),
    ("rescued", "default", "RESCUE"),
    ("error", "default", "ERROR"),
    ("error", "rebuilding", "REBUILD"),
    ("error", "rebuild_block_device_mapping", "REBUILD"),
    ("error", "rebuild_spawning", "REBUILD"),
    ("deleted", "default", "DELETED"),
    ("soft-delete", "default", "SOFT_DELETED"),
    ("shelved", "default", "SHELVED"),
    ("shelved_offloaded", "default", "SHELVED_OFFLOADED"),
];

/// What a `status` filter selects (`common.task_and_vm_state_from_status`): these vm_states,
/// and these task states unless one of the statuses is its vm_state's default.
struct StatusFilter {
    vm_states: Vec<&'static str>,
    task_states: Option<Vec<&'static str>>,
}

/// A server list's query, checked.
pub(super) struct ServerQuery {
    name: Option<Regex>,
    ip: Option<String>,
    status: Option<StatusFilter>,
    changes_since: Option<Timestamp>,
    changes_before: Option<Timestamp>,
    /// Only deleted servers, only live ones, or both.
    deleted: Option<bool>,
    limit: usize,
    marker: Option<String>,
    /// The request's parameters the schema kept, as the next link repeats them.
    link: BTreeMap<String, String>,
}

/// The outcome of reading a query.
pub(super) enum Checked {
    /// A query to list by.
    List(Box<ServerQuery>),
    /// A `status` no server can have, before 2.38: Nova answers an empty list.
    Nothing,
}

/// The caller and the settings a query is read against.
pub(super) struct Context {
    /// The negotiated microversion.
    pub version: Microversion,
    /// Whether the caller is an admin (`allow_all_filters`, `get_all_tenants`, `deleted`).
    pub admin: bool,
    /// `GET /servers/detail` rather than `GET /servers` (the policy names differ).
    pub detail: bool,
    /// Nova's `[api] max_limit`.
    pub max_limit: usize,
}

/// Python's `repr` of a string, as jsonschema quotes the value in its messages.
fn py_repr(text: &str) -> String {
    let quote = if text.contains('\'') && !text.contains('"') {
        '"'
    } else {
        '\''
    };
    let mut out = String::from(quote);
    for c in text.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if c == quote => {
                out.push('\\');
                out.push(c);
            }
            c if u32::from(c) < 0x20 || c == '\u{7f}' => {
                out.push_str(&format!("\\x{:02x}", u32::from(c)));
            }
            c => out.push(c),
        }
    }
    out.push(quote);
    out
}

/// The schema's 400 for one value of a query parameter (`_SchemaValidator.validate`).
fn invalid(param: &str, value: &str, message: &str) -> Refusal {
    Refusal::BadRequest(format!(
        "Invalid input for query parameters {param}. Value: {value}. {message}"
    ))
}

/// Whether the schema of `version` knows the parameter (or keeps it by `patternProperties`
/// `^_`).
fn known(param: &str, version: Microversion) -> bool {
    KNOWN.contains(&param)
        || param.starts_with('_')
        || (version >= Microversion(2, 26) && TAGS.contains(&param))
        || (version >= Microversion(2, 66) && param == "changes-before")
        || (version >= Microversion(2, 73) && param == "locked")
}

/// oslo's lenient `bool_from_string(value, default=False)`.
fn lenient_bool(text: &str) -> bool {
    matches!(
        text.trim().to_ascii_lowercase().as_str(),
        "1" | "t" | "true" | "on" | "y" | "yes"
    )
}

/// Nova's `common.is_all_tenants`: present with no value counts as asked; otherwise oslo's
/// strict `bool_from_string`, a 400 for anything else.
fn all_tenants(params: &BTreeMap<String, String>) -> Result<bool, Refusal> {
    let Some(text) = params.get("all_tenants") else {
        return Ok(false);
    };
    match text.trim().to_ascii_lowercase().as_str() {
        "" | "1" | "t" | "true" | "on" | "y" | "yes" => Ok(true),
        "0" | "f" | "false" | "off" | "n" | "no" => Ok(false),
        _ => Err(Refusal::BadRequest(format!(
            "Unrecognized value '{text}', acceptable values are: '0', '1', 'f', 'false', 'n', \
             'no', 'off', 'on', 't', 'true', 'y', 'yes'"
        ))),
    }
}

/// `common.task_and_vm_state_from_status`; none when no status matches.
fn status_filter(statuses: &[&str]) -> Option<StatusFilter> {
    let wanted: Vec<String> = statuses.iter().map(|s| s.to_ascii_lowercase()).collect();
    let mut vm_states = Vec::new();
    let mut task_states = Vec::new();
    for &(vm_state, task_state, status) in STATE_MAP {
        if wanted.contains(&status.to_ascii_lowercase()) {
            if !vm_states.contains(&vm_state) {
                vm_states.push(vm_state);
            }
            if !task_states.contains(&task_state) {
                task_states.push(task_state);
            }
        }
    }
    if vm_states.is_empty() {
        return None;
    }
    let task_states = (!task_states.contains(&"default")).then_some(task_states);
    Some(StatusFilter {
        vm_states,
        task_states,
    })
}

impl ServerQuery {
    /// Reads a query (its parameters in request order) as Nova does, refusing in Nova's order:
    /// the schema (each parameter's format in the schema's order, then from 2.75 an unknown
    /// parameter), a joined-table or `_` filter of an admin, the status, the two times, a
    /// non-admin's `status=DELETED`, `all_tenants` and its policy; the marker is checked when
    /// paging.
    ///
    /// # Errors
    /// Nova's 400 or 403.
    pub(super) fn read(pairs: &[(String, String)], context: &Context) -> Result<Checked, Refusal> {
        let version = context.version;
        let values = |param: &'static str| {
            pairs
                .iter()
                .filter(move |(key, _)| key == param)
                .map(|(_, value)| value.as_str())
        };
        // The schema, in the order of its properties.
        for value in values("name") {
            if Regex::new(value).is_err() {
                let message = format!("{} is not a 'regex'", py_repr(value));
                return Err(invalid("name", value, &message));
            }
        }
        for value in values("changes-since") {
            if isotime::parse(value).is_none() {
                let message = format!("{} is not a 'date-time'", py_repr(value));
                return Err(invalid("changes-since", value, &message));
            }
        }
        for value in values("ip") {
            if Regex::new(value).is_err() {
                let message = format!("{} is not a 'regex'", py_repr(value));
                return Err(invalid("ip", value, &message));
            }
        }
        for value in values("limit") {
            if !value.bytes().all(|b| b.is_ascii_digit()) {
                let message = format!("{} does not match '^[0-9]*$'", py_repr(value));
                return Err(invalid("limit", value, &message));
            }
            if value.is_empty() {
                return Err(invalid("limit", value, "'' should be non-empty"));
            }
        }
        if version >= Microversion(2, 66) {
            for value in values("changes-before") {
                if isotime::parse(value).is_none() {
                    let message = format!("{} is not a 'date-time'", py_repr(value));
                    return Err(invalid("changes-before", value, &message));
                }
            }
        }
        let mut unknown: Vec<&str> = pairs
            .iter()
            .map(|(key, _)| key.as_str())
            .filter(|key| !known(key, version))
            .collect();
        unknown.sort_unstable();
        unknown.dedup();
        // From 2.75 an unknown parameter is a 400, unless every parameter is unknown (Nova's
        // `_soft_validate_additional_properties` then lets them all through); before, the schema
        // strips them from the request.
        let strict = version >= Microversion(2, 75);
        let all_unknown = pairs.iter().all(|(key, _)| unknown.contains(&key.as_str()));
        if strict && !unknown.is_empty() && !all_unknown {
            let names: Vec<String> = unknown.iter().map(|name| py_repr(name)).collect();
            let verb = if names.len() == 1 { "was" } else { "were" };
            return Err(Refusal::BadRequest(format!(
                "Additional properties are not allowed ({} {verb} unexpected)",
                names.join(", ")
            )));
        }
        let kept: Vec<&(String, String)> = pairs
            .iter()
            .filter(|(key, _)| strict || known(key, version))
            .collect();
        // The last value of a repeated parameter, as webob's `MultiDict` gives it.
        let params: BTreeMap<String, String> = kept.iter().map(|&pair| pair.clone()).collect();
        // `remove_invalid_options`: an admin may filter on anything the schema kept, a user only
        // on the listed options (so a user's `deleted` is dropped), and only an admin's
        // joined-table or `_` filter reaches the check.
        if context.admin
            && let Some((key, _)) = kept
                .iter()
                .find(|(key, _)| JOINED.contains(&key.as_str()) || key.starts_with('_'))
        {
            return Err(Refusal::BadRequest(format!("Invalid filter field: {key}.")));
        }
        let statuses: Vec<&str> = kept
            .iter()
            .filter(|(key, _)| key == "status")
            .map(|(_, value)| value.as_str())
            .collect();
        let status = if statuses.is_empty() {
            None
        } else {
            match status_filter(&statuses) {
                Some(filter) => Some(filter),
                None if version >= Microversion(2, 38) => {
                    return Err(Refusal::BadRequest("Invalid status value".to_owned()));
                }
                None => return Ok(Checked::Nothing),
            }
        };
        let time = |param: &str| params.get(param).and_then(|value| isotime::parse(value));
        let changes_since = time("changes-since");
        let changes_before = time("changes-before");
        if let (Some(since), Some(before)) = (changes_since, changes_before)
            && before < since
        {
            return Err(Refusal::BadRequest(
                "The value of changes-since must be less than or equal to changes-before."
                    .to_owned(),
            ));
        }
        // Deleted servers are listed by default to a changes-since or changes-before query,
        // never otherwise; an admin's `deleted` decides alone.
        let mut deleted = match params.get("deleted").filter(|_| context.admin) {
            Some(text) => Some(lenient_bool(text)),
            None if changes_since.is_some() || changes_before.is_some() => None,
            None => Some(false),
        };
        if status
            .as_ref()
            .is_some_and(|filter| filter.vm_states == ["deleted"])
        {
            if !context.admin {
                return Err(Refusal::Forbidden(
                    "Only administrators may list deleted instances".to_owned(),
                ));
            }
            deleted = Some(true);
        }
        // Every server is in the one project, so all_tenants lists the same servers; but only
        // an admin may ask (`os_compute_api:servers:{index,detail}:get_all_tenants`).
        if all_tenants(&params)? && !context.admin {
            let rule = if context.detail { "detail" } else { "index" };
            return Err(Refusal::policy(&format!(
                "os_compute_api:servers:{rule}:get_all_tenants"
            )));
        }
        // `get_limit_and_marker`: at most `max_limit`.
        let limit = params.get("limit").map_or(context.max_limit, |text| {
            text.parse::<u128>().map_or(context.max_limit, |limit| {
                usize::try_from(limit).map_or(context.max_limit, |l| l.min(context.max_limit))
            })
        });
        let ip = params.get("ip").map(|ip| {
            // With Neutron, Nova strips a leading `^`, a trailing `$` and every `\.`
            // (`get_instance_uuids_by_ip_filter`), and Neutron, with its `ip-substring-filtering`
            // extension, matches the rest anywhere in a fixed address of a port.
            let ip = ip.strip_prefix('^').unwrap_or(ip);
            let ip = ip.strip_suffix('$').unwrap_or(ip);
            ip.replace("\\.", ".")
        });
        Ok(Checked::List(Box::new(Self {
            // Compiled above: the schema checked it.
            name: params.get("name").and_then(|name| Regex::new(name).ok()),
            ip,
            status,
            changes_since,
            changes_before,
            deleted,
            limit,
            marker: params.get("marker").cloned(),
            link: params,
        })))
    }

    /// Whether the server passes every filter (the database query's, Neutron's for `ip`):
    /// `updated_at >= changes-since` and `updated_at <= changes-before`.
    fn matches(&self, server: &Server) -> bool {
        self.deleted.is_none_or(|deleted| server.deleted() == deleted)
            && self
                .changes_since
                .is_none_or(|since| server.updated >= since)
            && self
                .changes_before
                .is_none_or(|before| server.updated <= before)
            && self
                .name
                .as_ref()
                .is_none_or(|name| name.is_match(&server.name))
            // A deleted server's ports are gone.
            && self.ip.as_ref().is_none_or(|ip| {
                !server.deleted()
                    && server
                        .addresses
                        .iter()
                        .any(|addr| !addr.contains(':') && addr.contains(ip.as_str()))
            })
            && self.status.as_ref().is_none_or(|filter| {
                filter.vm_states.contains(&server.vm_state())
                    && filter.task_states.as_ref().is_none_or(|tasks| {
                        server
                            .task_state
                            .as_deref()
                            .is_some_and(|task| tasks.contains(&task))
                    })
            })
    }

    /// One page of `listed` (every server, deleted ones included, in Nova's order): those after
    /// the marker that pass the filters, at most `limit`; and, when the page is full, the query
    /// of the next page (`_get_collection_links`).
    ///
    /// # Errors
    /// 400 when no server, deleted or not, has the marker's id (Nova looks the marker up with
    /// `read_deleted='yes'`, whatever the filters).
    pub(super) fn page<'a>(
        &self,
        listed: &[&'a Server],
    ) -> Result<(Vec<&'a Server>, Option<String>), Refusal> {
        let start = match &self.marker {
            None => 0,
            Some(marker) => {
                listed
                    .iter()
                    .position(|server| server.id == *marker)
                    .ok_or_else(|| Refusal::BadRequest(format!("marker [{marker}] not found")))?
                    + 1
            }
        };
        let page: Vec<&Server> = listed[start..]
            .iter()
            .copied()
            .filter(|server| self.matches(server))
            .take(self.limit)
            .collect();
        let next = match page.last() {
            Some(last) if self.limit > 0 && page.len() == self.limit => {
                Some(self.next_query(&last.id))
            }
            _ => None,
        };
        Ok((page, next))
    }

    /// `_get_next_link`: the request's parameters sorted by name, `marker` set to the last id
    /// (in its place when the request had one), `urlencode`d.
    fn next_query(&self, last: &str) -> String {
        let mut params = self.link.clone();
        params.insert("marker".to_owned(), last.to_owned());
        params
            .iter()
            .map(|(key, value)| format!("{}={}", quote_plus(key), quote_plus(value)))
            .collect::<Vec<_>>()
            .join("&")
    }
}

/// Python's `urllib.parse.quote_plus`: a space is `+`, anything but letters, digits and `_.-~`
/// is percent-encoded.
fn quote_plus(text: &str) -> String {
    text.bytes()
        .map(|byte| match byte {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'_' | b'.' | b'-' | b'~' => {
                char::from(byte).to_string()
            }
            b' ' => "+".to_owned(),
            _ => format!("%{byte:02X}"),
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::{py_repr, quote_plus, status_filter};

    #[test]
    fn quotes_as_python() {
        assert_eq!(py_repr("asdf"), "'asdf'");
        assert_eq!(py_repr("it's"), "\"it's\"");
        assert_eq!(py_repr("a'b\"c"), "'a\\'b\"c'");
        assert_eq!(py_repr("a\\b\n"), "'a\\\\b\\n'");
        assert_eq!(
            quote_plus("2026-01-01T10:00:00+01:00 x"),
            "2026-01-01T10%3A00%3A00%2B01%3A00+x"
        );
    }

    #[test]
    fn status_filters_follow_novas_state_map() {
        let active = status_filter(&["active"]).unwrap();
        assert_eq!(active.vm_states, ["active"]);
        assert!(active.task_states.is_none(), "ACTIVE is active's default");
        let rebuild = status_filter(&["REBUILD"]).unwrap();
        assert_eq!(rebuild.vm_states, ["active", "stopped", "error"]);
        assert_eq!(
            rebuild.task_states.unwrap(),
            [
                "rebuilding",
                "rebuild_block_device_mapping",
                "rebuild_spawning"
            ]
        );
        assert!(status_filter(&["UNKNOWN"]).is_none());
        assert!(status_filter(&["nonsense"]).is_none());
    }
}
