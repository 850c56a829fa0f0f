#!/usr/bin/env bash
# Runs the real kubectl against the emulated Kubernetes API server (`cinder-remediator sim`
# serving the built-in seed scenario) and checks that each command shows what a real cluster in
# the seed story would show, then the operator's install under RBAC (apply -k manifests, create
# secret, create token, auth can-i as the ServiceAccount). Prints `kubectl-check: N passed, M
# failed`; exits 1 on a failure.
#
# Uses kubectl from PATH; when there is none it installs Debian's kubernetes-client with apt-get.
# Builds with cargo, honouring CARGO_TARGET_DIR.
set -euo pipefail

cd "$(dirname "$0")/.."

if ! command -v kubectl >/dev/null 2>&1; then
    echo "kubectl-check: kubectl is not on PATH; installing Debian's kubernetes-client with apt-get"
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq kubernetes-client
fi
kubectl version --client 2>/dev/null | head -n 1 || true

cargo build --quiet
bin="${CARGO_TARGET_DIR:-$PWD/target}/debug/cinder-remediator"

tmp="$(mktemp -d)"
sim_pid=""
watch_pid=""
cleanup() {
    if [[ -n "$watch_pid" ]]; then kill "$watch_pid" 2>/dev/null || true; fi
    if [[ -n "$sim_pid" ]]; then
        kill "$sim_pid" 2>/dev/null || true
        wait "$sim_pid" 2>/dev/null || true
    fi
    rm -rf "$tmp"
}
trap cleanup EXIT

"$bin" sim --state-dir "$tmp" >"$tmp/sim.log" 2>&1 &
sim_pid=$!
for _ in $(seq 1 300); do
    [[ -f "$tmp/ready" ]] && break
    if ! kill -0 "$sim_pid" 2>/dev/null; then
        echo "kubectl-check: the sim exited before it was ready:"
        cat "$tmp/sim.log"
        exit 1
    fi
    sleep 0.1
done
if [[ ! -f "$tmp/ready" ]]; then
    echo "kubectl-check: the sim was not ready within 30s"
    cat "$tmp/sim.log"
    exit 1
fi
export KUBECONFIG="$tmp/kubeconfig"

passed=0
failed=0

# check NAME COMMAND... ; then each line of stdin is an extended regex the output must match.
check() {
    local name="$1"
    shift
    local output rc=0
    output="$("$@" 2>&1)" || rc=$?
    echo "\$ $*"
    echo "$output"
    local ok=1
    if [[ $rc -ne 0 ]]; then
        echo "  -> exit status $rc"
        ok=0
    fi
    local pattern
    while IFS= read -r pattern; do
        [[ -z "$pattern" ]] && continue
        if ! grep -Eq -- "$pattern" <<<"$output"; then
            echo "  -> missing: $pattern"
            ok=0
        fi
    done
    record "$name" "$ok"
}

record() {
    if [[ "$2" -eq 1 ]]; then
        passed=$((passed + 1))
        echo "PASS $1"
    else
        failed=$((failed + 1))
        echo "FAIL $1"
    fi
    echo
}

check "get nodes: node-4-nude NotReady" kubectl get nodes <<'EOF'
^NAME +STATUS +ROLES +AGE +VERSION
^node-4-nude +NotReady +<none> +[0-9a-z]+ +v1\.33\.
^node-3-nude +Ready +
EOF

check "get pods -A -o wide: ContainerCreating and Terminating with their nodes" \
    kubectl get pods -A -o wide <<'EOF'
^NAMESPACE +NAME +READY +STATUS +RESTARTS +AGE +IP +NODE +NOMINATED NODE +READINESS GATES
^default +test-cinder-56bdb546dd-9vdsj +0/1 +ContainerCreating +0 +[0-9a-z]+ +<none> +node-3-nude
^default +test-cinder-56bdb546dd-56mct +1/1 +Terminating +0 +[0-9a-z]+ +[0-9.]+ +node-4-nude
EOF

check "get pv,pvc -A: Bound" kubectl get pv,pvc -A <<'EOF'
^persistentvolume/pvc-12ff0316-53bd-11e8-8b74-fa163e141d50 +3Gi +RWO +Delete +Bound +default/test-cinder-volume
^default +persistentvolumeclaim/test-cinder-volume +Bound +pvc-12ff0316-53bd-11e8-8b74-fa163e141d50 +3Gi +RWO
EOF

check "get volumeattachments: the dead node's attachment" kubectl get volumeattachments <<'EOF'
^NAME +ATTACHER +PV +NODE +ATTACHED +AGE
^csi-[0-9a-f]{64} +cinder\.csi\.openstack\.org +pvc-12ff0316-53bd-11e8-8b74-fa163e141d50 +node-4-nude +true
EOF

check "get events -A: the Multi-Attach error" kubectl get events -A <<'EOF'
^NAMESPACE +LAST SEEN +TYPE +REASON +OBJECT +MESSAGE
Warning +FailedAttachVolume +pod/test-cinder-56bdb546dd-9vdsj +Multi-Attach error for volume
EOF

# A watch started before the deletion must see it.
timeout 60 kubectl get pods -w --output-watch-events >"$tmp/watch.out" 2>&1 &
watch_pid=$!
for _ in $(seq 1 100); do
    grep -q "test-cinder-56bdb546dd-56mct" "$tmp/watch.out" 2>/dev/null && break
    sleep 0.1
done

check "delete the stuck pod with --grace-period=0 --force" \
    kubectl delete pod test-cinder-56bdb546dd-56mct --grace-period=0 --force <<'EOF'
pod "test-cinder-56bdb546dd-56mct" force deleted
EOF

seen=0
for _ in $(seq 1 100); do
    if grep -Eq "^DELETED +test-cinder-56bdb546dd-56mct" "$tmp/watch.out"; then
        seen=1
        break
    fi
    sleep 0.1
done
echo "\$ kubectl get pods -w --output-watch-events (started before the delete)"
cat "$tmp/watch.out"
record "get pods -w sees the deletion" "$seen"
kill "$watch_pid" 2>/dev/null || true
watch_pid=""

gone=0
gone_output="$(kubectl get pod test-cinder-56bdb546dd-56mct 2>&1)" || gone=1
echo "\$ kubectl get pod test-cinder-56bdb546dd-56mct"
echo "$gone_output"
if [[ $gone -eq 1 ]] && grep -q 'NotFound' <<<"$gone_output"; then
    record "the deleted pod is gone" 1
else
    record "the deleted pod is gone" 0
fi

check "taint node-4-nude out-of-service" \
    kubectl taint nodes node-4-nude node.kubernetes.io/out-of-service=nodeshutdown:NoExecute <<'EOF'
node/node-4-nude tainted
EOF

check "the taint is on the node" \
    kubectl get node node-4-nude \
    -o 'jsonpath={range .spec.taints[*]}{.key}={.value}:{.effect}{"\n"}{end}' <<'EOF'
^node\.kubernetes\.io/out-of-service=nodeshutdown:NoExecute$
^node\.kubernetes\.io/unreachable=:NoExecute$
EOF

# The operator's install: the shipped manifests, the cloud provider's Secret, and the
# controller's permissions as its ServiceAccount sees them.
check "apply the manifests" kubectl apply --server-side -k manifests <<'EOF'
^serviceaccount/cinder-remediator serverside-applied
^clusterrole\.rbac\.authorization\.k8s\.io/cinder-remediator serverside-applied
^role\.rbac\.authorization\.k8s\.io/cinder-remediator-leader-election serverside-applied
^deployment\.apps/cinder-remediator serverside-applied
^poddisruptionbudget\.policy/cinder-remediator serverside-applied
EOF

printf '[Global]\nauth-url = https://keystone.example/v3\n' >"$tmp/cloud.conf"
check "create the cloud.conf Secret" \
    kubectl create secret generic cloud-config -n kube-system --from-file=cloud.conf="$tmp/cloud.conf" <<'EOF'
^secret/cloud-config created
EOF

token="$(kubectl create token cinder-remediator -n kube-system 2>&1)" || true
# `auth can-i` answers yes or no (exit 1 for no); the answers on one line.
can_i() { for question in "$@"; do kubectl --token="$token" auth can-i $question 2>/dev/null || true; done | paste -sd ' '; }
check "its ServiceAccount may delete pods, update nodes and its Lease, not read Secrets" \
    can_i "delete pods -A" "update nodes" "update leases -n kube-system" \
    "get secrets -n kube-system" "update leases -n default" <<'EOF'
^yes yes yes no no$
EOF

check "a refusal is the API server's" bash -c "kubectl --token='$token' get secrets -n kube-system 2>&1; true" <<'EOF'
Error from server \(Forbidden\): secrets is forbidden: User "system:serviceaccount:kube-system:cinder-remediator" cannot list resource "secrets" in API group "" in the namespace "kube-system"
EOF

echo "kubectl-check: $passed passed, $failed failed"
[[ $failed -eq 0 ]]
