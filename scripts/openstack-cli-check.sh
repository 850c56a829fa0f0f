#!/usr/bin/env bash
# Runs the real `openstack` CLI (python-openstackclient) against the emulated Keystone, Nova and
# Cinder of `cinder-remediator sim` (the built-in seed scenario), and checks what each command
# shows: the operator's manual fix from the seed story, end to end, first refused while the
# server's compute host is forced down. Then what changed since the start, as `server list
# --changes-since` (and `--changes-before`, `--deleted`) shows it. Then, with the seed's
# credentials turned into a project member's, that Nova shows no host fields, refuses the compute
# service list and lists deleted servers to it by changes-since. Last, the seed with Nova's
# `[api] max_limit` at 1: the CLI pages through a changes-since list.
#
# Usage: scripts/openstack-cli-check.sh
# Honours CARGO_TARGET_DIR. Creates (or reuses) a virtualenv at $REPO/.venv.
set -euo pipefail

REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
VENV="$REPO/.venv"
# Checked with python-openstackclient 10.5.0 (openstacksdk 4.22, keystoneauth1 5.18).
OSC_SPEC='python-openstackclient>=10.0,<11'
SERVER=9454752c-f0e2-4447-9b7f-16434c49f7ac
OTHER=3901d974-751e-4ba7-acfa-9cd583c6729d
VOLUME=4e41d530-cb5f-49a9-9c6f-a591abdb6f11
READY_TIMEOUT_S=60
DETACH_TIMEOUT_S=30

passed=0
failed=0
sim_pid=""
tmp="$(mktemp -d)"

stop_sim() {
    if [[ -n "$sim_pid" ]] && kill -0 "$sim_pid" 2>/dev/null; then
        kill "$sim_pid" 2>/dev/null || true
        wait "$sim_pid" 2>/dev/null || true
    fi
    sim_pid=""
}

cleanup() {
    stop_sim
    rm -rf "$tmp"
}
trap cleanup EXIT

log() { printf 'openstack-cli-check: %s\n' "$*"; }

if [[ ! -x "$VENV/bin/openstack" ]]; then
    log "installing $OSC_SPEC into $VENV"
    python3 -m venv "$VENV"
    "$VENV/bin/pip" install --quiet --disable-pip-version-check "$OSC_SPEC"
fi
openstack_cli="$VENV/bin/openstack"

log "building cinder-remediator"
(cd "$REPO" && cargo build --quiet --bin cinder-remediator)
binary="${CARGO_TARGET_DIR:-$REPO/target}/debug/cinder-remediator"

# start_sim DIR [SCENARIO]: serves SCENARIO (the seed when left out) with its state in DIR, and
# points the CLI at it.
start_sim() {
    local dir="$1"
    shift
    mkdir -p "$dir"
    "$binary" sim --state-dir "$dir" "$@" >"$dir/sim.log" 2>&1 &
    sim_pid=$!
    for _ in $(seq $((READY_TIMEOUT_S * 10))); do
        [[ -f "$dir/ready" ]] && break
        if ! kill -0 "$sim_pid" 2>/dev/null; then
            log "sim exited before it was ready:"
            cat "$dir/sim.log"
            exit 1
        fi
        sleep 0.1
    done
    if [[ ! -f "$dir/ready" ]]; then
        log "sim not ready after ${READY_TIMEOUT_S}s"
        exit 1
    fi
    export OS_CLIENT_CONFIG_FILE="$dir/clouds.yaml" OS_CLOUD=sim
}

# Nova keeps `updated_at` in whole seconds: a second before the start, every server is older
# (the scenario's were created days ago).
since="$(date -u -d '-1 second' +%Y-%m-%dT%H:%M:%SZ)"
start_sim "$tmp/admin"

# verify HOW NAME TEXT... -- COMMAND...: runs COMMAND and passes when it succeeds (HOW `has` or
# `lacks`) or fails (`refused`), and its output has every TEXT (`has`, `refused`) or none
# (`lacks`).
verify() {
    local how="$1" name="$2"
    shift 2
    local texts=()
    while [[ "$1" != "--" ]]; do
        texts+=("$1")
        shift
    done
    shift
    local output succeeded=true
    output="$("$@" 2>&1)" || succeeded=false
    if [[ "$succeeded" != "$([[ "$how" == refused ]] && echo false || echo true)" ]]; then
        log "FAIL $name: command $([[ "$succeeded" == true ]] && echo succeeded || echo failed): $*"
        printf '%s\n' "$output"
        failed=$((failed + 1))
        return
    fi
    local wrong=()
    for text in "${texts[@]}"; do
        local found=false
        if grep -qF -- "$text" <<<"$output"; then found=true; fi
        if [[ "$found" == "$([[ "$how" == lacks ]] && echo true || echo false)" ]]; then
            wrong+=("$text")
        fi
    done
    if ((${#wrong[@]})); then
        log "FAIL $name: output $([[ "$how" == lacks ]] && echo has || echo lacks): ${wrong[*]}"
        printf '%s\n' "$output"
        failed=$((failed + 1))
    else
        log "ok   $name"
        passed=$((passed + 1))
    fi
}
check() { verify has "$@"; }
check_lacks() { verify lacks "$@"; }
check_refused() { verify refused "$@"; }

check "server list" node-3-nude node-4-nude ACTIVE SHUTOFF 10.0.0.14 -- \
    "$openstack_cli" server list
check "server show" node-4-nude SHUTOFF compute-2 "$VOLUME" -- \
    "$openstack_cli" server show "$SERVER"
check "volume list" pvc-12ff0316-53bd-11e8-8b74-fa163e141d50 in-use "Attached to node-4-nude on /dev/vdb" -- \
    "$openstack_cli" volume list
check "volume show" in-use "$SERVER" /dev/vdb -- \
    "$openstack_cli" volume show "$VOLUME"
check "compute service list" nova-compute compute-1 compute-2 " up " -- \
    "$openstack_cli" compute service list

# While Nova counts compute-2 as up, evacuating its server is refused (400).
check_refused "server evacuate (host up)" "Compute service of compute-2 is still in use" "400" -- \
    "$openstack_cli" server evacuate "$SERVER"

# Fenced by the operator: Nova no longer counts compute-2 as up and refuses the detach (409)
# before it changes anything in Cinder.
check "compute service set --down" -- \
    "$openstack_cli" compute service set --down compute-2 nova-compute
check "compute service list (forced down)" compute-2 " down " -- \
    "$openstack_cli" compute service list --host compute-2
check_refused "server remove volume (host forced down)" "Service is unavailable at this time" "409" -- \
    "$openstack_cli" server remove volume "$SERVER" "$VOLUME"
check "volume show (still in-use)" in-use "$SERVER" -- \
    "$openstack_cli" volume show "$VOLUME"
check "compute service set --up" -- \
    "$openstack_cli" compute service set --up compute-2 nova-compute

check "server remove volume" -- \
    "$openstack_cli" server remove volume "$SERVER" "$VOLUME"

# The detach is asynchronous: the volume is `detaching`, then `available`.
status=""
deadline=$((SECONDS + DETACH_TIMEOUT_S))
while ((SECONDS < deadline)); do
    status="$("$openstack_cli" volume show -f value -c status "$VOLUME" 2>&1 || true)"
    [[ "$status" == "available" ]] && break
    sleep 0.5
done
if [[ "$status" == "available" ]]; then
    log "ok   volume available after the detach"
    passed=$((passed + 1))
else
    log "FAIL volume not available within ${DETACH_TIMEOUT_S}s (last status: $status)"
    failed=$((failed + 1))
fi

# wait_server SERVER STATUS NAME: waits until the server shows STATUS, and counts it.
wait_server() {
    local server="$1" want="$2" name="$3" status="" deadline=$((SECONDS + DETACH_TIMEOUT_S))
    while ((SECONDS < deadline)); do
        status="$("$openstack_cli" server show -f value -c status "$server" 2>&1 || true)"
        [[ "$status" == "$want" ]] && break
        sleep 0.5
    done
    if [[ "$status" == "$want" ]]; then
        log "ok   $name"
        passed=$((passed + 1))
    else
        log "FAIL $name: not $want within ${DETACH_TIMEOUT_S}s (last status: $status)"
        failed=$((failed + 1))
    fi
}

# Nova saves no server to detach a volume: nothing changed since the start.
check_lacks "server list --changes-since (nothing changed)" node-3-nude node-4-nude -- \
    "$openstack_cli" server list --changes-since "$since"
check "server stop" -- "$openstack_cli" server stop "$OTHER"
wait_server "$OTHER" SHUTOFF "server stopped"
check "server list --changes-since" node-3-nude SHUTOFF -- \
    "$openstack_cli" server list --changes-since "$since"
check_lacks "server list --changes-since lacks the unchanged" node-4-nude -- \
    "$openstack_cli" server list --changes-since "$since"
check "server list --changes-before (2.66)" node-4-nude -- \
    "$openstack_cli" --os-compute-api-version 2.66 server list --changes-before "$since"
check_lacks "server list --changes-before lacks the changed" node-3-nude -- \
    "$openstack_cli" --os-compute-api-version 2.66 server list --changes-before "$since"
# A deleted server: gone from the list and from `server show`, listed DELETED by `--deleted`.
# The CLI sends `deleted=False` unless `--deleted`, an admin's filter Nova obeys, so an admin's
# `--changes-since` shows no deleted server (a member's does, below).
check "server delete --wait" -- "$openstack_cli" server delete --wait "$SERVER"
check "server list --deleted" node-4-nude DELETED -- \
    "$openstack_cli" server list --deleted
check_lacks "server list --deleted lacks the live" node-3-nude -- \
    "$openstack_cli" server list --deleted
check_lacks "server list lacks the deleted" node-4-nude -- \
    "$openstack_cli" server list
check_lacks "server list --changes-since (an admin's deleted=False)" node-4-nude -- \
    "$openstack_cli" server list --changes-since "$since"
check_refused "server show (deleted)" "No Server found for $SERVER" -- \
    "$openstack_cli" server show "$SERVER"

stop_sim

# The same cloud seen by a project member: no host fields, no compute service list.
member_scenario="$tmp/seed-member.yaml"
sed 's/^openstack:$/openstack:\n  role: member/' "$REPO/scenarios/seed-node-shutdown.yaml" >"$member_scenario"
grep -q '^  role: member$' "$member_scenario" || {
    log "could not write the member scenario"
    exit 1
}
since="$(date -u -d '-1 second' +%Y-%m-%dT%H:%M:%SZ)"
start_sim "$tmp/member" --scenario "$member_scenario"
check "server show (member)" node-4-nude SHUTOFF "$VOLUME" -- \
    "$openstack_cli" server show "$SERVER"
# The CLI lists every field it knows; Nova sends no host, hypervisor or instance name (nor
# host_status) to a member, so the values are empty.
check_lacks "server show (member) has no host fields" compute-2 instance-0000 UP -- \
    "$openstack_cli" server show "$SERVER"
check_refused "compute service list (member)" "os_compute_api:os-services:list" "403" -- \
    "$openstack_cli" compute service list
check_refused "server evacuate (member)" "os_compute_api:os-evacuate" "403" -- \
    "$openstack_cli" server evacuate "$SERVER"
# `deleted` is no filter of a member's: Nova drops it, and a changes-since list has the deleted.
check "server delete --wait (member)" -- "$openstack_cli" server delete --wait "$OTHER"
check "server list --changes-since (member: deleted too)" node-3-nude DELETED -- \
    "$openstack_cli" server list --changes-since "$since"
check "server list --deleted (member: not its filter)" node-4-nude SHUTOFF -- \
    "$openstack_cli" server list --deleted
stop_sim

# Pages of one server: the CLI follows Nova's next links to the empty page.
paged_scenario="$tmp/seed-paged.yaml"
sed 's/^    detach_seconds: 2$/    detach_seconds: 2\n    nova_max_limit: 1/' \
    "$REPO/scenarios/seed-node-shutdown.yaml" >"$paged_scenario"
grep -q '^    nova_max_limit: 1$' "$paged_scenario" || {
    log "could not write the paged scenario"
    exit 1
}
start_sim "$tmp/paged" --scenario "$paged_scenario"
check "server list --changes-since (pages of one)" node-3-nude node-4-nude -- \
    "$openstack_cli" server list --changes-since 2000-01-01T00:00:00Z
# Nova's request log: a page per server, then the empty one.
pages="$(python3 -c '
import json, sys, urllib.request
log = json.load(urllib.request.urlopen(json.load(open(sys.argv[1]))["requests"]))
print(sum(1 for r in log if r["path"].endswith("/servers/detail")
          and "changes-since" in (r.get("query") or "")))
' "$tmp/paged/endpoints.json")"
if [[ "$pages" == 3 ]]; then
    log "ok   the CLI read 3 pages"
    passed=$((passed + 1))
else
    log "FAIL the CLI read $pages pages, not 3"
    failed=$((failed + 1))
fi

echo "openstack-cli-check: $passed passed, $failed failed"
((failed == 0))
