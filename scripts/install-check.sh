#!/usr/bin/env bash
# An operator's first hour, for real (docs/operations.md): against `cinder-remediator sim`
# (scripts/install-check.yaml: all nodes Ready, one powered off 25 s in), it
#   1. creates the cloud provider's Secret `cloud-config` from the emulated cloud's cloud.conf;
#   2. renders the kustomize base and applies it with the real `kubectl apply --server-side`;
#   3. reads the Deployment back from the API server and starts the controller as the kubelet
#      would: the container's args and environment (the downward API filled in), the Secret's
#      `cloud.conf` at the Deployment's mountPath and the ServiceAccount's token at the in-cluster
#      path (in a private mount namespace, over an overlay of each host directory, so nothing on
#      the host changes); the RBAC of the rendered roles is enforced by the emulator;
#   4. checks what the guide promises: the probes, the Lease, then, after the node dies, the
#      Events on the Node, /metrics, the final state (volume freed, taint, replacement Running
#      elsewhere), no secret in the log, and the Lease released on SIGTERM.
# Prints `install-check: N passed, M failed`; exits 1 on a failure.
#
# As root (CI), the controller runs as in a pod: in-cluster configuration (KUBERNETES_SERVICE_*
# and the ServiceAccount's token, CA and namespace at /var/run/secrets/...), the Secret at the
# Deployment's mountPath. Without root (no mount namespace), it says so and falls back to a
# kubeconfig with the same token and rewritten paths.
set -euo pipefail

cd "$(dirname "$0")/.."

if ! command -v kubectl >/dev/null 2>&1; then
    echo "install-check: kubectl is not on PATH; installing Debian's kubernetes-client with apt-get"
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq kubernetes-client
fi

cargo build --quiet
bin="${CARGO_TARGET_DIR:-$PWD/target}/debug/cinder-remediator"

tmp="$(mktemp -d)"
sim_pid=""
controller_pid=""
cleanup() {
    for pid in "$controller_pid" "$sim_pid"; do
        if [[ -n "$pid" ]]; then
            kill "$pid" 2>/dev/null || true
            wait "$pid" 2>/dev/null || true
        fi
    done
    rm -rf "$tmp"
}
trap cleanup EXIT

passed=0
failed=0
record() {
    if [[ "$2" -eq 1 ]]; then
        passed=$((passed + 1))
        echo "PASS $1"
    else
        failed=$((failed + 1))
        echo "FAIL $1${3:+: $3}"
    fi
}
# expect NAME COMMAND...: the command succeeds.
expect() {
    local name="$1"
    shift
    local output
    if output="$("$@" 2>&1)"; then
        record "$name" 1
    else
        record "$name" 0 "$output"
    fi
}
# wait_for SECONDS NAME COMMAND...: the command succeeds within SECONDS.
wait_for() {
    local limit="$1" name="$2"
    shift 2
    local started=$SECONDS
    until "$@" >/dev/null 2>&1; do
        if ((SECONDS - started > limit)); then
            record "$name" 0 "not within ${limit}s"
            return 1
        fi
        sleep 0.5
    done
    record "$name" 1
}
fail_now() {
    echo "install-check: $*"
    echo "--- the controller's log:"
    cat "$tmp/controller.log" 2>/dev/null || true
    echo "install-check: $passed passed, $((failed + 1)) failed"
    exit 1
}

# --- 1. the cluster and its cloud --------------------------------------------------------------
mkdir "$tmp/sim"
"$bin" sim --scenario scripts/install-check.yaml --state-dir "$tmp/sim" >"$tmp/sim.log" 2>&1 &
sim_pid=$!
for _ in $(seq 1 300); do
    [[ -f "$tmp/sim/ready" ]] && break
    kill -0 "$sim_pid" 2>/dev/null || fail_now "the sim exited: $(cat "$tmp/sim.log")"
    sleep 0.1
done
[[ -f "$tmp/sim/ready" ]] || fail_now "the sim was not ready within 30s"
export KUBECONFIG="$tmp/sim/kubeconfig" # the cluster admin's

echo "\$ kubectl -n kube-system create secret generic cloud-config --from-file=cloud.conf"
kubectl -n kube-system create secret generic cloud-config --from-file=cloud.conf="$tmp/sim/cloud.conf"

# --- 2. install ---------------------------------------------------------------------------------
kubectl kustomize manifests/ >"$tmp/rendered.yaml"
echo "\$ kubectl apply --server-side -f rendered.yaml   # kubectl kustomize manifests/"
kubectl apply --server-side -f "$tmp/rendered.yaml"
expect "every rendered object is served back" \
    kubectl get -f "$tmp/rendered.yaml" -o name

# --- 3. start it as the kubelet would -----------------------------------------------------------
pod="cinder-remediator-5d8f7b9c4-x2k7q"
kubectl -n kube-system get deployment cinder-remediator -o json >"$tmp/deployment.json"
python3 - "$tmp/deployment.json" "$pod" "$tmp/pod" <<'EOF'
import json, sys
deployment, pod, out = json.load(open(sys.argv[1])), sys.argv[2], sys.argv[3]
spec = deployment["spec"]["template"]["spec"]
container = spec["containers"][0]
downward = {"metadata.name": pod, "metadata.namespace": deployment["metadata"]["namespace"]}
with open(out + ".args", "w") as f:
    f.write("".join(a + "\0" for a in container.get("args", [])))
with open(out + ".env", "w") as f:
    for e in container.get("env", []):
        value = e["value"] if "value" in e else downward[e["valueFrom"]["fieldRef"]["fieldPath"]]
        f.write(f"{e['name']}={value}\0")
volumes = {v["name"]: v for v in spec["volumes"]}
mount = next(m for m in container["volumeMounts"] if "secret" in volumes[m["name"]])
with open(out + ".mount", "w") as f:
    f.write(mount["mountPath"] + "\n" + volumes[mount["name"]]["secret"]["secretName"] + "\n")
print("args:", container.get("args"), "| serviceAccountName:", spec["serviceAccountName"])
EOF
mount_path="$(sed -n 1p "$tmp/pod.mount")"
secret="$(sed -n 2p "$tmp/pod.mount")"
mkdir "$tmp/secret"
kubectl -n kube-system get secret "$secret" -o jsonpath='{.data.cloud\.conf}' | base64 -d >"$tmp/secret/cloud.conf"

# The ServiceAccount's token, as the kubelet projects it (TokenRequest), with the cluster's CA
# and the namespace, at the path every in-cluster client reads.
token="$(kubectl -n kube-system create token cinder-remediator)"
mkdir "$tmp/serviceaccount"
printf '%s' "$token" >"$tmp/serviceaccount/token"
python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["kubernetes_ca"], end="")' \
    "$tmp/sim/endpoints.json" >"$tmp/serviceaccount/ca.crt"
printf 'kube-system' >"$tmp/serviceaccount/namespace"
server="$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["kubernetes"])' "$tmp/sim/endpoints.json")"
host_port="${server#https://}"

mapfile -d '' args <"$tmp/pod.args"
mapfile -d '' env_pairs <"$tmp/pod.env"
# What the kubelet adds: the API server's Service address, the pod's host name.
env_pairs+=("KUBERNETES_SERVICE_HOST=${host_port%:*}" "KUBERNETES_SERVICE_PORT=${host_port##*:}"
    "HOSTNAME=$pod" "PATH=/usr/local/bin:/usr/bin:/bin")
admin_port=8080
for pair in "${env_pairs[@]}"; do
    [[ "$pair" == CINDER_REMEDIATOR_ADMIN_ADDR=* ]] && admin_port="${pair##*:}"
done
if (exec 3<>"/dev/tcp/127.0.0.1/$admin_port") 2>/dev/null; then
    fail_now "port $admin_port (the Deployment's admin port) is in use on this machine"
fi

# The pod's mounts: the Secret's cloud.conf at the Deployment's mountPath, the ServiceAccount
# at the in-cluster path. In a private mount namespace, over an overlay of each top directory,
# so that nothing changes on the host; without root, a kubeconfig and rewritten paths instead.
token_path=/var/run/secrets/kubernetes.io/serviceaccount
if [[ "$(id -u)" -eq 0 ]] && unshare -m --propagation private true 2>/dev/null; then
    mounts=("$mount_path" "$tmp/secret" "$token_path" "$tmp/serviceaccount")
    echo "\$ $bin ${args[*]}   # in-cluster: $mount_path and $token_path mounted"
    env -i "${env_pairs[@]}" unshare -m --propagation private bash -c '
        set -e
        work="$1"
        shift
        while [[ "$1" != -- ]]; do
            target="$(realpath -m "$1")" source="$2"
            shift 2
            top="/$(cut -d/ -f2 <<<"$target")"
            if [[ ! -e "$work/overlay$top" ]]; then
                mkdir -p "$work/overlay$top/upper" "$work/overlay$top/work"
                mount -t overlay overlay \
                    -o "lowerdir=$top,upperdir=$work/overlay$top/upper,workdir=$work/overlay$top/work" "$top"
            fi
            mkdir -p "$target"
            mount --bind "$source" "$target"
            mount -o remount,bind,ro "$target"
        done
        shift
        exec "$@"' bash "$tmp" "${mounts[@]}" -- "$bin" "${args[@]}" >"$tmp/controller.log" 2>&1 &
else
    echo "note: not root: the Secret is placed under $tmp/root, the Deployment's paths rewritten, and the ServiceAccount's token given in a kubeconfig"
    mkdir -p "$tmp/root$mount_path"
    cp "$tmp/secret/cloud.conf" "$tmp/root$mount_path/"
    for i in "${!env_pairs[@]}"; do
        env_pairs[i]="${env_pairs[i]//=$mount_path/=$tmp/root$mount_path}"
    done
    for i in "${!args[@]}"; do
        args[i]="${args[i]//$mount_path/$tmp/root$mount_path}"
    done
    cat >"$tmp/sa-kubeconfig" <<EOF
apiVersion: v1
kind: Config
clusters: [{name: sim, cluster: {server: "$server", certificate-authority: "$tmp/serviceaccount/ca.crt"}}]
users: [{name: cinder-remediator, user: {tokenFile: "$tmp/serviceaccount/token"}}]
contexts: [{name: sa, context: {cluster: sim, user: cinder-remediator}}]
current-context: sa
EOF
    env_pairs+=("KUBECONFIG=$tmp/sa-kubeconfig")
    env -i "${env_pairs[@]}" "$bin" "${args[@]}" >"$tmp/controller.log" 2>&1 &
fi
controller_pid=$!

admin="http://127.0.0.1:$admin_port"
wait_for 30 "/readyz answers 200" curl -fsS "$admin/readyz" ||
    fail_now "the controller is not ready"
expect "/livez answers 200" curl -fsS "$admin/livez"
holder() {
    kubectl -n kube-system get lease cinder-remediator -o jsonpath='{.spec.holderIdentity}'
}
is_holder() { [[ "$(holder)" == "$pod" ]]; }
wait_for 20 "the Lease kube-system/cinder-remediator is held by the pod" is_holder || true
metric() { curl -fsS "$admin/metrics" | grep -E "^$1 " | awk '{print $2}'; }
expect "cinder_remediator_is_leader is 1" test "$(metric cinder_remediator_is_leader)" = 1

# --- 4. the node dies (25 s in, on the timeline); grace 30 s ------------------------------------
replacement_running() {
    kubectl get pods -l app=test-cinder -o json | python3 -c '
import json, sys
pods = json.load(sys.stdin)["items"]
sys.exit(0 if any(p["status"].get("phase") == "Running" and p["spec"].get("nodeName") == "node-3-nude"
                  for p in pods) else 1)'
}
echo "waiting for node-4-nude to die (25 s in), its grace (30 s) and the fail-over ..."
wait_for 120 "the replacement pod runs on node-3-nude" replacement_running || true

events() {
    kubectl get events -A -o json | python3 -c '
import json, sys
for e in json.load(sys.stdin)["items"]:
    if e.get("reportingComponent") == "cinder-remediator":
        print(e["involvedObject"]["kind"], e["involvedObject"]["name"], e["type"], e["reason"], e["action"], sep="\t")'
}
events >"$tmp/events.tsv"
echo "--- Events of cinder-remediator:"
cat "$tmp/events.tsv"
has_event() { grep -qP "^Node\tnode-4-nude\t$1\t$2\t$3$" "$tmp/events.tsv"; }
expect "Event: ServerStopped ReleaseVolume on node-4-nude" has_event Normal ServerStopped ReleaseVolume
expect "Event: ServerStopped TaintNode on node-4-nude" has_event Warning ServerStopped TaintNode
expect "no RemediationFailed Event" bash -c "! grep -q RemediationFailed '$tmp/events.tsv'"

expect "metric: remediations_total{outcome=\"done\",source=\"node\"} 1" \
    test "$(metric 'cinder_remediator_remediations_total\{outcome="done",source="node"\}')" = 1
expect "metric: actions_total{action=\"release_volume\",outcome=\"done\"} 1" \
    test "$(metric 'cinder_remediator_actions_total\{action="release_volume",outcome="done"\}')" = 1
expect "metric: fence_verdicts_total{verdict=\"fenced\"} at least 1" \
    test "$(metric 'cinder_remediator_fence_verdicts_total\{verdict="fenced"\}')" -ge 1
expect "metric: storm_guard_active 0" test "$(metric cinder_remediator_storm_guard_active)" = 0

taints() { kubectl get node node-4-nude -o jsonpath='{.spec.taints[*].key}'; }
expect "node-4-nude carries the out-of-service taint" grep -q node.kubernetes.io/out-of-service <(taints)
attached_to_node_3() {
    kubectl get volumeattachments -o jsonpath='{range .items[*]}{.spec.nodeName}{" "}{.status.attached}{"\n"}{end}' |
        grep -qx "node-3-nude true"
}
expect "the volume is attached to node-3-nude" attached_to_node_3
password="$(sed -n 's/^password = "\(.*\)"$/\1/p' "$tmp/sim/cloud.conf")"
expect "the log holds no password and no token" \
    bash -c "! grep -qF -e '$password' -e '$token' '$tmp/controller.log'"
expect "the log is JSON lines" python3 -c '
import json, sys
for line in open(sys.argv[1]):
    json.loads(line)' "$tmp/controller.log"
expect "no request was refused (403) by RBAC" bash -c "
    curl -fsS \"\$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))[\"requests\"])' '$tmp/sim/endpoints.json')\" |
    python3 -c 'import json,sys; sys.exit(any(r[\"status\"] == 403 for r in json.load(sys.stdin)))'"

# --- 5. SIGTERM: the Lease is released for a follower ------------------------------------------
kill -TERM "$controller_pid"
wait "$controller_pid" 2>/dev/null || true
controller_pid=""
expect "on SIGTERM the Lease is released" test -z "$(holder)"

if [[ "$failed" -ne 0 ]]; then
    echo "--- the controller's log:"
    cat "$tmp/controller.log"
fi
echo "install-check: $passed passed, $failed failed"
[[ "$failed" -eq 0 ]]
