#!/bin/bash
# t/bench/run.sh (`make bench`): imgate and nginx + nchan side by side on
# loopback, driven by imgate-bench under identical loads. Prints a
# markdown table: both systems and their ratio. Bench runs are not tests:
# they print figures, and exit 0 unless a system could not be started.
#
# Every parameter can be overridden from the environment (defaults keep a
# full run under about ten minutes on a 2-core machine):
#
#   SYSTEMS       systems to run                        "imgate nchan"
#   IMGATE_TRANSPORT  goim over ws (as nchan's subscribers) or tcp   ws
#   WORKERS       server workers, the same for both     4
#   IDLE_CONNS    idle subscriber counts for memory     "10000 50000"
#   IDLE_ROOMS    rooms/channels the idle ones join     100
#   FANOUT_SUBS   subscribers of the one room           10000
#   FANOUT_RATES  messages/s tried in turn (ascending)  "1 2 5 10 20 50 100 200 400"
#   STEP_SECS     seconds of publishing per step        6
#   P99_LIMIT_US  p99 a sustained rate must stay under  50000
#   MSG_SIZE      message bytes                         64
#   PUB_CONNS     publisher keep-alive connections      32
#   CLIENT_PROCS  imgate-bench processes                4
#   SRC_ADDRS     client source addresses (127.0.0.2+)  8
#   BENCH_OUT     where configs, logs and RESULT lines go  (a new temp dir)
#   HOLD_MAX      0; N > 0 adds a run of imgate alone: N connections held
#                 with heartbeats (60 s) in one room, one room push that
#                 must reach them all, and the memory split between user
#                 space and the kernel. 1000000 needs about 56 comet workers,
#                 56 client processes and 200 source addresses (computed)
#   HOLD_RATE     connections/s while HOLD_MAX connects          3000
#                 (a ramp faster than logic and Redis can answer Connect on
#                 CPUs shared with the clients only times out)
#
# What the run relies on, and checks or says so:
#   - RLIMIT_NOFILE hard limit (20000 here) per process: servers get
#     WORKERS workers so each holds under that, imgate-bench forks
#     CLIENT_PROCS processes;
#   - net.core.somaxconn >= 4096 (the listen backlogs are 4096);
#   - net.ipv4.ip_local_port_range: one source address reaches one server
#     port from about 28000 ports; SRC_ADDRS addresses of 127.0.0.0/8 (all
#     local on Linux) with IP_BIND_ADDRESS_NO_PORT multiply that;
#   - memory: a few KiB of kernel memory per idle loopback connection
#     pair (two sockets, no queued data); net.ipv4.tcp_mem only counts
#     queued buffers, which idle connections do not hold;
#   - HOLD_MAX: redis-server and imgate-logic run at nice -10 (see
#     measure_max), so the run needs root or CAP_SYS_NICE;
#   - HOLD_MAX: fs.file-max above twice the connections (both ends are on
#     this machine; checked), and nf_conntrack not loaded (or its table
#     larger than the connections; checked).
set -u

SRCDIR=${IMGATE_SRCDIR:-$(cd "$(dirname "$0")/../.." && pwd)}
BUILDDIR=${IMGATE_BUILDDIR:-$(pwd)}
BENCH=${BENCH:-$BUILDDIR/src/bench/imgate-bench}
COMET=${COMET:-$BUILDDIR/imgate-comet}
[ -x "$COMET" ] || COMET=$BUILDDIR/src/comet/imgate-comet
LOGIC=${LOGIC:-$BUILDDIR/src/logic/imgate-logic}
PY=/usr/bin/python3

SYSTEMS=${SYSTEMS:-"imgate nchan"}
WORKERS=${WORKERS:-4}
IDLE_CONNS=${IDLE_CONNS:-"10000 50000"}
IDLE_ROOMS=${IDLE_ROOMS:-100}
FANOUT_SUBS=${FANOUT_SUBS:-10000}
FANOUT_RATES=${FANOUT_RATES:-"1 2 5 10 20 50 100 200 400"}
STEP_SECS=${STEP_SECS:-6}
P99_LIMIT_US=${P99_LIMIT_US:-50000}
MSG_SIZE=${MSG_SIZE:-64}
PUB_CONNS=${PUB_CONNS:-32}
CLIENT_PROCS=${CLIENT_PROCS:-4}
SRC_ADDRS=${SRC_ADDRS:-8}
HOLD_MAX=${HOLD_MAX:-0}
HOLD_RATE=${HOLD_RATE:-3000}
IMGATE_TRANSPORT=${IMGATE_TRANSPORT:-ws}
READY_WAIT=120 # seconds clients may take to connect
COMET_EXTRA=()
OUT=${BENCH_OUT:-$(mktemp -d /tmp/imgate-bench-run.XXXXXX)}
CLK_TCK=$(getconf CLK_TCK)

mkdir -p "$OUT"
SERVER_PIDS=()  # what stop_servers ends, by pid
CLIENT_PIDS=()

say() { echo "bench: $*" >&2; }

cleanup() {
	local p
	for p in "${CLIENT_PIDS[@]}"; do kill "$p" 2>/dev/null; done
	stop_servers
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# ---------------------------------------------------------------------------
# Setup

need_packages() {
	# The package list lives in quickstart, the one place that installs.
	"$SRCDIR/quickstart" deps-bench >"$OUT/apt.log" 2>&1 || {
		say "could not install the benchmark's packages: $OUT/apt.log"
		return 1
	}
}

free_port() {
	$PY -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'
}

wait_port() { # port [seconds]
	local i
	for ((i = 0; i < ${2:-10} * 10; i++)); do
		(exec 3<>/dev/tcp/127.0.0.1/"$1") 2>/dev/null && return 0
		sleep 0.1
	done
	return 1
}

# ---------------------------------------------------------------------------
# Measuring the servers' processes

# The server's processes: the ones started and all their children.
server_tree() {
	local p
	for p in "${SERVER_PIDS[@]}"; do
		[ -d /proc/"$p" ] || continue
		echo "$p"
		pgrep -P "$p"
	done
}

pss_kib() { # sum of PSS over the server's processes, KiB
	local total=0 p v
	for p in $(server_tree); do
		v=$(awk '/^Pss:/ {print $2}' /proc/"$p"/smaps_rollup 2>/dev/null)
		total=$((total + ${v:-0}))
	done
	echo $total
}

pss_by_name() { # "name=KiB ..." of the server's processes, summed by name
	local p
	for p in $(server_tree); do
		printf '%s %s\n' "$(cat /proc/"$p"/comm 2>/dev/null)" \
			"$(awk '/^Pss:/ {print $2}' /proc/"$p"/smaps_rollup 2>/dev/null)"
	done | awk '$2 != "" {t[$1] += $2} END {for (n in t) printf "%s=%d ", n, t[n]}'
}

cpu_ticks() { # utime + stime over the server's processes
	local total=0 p v
	for p in $(server_tree); do
		# Fields after the command name, which may hold spaces.
		v=$(sed 's/.*) //' /proc/"$p"/stat 2>/dev/null |
			awk '{print $12 + $13}')
		total=$((total + ${v:-0}))
	done
	echo $total
}

# ---------------------------------------------------------------------------
# Servers

stop_servers() {
	local p i
	for p in "${SERVER_PIDS[@]}"; do kill -TERM "$p" 2>/dev/null; done
	for ((i = 0; i < 50; i++)); do
		local alive=0
		for p in "${SERVER_PIDS[@]}"; do
			[ -d /proc/"$p" ] && alive=1
		done
		[ $alive -eq 0 ] && break
		sleep 0.2
	done
	for p in "${SERVER_PIDS[@]}"; do kill -KILL "$p" 2>/dev/null; done
	for p in "${SERVER_PIDS[@]}"; do wait "$p" 2>/dev/null; done
	SERVER_PIDS=()
}

# INI: copy a sample, setting section.key=value pairs (the sample's other
# settings, the defaults, stay). Comments are dropped.
ini_set() { # sample out key=value...
	$PY - "$@" <<'EOF'
import configparser, sys
sample, out, pairs = sys.argv[1], sys.argv[2], sys.argv[3:]
c = configparser.ConfigParser(interpolation=None)
c.optionxform = str
try:
    c.read(sample)
except configparser.Error:
    pass
for p in pairs:
    key, value = p.split("=", 1)
    sec, name = key.split(".", 1)
    if not c.has_section(sec):
        c.add_section(sec)
    c.set(sec, name, value)
with open(out, "w") as f:
    c.write(f)
EOF
}

start_imgate() {
	local d=$OUT/imgate
	mkdir -p "$d"
	REDIS_PORT=$(free_port)
	RPC_PORT=$(free_port)
	HTTP_PORT=$(free_port)
	TCP_PORT=$(free_port)
	WS_PORT=$(free_port)
	ADMIN_PORT=$(free_port)
	redis-server --port "$REDIS_PORT" --bind 127.0.0.1 --save '' \
		--appendonly no --maxclients 10000 >"$d/redis.log" 2>&1 &
	SERVER_PIDS+=($!)
	wait_port "$REDIS_PORT" || { say "redis did not start"; return 1; }
	ini_set "$SRCDIR/etc/imgate-logic.conf" "$d/logic.conf" \
		server.log="$d/logic.log" server.log_level=warn \
		server.pid_file="$d/logic.pid" \
		rpc.listen=127.0.0.1:"$RPC_PORT" \
		http.listen=127.0.0.1:"$HTTP_PORT" \
		redis.address=127.0.0.1:"$REDIS_PORT" \
		node.tcp_port="$TCP_PORT" node.ws_port="$WS_PORT"
	"$LOGIC" -f -c "$d/logic.conf" >>"$d/logic.log" 2>&1 &
	SERVER_PIDS+=($!)
	wait_port "$HTTP_PORT" || { say "imgate-logic did not start: $d/logic.log"; return 1; }
	ini_set "$SRCDIR/etc/imgate-comet.conf" "$d/comet.conf" \
		server.id=bench server.workers="$WORKERS" \
		server.log="$d/comet.log" server.log_level=warn \
		server.pid_file="$d/comet.pid" server.reuseport=yes \
		listen.tcp=127.0.0.1:"$TCP_PORT" listen.ws=127.0.0.1:"$WS_PORT" \
		listen.wss=off listen.admin=127.0.0.1:"$ADMIN_PORT" \
		shm.name=/imgate-bench-$$ shm.channels_per_bucket=1024 \
		logic.addr=127.0.0.1:"$RPC_PORT" \
		redis.addr=127.0.0.1:"$REDIS_PORT" "${COMET_EXTRA[@]}"
	"$COMET" -f -c "$d/comet.conf" >>"$d/comet.log" 2>&1 &
	SERVER_PIDS+=($!)
	wait_port "$TCP_PORT" || { say "imgate-comet did not start: $d/comet.log"; return 1; }
	# Subscribers and publishers of the steps below.
	# Like nchan's subscribers, over WebSocket unless told otherwise.
	local to=(-t ws -P "$WS_PORT")
	[ "$IMGATE_TRANSPORT" = tcp ] && to=(-t tcp -P "$TCP_PORT")
	IDLE_ARGS=(hold "${to[@]}" -i 30 -r "$IDLE_ROOMS")
	FAN_ARGS=(recv "${to[@]}" -i 30 -r 1)
	MAX_ARGS=(recv "${to[@]}" -i 60 -r 1)
	PUB_ARGS=(pub -P "$HTTP_PORT" --room 0)
}

start_nchan() {
	local d=$OUT/nchan
	mkdir -p "$d"
	NGX_PORT=$(free_port)
	sed -e "s|@WORKERS@|$WORKERS|g; s|@PORT@|$NGX_PORT|g; s|@DIR@|$d|g" \
		"$SRCDIR/t/bench/nginx.conf.in" >"$d/nginx.conf"
	nginx -c "$d/nginx.conf" -p "$d" -e "$d/nginx-error.log" \
		>"$d/nginx.out" 2>&1 &
	SERVER_PIDS+=($!)
	wait_port "$NGX_PORT" || { say "nginx did not start: $d/nginx-error.log"; return 1; }
	IDLE_ARGS=(ws -P "$NGX_PORT" -u '/sub/room%d' -r "$IDLE_ROOMS")
	FAN_ARGS=(ws -P "$NGX_PORT" -u /sub/room0 -r 1)
	PUB_ARGS=(pub -P "$NGX_PORT" -u /pub/room0)
}

start_system() {
	stop_servers
	case $1 in
	imgate)
		for f in "$COMET" "$LOGIC"; do
			[ -x "$f" ] || { say "$f not built"; return 1; }
		done
		start_imgate ;;
	nchan) start_nchan ;;
	esac
	local rc=$?
	sleep 1 # workers up, baseline settled
	return $rc
}

# ---------------------------------------------------------------------------
# Loads

field() { # RESULT-line name
	echo "$1" | tr ' ' '\n' | sed -n "s/^$2=//p"
}

# Run imgate-bench in the background until its ready file appears.
# Sets CLIENT (pid) and CLIENT_OUT (file).
client_start() { # name args...
	local name=$1 i
	shift
	CLIENT_OUT=$OUT/$name.out
	rm -f "$OUT/$name.ready"
	"$BENCH" "$@" -p "$CLIENT_PROCS" -S "$SRC_ADDRS" -q \
		--ready-file "$OUT/$name.ready" >"$CLIENT_OUT" 2>"$OUT/$name.err" &
	CLIENT=$!
	CLIENT_PIDS+=($CLIENT)
	for ((i = 0; i < READY_WAIT * 10; i++)); do
		[ -e "$OUT/$name.ready" ] && return 0
		[ -d /proc/$CLIENT ] || return 1
		sleep 0.1
	done
	return 1
}

# Stop it (if still running) and set LINE to its RESULT line. Not to be
# called in $(...): a subshell cannot wait for the client.
client_result() {
	kill -TERM "$CLIENT" 2>/dev/null
	wait "$CLIENT" 2>/dev/null
	LINE=$(grep '^RESULT' "$CLIENT_OUT" | tail -1)
}

declare -A R # results: R[system.metric]

measure_idle() { # system conns
	local sys=$1 n=$2 before after line by0
	start_system "$sys" || return 1
	before=$(pss_kib)
	by0=$(pss_by_name)
	if ! client_start "$sys-idle-$n" "${IDLE_ARGS[@]}" -n "$n"; then
		say "$sys: idle $n: clients did not settle"
	fi
	sleep 2
	after=$(pss_kib)
	echo "$sys idle $n pss_by_process before: $by0 after: $(pss_by_name)" >>"$OUT/results.txt"
	client_result
	line=$LINE
	echo "$sys idle $n pss_before=$before pss_after=$after $line" >>"$OUT/results.txt"
	local up
	up=$(field "$line" conns)
	if [ -n "$up" ] && [ "$up" -gt 0 ]; then
		R[$sys.mem$n]=$(awk -v a="$after" -v b="$before" -v n="$up" \
			'BEGIN {printf "%.2f", (a - b) / n}')
		[ "$up" -lt "$n" ] && R[$sys.mem$n]="${R[$sys.mem$n]} ($up up)"
	else
		R[$sys.mem$n]="n/a"
	fi
	if [ "$n" = "${IDLE_CONNS%% *}" ]; then
		R[$sys.connect]=$(field "$line" connect_rate)
		R[$sys.connect_p99]=$(field "$line" connect_p99_us)
	fi
	say "$sys: $n idle: $(field "$line" conns) up, PSS $before -> $after KiB"
}

# One fan-out step: FANOUT_SUBS subscribers of one room, RATE messages/s
# for STEP_SECS. Sets STEP_* variables. Returns 0 when every message was
# delivered (>= 99%, the publisher kept up, no connection lost), 1 when
# not; STEP_FAST says whether p99 also stayed under P99_LIMIT_US.
fanout_step() { # system rate
	local sys=$1 rate=$2 line pub c0 c1 ok expected
	STEP_RATE=0 STEP_P50=0 STEP_P99=0 STEP_CPU=0 STEP_CCPU=0 STEP_DELIV=0
	STEP_FAST=0
	client_start "$sys-fan-$rate" "${FAN_ARGS[@]}" -n "$FANOUT_SUBS" \
		-d $((STEP_SECS + 3)) ||
		{ say "$sys: subscribers did not settle"; client_result; return 1; }
	c0=$(cpu_ticks)
	pub=$("$BENCH" "${PUB_ARGS[@]}" -n "$PUB_CONNS" -R "$rate" \
		-d "$STEP_SECS" -s "$MSG_SIZE" -q 2>"$OUT/$sys-pub-$rate.err" |
		grep '^RESULT')
	sleep 1
	c1=$(cpu_ticks)
	wait "$CLIENT" 2>/dev/null
	line=$(grep '^RESULT' "$CLIENT_OUT" | tail -1)
	echo "$sys fanout $rate cpu_ticks=$((c1 - c0)) PUB $pub SUB $line" >>"$OUT/results.txt"
	STEP_DELIV=$(field "$line" deliveries)
	STEP_RATE=$(field "$line" rate)
	STEP_P50=$(field "$line" p50_us)
	STEP_P99=$(field "$line" p99_us)
	STEP_CPU=$(awk -v t=$((c1 - c0)) -v hz="$CLK_TCK" 'BEGIN {print t / hz}')
	STEP_CCPU=$(field "$line" cpu_s)
	ok=$(field "$pub" ok)
	expected=$((${ok:-0} * FANOUT_SUBS))
	say "$sys: $rate msg/s: ${STEP_DELIV:-0}/$expected deliveries, ${STEP_RATE:-0}/s, p50 ${STEP_P50:-?}us p99 ${STEP_P99:-?}us, publisher behind $(field "$pub" behind), CPU server ${STEP_CPU}s client ${STEP_CCPU:-?}s"
	[ -n "$STEP_DELIV" ] && [ "$expected" -gt 0 ] || return 1
	# The publisher kept up: at most 1% of the sends found no idle connection.
	[ $(($(field "$pub" behind) * 100)) -le "${ok:-0}" ] || return 1
	[ "$STEP_DELIV" -ge $((expected * 99 / 100)) ] || return 1
	[ "$(field "$line" failures)" = 0 ] || return 1
	[ "${STEP_P99:-0}" -lt "$P99_LIMIT_US" ] && STEP_FAST=1
	return 0
}

cpu_per_million() { # [seconds]: default the server's
	awk -v c="${1:-$STEP_CPU}" -v d="$STEP_DELIV" \
		'BEGIN {printf "%.2f", (d > 0 ? c * 1e6 / d : 0)}'
}

measure_fanout() { # system
	local sys=$1 rate best=0 any=0 half
	start_system "$sys" || return 1
	for rate in $FANOUT_RATES; do
		fanout_step "$sys" "$rate" || break
		any=$rate
		R[$sys.any]="$STEP_RATE (p99 $(awk -v p="$STEP_P99" 'BEGIN {printf "%.0f", p / 1000}') ms)"
		R[$sys.any_cpu]=$(cpu_per_million)
		R[$sys.any_ccpu]=$(cpu_per_million "$STEP_CCPU")
		if [ "$STEP_FAST" = 1 ]; then
			best=$rate
			R[$sys.fanout]=$STEP_RATE
			R[$sys.cpu_per_m]=$(cpu_per_million)
		fi
	done
	if [ "$best" = 0 ]; then
		R[$sys.fanout]="none (p99 over the limit at $(echo $FANOUT_RATES | cut -d' ' -f1) msg/s)"
		# Latency then at half the highest rate delivered whole.
		best=$any
		R[$sys.half_of]="delivered whole"
		[ "$best" = 0 ] && return 0
	fi
	half=$(awk -v r="$best" 'BEGIN {print r / 2}')
	fanout_step "$sys" "$half"
	R[$sys.lat]="$(awk -v a="$STEP_P50" -v b="$STEP_P99" \
		'BEGIN {printf "%.2f / %.2f", a / 1000, b / 1000}')"
	R[$sys.half]=$half
}

slab_kib() { # kernel slab memory (sockets, inodes, files), KiB
	awk '/^Slab:/ {print $2}' /proc/meminfo
}

sockstat_kib() { # TCP buffer memory the kernel accounts (tcp_mem), KiB
	awk -v pg="$(getconf PAGESIZE)" '/^TCP:/ {
		for (i = 1; i < NF; i++) if ($i == "mem") print $(i + 1) * pg / 1024 }' \
		/proc/net/sockstat
}

client_pss_kib() { # PSS of imgate-bench and its children
	local total=0 p v
	for p in $CLIENT $(pgrep -P "$CLIENT"); do
		v=$(awk '/^Pss:/ {print $2}' /proc/"$p"/smaps_rollup 2>/dev/null)
		total=$((total + ${v:-0}))
	done
	echo $total
}

# The comet's admin metric name (a counter or gauge), 0 when unreadable.
comet_metric() {
	$PY - "$ADMIN_PORT" "$1" <<'EOF' 2>/dev/null || echo 0
import sys, urllib.request
port, name = sys.argv[1], sys.argv[2]
body = urllib.request.urlopen("http://127.0.0.1:%s/metrics" % port, timeout=5).read()
for line in body.decode().splitlines():
    if line.startswith(name + " "):
        print(int(float(line.split()[1])))
        break
else:
    print(0)
EOF
}
comet_delivered() { comet_metric imgate_comet_delivered_total; }
comet_conns_current() { comet_metric imgate_comet_conn_current; }

# Until the comet has delivered target frames, or they stop coming (10 s
# without progress), or seconds pass.
wait_delivered() { # target seconds
	local end=$((SECONDS + $2)) last=-1 since=$SECONDS d
	while [ $SECONDS -lt $end ]; do
		d=$(comet_delivered)
		[ "$d" -ge "$1" ] && return 0
		if [ "$d" != "$last" ]; then
			last=$d since=$SECONDS
		elif [ $((SECONDS - since)) -ge 10 ]; then
			return 1
		fi
		sleep 0.5
	done
	return 1
}

# HOLD_MAX connections on imgate alone. Each comet worker and client
# process stays under the fd limit; each source address under the
# ephemeral port range.
measure_max() {
	local n=$HOLD_MAX per=18000 m0 m1 s0 s1 p0 p1 c1 line pub
	local save_w=$WORKERS save_p=$CLIENT_PROCS save_s=$SRC_ADDRS
	WORKERS=$(((n + per - 1) / per))
	CLIENT_PROCS=$WORKERS
	# connect() searches the ephemeral range of its source address for a
	# free port: kept short with a few thousand connections per address.
	SRC_ADDRS=$((n / 5000 + 1))
	COMET_EXTRA=(shm.max_workers=$((WORKERS + 8)) shm.buckets=1024
		shm.channels_per_bucket=$(((n * 2 / 1024) + 64)))
	if [ "$(cat /proc/sys/fs/file-max)" -lt $((n * 2 + 10000)) ]; then
		say "max: fs.file-max below twice $n: raise it (sysctl fs.file-max)"
	fi
	# Loaded but tracking nothing (no rule uses it) is harmless.
	if [ -e /proc/sys/net/netfilter/nf_conntrack_max ] &&
		[ "$(cat /proc/sys/net/netfilter/nf_conntrack_count)" -gt 0 ] &&
		[ "$(cat /proc/sys/net/netfilter/nf_conntrack_max)" -lt "$n" ]; then
		say "max: nf_conntrack_max below $n: connections will be dropped"
	fi
	R[max.setup]="$WORKERS comet workers, $CLIENT_PROCS client processes, $SRC_ADDRS source addresses, $HOLD_RATE connections/s"
	say "max: $n connections, $WORKERS comet workers," \
		"$CLIENT_PROCS client processes, $SRC_ADDRS source addresses"
	READY_WAIT=$((n / 1000 + 60))
	start_system imgate || { say "max: imgate did not start"; return 1; }
	# Redis and imgate-logic are one process each, serving every comet
	# worker: with ~110 comet and client processes runnable, per-task
	# fairness would leave each of them 1% of the CPUs and Connect and
	# Heartbeat calls time out (in production they have hosts of their
	# own). SERVER_PIDS: redis, logic, comet.
	renice -n -10 -p "${SERVER_PIDS[0]}" "${SERVER_PIDS[1]}" >/dev/null ||
		say "max: could not raise the priority of redis and imgate-logic"
	m0=$(slab_kib) s0=$(sockstat_kib) p0=$(pss_kib)
	# Few authentications in flight per process: the rest wait in the
	# client, not past the comet's handshake timeout.
	client_start imgate-max "${MAX_ARGS[@]}" -n "$n" \
		-C 100 -T 60 -c "$HOLD_RATE" ||
		say "max: clients did not settle"
	sleep 5
	m1=$(slab_kib) s1=$(sockstat_kib) p1=$(pss_kib)
	c1=$(client_pss_kib)
	local d0 t0 t1
	d0=$(comet_delivered)
	t0=$(date +%s.%N)
	pub=$("$BENCH" "${PUB_ARGS[@]}" -n 1 -N 1 -s "$MSG_SIZE" -q | grep '^RESULT')
	wait_delivered $((d0 + $(comet_conns_current))) 180
	t1=$(date +%s.%N)
	R[max.push_s]=$(awk -v a="$t0" -v b="$t1" 'BEGIN {printf "%.1f", b - a}')
	sleep 2 # the clients read what the comet wrote
	client_result
	line=$LINE
	echo "imgate max $n slab=$m0->$m1 tcp_mem=$s0->$s1 server_pss=$p0->$p1 client_pss=$c1 PUB $pub SUB $line" >>"$OUT/results.txt"
	R[max.up]=$(field "$line" conns)
	R[max.deliv]=$(field "$line" deliveries)
	R[max.fail]=$(field "$line" failures)
	R[max.server]=$(((p1 - p0) / 1024))
	R[max.client]=$((c1 / 1024))
	R[max.tcp]=$(((s1 - s0) / 1024))
	R[max.kernel]=$(((m1 - m0 + s1 - s0) / 1024))
	R[max.per]=$(awk -v a="$p1" -v b="$p0" -v n="${R[max.up]:-0}" \
		'BEGIN {printf "%.2f", (n > 0 ? (a - b) / n : 0)}')
	WORKERS=$save_w CLIENT_PROCS=$save_p SRC_ADDRS=$save_s READY_WAIT=120
	COMET_EXTRA=()
	stop_servers
}

# ---------------------------------------------------------------------------
# Report

first_word() { echo "${1%% *}"; }

ratio() { # a b: a / b, or n/a
	awk -v a="$1" -v b="$2" 'BEGIN {
		if (a + 0 > 0 && b + 0 > 0) printf "%.2f", a / b; else print "n/a" }'
}

report() {
	local a=imgate b=nchan
	echo
	echo "imgate-bench side by side, $(date -u '+%Y-%m-%d %H:%M UTC'), $(nproc) CPUs," \
		"$(awk '/MemTotal/ {printf "%.0f GiB", $2 / 1048576}' /proc/meminfo)," \
		"kernel $(uname -r)"
	echo "servers: $WORKERS workers each; subscribers over WebSocket (imgate: goim over $IMGATE_TRANSPORT);" \
		"clients: imgate-bench, $CLIENT_PROCS processes, same machine"
	echo
	echo "| metric | imgate | nginx+nchan | imgate / nchan |"
	echo "|---|---|---|---|"
	for n in $IDLE_CONNS; do
		echo "| memory per idle subscribed connection at $n (KiB PSS) |" \
			"${R[$a.mem$n]:-n/a} | ${R[$b.mem$n]:-n/a} |" \
			"$(ratio "${R[$a.mem$n]:-}" "${R[$b.mem$n]:-}") |"
	done
	echo "| highest sustained fan-out to $FANOUT_SUBS subscribers, p99 < $((P99_LIMIT_US / 1000)) ms (deliveries/s) |" \
		"${R[$a.fanout]:-n/a} | ${R[$b.fanout]:-n/a} |" \
		"$(ratio "${R[$a.fanout]:-}" "${R[$b.fanout]:-}") |"
	echo "| server CPU seconds per million deliveries at that rate |" \
		"${R[$a.cpu_per_m]:-n/a} | ${R[$b.cpu_per_m]:-n/a} |" \
		"$(ratio "${R[$a.cpu_per_m]:-}" "${R[$b.cpu_per_m]:-}") |"
	echo "| highest fan-out delivered whole, any latency (deliveries/s) |" \
		"${R[$a.any]:-n/a} | ${R[$b.any]:-n/a} |" \
		"$(ratio "$(first_word "${R[$a.any]:-}")" "$(first_word "${R[$b.any]:-}")") |"
	echo "| server CPU seconds per million deliveries at that rate |" \
		"${R[$a.any_cpu]:-n/a} | ${R[$b.any_cpu]:-n/a} |" \
		"$(ratio "${R[$a.any_cpu]:-}" "${R[$b.any_cpu]:-}") |"
	echo "| client (imgate-bench) CPU seconds per million deliveries there |" \
		"${R[$a.any_ccpu]:-n/a} | ${R[$b.any_ccpu]:-n/a} | |"
	echo "| latency p50 / p99 at half the highest rate (ms) |" \
		"${R[$a.lat]:-n/a} (${R[$a.half]:-?} msg/s${R[$a.half_of]:+, half of the highest ${R[$a.half_of]}}) |" \
		"${R[$b.lat]:-n/a} (${R[$b.half]:-?} msg/s${R[$b.half_of]:+, half of the highest ${R[$b.half_of]}}) | |"
	echo "| connect+auth rate (connections/s; nchan: upgrade only) |" \
		"${R[$a.connect]:-n/a} | ${R[$b.connect]:-n/a} |" \
		"$(ratio "${R[$a.connect]:-}" "${R[$b.connect]:-}") |"
	echo
	echo "Memory: sum of Pss in /proc/PID/smaps_rollup of the server's processes"
	echo "(imgate: redis, imgate-logic, imgate-comet master and workers; nchan: nginx"
	echo "master and workers), after minus before, over the connections up."
	echo "Fan-out: message rates tried $FANOUT_RATES msg/s, $STEP_SECS s each; a rate is"
	echo "sustained when >= 99% of deliveries arrive, p99 stays under the limit and"
	echo "the publisher keeps up. Raw RESULT lines: $OUT/results.txt"
	if [ "$HOLD_MAX" -gt 0 ]; then
		echo
		echo "imgate alone, $HOLD_MAX connections in one room: ${R[max.up]:-0} held," \
			"${R[max.fail]:-?} failed, one room push delivered ${R[max.deliv]:-0} times" \
			"(the comet wrote the last copy ${R[max.push_s]:-?} s after the push)."
		echo "Setup: ${R[max.setup]:-?}; redis-server and imgate-logic at nice -10."
		echo "Memory: servers +${R[max.server]:-?} MiB PSS (${R[max.per]:-?} KiB per" \
			"connection), clients ${R[max.client]:-?} MiB PSS; kernel slab and TCP" \
			"buffers +${R[max.kernel]:-?} MiB (buffers ${R[max.tcp]:-?} MiB), both ends."
	fi
	echo "Kernel: somaxconn $(cat /proc/sys/net/core/somaxconn)," \
		"ip_local_port_range $(tr '\t' '-' </proc/sys/net/ipv4/ip_local_port_range)," \
		"RLIMIT_NOFILE $(ulimit -Hn), $SRC_ADDRS client source addresses"
}

# ---------------------------------------------------------------------------

need_packages || exit 1
[ -x "$BENCH" ] || { say "$BENCH not built"; exit 1; }
if [ "$(cat /proc/sys/net/core/somaxconn)" -lt 4096 ]; then
	say "net.core.somaxconn < 4096: connects may be dropped under load"
fi
say "output in $OUT"
: >"$OUT/results.txt"
for sys in $SYSTEMS; do
	for n in $IDLE_CONNS; do
		measure_idle "$sys" "$n" || say "$sys: idle $n failed"
	done
	measure_fanout "$sys" || say "$sys: fan-out failed"
	stop_servers
done
[ "$HOLD_MAX" -gt 0 ] && measure_max
report | tee "$OUT/table.md"
