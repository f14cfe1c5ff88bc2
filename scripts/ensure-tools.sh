#!/usr/bin/env bash
# Installs what the tests and benchmarks need beyond the Rust toolchain:
# curl, Chromium for the browser tests, and PostgreSQL's server for the shared
# ledger's tests (Debian's packages; the tests run their own server).
set -euo pipefail
missing=()
command -v curl >/dev/null 2>&1 || missing+=(curl)
command -v chromium >/dev/null 2>&1 || missing+=(chromium)
compgen -G '/usr/lib/postgresql/*/bin/postgres' >/dev/null || missing+=(postgresql)
[ ${#missing[@]} -eq 0 ] && exit 0
if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
  echo "ensure-tools: installing ${missing[*]}"
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null
else
  echo "needed: ${missing[*]} (apt-get install ${missing[*]})" >&2
  exit 1
fi
