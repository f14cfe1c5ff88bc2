#!/usr/bin/env bash
# `make test`: build the release binaries the end-to-end tests start, run every
# test, and close with one summary line over all test binaries.
set -uo pipefail
cd "$(dirname "$0")/.."
scripts/ensure-tools.sh || exit 1
# Imports inside each crate point one way: no module cycle may come back.
python3 scripts/check-cycles.py --quiet || exit 1
cargo build --release --workspace --bins || exit 1
log=$(mktemp)
PADNET_BIN_DIR="$PWD/target/release" cargo test --release --workspace --lib --bins --tests -- --test-threads=2 2>&1 | tee "$log"
status=${PIPESTATUS[0]}
passed=$(grep -E '^test result:' "$log" | sed -E 's/.* ([0-9]+) passed; ([0-9]+) failed.*/\1/' | awk '{s+=$1} END {print s+0}')
failed=$(grep -E '^test result:' "$log" | sed -E 's/.* ([0-9]+) passed; ([0-9]+) failed.*/\2/' | awk '{s+=$1} END {print s+0}')
rm -f "$log"
if [ "$status" -ne 0 ] && [ "$failed" -eq 0 ]; then failed=1; fi
echo
echo "$passed passed, $failed failed"
exit "$status"
