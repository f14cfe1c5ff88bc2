#!/usr/bin/env bash
# Installs the peers `make bench` measures padnet against, into .bench-tools/
# (not on PATH): shadowsocks-rust's sslocal and ssserver, built from crates.io
# once. A failed install is reported and does not stop the bench, which then
# skips shadowsocks and says why.
set -uo pipefail
cd "$(dirname "$0")/.."
SS_VERSION=1.25.0
ROOT=.bench-tools
if [ -x "$ROOT/bin/sslocal" ] && [ -x "$ROOT/bin/ssserver" ]; then
  exit 0
fi
if ! command -v cargo >/dev/null 2>&1; then
  echo "ensure-bench-tools: cargo not found; shadowsocks-rust not installed (the bench will skip it)" >&2
  exit 0
fi
echo "ensure-bench-tools: installing shadowsocks-rust $SS_VERSION (sslocal, ssserver) into $ROOT/ (once; a few minutes)"
if ! nice -n 10 cargo install shadowsocks-rust --locked --version "$SS_VERSION" \
    --bin sslocal --bin ssserver --root "$ROOT"; then
  echo "ensure-bench-tools: installing shadowsocks-rust $SS_VERSION failed (the bench will skip it)" >&2
fi
exit 0
