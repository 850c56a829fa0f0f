#!/usr/bin/env bash
# Checks the shipped manifests and the kubespray add-on without a cluster: renders manifests/
# (the base and each overlay) with `kubectl kustomize` and the add-on's templates with Ansible,
# validates every object strictly against the Kubernetes schemas (the Prometheus operator's CRDs
# for ServiceMonitor and PrometheusRule), refuses RBAC wildcards, compares the add-on's output
# with manifests/ object by object (only the differences listed below may differ), runs the
# add-on's example playbook against a stand-in kubectl (what it applies, and when it reports a
# change), and runs ansible-lint and ansible-playbook --syntax-check on deploy/kubespray. One line
# per check, then `manifests-check: N passed, M failed`; exits 1 on a failure.
#
# Installs what it needs: a virtualenv in .venv-deploy (the pinned packages below, from PyPI;
# reused while the pins and Python are the same), and Debian's kubernetes-client with apt-get
# when no kubectl is on PATH.
set -euo pipefail
cd "$(dirname "$0")/.."

# The Kubernetes version whose schemas the objects must satisfy.
KUBERNETES_VERSION=1.33.0
VENV=.venv-deploy
# ansible-core 2.18: the series kubespray requires (playbooks/ansible_version.yml).
PINS=(ansible-core==2.18.19 ansible-lint==26.10.1 kubernetes-validate==1.37.0 jsonschema==4.26.0 PyYAML==6.0.4)
CRDS=tests/fixtures/prometheus-operator
ROLES=deploy/kubespray/roles
# The overlays of manifests/ and the add-on's variants rendered like them (tests/kubespray/render.yml).
OVERLAYS=(observe-only linstor monitoring)
# The documented differences between the add-on (default variables) and manifests/:
# OBJECT:PATH=VALUE IN manifests/->VALUE IN THE ADD-ON (deploy/kubespray/README.md says why).
ALLOWED=(
    # The cloud.conf Secret: kubespray's external OpenStack cloud controller names it
    # external-openstack-cloud-config; manifests/ uses the cloud provider's usual cloud-config.
    "Deployment/kube-system/cinder-remediator:spec.template.spec.volumes[0].secret.secretName=cloud-config->external-openstack-cloud-config"
)

log() { printf 'manifests-check: %s\n' "$*"; }

if ! command -v kubectl >/dev/null 2>&1; then
    log "kubectl is not on PATH; installing Debian's kubernetes-client with apt-get"
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq kubernetes-client
fi

want="$(python3 --version 2>&1) ${PINS[*]}"
if [[ ! -x "$VENV/bin/python" || "$(cat "$VENV/.pins" 2>/dev/null)" != "$want" ]]; then
    log "installing ${PINS[*]} into $VENV"
    python3 -m venv "$VENV"
    "$VENV/bin/pip" install --quiet --disable-pip-version-check "${PINS[@]}"
    printf '%s\n' "$want" >"$VENV/.pins"
fi
python="$VENV/bin/python"
export PATH="$PWD/$VENV/bin:$PATH"

tmp="$(mktemp -d)"
trap 'rm -rf "$tmp"' EXIT
export ANSIBLE_HOME="$tmp/ansible-home" ANSIBLE_NOCOLOR=1 ANSIBLE_RETRY_FILES_ENABLED=0
export ANSIBLE_ROLES_PATH="$PWD/$ROLES:$tmp/roles"
# kubespray's own role, reduced to the defaults of the variables the add-on uses.
mkdir -p "$tmp/roles/kubespray_defaults/defaults"
cp tests/kubespray/kubespray-defaults.yml "$tmp/roles/kubespray_defaults/defaults/main.yml"
printf '[kube_control_plane]\nlocalhost ansible_connection=local ansible_python_interpreter=%s\n' \
    "$PWD/$python" >"$tmp/inventory"

passed=0
failed=0
# check NAME COMMAND...: one line, PASS or FAIL; on a failure, the command's output under it.
check() {
    local name="$1"
    shift
    if "$@" >"$tmp/out" 2>&1; then
        passed=$((passed + 1))
        printf 'PASS %s\n' "$name"
    else
        failed=$((failed + 1))
        printf 'FAIL %s\n' "$name"
        sed 's/^/    /' "$tmp/out"
    fi
}

check "fixtures: the Prometheus operator CRDs are as in $CRDS/MANIFEST" \
    "$python" scripts/manifests_check.py fixtures "$CRDS"

# 1. manifests/ with kubectl kustomize.
mkdir -p "$tmp/kustomize"
render() { kubectl kustomize "$1" >"$2"; }
check "kustomize: kubectl kustomize manifests/" render manifests "$tmp/kustomize/base.yaml"
for overlay in "${OVERLAYS[@]}"; do
    check "kustomize: kubectl kustomize manifests/overlays/$overlay" \
        render "manifests/overlays/$overlay" "$tmp/kustomize/$overlay.yaml"
done

# 2. Strict schemas, and no RBAC wildcard.
validate() { "$python" scripts/manifests_check.py validate --kubernetes-version "$KUBERNETES_VERSION" --crds "$CRDS" "$@"; }
for name in base "${OVERLAYS[@]}"; do
    check "validate: manifests ($name) against Kubernetes $KUBERNETES_VERSION, strict" \
        validate "$tmp/kustomize/$name.yaml"
done
check "rbac: no wildcard in the roles of manifests/" \
    "$python" scripts/manifests_check.py rbac "$tmp"/kustomize/*.yaml

# 3. The kubespray add-on's templates, rendered by the role's own tasks.
# On a failure nothing is kept, so that the checks below fail too rather than pass on a part.
render_addon() {
    ansible-playbook -i "$tmp/inventory" tests/kubespray/render.yml -e "render_dir=$tmp/kubespray" ||
        { rm -rf "$tmp/kubespray"; return 1; }
}
check "kubespray: ansible renders the role's templates (defaults, ${OVERLAYS[*]}, custom)" render_addon
for variant in defaults "${OVERLAYS[@]}" custom; do
    check "validate: kubespray add-on ($variant) against Kubernetes $KUBERNETES_VERSION, strict" \
        validate "$tmp/kubespray/$variant"/*.yml
done
check "rbac: no wildcard in the roles of the kubespray add-on" \
    "$python" scripts/manifests_check.py rbac "$tmp"/kubespray/*/*.yml
allow=()
for a in "${ALLOWED[@]}"; do allow+=(--allow "$a"); done
check "compare: kubespray add-on (defaults) = manifests/, but for ${#ALLOWED[@]} documented difference(s)" \
    "$python" scripts/manifests_check.py compare "${allow[@]}" "$tmp/kustomize/base.yaml" "$tmp/kubespray/defaults"/*.yml
for overlay in "${OVERLAYS[@]}"; do
    check "compare: kubespray add-on ($overlay) = manifests/overlays/$overlay, but for ${#ALLOWED[@]} documented difference(s)" \
        "$python" scripts/manifests_check.py compare "${allow[@]}" "$tmp/kustomize/$overlay.yaml" "$tmp/kubespray/$overlay"/*.yml
done
cacert_mount() {
    grep -A2 'mountPath: "/etc/kubernetes/external-openstack-cacert.pem"' "$tmp/kubespray/custom/cinder-remediator-deployment.yml" |
        grep -q 'subPath: ca.cert'
}
check "kubespray: with external_openstack_cacert, the Secret's ca.cert is mounted where kubespray's cloud.conf names it" \
    cacert_mount

# The example playbook end to end, against a stand-in for kubespray's kubectl that records its
# arguments: it applies server-side only when `kubectl diff` sees a change, and then reports one.
cat >"$tmp/kubectl" <<'KUBECTL'
#!/usr/bin/env bash
echo "$*" >>"$FAKE_KUBECTL_LOG"
case " $* " in
    *" get secret "*)
        if [[ -n "$FAKE_SECRET" ]]; then echo "$FAKE_SECRET"; else echo 'Error from server (NotFound)' >&2; exit 1; fi ;;
    *" diff "*) exit "$FAKE_DIFF_RC" ;;
esac
KUBECTL
chmod +x "$tmp/kubectl"
# play DIFF_RC SECRET: runs the example playbook; its output in $tmp/recap, kubectl's calls in $tmp/calls.
play() {
    : >"$tmp/calls"
    FAKE_KUBECTL_LOG="$tmp/calls" FAKE_DIFF_RC="$1" FAKE_SECRET="$2" ansible-playbook \
        -i "$tmp/inventory" deploy/kubespray/example-playbook.yml -e cinder_remediator_enabled=true \
        -e "kubectl=$tmp/kubectl" -e "cinder_remediator_addon_dir=$tmp/addon" >"$tmp/recap" 2>&1
}
secret='{"data": {"cloud.conf": "W0dsb2JhbF0K"}}'
files="-f $tmp/addon/cinder-remediator-rbac.yml -f $tmp/addon/cinder-remediator-deployment.yml"
applies_on_change() {
    play 1 "$secret" || { cat "$tmp/recap"; return 1; }
    cat "$tmp/calls"
    grep -qx -- "-n kube-system get secret external-openstack-cloud-config -o json" "$tmp/calls" &&
        grep -qx "diff --server-side --force-conflicts --field-manager=kubespray-cinder-remediator $files" "$tmp/calls" &&
        grep -qx "apply --server-side --force-conflicts --field-manager=kubespray-cinder-remediator $files" "$tmp/calls" &&
        grep -qx -- "-n kube-system rollout status deployment/cinder-remediator --timeout=3m" "$tmp/calls" &&
        grep -Eq 'localhost +: ok=[0-9]+ +changed=[1-9]' "$tmp/recap"
}
unchanged_when_equal() {
    play 0 "$secret" || { cat "$tmp/recap"; return 1; }
    cat "$tmp/calls" "$tmp/recap"
    ! grep -q "^apply " "$tmp/calls" && grep -Eq 'localhost +: ok=[0-9]+ +changed=0 ' "$tmp/recap"
}
stops_without_secret() {
    if play 1 ""; then cat "$tmp/recap"; return 1; fi
    cat "$tmp/calls" "$tmp/recap"
    ! grep -q "^apply " "$tmp/calls" &&
        grep -q "external-openstack-cloud-config with the key cloud.conf" "$tmp/recap"
}
check "kubespray: the example playbook applies server-side when kubectl diff sees a change, and waits for the rollout" \
    applies_on_change
check "kubespray: run again, it applies nothing and reports no change when kubectl diff sees none" \
    unchanged_when_equal
check "kubespray: it stops before applying when the cloud.conf Secret is missing" stops_without_secret

# 4. ansible-lint and a syntax check of a playbook that uses the role.
lint() { (cd deploy/kubespray && ansible-lint --offline --nocolor); }
check "ansible-lint deploy/kubespray (production profile)" lint
check "ansible-playbook --syntax-check deploy/kubespray/example-playbook.yml" \
    ansible-playbook -i "$tmp/inventory" --syntax-check deploy/kubespray/example-playbook.yml

log "$passed passed, $failed failed"
[[ $failed -eq 0 ]]
