#!/usr/bin/env bash
# Installs what the tests and benchmarks need beyond the Rust toolchain (curl).
set -euo pipefail
if ! command -v curl >/dev/null 2>&1; then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
    apt-get update -qq && apt-get install -y -qq curl >/dev/null
  else
    echo "curl is needed: install it (apt-get install curl)" >&2
    exit 1
  fi
fi
