#!/usr/bin/env bash
# The whole test suite, on a fresh Debian machine or a developer's: installs what the tests need
# (redis-server), then runs formatting, lints, the policy files' own tests and every Rust test.
# Integration tests start their own throwaway redis-server processes on free ports.
set -euo pipefail
cd "$(dirname "$0")/.."

need_apt=()
command -v redis-server >/dev/null 2>&1 || need_apt+=(redis-server)
command -v redis-cli >/dev/null 2>&1 || need_apt+=(redis-tools)
if [ "${#need_apt[@]}" -gt 0 ]; then
  echo "== installing ${need_apt[*]}"
  if [ "$(id -u)" -eq 0 ]; then SUDO=""; else SUDO="sudo"; fi
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${need_apt[@]}" >/dev/null
fi
# The Debian package may start a system instance on 6379; the tests never use it.

echo "== cargo fmt --check"
cargo fmt --all -- --check

echo "== cargo clippy"
cargo clippy --all-targets --locked -- -D warnings

echo "== policy files' own tests"
cargo run --quiet --locked -- policy test

echo "== Helm chart checks"
if [ -x scripts/check_helm.py ]; then python3 scripts/check_helm.py; fi

echo "== cargo test"
cargo test --locked -- --test-threads 4

echo "== end-to-end browser test (Chromium): patient page, nurse console"
bash scripts/e2e.sh
