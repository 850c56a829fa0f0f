#!/usr/bin/env bash
# Benchmark: OpenStack requests and added time for one `remediate --all --yes` of a dead node
# with k stuck volumes, against `sim`. For each k it generates a scenario (the seed story with
# k volumes on the dead server, detach_seconds 0), runs the remediation, and reads the request
# log. Prints counts and ratios; no figure here is asserted (tests/e2e.rs asserts the budget).
#
# Usage: scripts/bench-api-economy.sh [K ...]   (default: 1 2 4 8 16)
# Honours CARGO_TARGET_DIR. Results go into docs/benchmarks.md.
set -euo pipefail

REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
ks=("$@")
[[ ${#ks[@]} -gt 0 ]] || ks=(1 2 4 8 16)

(cd "$REPO" && cargo build --quiet --release --bin cinder-remediator)
binary="${CARGO_TARGET_DIR:-$REPO/target}/release/cinder-remediator"
tmp="$(mktemp -d)"
sim_pid=""
cleanup() {
    [[ -n "$sim_pid" ]] && kill "$sim_pid" 2>/dev/null && wait "$sim_pid" 2>/dev/null || true
    rm -rf "$tmp"
}
trap cleanup EXIT

printf '%4s  %9s  %8s  %6s  %13s  %8s  %10s\n' k openstack polls budget "used/budget" k8s "wall (ms)"
for k in "${ks[@]}"; do
    python3 - "$k" "$tmp/scenario.yaml" <<'PY'
import sys
k, path = int(sys.argv[1]), sys.argv[2]
dead = "9454752c-f0e2-4447-9b7f-16434c49f7ac"
vols = "\n".join(
    f"    - {{id: 00000000-0000-4000-8000-{i:012d}, attachments: [{{server: {dead}, device: /dev/vd{chr(98 + i % 24)}}}]}}"
    for i in range(k))
pvs = "\n".join(
    f"    - {{name: pv-{i}, csi: {{driver: cinder.csi.openstack.org, volume_handle: 00000000-0000-4000-8000-{i:012d}}}, claim: default/claim-{i}}}"
    for i in range(k))
claims = ", ".join(f"claim-{i}" for i in range(k))
open(path, "w").write(f"""name: bench
openstack:
  compute_hosts: [{{name: compute-1}}, {{name: compute-2}}]
  servers:
    - {{id: 3901d974-751e-4ba7-acfa-9cd583c6729d, name: node-3, status: ACTIVE, host: compute-1}}
    - {{id: {dead}, name: node-4, status: SHUTOFF, host: compute-2}}
  volumes:
{vols}
  behaviour: {{detach_seconds: 0}}
kubernetes:
  nodes:
    - {{name: node-3, provider_id: "openstack:///3901d974-751e-4ba7-acfa-9cd583c6729d"}}
    - {{name: node-4, provider_id: "openstack:///{dead}", ready: Unknown, ready_since: 10m}}
  persistent_volumes:
{pvs}
  pods:
    - {{name: app-0, node: node-4, terminating: true, claims: [{claims}], owner: {{kind: StatefulSet, name: app}}}}
""")
PY
    rm -rf "$tmp/state" && mkdir "$tmp/state"
    "$binary" sim --scenario "$tmp/scenario.yaml" --state-dir "$tmp/state" >"$tmp/sim.log" 2>&1 &
    sim_pid=$!
    for _ in $(seq 300); do [[ -f "$tmp/state/ready" ]] && break; sleep 0.05; done
    start=$(date +%s%N)
    KUBECONFIG="$tmp/state/kubeconfig" OS_CLIENT_CONFIG_FILE="$tmp/state/clouds.yaml" OS_CLOUD=sim \
        "$binary" remediate --all --yes >"$tmp/remediate.log" 2>&1 || { cat "$tmp/remediate.log"; exit 1; }
    wall_ms=$(( ($(date +%s%N) - start) / 1000000 ))
    python3 - "$k" "$tmp/state/endpoints.json" "$wall_ms" <<'PY'
import json, sys, urllib.request, collections
k, endpoints, wall = int(sys.argv[1]), json.load(open(sys.argv[2])), int(sys.argv[3])
log = json.load(urllib.request.urlopen(endpoints["requests"]))
openstack = [r for r in log if r["service"] in ("keystone", "nova", "cinder")]
reads = collections.Counter(r["path"] for r in openstack if r["method"] == "GET" and "/volumes/" in r["path"])
polls = sum(n - 1 for n in reads.values())
used = len(openstack) - polls
budget = 3 + 2 * k
k8s = sum(1 for r in log if r["service"] == "kubernetes")
print(f"{k:4d}  {used:9d}  {polls:8d}  {budget:6d}  {used / budget:13.2f}  {k8s:8d}  {wall:10d}")
PY
    kill "$sim_pid" 2>/dev/null; wait "$sim_pid" 2>/dev/null || true; sim_pid=""
done
