#!/usr/bin/env bash
# Publish-to-serving latency across a fleet of three boxes on loopback:
# Debian's nats-server with JetStream, three `outpost serve --fleet` boxes,
# and `outpost publish` from a source root. For a 500-file site and for a
# one-file change, times from the start of `outpost publish` until all three
# boxes serve the new content; prints each run and the median of RUNS.
#
#   benches/fleet.sh            # RUNS=5
#   OUTPOST_BIN=... RUNS=9 benches/fleet.sh
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
BIN=${OUTPOST_BIN:-$here/../target/release/outpost}
RUNS=${RUNS:-5}
[[ -x $BIN ]] || (cd "$here/.." && cargo build --release)
command -v nats-server >/dev/null || apt-get install -y -qq nats-server
TMP=$(mktemp -d)
pids=()
cleanup() { for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done; wait 2>/dev/null || true; rm -rf "$TMP"; }
trap cleanup EXIT

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
now_ms() { date +%s%3N; }

NATS_PORT=$(free_port)
nats-server -js -a 127.0.0.1 -p "$NATS_PORT" -sd "$TMP/js" >/dev/null 2>&1 &
pids+=($!)
URL="nats://127.0.0.1:$NATS_PORT"
for _ in $(seq 100); do (exec 3<>/dev/tcp/127.0.0.1/"$NATS_PORT") 2>/dev/null && break; sleep 0.05; done

# The source: one site of 500 pages.
SRC=$TMP/source
mkdir -p "$SRC/sites/fleet/public" "$SRC/rules"
printf 'hosts = ["fleet.localhost"]\nlocale = "en-GB"\ndefault = true\n' > "$SRC/sites/fleet/site.toml"
python3 - "$SRC/sites/fleet/public" <<'PY'
import random, sys, os
random.seed(7)
words = "match goal striker keeper penalty corner league table season transfer derby referee offside tackle".split()
for i in range(500):
    text = " ".join(random.choice(words) for _ in range(4000))
    open(os.path.join(sys.argv[1], f"page-{i:03}.html"), "w").write(f"<html><body><p>{text}</p></body></html>")
PY

ports=()
for b in 1 2 3; do
  root=$TMP/box$b; mkdir -p "$root/sites"
  port=$(free_port); ports+=("$port")
  printf 'listen = "127.0.0.1:%s"\nadmin_listen = "127.0.0.1:0"\naccess_log = "off"\n' "$port" > "$root/outpost.toml"
  "$BIN" serve --root "$root" --fleet "$URL" --box-id "box$b" >/dev/null 2>"$TMP/box$b.log" &
  pids+=($!)
done
for port in "${ports[@]}"; do
  for _ in $(seq 200); do curl -s -o /dev/null "http://127.0.0.1:$port/" && break; sleep 0.05; done
done

# Waits until every box serves $2 at path $1; prints ms since $3.
wait_all() {
  local path=$1 want=$2 start=$3
  for port in "${ports[@]}"; do
    for _ in $(seq 6000); do
      [[ $(curl -s -H 'Host: fleet.localhost' "http://127.0.0.1:$port$path") == *"$want"* ]] && break
      sleep 0.005
    done
  done
  echo $(( $(now_ms) - start ))
}

median() { sort -n | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}'; }

whole=() one=()
for run in $(seq "$RUNS"); do
  # A new version of all 500 files.
  for f in "$SRC"/sites/fleet/public/page-*.html; do sed -i "s/<p>[^ ]* /<p>run$run-all /" "$f"; done
  start=$(now_ms)
  "$BIN" publish fleet --root "$SRC" --fleet "$URL" >/dev/null
  whole+=("$(wait_all /page-499.html "run$run-all" "$start")")
  # One file changes.
  sed -i "s/<p>[^ ]* /<p>run$run-one /" "$SRC/sites/fleet/public/page-000.html"
  start=$(now_ms)
  "$BIN" publish fleet --root "$SRC" --fleet "$URL" >/dev/null
  one+=("$(wait_all /page-000.html "run$run-one" "$start")")
  echo "run $run: 500 files ${whole[-1]} ms, one file ${one[-1]} ms"
done
echo "median of $RUNS: 500-file site $(printf '%s\n' "${whole[@]}" | median) ms (bar < 2000), one-file change $(printf '%s\n' "${one[@]}" | median) ms (bar < 300)"
