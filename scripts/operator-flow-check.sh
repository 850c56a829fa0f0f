#!/usr/bin/env bash
# The seed story as an operator lives it, with the real tools: `sim` serves the cloud and the
# cluster; `cinder-remediator diagnose`, `remediate --all --dry-run` (the request log must show
# no mutating request) and `remediate --all --yes`; then the real `openstack volume show` says
# `available` and the real `kubectl get pod` says the stuck pods are gone.
#
# Usage: scripts/operator-flow-check.sh  (after scripts/openstack-cli-check.sh made .venv)
# Honours CARGO_TARGET_DIR.
set -euo pipefail

REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
VENV="$REPO/.venv"
SERVER=9454752c-f0e2-4447-9b7f-16434c49f7ac
VOLUME=4e41d530-cb5f-49a9-9c6f-a591abdb6f11
STUCK_POD=test-cinder-56bdb546dd-56mct
WAITING_POD=test-cinder-56bdb546dd-9vdsj

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
log() { printf 'operator-flow-check: %s\n' "$*"; }
check() {
    local what="$1" ok="$2"
    if [[ "$ok" == yes ]]; then
        passed=$((passed + 1)); log "ok   $what"
    else
        failed=$((failed + 1)); log "FAIL $what"
    fi
}

[[ -x "$VENV/bin/openstack" ]] || { log "no $VENV/bin/openstack: run scripts/openstack-cli-check.sh first"; exit 1; }
command -v kubectl >/dev/null || { log "kubectl is not on PATH: run scripts/kubectl-check.sh first"; exit 1; }

(cd "$REPO" && cargo build --quiet --bin cinder-remediator)
binary="${CARGO_TARGET_DIR:-$REPO/target}/debug/cinder-remediator"
"$binary" sim --state-dir "$tmp" >"$tmp/sim.log" 2>&1 &
sim_pid=$!
for _ in $(seq 600); do [[ -f "$tmp/ready" ]] && break; sleep 0.1; done
[[ -f "$tmp/ready" ]] || { log "sim not ready"; cat "$tmp/sim.log"; exit 1; }

export KUBECONFIG="$tmp/kubeconfig" OS_CLIENT_CONFIG_FILE="$tmp/clouds.yaml" OS_CLOUD=sim
requests_url="$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["requests"])' "$tmp/endpoints.json")"
mutating() {
    python3 - "$requests_url" <<'PY'
import json, sys, urllib.request
log = json.load(urllib.request.urlopen(sys.argv[1]))
print(sum(1 for r in log if r["method"] not in ("GET", "HEAD", "OPTIONS") and r["service"] != "keystone"))
PY
}

out="$("$binary" diagnose 2>&1)" || true
check "diagnose shows the fence verdict" "$([[ "$out" == *"verdict   FENCED: server $SERVER is SHUTOFF"* ]] && echo yes)"
check "diagnose gives the manual command" "$([[ "$out" == *"openstack server remove volume $SERVER $VOLUME"* ]] && echo yes)"
check "diagnose made no mutating request" "$([[ "$(mutating)" == 0 ]] && echo yes)"

out="$("$binary" remediate --all --dry-run 2>&1)"
check "the dry run prints the plan" "$([[ "$out" == *"Dry run: nothing was changed."* && "$out" == *"release volume $VOLUME"* ]] && echo yes)"
check "the dry run made no mutating request" "$([[ "$(mutating)" == 0 ]] && echo yes)"

if out="$("$binary" remediate --all --yes 2>&1)"; then rc=0; else rc=$?; fi
check "remediate --all --yes exits 0" "$([[ $rc == 0 ]] && echo yes)"
check "remediate reports every step done" "$([[ "$out" == *"4 of 4 step(s) done"* ]] && echo yes)"

status="$("$VENV/bin/openstack" volume show -f value -c status "$VOLUME")"
check "openstack volume show says available (got $status)" "$([[ "$status" == available ]] && echo yes)"
pods="$(kubectl get pod -n default -o name 2>&1)"
check "kubectl get pod: the stuck pods are gone" "$([[ "$pods" != *"$STUCK_POD"* && "$pods" != *"$WAITING_POD"* ]] && echo yes)"
events="$(kubectl get events -A 2>&1)"
check "kubectl get events shows what cinder-remediator did" "$([[ "$events" == *"ServerStopped"* ]] && echo yes)"

before="$(mutating)"
out="$("$binary" remediate --all --yes 2>&1)"
check "a second remediate has nothing to do" "$([[ "$out" == *"Nothing to do."* && "$(mutating)" == "$before" ]] && echo yes)"

printf 'operator-flow-check: %d passed, %d failed\n' "$passed" "$failed"
[[ $failed == 0 ]]
