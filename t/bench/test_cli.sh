#!/bin/sh
# imgate-bench against t/bench/fake_server.py, whose answers are known:
# every mode's RESULT line must report exactly what the server did.
# Run by `make check` from the build directory; BENCH may point elsewhere.
set -u

srcdir=${srcdir:-$(dirname "$0")/../..}
BENCH=${BENCH:-./src/bench/imgate-bench}
PY=/usr/bin/python3
PUSHES=5
export PUSHES

tmp=$(mktemp -d /tmp/imgate-bench-test.XXXXXX)
server=
cleanup() {
	[ -n "$server" ] && kill "$server" 2>/dev/null
	rm -rf "$tmp"
}
trap cleanup EXIT INT TERM

fails=0
fail() {
	echo "FAIL: $*"
	fails=$((fails + 1))
}

# field LINE NAME: the value of NAME=... in a RESULT line
field() {
	echo "$1" | tr ' ' '\n' | sed -n "s/^$2=//p"
}

expect() { # what line name value
	v=$(field "$2" "$3")
	[ "$v" = "$4" ] || fail "$1: $3=$v, expected $4 ($2)"
}

expect_ge() { # what line name min
	v=$(field "$2" "$3")
	[ -n "$v" ] && [ "${v%.*}" -ge "$4" ] ||
		fail "$1: $3=$v, expected at least $4"
}

run() { # what args...: run imgate-bench, bounded, return its RESULT line
	what=$1
	shift
	timeout 30 "$BENCH" "$@" -q >"$tmp/out" 2>"$tmp/err"
	rc=$?
	[ $rc -eq 0 ] || { fail "$what: exit $rc: $(cat "$tmp/err")"; return; }
	grep '^RESULT ' "$tmp/out"
}

$PY "$srcdir/t/bench/fake_server.py" >"$tmp/port" 2>"$tmp/server.err" &
server=$!
i=0
while [ ! -s "$tmp/port" ] && [ $i -lt 50 ]; do
	sleep 0.1
	i=$((i + 1))
done
port=$(cat "$tmp/port")
[ -n "$port" ] || { echo "fake server did not start"; exit 1; }

# goim over TCP: auth, pushes, heartbeats every 0.2 s for 1 s
l=$(run recv-tcp recv -P "$port" -n 40 -r 4 -d 1 -i 0.2)
expect recv-tcp "$l" mode recv
expect recv-tcp "$l" conns 40
expect recv-tcp "$l" deliveries $((40 * PUSHES))
expect recv-tcp "$l" failures 0
expect recv-tcp "$l" no_ts 0
expect_ge recv-tcp "$l" hb_replies 80
expect_ge recv-tcp "$l" p50_us 1

# the same split over 3 processes and 5 source addresses
l=$(run recv-procs recv -P "$port" -n 41 -p 3 -S 5 -d 1 -i 0)
expect recv-procs "$l" conns 41
expect recv-procs "$l" deliveries $((41 * PUSHES))
expect recv-procs "$l" failures 0

# goim over WebSocket: op-9 batches in binary messages
l=$(run recv-ws recv -t ws -P "$port" -n 30 -d 1 -i 0.3)
expect recv-ws "$l" conns 30
expect recv-ws "$l" deliveries $((30 * PUSHES))
expect recv-ws "$l" failures 0
expect_ge recv-ws "$l" hb_replies 30

# hold: a refused auth (op 6) is counted by reason
l=$(run hold-denied hold -P "$port" -n 7 -m 1000000 -d 0.5)
expect hold-denied "$l" conns 0
expect hold-denied "$l" failures 7
expect hold-denied "$l" fail_auth 7
l=$(run hold hold -P "$port" -n 20 -d 0.5)
expect hold "$l" conns 20
expect_ge hold "$l" rate 1
expect_ge hold "$l" connect_p50_us 1

# plain WebSocket: text messages, a ping answered on the way
l=$(run ws ws -P "$port" -u '/plain/ch%d' -n 25 -r 2 -d 1)
expect ws "$l" mode ws
expect ws "$l" conns 25
expect ws "$l" deliveries $((25 * PUSHES))
expect ws "$l" failures 0

# pub: 40 messages due at 100/s on 4 keep-alive connections; one that
# falls due while all four wait is counted as behind, never lost
l=$(run pub pub -P "$port" -n 4 -R 100 -N 40 -s 100)
sent=$(field "$l" sent)
expect pub "$l" ok "$sent"
expect pub "$l" conns 4
expect pub "$l" failures 0
[ $((sent + $(field "$l" behind))) -eq 40 ] || fail "pub: sent+behind != 40 ($l)"
expect_ge pub "$l" sent 30

# the other push routes, as goim names their parameters
for t in keys mids all; do
	l=$(run "pub-$t" pub -P "$port" -n 1 -R 50 -N 3 --type $t --keys 7,8)
	expect "pub-$t" "$l" ok 3
done
# a refused request is counted as such
l=$(run pub-refused pub -P "$port" -n 1 -R 50 -N 2 -u '/goim/push/keys?keys=1')
expect pub-refused "$l" ok 0
expect pub-refused "$l" fail_http 2

# nobody listening: every connection refused
kill "$server"
wait "$server" 2>/dev/null
server=
l=$(run refused hold -P "$port" -n 5 -d 0.2)
expect refused "$l" conns 0
expect refused "$l" fail_refused 5

# bad options are refused with status 2
timeout 5 "$BENCH" frob >/dev/null 2>&1
[ $? -eq 2 ] || fail "unknown mode not refused"
timeout 5 "$BENCH" ws -n 1 >/dev/null 2>&1
[ $? -eq 2 ] || fail "ws without -u not refused"
timeout 5 "$BENCH" hold -n 100000 -p 1 >/dev/null 2>&1
[ $? -eq 2 ] || fail "connections above the fd limit not refused"

[ $fails -eq 0 ] && echo "PASS: imgate-bench against the fake server"
exit $((fails > 0))
