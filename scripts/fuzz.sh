#!/usr/bin/env bash
# Coverage-guided fuzzing on the stable toolchain: AFL++ through the afl crate
# (cargo-afl builds AFL++ from its own sources). Each target starts from its
# kept corpus (fuzz/corpus/TARGET, else fuzz/seeds/TARGET), runs for
# FUZZ_SECONDS of wall time (default 60), adds what it found to the corpus (afl-cmin),
# logs one line per run to fuzz/campaigns.tsv and keeps any crash or hang
# under fuzz/artifacts/TARGET. Exits non-zero if any target crashed.
#
#   scripts/fuzz.sh [TARGET...]       default: every target
#   FUZZ_SECONDS=3600 FUZZ_JOBS=2 scripts/fuzz.sh records handshake
#   FUZZ_NICE=19                       run the fuzzers at this nice level
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
AFL_VERSION=0.18.2
TARGETS=(records handshake pad_header policy tariff front site_input site_price account_request pad_upload history_file)
SECONDS_EACH=${FUZZ_SECONDS:-60}
JOBS=${FUZZ_JOBS:-1}
NICE=${FUZZ_NICE:-0}
[ $# -gt 0 ] && TARGETS=("$@")

if ! cargo afl --version 2>/dev/null | grep -q "$AFL_VERSION"; then
    echo "fuzz: installing cargo-afl $AFL_VERSION (builds AFL++; about a minute)"
    cargo install cargo-afl --locked --version "$AFL_VERSION"
fi
AFL_BIN=$(ls -d "${XDG_DATA_HOME:-$HOME/.local/share}"/afl.rs/rustc-"$(rustc -V | awk '{print $2}')"-*/afl.rs-$AFL_VERSION/afl/bin | head -1)
export CARGO_TARGET_DIR=${FUZZ_TARGET_DIR:-$ROOT/fuzz/target}
(cd fuzz && cargo afl build --release --locked)

export AFL_NO_UI=1 AFL_SKIP_CPUFREQ=1 AFL_NO_AFFINITY=1 AFL_QUIET=1
export AFL_I_DONT_CARE_ABOUT_MISSING_CRASHES=1 AFL_AUTORESUME=0
stamp=$(date -u +%Y%m%dT%H%M%SZ)

# One target: fuzz, keep findings, merge the corpus, log the run.
run_target() {
    local t=$1 bin=$CARGO_TARGET_DIR/release/$1
    local out=$ROOT/fuzz/out/$t-$stamp input=$ROOT/fuzz/corpus/$t
    [ -d "$input" ] && [ -n "$(ls -A "$input")" ] || input=$ROOT/fuzz/seeds/$t
    mkdir -p "$out"
    # CPU time is counted by a cpuacct cgroup where one can be made (every
    # process the fuzzer starts, reaped or not), else by the shell's `times`.
    local cg=/sys/fs/cgroup/cpuacct/padnet-fuzz-$t-$stamp
    if mkdir "$cg" 2>/dev/null && echo "$BASHPID" >"$cg/cgroup.procs"; then :; else cg=; fi
    nice -n "$NICE" cargo afl fuzz -i "$input" -o "$out" -V "$SECONDS_EACH" -t 2000 -- "$bin" \
        >"$out/afl.log" 2>&1 || { echo "fuzz: $t: afl-fuzz failed:"; tail -20 "$out/afl.log"; return 1; }
    # CPU seconds, not wall time: fuzzers at a nice level share the machine.
    local cpu
    if [ -n "$cg" ]; then
        cpu=$(( $(cat "$cg/cpuacct.usage") / 1000000000 ))
        echo "$BASHPID" >/sys/fs/cgroup/cpuacct/cgroup.procs
        rmdir "$cg" 2>/dev/null || true
    else
        times >"$out/times"  # not in a pipe: a subshell has no children to count
        cpu=$(tail -1 "$out/times" | awk '{ t = 0; for (i = 1; i <= 2; i++) { split($i, p, "m"); t += p[1] * 60 + p[2] } printf "%d", t }')
    fi
    local stats=$out/default/fuzzer_stats
    val() { awk -F' *: *' -v k="$1" '$1==k {print $2}' "$stats"; }
    local execs crashes hangs
    execs=$(val execs_done); crashes=$(val saved_crashes); hangs=$(val saved_hangs)
    if [ "${crashes:-0}" != 0 ] || [ "${hangs:-0}" != 0 ]; then
        mkdir -p "$ROOT/fuzz/artifacts/$t"
        cp -n "$out"/default/crashes/id* "$out"/default/hangs/id* "$ROOT/fuzz/artifacts/$t/" 2>/dev/null || true
    fi
    local merged=$out/merged
    # afl-cmin.py (what `cargo afl cmin` runs) finds no tuples in these
    # binaries; the shell version does.
    AFL_PATH=$AFL_BIN PATH=$AFL_BIN:$PATH "$AFL_BIN/afl-cmin.bash" -i "$out/default/queue" -o "$merged" \
        -t 2000 -- "$bin" >"$out/cmin.log" 2>&1 \
        && { rm -rf "$ROOT/fuzz/corpus/$t"; mkdir -p "$ROOT/fuzz/corpus"; mv "$merged" "$ROOT/fuzz/corpus/$t"; } \
        || echo "fuzz: $t: corpus not merged (see $out/cmin.log)"
    local kept
    kept=$({ ls "$ROOT/fuzz/corpus/$t" 2>/dev/null || true; } | wc -l)
    printf '%s\t%s\t%s\t%s\t%s\t%s\t%s\n' "$stamp" "$t" "$cpu" "$execs" "$crashes" "$hangs" "$kept" \
        >>"$ROOT/fuzz/campaigns.tsv"
    printf 'fuzz: %-10s %6s CPU-s  %12s execs  %s crashes  %s hangs  corpus %s\n' \
        "$t" "$cpu" "$execs" "$crashes" "$hangs" "$kept"
    [ "${crashes:-0}" = 0 ]
}

[ -f fuzz/campaigns.tsv ] || printf 'started\ttarget\tcpu_seconds\texecs\tcrashes\thangs\tcorpus\n' >fuzz/campaigns.tsv
failed=0
running=0
for t in "${TARGETS[@]}"; do
    [ -d "fuzz/seeds/$t" ] || { echo "fuzz: no target named $t (have: ${TARGETS[*]})"; exit 2; }
    run_target "$t" & running=$((running + 1))
    if [ "$running" -ge "$JOBS" ]; then wait -n || failed=1; running=$((running - 1)); fi
done
while [ "$running" -gt 0 ]; do wait -n || failed=1; running=$((running - 1)); done
awk -F'\t' 'NR>1 {s[$2]+=$3; e[$2]+=$4; c[$2]+=$5} END {for (t in s) printf "fuzz: total %-10s %8.2f CPU-hours %14d execs %d crashes\n", t, s[t]/3600, e[t], c[t]}' fuzz/campaigns.tsv | sort
[ "$failed" = 0 ] || { echo "fuzz: a target crashed: inputs kept in fuzz/artifacts/"; exit 1; }
