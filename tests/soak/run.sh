#!/bin/sh
# tests/soak/run.sh — the hardening suite at full size, on both runtimes.
#
# CI runs the same cases at a reduced size inside `cargo test --workspace`; this
# script turns the sizes up and adds the full-size soaks (the `#[ignore]`d cases:
# 50 MB of binary output to 500 subscribers, 50 SIGKILLs of the server).
#
#   tests/soak/run.sh              # full size, both runtimes (release build)
#   tests/soak/run.sh smol         # the sized cases of one runtime (a test name filter)
#
# Everything is loopback only and bounded; expect 15-30 minutes on 2 cores.
set -eu
cd "$(dirname "$0")/../.."
filter="${1:-}"
export SPOUT_FUZZ_CASES="${SPOUT_FUZZ_CASES:-50000}"
export SPOUT_CHURN="${SPOUT_CHURN:-5000}"
# The sized cases, at full size.
cargo test --release -p spout-tests \
    --test hardening_http --test hardening_floods --test hardening_jobs \
    --test hardening_crash --test hardening_access -- $filter
# The soaks kept out of CI (`soak_*`: 50 MB to 500 subscribers, 50 kills). Cases
# ignored as known bugs are not run here; run them by name with --ignored.
cargo test --release -p spout-tests \
    --test hardening_jobs --test hardening_crash -- --ignored soak_
