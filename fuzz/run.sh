#!/usr/bin/env bash
# Fuzzes every target for a bounded time and fails on any crash, printing the input.
#
#   bash fuzz/run.sh                  # every target, FUZZ_SECONDS (default 25) each
#   FUZZ_SECONDS=300 bash fuzz/run.sh sip_stream sdp
#
# Installs what it needs when missing (a nightly toolchain through rustup, cargo-fuzz) and
# fails loudly if it cannot. Targets run FUZZ_JOBS at a time (default: the number of CPUs).
# Each target starts from its seeds (fuzz/seeds/<target>, and for sip_datagram the RFC 4475
# and 5118 torture messages) plus what earlier runs here found (fuzz/target/corpus/<target>);
# a crash's input is kept in fuzz/artifacts/<target>/ and printed.
set -euo pipefail
cd "$(dirname "$0")"
fuzz_dir=$(pwd)
seconds=${FUZZ_SECONDS:-25}
jobs=${FUZZ_JOBS:-$(nproc)}
started=$(date +%s)

if ! rustup run nightly rustc --version >/dev/null 2>&1; then
    echo "fuzz: installing a nightly toolchain"
    rustup toolchain install nightly --profile minimal
fi
if ! cargo +nightly fuzz --version >/dev/null 2>&1; then
    echo "fuzz: installing cargo-fuzz"
    cargo install cargo-fuzz --locked
fi

all_targets=$(sed -n 's/^name = "\(.*\)"$/\1/p' Cargo.toml | grep -v '^starling-fuzz$')
targets=${*:-$all_targets}

# One build for every target (they share the core and its dependencies). No sanitizer: the
# code fuzzed is safe Rust, where ASan finds nothing a panic does not, and it halves the
# speed; debug assertions (overflow checks) stay on.
cargo +nightly fuzz build --sanitizer none
built=$(date +%s)

# Longest input per target: the SIP ones past the 64 KiB message cap (to reach the
# Content-Length and too-large paths), the others a few KiB.
max_len() {
    case $1 in
        sip_datagram | sip_stream) echo 70000 ;;
        config | rtp) echo 16384 ;;
        *) echo 4096 ;;
    esac
}

run_one() {
    local target=$1 log=$fuzz_dir/target/logs/$1.log
    local seeds=("$fuzz_dir/seeds/$target")
    if [ "$target" = sip_datagram ]; then
        seeds+=("$fuzz_dir/../crates/sip/tests/torture/rfc4475" "$fuzz_dir/../crates/sip/tests/torture/rfc5118")
    fi
    mkdir -p "target/corpus/$target" "artifacts/$target"
    # -timeout: one input taking 10 s is a hang, and fails like a crash.
    cargo +nightly fuzz run --sanitizer none "$target" "target/corpus/$target" "${seeds[@]}" -- \
        -max_total_time="$seconds" -max_len="$(max_len "$target")" -timeout=10 -rss_limit_mb=2048 \
        -print_final_stats=1 >"$log" 2>&1
}

mkdir -p target/logs
declare -A pids
for target in $targets; do
    while [ "$(jobs -rp | wc -l)" -ge "$jobs" ]; do
        wait -n || true
    done
    run_one "$target" &
    pids[$target]=$!
done

failed=()
for target in $targets; do
    if wait "${pids[$target]}"; then status=ok; else status=FAILED; failed+=("$target"); fi
    log=target/logs/$target.log
    runs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log" | tail -1)
    speed=$(sed -n 's/^stat::average_exec_per_sec: *//p' "$log" | tail -1)
    corpus=$(find "target/corpus/$target" -type f | wc -l)
    printf 'fuzz: %-13s %-6s %10s runs %8s exec/s %6s inputs in corpus\n' "$target" "$status" "${runs:-?}" "${speed:-?}" "$corpus"
done
for target in "${failed[@]}"; do
    echo "=============== fuzz: $target failed; the end of its log:"
    grep -v -e '^ *[0-9]*: ' -e '^ *at ' "target/logs/$target.log" | tail -n 40 | cut -c1-400
    for input in $(sed -n 's/.*Test unit written to \(.*\)$/\1/p' "target/logs/$target.log"); do
        echo "--------------- the input ($input), $(wc -c <"$input") bytes, escaped (the first 4 KiB):"
        head -c 4096 "$input" | python3 -c 'import sys; print(repr(sys.stdin.buffer.read()))'
    done
done
echo "fuzz: built in $((built - started)) s, fuzzed $seconds s a target, $(($(date +%s) - started)) s in all"
if [ ${#failed[@]} -gt 0 ]; then
    echo "fuzz: ${#failed[@]} target(s) failed: ${failed[*]}"
    exit 1
fi
