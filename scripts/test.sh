#!/usr/bin/env bash
# The project's whole test suite, from a fresh clone: formatting, lints, the Rust tests, and the
# fidelity checks that run the real `openstack` CLI and `kubectl` against `cinder-remediator sim`.
# It installs what it needs by itself (rustfmt/clippy components, a Python virtualenv with
# python-openstackclient in .venv, one with ansible and kubernetes-validate in .venv-deploy,
# kubectl from Debian when none is on PATH).
set -euo pipefail
cd "$(dirname "$0")/.."

step() { printf '\n==> %s\n' "$*"; }

step "toolchain components"
for component in rustfmt clippy; do
  if ! cargo "${component/rustfmt/fmt}" --version >/dev/null 2>&1; then
    rustup component add "$component"
  fi
done

step "cargo fmt --check"
cargo fmt --all -- --check

step "cargo clippy (every crate, all targets, warnings are errors)"
cargo clippy --workspace --all-targets --locked -- -D warnings

step "the fencing core stays pure: no async, HTTP or Kubernetes crate in its tree"
scripts/check-boundaries.sh

step "cargo test (the whole workspace)"
cargo test --workspace --locked

step "fidelity: the real openstack CLI against sim"
scripts/openstack-cli-check.sh

step "fidelity: the real kubectl against sim"
scripts/kubectl-check.sh

step "manifests: manifests/ and the kubespray add-on, strictly validated and compared; ansible-lint"
scripts/manifests-check.sh

step "the operator's first hour: the rendered manifests applied to sim, the controller started as the Deployment would, a node killed"
scripts/install-check.sh

step "the operator's flow: diagnose, dry run, remediate, then the real CLIs"
scripts/operator-flow-check.sh

step "all checks passed"
