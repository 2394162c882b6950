#!/usr/bin/env bash
# Benchmarks outpost against nginx serving the same generated sites.
#
#   benches/run.sh                       # everything, 3 x 5 s per scenario and server
#   SERVERS=nginx DURATION=2 REPEAT=1 benches/run.sh
#   SCENARIOS="small big" benches/run.sh
#   SCENARIOS="small offer live-static fragment restart" benches/run.sh
#   CORPUS=group SCENARIOS="paths memory" benches/run.sh
#   SCENARIOS="small small-fleetlogs" SERVERS=outpost benches/run.sh
#
# See benches/README.md for what is measured and why. All traffic goes to
# 127.0.0.1, every load stops by itself, and every process this script starts
# is stopped on exit.
set -euo pipefail

BENCH_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
REPO_DIR=$(dirname "$BENCH_DIR")

DURATION=${DURATION:-5}            # seconds per wrk run
REPEAT=${REPEAT:-3}                # runs per scenario and server; the median is reported
SERVERS=${SERVERS:-nginx outpost}  # which servers to run, e.g. SERVERS=nginx
SCENARIOS=${SCENARIOS:-}           # subset of scenarios, e.g. "small big"; empty = all
CONNECTIONS=${CONNECTIONS:-32}     # wrk connections
WARMUP=${WARMUP:-1}                # seconds of unmeasured load before a scenario's first run; 0 = none
CORPUS=${CORPUS:-bench}            # bench (3 sites x 500 pages), 4x (3 x 2000) or group (55 x 400)
READY_TIMEOUT=${READY_TIMEOUT:-}   # seconds a server may take to serve every site; default by corpus
NGINX_WORKERS_N=${NGINX_WORKERS:-$(nproc)} # nginx worker_processes: one per core, as usually deployed
SERVER_CPU=${SERVER_CPU:-0}        # core the servers are pinned to
LOAD_CPU=${LOAD_CPU:-1}            # core wrk is pinned to
NATS_CPU=${NATS_CPU:-}             # `small-fleetlogs`: core of the fleet's nats-server; default: a third core, else LOAD_CPU
RESULTS_FILE=${RESULTS_FILE:-$BENCH_DIR/results/last-run.txt}
NGINX_GZIP_LEVEL=${NGINX_GZIP_LEVEL:-1} # nginx gzip_comp_level where it compresses per request (offer, fragment)
RESTARTS=${RESTARTS:-5}            # `restart`: how many times outpost is stopped and started
RESTART_TIMEOUT=${RESTART_TIMEOUT:-}  # `restart`, `memory`: seconds a restart may take; default by corpus
PATHS_URLS=1500                    # `paths`: URLs drawn at random over all sites
RESTART_URLS=200                   # `restart`, `memory`: URLs that must answer after a restart
DEFAULT_OUTPOST_BIN=$REPO_DIR/target/release/outpost
OUTPOST_BIN=${OUTPOST_BIN:-$DEFAULT_OUTPOST_BIN}

# ---------------------------------------------------------------------------
# Small helpers

say() { printf '==> %s\n' "$*" >&2; }
warn() { printf 'WARNING: %s\n' "$*" >&2; }
error() { printf 'ERROR: %s\n' "$*" >&2; }
die() {
  error "$*"
  exit 1
}

# need_uint NAME VALUE MIN: dies unless VALUE is a whole number >= MIN.
need_uint() {
  if [[ ! $2 =~ ^[0-9]+$ ]] || (($2 < $3)); then
    die "$1 must be a whole number >= $3, not '$2'"
  fi
}

# True while the process exists and is not a zombie waiting to be reaped.
alive() {
  local stat
  { read -r stat <"/proc/$1/stat"; } 2>/dev/null || return 1
  stat=${stat##*) }
  [[ ${stat:0:1} != Z ]]
}

# ---------------------------------------------------------------------------
# State, and the cleanup that runs however the script ends

TMP=""
STARTED=()           # pids this script started (nginx master, outpost)
NGINX_WORKER_PIDS=() # killed only if the master had to be SIGKILLed
declare -A PORT=()   # server -> port
declare -A PIDS=()   # server -> space-separated pids whose CPU time counts
CLK_TCK=$(getconf CLK_TCK)
FAILURES=0           # scenarios skipped because a server answered wrongly
BUSY_NOTE=""         # set when the machine was not idle before the runs
CORPUS_NOTE=""       # the corpus's size, for the results
REDIRECTS_NOTE=""    # how long outpost took to load bench-r's _redirects
REDIRECT_LINES=10000 # lines of bench-r's _redirects

cleanup() {
  local pid worker i
  # If the output is piped into something that has quit (| head), a message
  # here must not kill the cleanup half-way and leave servers running.
  trap '' PIPE
  for pid in "${STARTED[@]}"; do
    kill -TERM "$pid" 2>/dev/null || true
  done
  for pid in "${STARTED[@]}"; do
    for ((i = 0; i < 100; i++)); do
      alive "$pid" || break
      sleep 0.1
    done
    if alive "$pid"; then
      warn "process $pid ignored SIGTERM for 10 s; killing it"
      kill -KILL "$pid" 2>/dev/null || true
      for worker in "${NGINX_WORKER_PIDS[@]}"; do
        kill -KILL "$worker" 2>/dev/null || true
      done
    fi
    wait "$pid" 2>/dev/null || true
  done
  if [[ -n $TMP ]]; then
    rm -rf "$TMP"
  fi
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

# ---------------------------------------------------------------------------
# Setup

check_settings() {
  need_uint DURATION "$DURATION" 1
  need_uint REPEAT "$REPEAT" 1
  need_uint WARMUP "$WARMUP" 0
  need_uint CONNECTIONS "$CONNECTIONS" 1
  need_uint NGINX_WORKERS "$NGINX_WORKERS_N" 1
  need_uint SERVER_CPU "$SERVER_CPU" 0
  need_uint LOAD_CPU "$LOAD_CPU" 0
  need_uint NGINX_GZIP_LEVEL "$NGINX_GZIP_LEVEL" 1
  ((NGINX_GZIP_LEVEL <= 9)) || die "NGINX_GZIP_LEVEL must be 1-9, not $NGINX_GZIP_LEVEL"
  need_uint RESTARTS "$RESTARTS" 1
  # The fleet's hub is another machine in production: keep it off the
  # server's core (a third core when there is one, else wrk's).
  if [[ -z $NATS_CPU ]]; then
    NATS_CPU=$LOAD_CPU
    local c
    for ((c = 0; c < $(nproc); c++)); do
      if ((c != SERVER_CPU && c != LOAD_CPU)); then
        NATS_CPU=$c
        break
      fi
    done
  fi
  need_uint NATS_CPU "$NATS_CPU" 0
  # HOME_SITE: the default site, which the single-page scenarios request.
  case $CORPUS in
    bench) HOME_SITE=bench-a CORPUS_ARGS=() ;;
    4x) HOME_SITE=bench-a CORPUS_ARGS=(--pages 2000) ;;
    group) HOME_SITE=g01 CORPUS_ARGS=(--group) ;;
    *) die "CORPUS may be bench, 4x or group, not '$CORPUS'" ;;
  esac
  HOME_HOST=$HOME_SITE.localhost
  # A cold ingest of the larger corpora takes minutes on a busy small box,
  # and a restart of an outpost that loads every body, tens of seconds.
  if [[ $CORPUS == bench ]]; then
    READY_TIMEOUT=${READY_TIMEOUT:-120} RESTART_TIMEOUT=${RESTART_TIMEOUT:-30}
  else
    READY_TIMEOUT=${READY_TIMEOUT:-900} RESTART_TIMEOUT=${RESTART_TIMEOUT:-120}
  fi
  need_uint READY_TIMEOUT "$READY_TIMEOUT" 1
  need_uint RESTART_TIMEOUT "$RESTART_TIMEOUT" 1
  local s
  for s in $SERVERS; do
    [[ $s == nginx || $s == outpost ]] || die "SERVERS may list nginx and outpost, not '$s'"
  done
  [[ -n ${SERVERS// /} ]] || die "SERVERS is empty"
}

has_server() { [[ " $SERVERS " == *" $1 "* ]]; }

# True when scenario $1 was selected (select_scenarios has run).
wants() { [[ " ${SELECTED[*]} " == *" $1 "* ]]; }

# Installs what is missing. apt-get runs only when something is missing.
ensure_tools() {
  local -a missing=()
  # nginx also plays the upstream of fragment and proxy, whichever servers
  # are measured.
  if { has_server nginx || wants fragment || wants proxy; } && ! command -v nginx >/dev/null && [[ ! -x /usr/sbin/nginx ]]; then
    missing+=(nginx)
  fi
  command -v wrk >/dev/null || missing+=(wrk)
  command -v curl >/dev/null || missing+=(curl)
  command -v taskset >/dev/null || missing+=(util-linux)
  command -v pgrep >/dev/null || missing+=(procps)
  command -v gzip >/dev/null || missing+=(gzip)
  if wants small-fleetlogs && ! command -v nats-server >/dev/null; then missing+=(nats-server); fi
  if ((${#missing[@]})); then
    say "installing ${missing[*]}"
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null
  fi
  command -v python3 >/dev/null || die "python3 is needed to generate the corpus"
  NGINX_BIN=$(command -v nginx || echo /usr/sbin/nginx)
  if has_server outpost && [[ ! -x $OUTPOST_BIN ]]; then
    [[ $OUTPOST_BIN == "$DEFAULT_OUTPOST_BIN" ]] || die "OUTPOST_BIN=$OUTPOST_BIN is not an executable file"
    say "no $OUTPOST_BIN yet: cargo build --release"
    (cd "$REPO_DIR" && cargo build --release) || die "cargo build --release failed"
    [[ -x $OUTPOST_BIN ]] || die "cargo build did not produce $OUTPOST_BIN"
  fi
  local cores
  cores=$(nproc)
  ((SERVER_CPU < cores && LOAD_CPU < cores)) ||
    die "SERVER_CPU=$SERVER_CPU and LOAD_CPU=$LOAD_CPU must be below the core count ($cores)"
  ((SERVER_CPU != LOAD_CPU)) || warn "servers and wrk share core $SERVER_CPU: results measure contention"
}

# Four distinct free loopback ports, picked by the kernel. They are released
# before the servers bind them: a small race, harmless unless something else
# on the machine grabs a port in that instant (the server would then fail to
# start, with a clear error).
pick_ports() {
  local ports
  ports=$(python3 -c '
import socket
socks = [socket.socket() for _ in range(4)]
for s in socks:
    s.bind(("127.0.0.1", 0))
print(*(s.getsockname()[1] for s in socks))
')
  read -r 'PORT[nginx]' 'PORT[outpost]' ADMIN_PORT UPSTREAM_PORT <<<"$ports"
}

make_corpus() {
  say "generating the $CORPUS corpus in $TMP (deterministic)"
  # bench-r, the redirects scenarios' site, only when they run: the other
  # scenarios and phases see the corpus they always did.
  if wants redirects || wants redirects-pattern; then
    CORPUS_ARGS+=(--redirects "$REDIRECT_LINES")
  fi
  python3 "$BENCH_DIR/corpus.py" "${CORPUS_ARGS[@]}" --sites "$TMP/sites.txt" --every "$TMP/every.txt" \
    "$TMP/root" "${PORT[outpost]}" "$ADMIN_PORT" "$TMP/urls.txt" "$UPSTREAM_PORT" "$TMP/nginx-extra"
  [[ $(head -n 1 "$TMP/sites.txt") == "$HOME_SITE $HOME_HOST" ]] ||
    die "corpus.py's default site is not $HOME_SITE"
  # urls.txt is shuffled: its first lines are pages drawn at random over all
  # sites (the bench corpus has exactly 1,500 pages: all of them).
  head -n "$PATHS_URLS" "$TMP/urls.txt" >"$TMP/paths.txt"
  awk '{print $2, "/"}' "$TMP/sites.txt" >"$TMP/home-urls.txt"
  # After a restart: the default site's first page, then pages at random.
  { echo "$HOME_HOST /page-000.html"; head -n $((RESTART_URLS - 1)) "$TMP/urls.txt"; } >"$TMP/restart-urls.txt"
  CORPUS_NOTE="corpus $CORPUS: $(grep -c . "$TMP/sites.txt") sites, $(grep -c . "$TMP/every.txt") files,"
  CORPUS_NOTE+=" $(du -sm "$TMP/root/sites" | cut -f1) MiB (du)"
  say "$CORPUS_NOTE"

  # nginx serves the same files through a tree of hard links (same inodes,
  # no copy) that also holds the .gz siblings gzip_static needs. They stay
  # out of outpost's tree because outpost would ingest them as extra files,
  # which would cost it ingest time and memory nginx does not pay.
  mkdir -p "$TMP/nginx-sites"
  cp -al "$TMP/root/sites/." "$TMP/nginx-sites/"
  # -f: gzip refuses hard-linked inputs without it; -k keeps the originals.
  find "$TMP/nginx-sites" -type f \( -name '*.html' -o -name '*.css' -o -name '*.js' \) -print0 |
    xargs -0 -n 200 -P "$(nproc)" gzip -k -9 -f
  # Write it all out now (~70 MB for the bench corpus), so the kernel's
  # writeback does not run during (and steal CPU from) the measured runs.
  sync -f "$TMP"
}

# ---------------------------------------------------------------------------
# Servers

# Microseconds since the epoch, from bash itself (no process to start).
now_us() { echo "${EPOCHREALTIME//[!0-9]/}"; }

# fetch.py on the load core: fetch_py ARGS... (see fetch.py).
fetch_py() {
  taskset -c "$LOAD_CPU" python3 "$BENCH_DIR/fetch.py" "$@"
}

# poll_server PID LOG HOOK INTERVAL PORT LIST SINCE_US TIMEOUT [READY_URL]
# runs `fetch.py wait PORT LIST ...` in the background while watching the
# server process PID every INTERVAL seconds, calling the function HOOK (if
# not empty) each time: if the server exits, dies with the tail of its LOG.
# Sets POLLED to fetch.py's output and returns its status (non-zero: it gave
# up, and POLLED says why).
poll_server() {
  local pid=$1 log=$2 hook=$3 interval=$4 poller rc=0
  shift 4
  fetch_py wait "$@" >"$TMP/poll.out" 2>&1 &
  poller=$!
  STARTED+=("$poller")
  while alive "$poller"; do
    if [[ -n $hook ]]; then "$hook"; fi
    if ! alive "$pid"; then
      tail -n 20 "$log" >&2 || true
      die "the server exited (its log above)"
    fi
    sleep "$interval"
  done
  wait "$poller" || rc=$?
  forget "$poller"
  POLLED=$(<"$TMP/poll.out")
  return "$rc"
}

# wait_ready SERVER PID LOG [SINCE_US]: waits until every site answers 200 on
# / with its own home page (its <title> ends in "| NAME"; a 200 alone proves
# little, since a server may answer a host whose site it has not loaded yet
# with its default site), and for outpost until the admin /ready answers 200
# (the first scan and rules load are done: the scan must not run on the
# server core during the measurements). Dies if the server exits or
# READY_TIMEOUT passes. Sets POLLED to "FIRST_MS ALL_MS PASS_MS" (see
# fetch.py), from SINCE_US (default: now).
wait_ready() {
  local server=$1 pid=$2 log=$3 since=${4:-$(now_us)} ready=""
  [[ $server == outpost ]] && ready=http://127.0.0.1:$ADMIN_PORT/ready
  if ! poll_server "$pid" "$log" "" 0.1 "${PORT[$server]}" "$TMP/home-urls.txt" "$since" \
    "$READY_TIMEOUT" $ready; then
    tail -n 20 "$log" >&2 || true
    die "$server not ready after ${READY_TIMEOUT}s: $POLLED"
  fi
}

start_nginx() {
  local conf=$TMP/nginx.conf user_line="" workers=$NGINX_WORKERS_N
  # As root, nginx workers would switch to 'nobody', who cannot enter the
  # 0700 mktemp dir; keep them as the invoking user instead.
  ((EUID == 0)) && user_line="user root;"
  mkdir -p "$TMP/nginx-temp"
  # One server block per site but the default one, which is in the template.
  local name host
  while read -r name host; do
    [[ $name == "$HOME_SITE" ]] && continue
    printf 'server {\n    listen 127.0.0.1:%s;\n    server_name %s;\n    root %s;\n}\n' \
      "${PORT[nginx]}" "$host" "$TMP/nginx-sites/$name/public"
  done <"$TMP/sites.txt" >"$TMP/nginx-sites.conf"
  sed -e "s|@TMP@|$TMP|g" -e "s|@PORT@|${PORT[nginx]}|g" -e "s|@HOME@|$HOME_SITE|g" \
    -e "s|@WORKERS@|$workers|g" -e "s|@USER_LINE@|$user_line|" \
    -e "s|@UPSTREAM_PORT@|$UPSTREAM_PORT|g" -e "s|@GZIP_LEVEL@|$NGINX_GZIP_LEVEL|g" \
    "$BENCH_DIR/nginx.conf.template" >"$conf"
  [[ -e $TMP/nginx-offer.conf ]] || echo "# no offer banner: outpost did not run" >"$TMP/nginx-offer.conf"
  # -e: the error log from the first moment, before the config is read, so
  # nginx never tries /var/log/nginx.
  "$NGINX_BIN" -t -q -c "$conf" -e "$TMP/nginx-error.log" ||
    die "nginx rejected $conf (see above)"

  say "starting nginx (worker_processes $workers) on 127.0.0.1:${PORT[nginx]}, pinned to core $SERVER_CPU"
  taskset -c "$SERVER_CPU" "$NGINX_BIN" -c "$conf" -e "$TMP/nginx-error.log" \
    >"$TMP/nginx.out" 2>&1 &
  local master=$!
  STARTED+=("$master")
  wait_ready nginx "$master" "$TMP/nginx-error.log"

  # CPU time and memory count the master, every worker and the cache
  # manager (proxy_cache, for the fragment scenario). Not the cache loader:
  # it exits a minute after the start, and a process that is gone mid-run
  # cannot be measured.
  local i pid kind
  local -a counted
  for ((i = 0; i < 50; i++)); do
    mapfile -t NGINX_WORKER_PIDS < <(pgrep -P "$master" || true)
    counted=()
    for pid in "${NGINX_WORKER_PIDS[@]}"; do
      kind=$(tr '\0' ' ' <"/proc/$pid/cmdline" 2>/dev/null || true)
      case $kind in
        *"worker process"*) counted+=("$pid") ;;
      esac
    done
    ((${#counted[@]} >= workers)) && break
    sleep 0.1
  done
  ((${#counted[@]} >= workers)) || die "nginx started ${#counted[@]} of $workers workers"
  for pid in "${NGINX_WORKER_PIDS[@]}"; do
    kind=$(tr '\0' ' ' <"/proc/$pid/cmdline" 2>/dev/null || true)
    [[ $kind == *"cache manager"* ]] && counted+=("$pid")
  done
  PIDS[nginx]="$master ${counted[*]}"
}

# The fragment scenario's upstream: a separate small nginx serving
# nginx-extra/upstream/ (scores.json for outpost, scores.html for nginx's SSI).
start_upstream() {
  local conf=$TMP/upstream.conf user_line=""
  ((EUID == 0)) && user_line="user root;"
  mkdir -p "$TMP/upstream-temp"
  sed -e "s|@TMP@|$TMP|g" -e "s|@UPSTREAM_PORT@|$UPSTREAM_PORT|g" -e "s|@USER_LINE@|$user_line|" \
    "$BENCH_DIR/nginx-upstream.conf.template" >"$conf"
  "$NGINX_BIN" -t -q -c "$conf" -e "$TMP/upstream-error.log" || die "nginx rejected $conf (see above)"
  say "starting the fragment upstream (nginx) on 127.0.0.1:$UPSTREAM_PORT"
  taskset -c "$SERVER_CPU" "$NGINX_BIN" -c "$conf" -e "$TMP/upstream-error.log" \
    >"$TMP/upstream.out" 2>&1 &
  local pid=$! i code
  STARTED+=("$pid")
  for ((i = 0; i < 100; i++)); do
    code=$(curl -s -o /dev/null --max-time 2 -w '%{http_code}' "http://127.0.0.1:$UPSTREAM_PORT/scores.json" || true)
    [[ $code == 200 ]] && return 0
    alive "$pid" || break
    sleep 0.1
  done
  tail -n 20 "$TMP/upstream-error.log" >&2 || true
  die "the fragment upstream does not answer 200 on /scores.json (got $code)"
}

# Starts `outpost serve` over $TMP/root, pinned, stdout to $1.out and stderr
# to $1.err; sets PIDS[outpost], and T0 to the time just before the start.
launch_outpost() {
  T0=$(now_us)
  taskset -c "$SERVER_CPU" "$OUTPOST_BIN" serve --root "$TMP/root" >"$1.out" 2>"$1.err" &
  PIDS[outpost]=$!
  STARTED+=("$!")
}

start_outpost() {
  # The rules and templates corpus.py wrote must be valid, or the offer and
  # fragment scenarios would measure outpost ignoring them.
  local problems
  if ! problems=$("$OUTPOST_BIN" check --root "$TMP/root" 2>&1); then
    printf '%s\n' "$problems" >&2
    die "outpost check rejects the benchmark root (above)"
  fi
  say "starting outpost on 127.0.0.1:${PORT[outpost]}, pinned to core $SERVER_CPU"
  launch_outpost "$TMP/outpost"
  # outpost listens at once and then ingests the sites (hashing and
  # compressing every file), so wait for every site, not the socket.
  wait_ready outpost "${PIDS[outpost]}" "$TMP/outpost.err" "$T0"
  say "outpost serves all sites after $(awk '{printf "%.1f", $2 / 1000}' <<<"$POLLED") s"
  if wants redirects || wants redirects-pattern; then
    # outpost logs each _redirects it loads (parsed, compiled, indexed).
    REDIRECTS_NOTE="bench-r: $(grep -o '_redirects loaded.*' "$TMP/outpost.err" | head -n 1)"
    say "$REDIRECTS_NOTE"
  fi
}

# Writes nginx-offer.conf: the sub_filter that makes nginx insert exactly the
# banner outpost inserts. The banner is what outpost's offer page (an IT
# visitor on the default site's /offer.html, a copy of /) has more than its
# static page, right after the body's start tag. Sets NGINX_OFFER_OK=1 on success.
NGINX_OFFER_OK=0
write_offer_conf() {
  local base="http://127.0.0.1:${PORT[outpost]}/" msg
  curl -s --max-time 5 -o "$TMP/offer-static.html" -H "Host: $HOME_HOST" "$base" || true
  curl -s --max-time 5 -o "$TMP/offer-outpost.html" -H "Host: $HOME_HOST" \
    -H 'CF-IPCountry: IT' "${base}offer.html" || true
  if msg=$(python3 - "$TMP/offer-static.html" "$TMP/offer-outpost.html" "$TMP/nginx-offer.conf" <<'PY'
import re, sys

def fail(why):  # on stdout: run.sh shows it
    print(why)
    sys.exit(1)

static = open(sys.argv[1], encoding="utf-8", errors="replace").read()
offer = open(sys.argv[2], encoding="utf-8", errors="replace").read()
m = re.search(r"<body[^>]*>", static)
if not m:
    fail("the static page has no <body> tag")
head, tail = static[:m.end()], static[m.end():]
if offer == static:
    fail("outpost's page for CF-IPCountry: IT is the static page: no banner")
if not (offer.startswith(head) and offer.endswith(tail)):
    fail(f"outpost's page for CF-IPCountry: IT is not the static page plus something right after {m.group(0)}")
banner = offer[len(head):len(offer) - len(tail)]

def quote(s):  # an nginx single-quoted string; "$" via the $dollar variable
    s = s.replace("\\", "\\\\").replace("'", "\\'").replace("\n", "\\n").replace("\r", "\\r")
    return "'" + s.replace("$", "${dollar}") + "'"

with open(sys.argv[3], "w", encoding="utf-8") as f:
    f.write("# The banner outpost inserts for an IT visitor of the default site, fetched from it.\n")
    f.write(f"sub_filter {quote(m.group(0))} {quote(m.group(0) + banner)};\n")
print(f"{len(banner)} bytes after {m.group(0)}")
PY
  ); then
    NGINX_OFFER_OK=1
    say "offer: outpost's banner is $msg; nginx gets it by sub_filter"
  else
    error "offer: $msg"
    error "offer: the nginx counterpart cannot be set up; nginx skips offer"
    echo "# no offer banner: ${msg//$'\n'/ }" >"$TMP/nginx-offer.conf"
  fi
}

# With both servers up: do their offer and fragment pages (uncompressed)
# have the same bytes? Differences are reported, not fatal; PAGE_NOTES
# collects them for the results file.
PAGE_NOTES=""
compare_pages() {
  local name host path want o n
  local -a hdr
  for name in offer fragment; do
    wants "$name" || continue
    case $name in
      offer) path=/offer.html hdr=(-H 'CF-IPCountry: IT') ;;
      fragment) path=/live.html hdr=(-H 'Cookie: outpost_exp_hero=b') ;;
    esac
    ((NGINX_OFFER_OK)) || [[ $name != offer ]] || continue
    host=$HOME_HOST
    o=$TMP/page-$name-outpost.html n=$TMP/page-$name-nginx.html
    curl -s --max-time 5 -o "$o" -H "Host: $host" "${hdr[@]}" "http://127.0.0.1:${PORT[outpost]}$path" || true
    [[ $name == offer ]] && host=offer.localhost
    curl -s --max-time 5 -o "$n" -H "Host: $host" "${hdr[@]}" "http://127.0.0.1:${PORT[nginx]}$path" || true
    if cmp -s "$o" "$n"; then
      say "$name: outpost and nginx send the same page, byte for byte ($(wc -c <"$o") bytes uncompressed)"
    else
      want="$name: outpost's and nginx's pages differ ($(wc -c <"$o") vs $(wc -c <"$n") bytes uncompressed)"
      warn "$want; first difference:"
      diff <(fold -w 100 "$o") <(fold -w 100 "$n") | head -n 6 >&2 || true
      PAGE_NOTES+="NOTE: $want"$'\n'
    fi
  done
}

# Sum of user + system CPU time, in clock ticks, of the given processes.
cpu_ticks() {
  local pid stat total=0
  local -a f
  for pid in "$@"; do
    stat=$(cat "/proc/$pid/stat" 2>/dev/null) || die "server process $pid is gone"
    # Fields after the ")" that ends the command name: f[0] is field 3
    # (state), so utime (field 14) is f[11] and stime (field 15) is f[12].
    read -ra f <<<"${stat##*) }"
    total=$((total + f[11] + f[12]))
  done
  echo "$total"
}

# "busy total" ticks of one core from /proc/stat. busy = user + nice +
# system + steal: what programs (and the hypervisor) take. irq and softirq are
# left out: on the server core they are mostly the server's own network work.
core_ticks() {
  awk -v cpu="cpu$1" '$1 == cpu {
    total = 0; for (i = 2; i <= NF; i++) total += $i
    print $2 + $3 + $4 + $9, total }' /proc/stat
}

# Sum of a /proc/PID/status field in KiB (VmHWM: peak resident set; VmRSS:
# resident set; RssAnon: its anonymous part, i.e. not file pages) over the
# given processes: status_kib FIELD PID...
status_kib() {
  local field=$1 pid kib total=0
  shift
  for pid in "$@"; do
    kib=$(awk -v f="$field:" '$1 == f {print $2}' "/proc/$pid/status" 2>/dev/null || echo 0)
    total=$((total + ${kib:-0}))
  done
  echo "$total"
}

# Busy share (%) of each of the given cores over one second, e.g. "0:3 1:97".
core_busy() {
  local before after
  before=$(grep -E "^cpu($(IFS='|'; echo "$*")) " /proc/stat)
  sleep 1
  after=$(grep -E "^cpu($(IFS='|'; echo "$*")) " /proc/stat)
  paste -d' ' <(echo "$before") <(echo "$after") | awk '{
    n = NF / 2; total = 0
    for (i = 2; i <= n; i++) total += $(i + n) - $i
    idle = ($(5 + n) - $5) + ($(6 + n) - $6)   # idle + iowait
    printf "%s:%d ", substr($1, 4), total ? 100 * (total - idle) / total : 0
  }'
}

# With the servers up but idle, the two cores should be idle too. Anything
# else running there (a build, another benchmark) takes CPU from whichever
# server is being loaded at the time and makes the comparison noisy.
check_idle() {
  local busy worst=0 entry
  busy=$(core_busy "$SERVER_CPU" "$LOAD_CPU")
  for entry in $busy; do
    ((${entry#*:} > worst)) && worst=${entry#*:}
  done
  if ((worst > 10)); then
    BUSY_NOTE="WARNING: before the runs, other work kept the cores busy (core:busy% $busy); results are noisy"
    warn "${BUSY_NOTE#WARNING: }"
    warn "busiest processes right now: $(top -b -n 1 -o %CPU | awk 'NR > 7 && NR <= 10 {printf "%s (%s%%) ", $12, $9}')"
  fi
}

# ---------------------------------------------------------------------------
# Scenarios
#
#   scenario NAME EXPECT TARGET [WRK_ARGS...]
#
# EXPECT  the status every response must have (checked with curl before the
#         load; the scenario is skipped for a server that answers otherwise).
# TARGET  a path such as /big.bin, or @FILE: a list of "host path" lines that
#         paths.lua cycles through, one request per line in rotation.
# WRK_ARGS extra wrk options, mostly -H 'Name: value'. The same -H headers go
#         to the curl checks. @ETAG@ in them becomes the server's ETag for
#         TARGET, fetched with the scenario's other headers.
#
#   for_server NAME SERVER [WRK_ARGS...]
#
# replaces the scenario's WRK_ARGS for one server (nginx's counterpart of an
# outpost feature may live on another Host).
#
#   expect_body NAME TEXT...
#
# the curl check also fetches the body (decompressed) and wants every TEXT
# in it: the scenario is skipped for a server whose page lacks one.
#
#   paired NAME BASELINE
#
# NAME is a feature held to a bar against BASELINE, another scenario (the
# same page served static). Each run of NAME follows a run of BASELINE on the
# same server, recorded as BASELINE@NAME, so the ratio compares runs taken
# seconds apart and not minutes apart, when the VM's speed may have moved.
#
#   only_for NAME SERVER
#
# NAME runs against SERVER alone (nginx has no counterpart of it).
#
#   phase NAME
#
# a step that is not a wrk load (restart): selectable with SCENARIOS like the
# others, run after every load.
#
# Add scenarios at the bottom of define_scenarios; SCENARIOS="a b" picks some.

SC_ORDER=()
declare -A SC_EXPECT=() SC_TARGET=() SC_ARGS=() SC_BODY=() SC_BASELINE=() SC_ONLY=()

scenario() {
  local name=$1 expect=$2 target=$3
  shift 3
  SC_ORDER+=("$name")
  SC_EXPECT[$name]=$expect
  SC_TARGET[$name]=$target
  SC_ARGS[$name]=""
  if (($#)); then SC_ARGS[$name]=$(printf '%q ' "$@"); fi
}

for_server() {
  local name=$1 server=$2
  shift 2
  SC_ARGS[$name@$server]=$(printf '%q ' "$@")
}

expect_body() {
  local name=$1
  shift
  SC_BODY[$name]=$(printf '%q ' "$@")
}

paired() {
  SC_BASELINE[$1]=$2
}

only_for() {
  SC_ONLY[$1]=$2
}

phase() {
  SC_ORDER+=("$1")
  SC_EXPECT[$1]=phase
}

is_phase() { [[ ${SC_EXPECT[$1]} == phase ]]; }

define_scenarios() {
  # A typical page, precompressed (gzip: both servers have a gzip copy).
  # The single-page scenarios request the default site (HOME_HOST),
  # bench-a or g01.
  local home="Host: $HOME_HOST"
  scenario small 200 / -H "$home" -H 'Accept-Encoding: gzip'
  # A large download: raw throughput, sendfile vs. in-memory bodies.
  scenario big 200 /big.bin -H "$home"
  # A browser revalidating its cached copy: headers only, no body.
  scenario revalidate 304 / -H "$home" -H 'Accept-Encoding: gzip' \
    -H 'If-None-Match: @ETAG@'
  # 1,500 pages drawn at random over all sites, so no single hot file is cached.
  scenario paths 200 "@$TMP/paths.txt" -H 'Accept-Encoding: gzip'

  # bench-a's (g01's) home page for a visitor from IT: outpost's offer-local
  # rule inserts a banner offering bench-b (g02) right after <body>. nginx
  # inserts the same banner with sub_filter on its own Host (offer.localhost),
  # so its `small` stays untouched. Compare with `small` (the same page, static).
  scenario offer 200 /offer.html -H "$home" -H 'CF-IPCountry: IT' -H 'Accept-Encoding: gzip'
  for_server offer nginx -H 'Host: offer.localhost' -H 'CF-IPCountry: IT' -H 'Accept-Encoding: gzip'
  expect_body offer 'class="outpost-offer"'
  paired offer small
  # The same page under rules of today's kinds of conditions, and under the
  # same plus one rule per condition added since, none matching (a visitor
  # from US with a kept outpost_id). outpost only: nginx has no rules.
  local visitor='Cookie: outpost_id=0123456789abcdef0123456789abcdef'
  scenario conditions-today 200 /rules-today.html -H "$home" -H 'CF-IPCountry: US' \
    -H "$visitor" -H 'Accept-Encoding: gzip'
  only_for conditions-today outpost
  scenario conditions 200 /rules-new.html -H "$home" -H 'CF-IPCountry: US' \
    -H "$visitor" -H 'Accept-Encoding: gzip'
  only_for conditions outpost
  paired conditions conditions-today
  # The static baseline of `fragment`: the same page under a path no rule
  # matches, with the same headers.
  scenario live-static 200 /live-static.html -H "$home" \
    -H 'Cookie: outpost_exp_hero=b' -H 'Accept-Encoding: gzip'
  expect_body live-static '<h1 class="hero">Title</h1>' '<div id="scores"><p>Loading</p></div>'
  # A returning visitor in arm b of the hero A/B test, on a page with a warm
  # live-scores fragment. nginx: a pre-rendered file per arm picked by the
  # cookie, the scores by SSI from the upstream through proxy_cache.
  scenario fragment 200 /live.html -H "$home" \
    -H 'Cookie: outpost_exp_hero=b' -H 'Accept-Encoding: gzip'
  expect_body fragment '<h1 class="hero">Other title</h1>' '<li>Rovers 2-1 United</li>'
  paired fragment live-static
  # A warm entry of an API behind the site: outpost's proxy rule with
  # cache = "5s" on bench-a's /api/**; nginx: proxy_pass with proxy_cache
  # kept 5 s. Both from the same upstream. Compare with `small`.
  scenario proxy 200 /api/odds.json -H "$home"
  expect_body proxy '"odds"'
  paired proxy small
  # bench-r: the default site's home page, and a _redirects of
  # REDIRECT_LINES lines (60% plain old paths, 40% patterns: placeholders,
  # splats, query and country matches). `redirects` asks for a path none of
  # them matches; `redirects-pattern` one that the last line, /team/:slug,
  # rewrites to the home page. Both serve the bytes `small` serves, on a
  # site without the file. outpost only: nginx has no _redirects.
  scenario redirects 200 / -H 'Host: bench-r.localhost' -H 'Accept-Encoding: gzip'
  only_for redirects outpost
  paired redirects small
  scenario redirects-pattern 200 /team/juve -H 'Host: bench-r.localhost' -H 'Accept-Encoding: gzip'
  only_for redirects-pattern outpost
  paired redirects-pattern small
  # `small` with outpost in a fleet, shipping its access-log lines to the
  # fleet's log stream: a nats-server with JetStream on a free loopback port,
  # and [fleet] url and box_id in outpost.toml (access_log stays "off", as
  # for `small`). outpost restarts over its warm store with and without
  # them around each run (see fleet_logs), so the paired `small` runs on a
  # fresh process too. outpost only.
  scenario small-fleetlogs 200 / -H "$home" -H 'Accept-Encoding: gzip'
  only_for small-fleetlogs outpost
  paired small-fleetlogs small
  # outpost stopped and started again over its warm store, RESTARTS times.
  phase restart
  # outpost's memory: a cold ingest, a warm restart, one GET of every URL.
  phase memory
}

# The ETag a server sends for URL with the given curl -H arguments.
fetch_etag() {
  local url=$1
  shift
  curl -s -D - -o /dev/null --max-time 5 "$@" "$url" | tr -d '\r' |
    sed -n 's/^[Ee][Tt][Aa][Gg]:[[:space:]]*//p' | head -n 1
}

# Sets, for scenario $1 against server $2: WRK_ARGS (options for wrk, -s
# script included), CURL_H (the -H arguments for curl), URL and LIST (the
# URL list file, empty for a single-path scenario). Returns 1 (after an
# error message) when the scenario cannot be prepared for this server.
prepare() {
  local name=$1 server=$2 base="http://127.0.0.1:${PORT[$2]}" target=${SC_TARGET[$1]}
  local -a args
  if [[ $server == outpost ]] && wants small-fleetlogs; then
    if [[ $name == small-fleetlogs ]]; then fleet_logs on; else fleet_logs off; fi
  fi
  local key=$name
  [[ -n ${SC_ARGS[$name@$server]+x} ]] && key=$name@$server
  eval "args=(${SC_ARGS[$key]})"

  CURL_H=()
  local i
  for ((i = 0; i < ${#args[@]}; i++)); do
    if [[ ${args[i]} == -H || ${args[i]} == --header ]]; then
      CURL_H+=(-H "${args[i + 1]}")
      i=$((i + 1))
    fi
  done

  if [[ $target == @* ]]; then
    LIST=${target#@}
    URL=$base/
    WRK_ARGS=(-s "$BENCH_DIR/paths.lua")
  else
    LIST=""
    URL=$base$target
    WRK_ARGS=(-s "$BENCH_DIR/report.lua")
  fi

  if [[ ${SC_ARGS[$name]} == *@ETAG@* ]]; then
    local -a plain=()
    for ((i = 0; i < ${#CURL_H[@]}; i += 2)); do
      [[ ${CURL_H[i + 1]} == *@ETAG@* ]] || plain+=(-H "${CURL_H[i + 1]}")
    done
    local etag
    etag=$(fetch_etag "$URL" "${plain[@]}")
    if [[ -z $etag ]]; then
      error "$name: $server sends no ETag for $target"
      return 1
    fi
    for i in "${!args[@]}"; do args[i]=${args[i]//@ETAG@/"$etag"}; done
    for i in "${!CURL_H[@]}"; do CURL_H[i]=${CURL_H[i]//@ETAG@/"$etag"}; done
  fi
  # A scenario's own -s comes after ours, so it wins.
  WRK_ARGS+=("${args[@]}")
}

# Escapes a value for a double-quoted string in a curl config file.
curl_quote() {
  local v=${1//\\/\\\\}
  printf '%s' "${v//\"/\\\"}"
}

# Checks that the server answers the scenario's requests with the expected
# status: the one request of a single-path scenario, or every URL of a list
# (one curl process over one kept-alive connection, so it is quick).
check_scenario() {
  local name=$1 server=$2 expect=${SC_EXPECT[$1]} code
  if [[ -z $LIST ]]; then
    code=$(curl -s -o /dev/null --max-time 5 -w '%{http_code}' "${CURL_H[@]}" "$URL" || true)
    if [[ $code != "$expect" ]]; then
      error "$name: $server answers $code to GET ${SC_TARGET[$name]} (${CURL_H[*]}), want $expect; skipping $name for $server"
      return 1
    fi
    if [[ -n ${SC_BODY[$name]:-} ]]; then
      local body text
      local -a texts
      eval "texts=(${SC_BODY[$name]})"
      body=$(curl -s --compressed --max-time 5 "${CURL_H[@]}" "$URL" || true)
      for text in "${texts[@]}"; do
        if [[ $body != *"$text"* ]]; then
          error "$name: $server's answer to GET ${SC_TARGET[$name]} (${CURL_H[*]}) lacks '$text'; skipping $name for $server"
          mkdir -p "$(dirname "$RESULTS_FILE")"
          printf '%s\n' "$body" >"$(dirname "$RESULTS_FILE")/bad-$name-$server.txt"
          error "(the body it sent is in $(dirname "$RESULTS_FILE")/bad-$name-$server.txt)"
          return 1
        fi
      done
    fi
    return 0
  fi

  local config=$TMP/check-$name-$server.curl host path h bad total answered first=1
  {
    while read -r host path; do
      [[ -n $host ]] || continue
      # --next between URLs: each gets its own Host header and output.
      ((first)) || echo next
      first=0
      printf 'url = "%s"\nheader = "Host: %s"\n' "${URL%/}$path" "$host"
      for ((h = 1; h < ${#CURL_H[@]}; h += 2)); do
        printf 'header = "%s"\n' "$(curl_quote "${CURL_H[h]}")"
      done
      printf 'output = "/dev/null"\nwrite-out = "%%{http_code} %s %s\\n"\n' "$host" "$path"
    done <"$LIST"
  } >"$config"
  local answers
  answers=$(curl -s --max-time 120 -K "$config" || true)
  total=$(grep -c . "$LIST")
  answered=$(grep -c . <<<"$answers" || true)
  bad=$(awk -v want="$expect" '$1 != want' <<<"$answers")
  if [[ -n $bad || $answered != "$total" ]]; then
    error "$name: of $total URLs, $server answered $answered, $(grep -c . <<<"$bad" || true) with a status other than $expect, e.g.:"
    head -n 5 <<<"$bad" >&2
    error "skipping $name for $server"
    return 1
  fi
}

# Runs wrk for $1 seconds with the prepared arguments; prints its output.
# timeout is a safety net on top of -d: a load never outlives its budget.
run_wrk() {
  local seconds=$1
  PATHS_FILE=$LIST timeout --foreground --kill-after=5 $((seconds + 30)) \
    taskset -c "$LOAD_CPU" wrk -t1 -c"$CONNECTIONS" -d"${seconds}s" --latency \
    "${WRK_ARGS[@]}" "$URL"
}

# One measured run: wrk's own numbers plus the server's CPU time around it,
# recorded under $4 (default: the scenario's name).
measure() {
  local name=$1 server=$2 rep=$3 label=${4:-$1} out before after line
  local -a pids
  read -ra pids <<<"${PIDS[$server]}"
  local core_before core_after load_before load_after
  core_before=$(core_ticks "$SERVER_CPU")
  load_before=$(core_ticks "$LOAD_CPU")
  before=$(cpu_ticks "${pids[@]}")
  # `times` in the subshell gives the CPU time of its finished children,
  # i.e. of wrk: the load core's own share, to tell other work apart. (Not
  # piped: a pipe would run it in yet another subshell, with no children.)
  if ! out=$(
    run_wrk "$DURATION" 2>&1
    rc=$?
    times >"$TMP/wrk-times"
    exit $rc
  ); then
    printf '%s\n' "$out" >&2
    die "$name: wrk failed against $server"
  fi
  after=$(cpu_ticks "${pids[@]}")
  core_after=$(core_ticks "$SERVER_CPU")
  load_after=$(core_ticks "$LOAD_CPU")
  # Children's line of `times`, "0m1.230s 0m0.450s", in clock ticks.
  local wrk_ticks
  wrk_ticks=$(awk -v hz="$CLK_TCK" 'NR == 2 {
    t = 0
    for (i = 1; i <= 2; i++) { split($i, p, "m"); t += p[1] * 60 + p[2] }
    printf "%d", t * hz }' "$TMP/wrk-times")
  line=$(grep '^BENCH_RESULT ' <<<"$out" || true)
  [[ -n $line ]] || {
    printf '%s\n' "$out" >&2
    die "$name: no BENCH_RESULT line from wrk"
  }
  local reqs dur_us bytes p50 p99 sock_err bad_status
  read -r _ reqs dur_us bytes p50 p99 sock_err bad_status <<<"$line"
  ((reqs > 0)) || die "$name: $server completed no requests"
  if ((sock_err + bad_status > 0)); then
    warn "$name/$server run $rep: $sock_err socket errors, $bad_status responses >= 400"
  fi
  # other% = the larger share of the server core or of the load core that
  # something other than the server or wrk used during the run: a build or
  # another benchmark competing with the measurement.
  local record
  record=$(awk -v n="$label" -v s="$server" -v rep="$rep" -v reqs="$reqs" -v dur="$dur_us" \
    -v bytes="$bytes" -v p50="$p50" -v p99="$p99" -v ticks=$((after - before)) -v hz="$CLK_TCK" \
    -v se="$sock_err" -v bs="$bad_status" -v cb="$core_before" -v ca="$core_after" \
    -v lb="$load_before" -v la="$load_after" -v wt="${wrk_ticks:-0}" '
    function other(before, after, own,   b, a, pct) {
      split(before, b, " "); split(after, a, " ")
      pct = (a[2] > b[2]) ? 100 * ((a[1] - b[1]) - own) / (a[2] - b[2]) : 0
      return pct < 0 ? 0 : pct
    }
    BEGIN {
      worst = other(cb, ca, ticks)
      if (other(lb, la, wt) > worst) worst = other(lb, la, wt)
      printf "%s %s %d %.1f %d %d %.2f %.1f %d %d %d %.0f\n", n, s, rep, reqs * 1e6 / dur, p50, p99,
        ticks * 1e6 / hz / reqs, bytes / reqs, se, bs, reqs, worst }')
  echo "$record" >>"$TMP/runs.tsv"
  local -a r
  read -ra r <<<"$record"
  printf '    %-10s %-8s run %d/%d: %9s req/s  p50 %6.3f ms  p99 %6.3f ms  cpu %7s us/req  other %s%%\n' \
    "$label" "$server" "$rep" "$REPEAT" "${r[3]}" "$(awk -v v="${r[4]}" 'BEGIN{print v/1000}')" \
    "$(awk -v v="${r[5]}" 'BEGIN{print v/1000}')" "${r[6]}" "${r[11]}" >&2
  if ((r[11] > 10)); then
    warn "$name/$server run $rep: other processes used ${r[11]}% of a benchmark core; this run is noisy"
  fi
}

# Sets SELECTED to the scenarios to run, in the order SCENARIOS lists them.
select_scenarios() {
  SELECTED=()
  if [[ -z ${SCENARIOS// /} ]]; then
    SELECTED=("${SC_ORDER[@]}")
    return
  fi
  local s
  for s in $SCENARIOS; do
    [[ -n ${SC_EXPECT[$s]+x} ]] || die "unknown scenario '$s'; known: ${SC_ORDER[*]}"
    SELECTED+=("$s")
  done
}

# Prepares and checks scenario $1 against server $2, and its baseline if it
# has one; leaves $1 prepared.
ready() {
  local base=${SC_BASELINE[$1]:-}
  if [[ -n $base ]]; then
    prepare "$base" "$2" && check_scenario "$base" "$2" || return 1
  fi
  prepare "$1" "$2" && check_scenario "$1" "$2"
}

run_scenarios() {
  local -a servers reversed
  read -ra servers <<<"$SERVERS"
  local i
  for ((i = ${#servers[@]} - 1; i >= 0; i--)); do reversed+=("${servers[i]}"); done

  local name server rep
  local -A ok=()
  for name in "${SELECTED[@]}"; do
    is_phase "$name" && continue
    say "scenario $name"
    for server in "${servers[@]}"; do
      if [[ -n ${SC_ONLY[$name]:-} && ${SC_ONLY[$name]} != "$server" ]]; then
        ok[$server]=0
      elif [[ $name == offer && $server == nginx ]] && ((!NGINX_OFFER_OK)); then
        error "offer: no banner from outpost to give nginx's sub_filter; skipping offer for nginx"
        ok[$server]=0
        FAILURES=$((FAILURES + 1))
        echo "$name $server (no banner from outpost)" >>"$TMP/skipped.txt"
      elif ready "$name" "$server"; then
        ok[$server]=1
        if ((WARMUP > 0)); then
          run_wrk "$WARMUP" >/dev/null 2>&1 || warn "$name: warm-up against $server failed"
        fi
      else
        ok[$server]=0
        FAILURES=$((FAILURES + 1))
        echo "$name $server" >>"$TMP/skipped.txt"
      fi
    done
    # Alternate the order so neither server always runs first (after the
    # other one's load, with whatever that left in caches and clocks).
    for ((rep = 1; rep <= REPEAT; rep++)); do
      local -a order=("${servers[@]}")
      ((rep % 2 == 0)) && order=("${reversed[@]}")
      for server in "${order[@]}"; do
        ((ok[$server])) || continue
        # Re-prepared each run: an ETag is fetched fresh, never assumed.
        local base=${SC_BASELINE[$name]:-}
        if [[ -n $base ]]; then
          prepare "$base" "$server" || die "$base: cannot prepare $server any more"
          measure "$base" "$server" "$rep" "$base@$name"
        fi
        prepare "$name" "$server" || die "$name: cannot prepare $server any more"
        measure "$name" "$server" "$rep"
      done
    done
  done
}

# ---------------------------------------------------------------------------
# Fleet logs: outpost shipping its access-log lines to a fleet (small-fleetlogs)

FLEET_LOGS=0     # whether the running outpost ships its lines
NATS_URL=""      # the fleet's nats-server, once started
FLEET_CHECKED=0  # whether lines were seen in the stream
FLEET_DROPPED=0  # lines outpost dropped rather than sent, over the runs
FLEET_NOTE=""

start_nats() {
  local port
  port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
  mkdir -p "$TMP/js"
  say "starting nats-server -js on 127.0.0.1:$port, pinned to core $NATS_CPU"
  taskset -c "$NATS_CPU" nats-server -js -a 127.0.0.1 -p "$port" -sd "$TMP/js" \
    >"$TMP/nats.log" 2>&1 &
  STARTED+=("$!")
  NATS_URL=nats://127.0.0.1:$port
  local i
  for ((i = 0; i < 100; i++)); do
    (echo >"/dev/tcp/127.0.0.1/$port") 2>/dev/null && return 0
    sleep 0.1
  done
  die "nats-server does not listen on $port (see $TMP/nats.log)"
}

# Waits until the fleet's log stream holds lines of outpost (the ones of
# wait_ready's requests).
check_fleet_logs() {
  local i n=0
  for ((i = 0; i < 100; i++)); do
    n=$("$OUTPOST_BIN" fleet logs --fleet "$NATS_URL" --since 10m 2>/dev/null | grep -c . || true)
    ((n > 0)) && break
    sleep 0.1
  done
  ((n > 0)) || die "small-fleetlogs: no line of outpost reached the fleet's log stream"
  FLEET_CHECKED=1
}

# The outpost_fleet_log_lines_dropped_total of the running outpost.
fleet_dropped() {
  curl -s --max-time 5 "http://127.0.0.1:$ADMIN_PORT/metrics" |
    awk '$1 == "outpost_fleet_log_lines_dropped_total" { print $2; found = 1 } END { if (!found) print 0 }'
}

# fleet_logs on|off: restarts outpost over its warm store with or without
# [fleet] url and box_id in outpost.toml, unless it already runs so, then
# warms it up with `small`'s request for WARMUP seconds.
fleet_logs() {
  local want=0 conf=$TMP/root/outpost.toml tag=$TMP/outpost-fleetlogs-$1
  [[ $1 == on ]] && want=1
  ((want == FLEET_LOGS)) && return 0
  if ((want)); then
    [[ -n $NATS_URL ]] || start_nats
    cp "$conf" "$TMP/outpost.toml.plain"
    printf '\n[fleet]\nurl = "%s"\nbox_id = "bench"\nlogs_max_size = "256MiB"\n' "$NATS_URL" >>"$conf"
  else
    FLEET_DROPPED=$((FLEET_DROPPED + $(fleet_dropped)))
    cp "$TMP/outpost.toml.plain" "$conf"
  fi
  stop_process "${PIDS[outpost]}"
  launch_outpost "$tag"
  wait_ready outpost "${PIDS[outpost]}" "$tag.err" "$T0"
  FLEET_LOGS=$want
  if ((want && !FLEET_CHECKED)); then check_fleet_logs; fi
  FLEET_NOTE="small-fleetlogs: outpost ships its access-log lines to nats-server -js ($NATS_URL) on core $NATS_CPU;"
  FLEET_NOTE+=" $FLEET_DROPPED lines dropped (outpost_fleet_log_lines_dropped_total, over the runs)"
  if ((WARMUP > 0)); then
    taskset -c "$LOAD_CPU" wrk -t1 -c"$CONNECTIONS" -d"${WARMUP}s" -H "Host: $HOME_HOST" \
      -H 'Accept-Encoding: gzip' "http://127.0.0.1:${PORT[outpost]}/" >/dev/null 2>&1 ||
      warn "small-fleetlogs: warm-up after the restart failed"
  fi
}

# ---------------------------------------------------------------------------
# Restart: outpost stopped (SIGTERM) and started again over its warm store

# Drops a pid from STARTED (once it has been waited for).
forget() {
  local p
  local -a kept=()
  for p in "${STARTED[@]}"; do [[ $p == "$1" ]] || kept+=("$p"); done
  STARTED=("${kept[@]}")
}

# SIGTERM, then waits up to 10 s (SIGKILL after that); forgets the pid.
stop_process() {
  local pid=$1 i
  kill -TERM "$pid" 2>/dev/null || true
  for ((i = 0; i < 1000; i++)); do
    alive "$pid" || break
    sleep 0.01
  done
  if alive "$pid"; then
    warn "process $pid ignored SIGTERM for 10 s; killing it"
    kill -KILL "$pid" 2>/dev/null || true
  fi
  wait "$pid" 2>/dev/null || true
  forget "$pid"
}

# Stops outpost and starts it again over its warm store; times the restart
# from just before the process is started. fetch.py polls restart-urls.txt
# (the default site's /page-000.html, then RESTART_URLS - 1 pages at random
# over all sites) in order over one connection, each until it answers 200
# with its own site's page; meanwhile note_restart notes when "listening on"
# appears on outpost's stdout and "sites scanned" on its stderr (every 5 ms).
# Sets RESTART_RECORD to, in ms ("-" for what did not happen within
# RESTART_TIMEOUT), "first_200 listening scanned serving_logged scan_logged
# all_200 pass". first_200: the first URL answered; all_200: every URL has;
# pass: one more pass over the URLs once all answer, i.e. the requests' own
# share of all_200; serving_logged, scan_logged: outpost's own log (ms from
# its start to listening; the scan's duration). Not to be run in a
# subshell: it changes PIDS and STARTED.
restart_once() {
  local tag=$TMP/$1 pid tlisten="" tscan="" first="-" all="-" pass="-" serving scan
  stop_process "${PIDS[outpost]}"
  launch_outpost "$tag"
  pid=${PIDS[outpost]}
  if poll_server "$pid" "$tag.err" note_restart 0.005 "${PORT[outpost]}" "$TMP/restart-urls.txt" \
    "$T0" "$RESTART_TIMEOUT"; then
    read -r first all pass <<<"$POLLED"
  else
    warn "restart: $(tail -n 1 <<<"$POLLED")"
    FAILURES=$((FAILURES + 1))
  fi
  # "sites scanned" may come after the last URL answered.
  while [[ -z $tscan ]] && (($(now_us) < T0 + RESTART_TIMEOUT * 1000000)); do
    note_restart
    alive "$pid" || die "outpost exited during a restart (see $tag.err)"
    sleep 0.005
  done
  serving=$(grep -a 'serving' "$tag.err" | sed -n 's/.*ms=\([0-9]*\).*/\1/p' | head -n 1)
  scan=$(grep -a 'sites scanned' "$tag.err" | sed -n 's/.*ms=\([0-9]*\).*/\1/p' | head -n 1)
  RESTART_RECORD=$(awk -v f="$first" -v l="$tlisten" -v s="$tscan" -v sv="${serving:--}" \
    -v sc="${scan:--}" -v a="$all" -v p="$pass" '
    function ms(us) { return us == "" ? "-" : sprintf("%.1f", us / 1000) }
    BEGIN { print f, ms(l), ms(s), sv, sc, a, p }')
}

# restart_once's poll hook: notes (in its tlisten and tscan) when outpost
# first logged "listening on" and "sites scanned".
note_restart() {
  local now
  now=$(now_us)
  [[ -z $tlisten ]] && grep -q '^listening on' "$tag.out" && tlisten=$((now - T0))
  [[ -z $tscan ]] && grep -q 'sites scanned' "$tag.err" && tscan=$((now - T0))
  return 0
}

restart_phase() {
  if ! has_server outpost; then
    warn "restart: outpost is not among SERVERS; skipped"
    echo "restart outpost (not among SERVERS)" >>"$TMP/skipped.txt"
    return
  fi
  say "restart: stopping and starting outpost $RESTARTS times over its warm store"
  local round
  local -a r
  : >"$TMP/restart.tsv"
  for ((round = 1; round <= RESTARTS; round++)); do
    restart_once "restart-$round"
    echo "$round $RESTART_RECORD" >>"$TMP/restart.tsv"
    read -ra r <<<"$RESTART_RECORD"
    printf '    restart    outpost  run %d/%d: first 200 after %s ms, all %d URLs after %s ms (a warm pass: %s ms), listening after %s ms, sites scanned after %s ms (scan %s ms by its log)\n' \
      "$round" "$RESTARTS" "${r[0]}" "$RESTART_URLS" "${r[5]}" "${r[6]}" "${r[1]}" "${r[2]}" "${r[4]}" >&2
  done
  # Whatever happened, leave an outpost that serves, for the end of the run.
  alive "${PIDS[outpost]}" || die "restart: outpost is not running after the restarts"
}

# ---------------------------------------------------------------------------
# Memory: outpost's footprint over the corpus, from an empty cache/ to every
# URL served once. One "key value" per line in memory.tsv (KiB, ms).

memory_phase() {
  if ! has_server outpost; then
    warn "memory: outpost is not among SERVERS; skipped"
    echo "memory outpost (not among SERVERS)" >>"$TMP/skipped.txt"
    return
  fi
  local mem=$TMP/memory.tsv pid answer field server
  local -a r pids
  : >"$mem"

  say "memory: cold ingest of the $CORPUS corpus into an empty cache/"
  stop_process "${PIDS[outpost]}"
  rm -rf "$TMP/root/cache"
  launch_outpost "$TMP/memory-cold"
  pid=${PIDS[outpost]}
  wait_ready outpost "$pid" "$TMP/memory-cold.err" "$T0"
  read -ra r <<<"$POLLED"
  {
    echo "cold_ms ${r[1]}"
    # VmHWM: the peak over the process's life, i.e. during the ingest.
    for field in VmHWM RssAnon VmRSS; do echo "cold_$field $(status_kib "$field" "$pid")"; done
    echo "store_kib $(du -sk "$TMP/root/cache" | cut -f1)"
  } >>"$mem"
  say "memory: serving every site after ${r[1]} ms, peak RSS $(($(status_kib VmHWM "$pid") / 1024)) MiB"

  say "memory: a warm restart"
  restart_once memory-warm
  read -ra r <<<"$RESTART_RECORD"
  printf 'warm_first_ms %s\nwarm_all_ms %s\nwarm_pass_ms %s\n' "${r[0]}" "${r[5]}" "${r[6]}" >>"$mem"
  [[ ${r[5]} != - ]] || die "memory: the warm restart did not serve every URL"
  pid=${PIDS[outpost]}
  for field in RssAnon VmRSS; do echo "warm_$field $(status_kib "$field" "$pid")" >>"$mem"; done
  echo "urls $(grep -c . "$TMP/every.txt")" >>"$mem"

  # One GET of every URL like a browser, then again without compression.
  # nginx gets the same requests, for comparison.
  for server in outpost nginx; do
    has_server "$server" || continue
    read -ra pids <<<"${PIDS[$server]}"
    say "memory: one GET of each of the $(grep -c . "$TMP/every.txt") URLs from $server (br, gzip; then identity)"
    answer=$(fetch_py get "${PORT[$server]}" "$TMP/every.txt" 'Accept-Encoding: br, gzip') ||
      die "memory: $server did not answer every URL with 200 (see above)"
    echo "${server}_get_ms $(cut -d' ' -f3 <<<"$answer")" >>"$mem"
    for field in RssAnon VmRSS; do echo "${server}_compressed_$field $(status_kib "$field" "${pids[@]}")" >>"$mem"; done
    fetch_py get "${PORT[$server]}" "$TMP/every.txt" >/dev/null ||
      die "memory: $server did not answer every URL with 200 (see above)"
    for field in RssAnon VmRSS; do echo "${server}_all_$field $(status_kib "$field" "${pids[@]}")" >>"$mem"; done
    echo "${server}_procs ${#pids[@]}" >>"$mem"
  done
}

# ---------------------------------------------------------------------------
# Report

# Peak memory of the servers after the loads (before any restart, which
# would start outpost's count afresh).
capture_rss() {
  : >"$TMP/rss.tsv"
  local server
  local -a pids
  for server in $SERVERS; do
    read -ra pids <<<"${PIDS[$server]}"
    echo "$server $(status_kib VmHWM "${pids[@]}") ${#pids[@]}" >>"$TMP/rss.tsv"
  done
}

report() {
  [[ -s $TMP/runs.tsv || -s $TMP/restart.tsv || -s $TMP/memory.tsv ]] || die "no scenario ran"
  touch "$TMP/runs.tsv" "$TMP/restart.tsv" "$TMP/memory.tsv"

  local commit dirty="" cpu
  commit=$(git -C "$REPO_DIR" rev-parse --short HEAD 2>/dev/null || echo unknown)
  [[ -n $(git -C "$REPO_DIR" status --porcelain 2>/dev/null) ]] && dirty=" (uncommitted changes)"
  cpu=$(awk -F': ' '/^model name/ {print $2; exit}' /proc/cpuinfo 2>/dev/null || true)

  mkdir -p "$(dirname "$RESULTS_FILE")"
  {
    echo "outpost vs nginx, $(date -u '+%Y-%m-%d %H:%M UTC')"
    echo "commit $commit$dirty; $(nproc) cores${cpu:+, $cpu}; kernel $(uname -r)"
    if has_server nginx; then
      echo "$("$NGINX_BIN" -v 2>&1), worker_processes $NGINX_WORKERS_N"
    fi
    if has_server outpost; then echo "outpost: $OUTPOST_BIN"; fi
    echo "$CORPUS_NOTE"
    echo "servers on core $SERVER_CPU, wrk on core $LOAD_CPU: -t1 -c$CONNECTIONS -d${DURATION}s," \
      "$REPEAT run(s) per scenario and server, ${WARMUP}s warm-up"
    if wants offer || wants fragment; then
      echo "nginx compresses the offer and fragment pages on the fly at gzip_comp_level $NGINX_GZIP_LEVEL"
    fi
    if [[ -n $REDIRECTS_NOTE ]]; then echo "$REDIRECTS_NOTE"; fi
    if [[ -n $FLEET_NOTE ]]; then echo "$FLEET_NOTE"; fi
    if [[ -n $BUSY_NOTE ]]; then echo "$BUSY_NOTE"; fi
    if [[ -n $PAGE_NOTES ]]; then printf '%s' "$PAGE_NOTES"; fi
    echo
    python3 "$BENCH_DIR/summarize.py" --corpus "$CORPUS" "$TMP/runs.tsv" "$TMP/rss.tsv" "$TMP/restart.tsv" \
      "$TMP/memory.tsv"
    if [[ -s $TMP/skipped.txt ]]; then
      echo
      echo "SKIPPED (wrong status in the pre-check, see the log):"
      sed 's/^/  /' "$TMP/skipped.txt"
    fi
  } >"$RESULTS_FILE"
  echo
  cat "$RESULTS_FILE"
  say "written to $RESULTS_FILE"
}

main() {
  check_settings
  TMP=$(mktemp -d "${TMPDIR:-/tmp}/outpost-bench.XXXXXX")
  define_scenarios
  select_scenarios
  ensure_tools
  pick_ports
  make_corpus
  if wants fragment || wants proxy; then start_upstream; fi
  # outpost first: nginx's offer counterpart needs the banner outpost inserts.
  if has_server outpost; then
    start_outpost
    if has_server nginx && wants offer; then write_offer_conf; fi
  fi
  if has_server nginx; then start_nginx; fi
  if has_server nginx && has_server outpost; then compare_pages; fi
  check_idle
  run_scenarios
  capture_rss
  # The phases measure outpost as `small` does, out of any fleet.
  if wants small-fleetlogs && has_server outpost; then fleet_logs off; fi
  if wants restart; then restart_phase; fi
  if wants memory; then memory_phase; fi
  report
  if ((FAILURES)); then
    die "$FAILURES scenario run(s) skipped or failed: a server answered wrongly (see above)"
  fi
}

main "$@"
