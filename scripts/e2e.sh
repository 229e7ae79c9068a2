#!/usr/bin/env bash
# End-to-end browser test of the patient page and the nurse console (tests/e2e/e2e.mjs), on a
# fresh Debian machine or a developer's: installs Chromium and playwright-core if missing, builds
# the server if needed (it embeds static/*.html), then runs the test. Screenshots go to
# test-output/. Set CAREBRIDGE_BIN to test another binary (then nothing is built).
set -euo pipefail
cd "$(dirname "$0")/.."

if [ ! -x /usr/bin/chromium ]; then
  echo "== installing chromium"
  if [ "$(id -u)" -eq 0 ]; then SUDO=""; else SUDO="sudo"; fi
  $SUDO apt-get update -qq && $SUDO env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null
fi

if [ ! -d tests/e2e/node_modules ]; then
  echo "== npm ci (tests/e2e)"
  (cd tests/e2e && npm ci --no-audit --no-fund)
fi

if [ -z "${CAREBRIDGE_BIN:-}" ]; then
  bin=target/debug/carebridge
  if [ ! -x "$bin" ] || [ -n "$(find src static Cargo.toml Cargo.lock -newer "$bin" -print -quit 2>/dev/null)" ]; then
    echo "== cargo build"
    cargo build --locked --quiet
  fi
fi

exec node tests/e2e/e2e.mjs
