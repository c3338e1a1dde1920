#!/usr/bin/env bash
# Figures for the README: the stripped release binary sizes of `spout` and
# `spout-blocking`, and the resident memory (VmRSS) of each server holding 100 idle
# SSE subscribers on one quiet job (`sleep 600`). Loopback only; everything this
# script starts is stopped on exit, even on failure or Ctrl-C.
#
# Run with:  bash runtime-blocking/measure.sh        (from anywhere in the workspace)
set -euo pipefail

SUBSCRIBERS=${SUBSCRIBERS:-100}
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
work=$(mktemp -d)
pids=()
cleanup() {
    for pid in "${pids[@]}"; do kill -KILL "$pid" 2>/dev/null || true; done
    wait 2>/dev/null || true
    rm -rf "$work"
}
trap cleanup EXIT

cargo build --release -q -p spout -p spout-blocking
target=$(cargo metadata --format-version 1 --no-deps | python3 -c 'import json,sys; print(json.load(sys.stdin)["target_directory"])')

# The smallest build leaves out Redis scale-out (cargo feature `redis`, on by
# default); it goes to its own target dir so the default binaries stay in place.
cargo build --release -q -p spout -p spout-blocking --no-default-features \
    --target-dir "$target/no-default-features"

echo "binary sizes (release, stripped by the profile):"
for bin in spout spout-blocking; do
    cp "$target/release/$bin" "$work/$bin"
    strip "$work/$bin" 2>/dev/null || true # already stripped: a no-op
    small="$target/no-default-features/release/$bin"
    printf '  %-16s %8d bytes (%s KiB); --no-default-features: %d bytes (%s KiB)\n' "$bin" \
        "$(stat -c %s "$work/$bin")" "$(( $(stat -c %s "$work/$bin") / 1024 ))" \
        "$(stat -c %s "$small")" "$(( $(stat -c %s "$small") / 1024 ))"
done

cat >"$work/spout.json" <<'EOF'
{"commands": {"quiet": {"argv": ["sleep", "600"]}}}
EOF

# Starts a server, a quiet job and $SUBSCRIBERS idle streams on it; prints VmRSS.
measure() {
    local bin=$1 log="$work/$1.log"
    "$work/$bin" serve --listen 127.0.0.1:0 --data-dir "$work/$bin-data" \
        --config "$work/spout.json" 2>"$log" &
    local server=$!
    pids+=("$server")
    local addr=""
    for _ in $(seq 100); do
        addr=$(grep -o 'listening on http://[0-9.:]*' "$log" | sed 's|.*http://||' || true)
        [ -n "$addr" ] && break
        sleep 0.1
    done
    [ -n "$addr" ] || { echo "$bin did not start:"; cat "$log"; exit 1; }
    python3 - "$addr" "$SUBSCRIBERS" "$server" "$bin" <<'PY'
import json, socket, sys, time
host, port = sys.argv[1].split(":")
n, server, name = int(sys.argv[2]), int(sys.argv[3]), sys.argv[4]
def request(method, path, body=b""):
    s = socket.create_connection((host, int(port)), timeout=20)
    s.sendall(b"%s %s HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\nContent-Type: application/json\r\nContent-Length: %d\r\n\r\n%s" % (method, path, len(body), body))
    out = b""
    while chunk := s.recv(65536):
        out += chunk
    return out.split(b"\r\n\r\n", 1)[1]
def rss(pid):
    with open(f"/proc/{pid}/status") as f:
        return next(int(l.split()[1]) for l in f if l.startswith("VmRSS:"))
def threads(pid):
    with open(f"/proc/{pid}/status") as f:
        return next(int(l.split()[1]) for l in f if l.startswith("Threads:"))
idle = rss(server)
job = json.loads(request(b"POST", b"/jobs", b'{"command":"quiet"}'))["id"]
streams = []
for _ in range(n):
    s = socket.create_connection((host, int(port)), timeout=20)
    s.sendall(b"GET /jobs/%s/events HTTP/1.1\r\nHost: localhost\r\n\r\n" % job.encode())
    got = b""
    while b"event: start" not in got:
        got += s.recv(65536)
    streams.append(s)
time.sleep(0.5)  # let every connection thread settle into its wait
loaded = rss(server)
print(f"  {name:<16} idle {idle:>6} KiB; with {n} subscribers {loaded:>6} KiB "
      f"({(loaded - idle) / n:.1f} KiB each), {threads(server)} threads")
request(b"DELETE", b"/jobs/" + job.encode())
for s in streams:
    s.close()
PY
    kill -TERM "$server"
    wait "$server" || true
}

echo "resident memory (VmRSS), one quiet job:"
measure spout
measure spout-blocking
