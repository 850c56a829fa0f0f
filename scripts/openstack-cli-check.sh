#!/usr/bin/env bash
# Runs the real `openstack` CLI (python-openstackclient) against the emulated Keystone, Nova and
# Cinder of `cinder-remediator sim` (the built-in seed scenario), and checks what each command
# shows: the operator's manual fix from the seed story, end to end.
#
# Usage: scripts/openstack-cli-check.sh
# Honours CARGO_TARGET_DIR. Creates (or reuses) a virtualenv at $REPO/.venv.
set -euo pipefail

REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
VENV="$REPO/.venv"
# Checked with python-openstackclient 10.5.0 (openstacksdk 4.22, keystoneauth1 5.18).
OSC_SPEC='python-openstackclient>=10.0,<11'
SERVER=9454752c-f0e2-4447-9b7f-16434c49f7ac
VOLUME=4e41d530-cb5f-49a9-9c6f-a591abdb6f11
READY_TIMEOUT_S=60
DETACH_TIMEOUT_S=30

passed=0
failed=0
sim_pid=""
tmp="$(mktemp -d)"

cleanup() {
    if [[ -n "$sim_pid" ]] && kill -0 "$sim_pid" 2>/dev/null; then
        kill "$sim_pid" 2>/dev/null || true
        wait "$sim_pid" 2>/dev/null || true
    fi
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

"$binary" sim --state-dir "$tmp" >"$tmp/sim.log" 2>&1 &
sim_pid=$!
for _ in $(seq $((READY_TIMEOUT_S * 10))); do
    [[ -f "$tmp/ready" ]] && break
    if ! kill -0 "$sim_pid" 2>/dev/null; then
        log "sim exited before it was ready:"
        cat "$tmp/sim.log"
        exit 1
    fi
    sleep 0.1
done
if [[ ! -f "$tmp/ready" ]]; then
    log "sim not ready after ${READY_TIMEOUT_S}s"
    exit 1
fi

export OS_CLIENT_CONFIG_FILE="$tmp/clouds.yaml" OS_CLOUD=sim

# check NAME EXPECTED... -- COMMAND...: runs COMMAND, passes when its output has every EXPECTED.
check() {
    local name="$1"
    shift
    local expected=()
    while [[ "$1" != "--" ]]; do
        expected+=("$1")
        shift
    done
    shift
    local output
    if ! output="$("$@" 2>&1)"; then
        log "FAIL $name: command failed: $*"
        printf '%s\n' "$output"
        failed=$((failed + 1))
        return
    fi
    local missing=()
    for text in "${expected[@]}"; do
        grep -qF -- "$text" <<<"$output" || missing+=("$text")
    done
    if ((${#missing[@]})); then
        log "FAIL $name: output lacks: ${missing[*]}"
        printf '%s\n' "$output"
        failed=$((failed + 1))
    else
        log "ok   $name"
        passed=$((passed + 1))
    fi
}

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

echo "openstack-cli-check: $passed passed, $failed failed"
((failed == 0))
