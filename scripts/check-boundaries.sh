#!/usr/bin/env bash
# Checks the two boundaries of the workspace that the compiler alone cannot state:
# - the fencing core (crates/fencing) has no I/O crate anywhere in its dependency tree;
# - the emulated cloud (crates/sim) depends on neither the product nor the fencing core, nor on
#   a client crate whose types it could share with the clients under test.
# Prints one line per check and "N passed, N failed"; exits 1 on any failure.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

passed=0
failed=0
check() { # name, crate, forbidden crate...
    local name="$1" crate="$2"
    shift 2
    local tree found=()
    tree="$(cargo tree --locked --offline -p "$crate" -e normal,build --prefix none --format '{p}' 2>/dev/null ||
        cargo tree --locked -p "$crate" -e normal,build --prefix none --format '{p}')"
    for forbidden in "$@"; do
        if grep -Eq "^${forbidden} v" <<<"$tree"; then
            found+=("$forbidden")
        fi
    done
    if ((${#found[@]} == 0)); then
        printf 'check-boundaries: ok   %s\n' "$name"
        passed=$((passed + 1))
    else
        printf 'check-boundaries: FAIL %s: %s in its tree\n' "$name" "${found[*]}"
        failed=$((failed + 1))
    fi
}

check "the fencing core does no I/O" fencing \
    tokio kube kube-client k8s-openapi reqwest hyper axum osauth sim cinder-remediator
check "the emulated cloud shares no code with the product or its clients" sim \
    cinder-remediator fencing kube kube-client k8s-openapi reqwest osauth

printf '%d passed, %d failed\n' "$passed" "$failed"
((failed == 0))
