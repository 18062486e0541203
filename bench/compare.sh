#!/usr/bin/env bash
# Compares PromptMQ with Debian's Mosquitto on this machine: each broker pinned
# to core 0, the generator (go run ./bench) to core 1, the matrix of the bench
# issue run interleaved (A B A B) for ROUNDS rounds, then the medians, each
# broker's CPU and the generator's, and the ratio PromptMQ / Mosquitto.
#
# Every run starts a fresh broker, so memory per connection is measured from a
# clean start and one run's backlog cannot slow the next.
#
# Environment: ROUNDS (3), DURATION (5s), ROWS (all: fanin-q0 pairs-q0 pairs-q1
# fanout-q0 latency-q1 conns connrate), MOSQ_PORT (29883), PMQ_PORT (29884),
# BROKER_CORE (0), GEN_CORE (1), OUT (a results file under a temp dir), MOCHI=1
# adds Mochi MQTT v2.7.9 (bench/mochi, its own Go module) on MOCHI_PORT (29885).
set -euo pipefail

cd "$(dirname "$0")/.."
ROUNDS=${ROUNDS:-3}
DURATION=${DURATION:-5s}
ROWS=${ROWS:-"fanin-q0 pairs-q0 pairs-q1 fanout-q0 latency-q1 conns connrate"}
# Below ip_local_port_range (32768-60999 by default): a port inside it can be
# held by any client's TIME_WAIT socket, and then the broker cannot bind it.
MOSQ_PORT=${MOSQ_PORT:-29883}
PMQ_PORT=${PMQ_PORT:-29884}
BROKER_CORE=${BROKER_CORE:-0}
GEN_CORE=${GEN_CORE:-1}
WORK=$(mktemp -d -t promptmq-compare.XXXXXX)
OUT=${OUT:-$WORK/results.jsonl}

MOCHI_PORT=${MOCHI_PORT:-29885}
BROKERS="mosquitto promptmq"
[ "${MOCHI:-0}" = 1 ] && BROKERS="mosquitto mochi promptmq"
if ! command -v mosquitto >/dev/null 2>&1 && [ ! -x /usr/sbin/mosquitto ]; then
	echo "compare.sh: installing Debian's mosquitto" >&2
	SUDO=""
	[ "$(id -u)" = 0 ] || SUDO=sudo
	$SUDO apt-get install -y mosquitto >&2
fi
MOSQUITTO=$(command -v mosquitto || echo /usr/sbin/mosquitto)

echo "compare.sh: building promptmqd and the generator in $WORK" >&2
go build -o "$WORK/promptmqd" ./cmd/promptmqd
go build -o "$WORK/bench" ./bench
if [ "${MOCHI:-0}" = 1 ]; then
	(cd bench/mochi && go build -o "$WORK/mochi" .)
fi

cat >"$WORK/mosquitto.conf" <<EOF
listener $MOSQ_PORT 127.0.0.1
allow_anonymous true
persistence false
max_connections -1
log_dest none
EOF

# Idle connections need file descriptors on both sides.
ulimit -n "$(ulimit -Hn)" 2>/dev/null || true

BROKER_PID=""
# stop_broker: SIGTERM, and SIGKILL after 5 s (Mochi's Close with 10,000 clients
# did not return).
stop_broker() {
	if [ -n "$BROKER_PID" ]; then
		kill "$BROKER_PID" 2>/dev/null || true
		for _ in $(seq 1 50); do
			kill -0 "$BROKER_PID" 2>/dev/null || break
			sleep 0.1
		done
		kill -9 "$BROKER_PID" 2>/dev/null || true
		wait "$BROKER_PID" 2>/dev/null || true
		BROKER_PID=""
	fi
}
trap 'stop_broker; rm -rf "$WORK/promptmqd" "$WORK/bench" "$WORK/mochi"' EXIT

# wait_port PORT PID: until PORT accepts, or PID died.
wait_port() {
	for _ in $(seq 1 200); do
		if (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; then
			return 0
		fi
		kill -0 "$2" 2>/dev/null || return 1
		sleep 0.05
	done
	return 1
}

# start_broker NAME: starts it pinned to BROKER_CORE; sets BROKER_PID, PORT.
# A broker that cannot bind yet (the previous one's sockets) is retried.
start_broker() {
	for attempt in 1 2 3 4 5 6 7 8 9 10; do
		launch_broker "$1"
		if wait_port "$PORT" "$BROKER_PID"; then
			return 0
		fi
		stop_broker
		echo "compare.sh: $1 did not start (attempt $attempt; see $WORK/$1.log)" >&2
		sleep 2
	done
	exit 1
}

launch_broker() {
	case $1 in
	mosquitto)
		PORT=$MOSQ_PORT
		taskset -c "$BROKER_CORE" "$MOSQUITTO" -c "$WORK/mosquitto.conf" >"$WORK/mosquitto.log" 2>&1 &
		;;
	mochi)
		PORT=$MOCHI_PORT
		taskset -c "$BROKER_CORE" "$WORK/mochi" -addr "127.0.0.1:$MOCHI_PORT" >"$WORK/mochi.log" 2>&1 &
		;;
	promptmq)
		PORT=$PMQ_PORT
		taskset -c "$BROKER_CORE" "$WORK/promptmqd" --bind "127.0.0.1:$PMQ_PORT" --data-dir "" \
			--metrics-enabled=false --sys-interval 0s --log-level warn >"$WORK/promptmq.log" 2>&1 &
		;;
	esac
	BROKER_PID=$!
}

# args_of ROW: the generator's flags for a matrix row. Fan-out's window is smaller
# because each message in it costs S deliveries: 500 would leave a backlog of
# 500,000 deliveries, seconds of work for a slow broker, to drain after each run.
args_of() {
	case $1 in
	fanin-q0) echo "-scenario fanin -qos 0 -size 64 -publishers 16" ;;
	pairs-q0) echo "-scenario pairs -qos 0 -size 64 -pairs 100" ;;
	pairs-q1) echo "-scenario pairs -qos 1 -size 64 -pairs 100 -inflight 16" ;;
	fanout-q0) echo "-scenario fanout -qos 0 -size 64 -subscribers 1000 -window 100" ;;
	latency-q1) echo "-scenario latency -qos 1 -size 64 -pairs 100 -rate 20000" ;;
	conns) echo "-scenario conns -conns 10000 -sources 8" ;;
	connrate) echo "-scenario connrate -workers 8 -sources 8" ;;
	*)
		echo "compare.sh: unknown row $1" >&2
		exit 2
		;;
	esac
}

echo "compare.sh: $(nproc) cores, $(uname -r), $(date -u +%Y-%m-%dT%H:%MZ), load $(cut -d' ' -f1-3 /proc/loadavg)" >&2
: >"$OUT"
for round in $(seq 1 "$ROUNDS"); do
	for row in $ROWS; do
		for broker in $BROKERS; do
			start_broker "$broker"
			# shellcheck disable=SC2046 # the row's flags are words
			if ! taskset -c "$GEN_CORE" "$WORK/bench" -addr "127.0.0.1:$PORT" -label "$broker" -broker-pid "$BROKER_PID" \
				-duration "$DURATION" -row "$row" -round "$round" -json $(args_of "$row") >>"$OUT"; then
				echo "compare.sh: round $round $row $broker: the generator reported a failure (see $OUT)" >&2
			fi
			stop_broker
			printf 'round %d %-10s %-9s %s\n' "$round" "$row" "$broker" "$(tail -n1 "$OUT" | cut -c1-160)" >&2
		done
	done
done

echo
echo "PromptMQ vs Mosquitto $("$MOSQUITTO" -h 2>/dev/null | head -n1 | awk '{print $3}'), $(nproc) cores ($(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ //')), $(date -u +%Y-%m-%d), medians of $ROUNDS rounds of $DURATION, brokers on core $BROKER_CORE, generator on core $GEN_CORE"
echo
"$WORK/bench" summarize "$OUT" mosquitto promptmq $([ "${MOCHI:-0}" = 1 ] && echo mochi)
echo
echo "results: $OUT"
