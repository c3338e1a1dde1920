#!/usr/bin/env bash
# The one command of the benchmark suite (see docs/benchmarks.md):
#
#   bench/run.sh [--quick] [--only fanout,latency,idle,resume,bounded,micro,cluster]
#                [--client one-thread|threads|both] [--rounds N]
#
# `--rounds N`: runs per target of fan-out and of latency with the one-thread client
# (default 3, 1 with --quick), targets in turn; the tables give medians and ranges.
#
# Installs the peers (Debian nginx + libnginx-mod-nchan, npm express), builds spout
# and the bench in release mode, runs every scenario against every target on
# loopback, and writes the results into docs/benchmarks.md between the
# "results" markers (plus the date, machine and exact command); the cluster
# scenario's tables (spout servers sharing a redis-server) go between the
# "cluster-results" markers, so each section is rewritten only by a run that
# measured it. Every process it starts is stopped on exit.
#
# Runtimes: every spout runtime binary found in target/release is measured. A new
# runtime is one more entry in RUNTIMES below (name=binary[,KEY=VAL…] for an
# environment); its figures appear on the next run. `spout-1thread` is the smol
# runtime held to one executor thread, to show what the other cores add.
set -euo pipefail

here="$(cd "$(dirname "$0")" && pwd)"
root="$(cd "$here/.." && pwd)"
cmdline="bench/run.sh $*"
RUNTIMES=(spout=spout spout-1thread=spout,SMOL_THREADS=1 spout-blocking=spout-blocking)

tmp="$(mktemp -d /tmp/spout-bench.XXXXXX)"
cleanup() {
    # The bench stops its servers itself; this catches anything left if it was killed.
    local pids
    pids="$(jobs -p)"
    [ -n "$pids" ] && kill $pids 2>/dev/null || true
    for p in "$tmp"/*/nginx.pid; do [ -f "$p" ] && kill "$(cat "$p")" 2>/dev/null; done || true
    for p in "$tmp"/redis-*/redis.pid; do [ -f "$p" ] && kill "$(cat "$p")" 2>/dev/null; done || true
    rm -rf "$tmp"
}
trap cleanup EXIT

# --- peers ---
if ! command -v nginx >/dev/null || [ ! -e /usr/lib/nginx/modules/ngx_nchan_module.so ]; then
    echo "bench: installing nginx and nchan (Debian packages)" >&2
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq -o DPkg::Lock::Timeout=300 \
        nginx libnginx-mod-nchan >/dev/null
fi
# Debian starts nginx on install where it can; the bench runs its own on loopback only.
if ! command -v node >/dev/null; then
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq -o DPkg::Lock::Timeout=300 nodejs npm >/dev/null
fi
(cd "$here/peers/express" && npm ci --no-audit --no-fund --silent)
# The cluster scenario's shared store (Debian package, as in CI).
if ! command -v redis-server >/dev/null; then
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq -o DPkg::Lock::Timeout=300 redis-server >/dev/null
fi

# --- builds ---
(cd "$root" && cargo build --release --workspace --bins -q)
(cd "$here" && cargo build --release -q)

targets=()
for rt in "${RUNTIMES[@]}"; do
    name="${rt%%=*}"
    spec="${rt#*=}"
    bin="$root/target/release/${spec%%,*}"
    env=""
    [ "$spec" != "${spec#*,}" ] && env=",${spec#*,}"
    if [ -x "$bin" ]; then
        targets+=(--target "$name=spout:$bin$env")
    else
        echo "bench: $name not built ($bin), skipped" >&2
    fi
done
targets+=(--target "express=express:$here/peers/express/server.js")
targets+=(--target "nginx+nchan=nchan:$here/peers/nchan")

# 10,000 idle subscribers need 10,000 descriptors in the server and in the client.
ulimit -n "$(ulimit -Hn)"
if [ "$(ulimit -n)" -lt 12000 ]; then
    echo "bench: ulimit -n is $(ulimit -n); the idle scenario needs about 12000" >&2
fi

results="$tmp/results.md"
loadavg="$(cut -d' ' -f1-3 /proc/loadavg)"
"$here/target/release/bench" "$@" --gen "$here/target/release/gen" --tmp "$tmp" \
    --out "$results" "${targets[@]}"

# --- write the results into docs/benchmarks.md ---
doc="$root/docs/benchmarks.md"
# write_section MARK FILE: replaces the MARK section of the doc with FILE's tables
# (appends the section if the doc has none).
write_section() {
    local mark="$1" file="$2"
    {
        echo "<!-- $mark:begin (written by bench/run.sh; do not edit by hand) -->"
        echo
        echo "Command: \`$cmdline\` — run on $(date -u +%Y-%m-%d) at $(date -u +%H:%M) UTC."
        echo "Machine: $(nproc) cores, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2- | sed 's/^ *//'),"
        echo "$(awk '/MemTotal/ {printf "%.1f GiB RAM", $2/1048576}' /proc/meminfo), Linux $(uname -r),"
        if [ "$mark" = cluster-results ]; then
            echo "$(redis-server --version | sed 's/ sha=.*//'),"
        else
            echo "nginx $(nginx -v 2>&1 | sed 's|.*/||'), nchan $(dpkg-query -W -f='${Version}' libnginx-mod-nchan 2>/dev/null || echo '?'),"
            echo "node $(node --version), express $(node -p "require('$here/peers/express/node_modules/express/package.json').version"),"
        fi
        echo "load average at start: $loadavg (the machine is shared; see the notes)."
        echo
        cat "$file"
        echo "<!-- $mark:end -->"
    } >"$tmp/section.md"
    if grep -q "<!-- $mark:begin" "$doc" 2>/dev/null; then
        awk -v f="$tmp/section.md" -v b="<!-- $mark:begin" -v e="<!-- $mark:end" '
            index($0, b) == 1 { while ((getline l < f) > 0) print l; skip = 1; next }
            index($0, e) == 1 { skip = 0; next }
            !skip { print }' "$doc" >"$tmp/doc.md"
        cp "$tmp/doc.md" "$doc"
    else
        cat "$tmp/section.md" >>"$doc"
    fi
}
[ -s "$results" ] && write_section results "$results"
[ -s "$results.cluster" ] && write_section cluster-results "$results.cluster"
echo "bench: results written to docs/benchmarks.md" >&2
