#!/usr/bin/env bash
# Cluster benchmarks of issue 12, two parts, each in one run:
#
# 1. enabled = false costs nothing: the single-node rows of the bench issue against
#    promptmqd built at BASE (before the cluster code) and at NEW, interleaved
#    (A B A B) for ROUNDS rounds, each broker pinned to BROKER_CORE and the generator
#    (go run ./bench) to GEN_CORE, then the medians side by side (BASE as the
#    reference column).
# 2. The hop between nodes: pairs QoS 0 with each publisher on node 1 and its
#    subscriber on node 2 of a two-process cluster, against the same pairs on one
#    node, saturated and paced (TestClusterPairsBenchmark in cmd/promptmqd: the
#    generator takes one address, so it cannot split a pair across nodes).
#
# Environment: BASE (the parent of the commit that added cluster/), NEW (HEAD),
# ROUNDS (3), DURATION (5s), ROWS (pairs-q0 fanin-q0 latency-q1), PORT (29886),
# BROKER_CORE (0), GEN_CORE (1), PAIRS (100), SKIP_AB=1 / SKIP_HOP=1 to run one part,
# HOP_BASE (a revision: its two-node rounds of part 2 run interleaved with this tree's).
set -euo pipefail

cd "$(dirname "$0")/.."
BASE=${BASE:-$(git rev-list -n1 HEAD -- cluster/doc.go | xargs -I{} git rev-parse {}^ 2>/dev/null || git rev-parse HEAD~1)}
NEW=${NEW:-HEAD}
# Resolved once: other commits may land while the script runs.
BASE=$(git rev-parse "$BASE")
NEW=$(git rev-parse "$NEW")
ROUNDS=${ROUNDS:-3}
DURATION=${DURATION:-5s}
ROWS=${ROWS:-"pairs-q0 fanin-q0 latency-q1"}
PORT=${PORT:-29886}
BROKER_CORE=${BROKER_CORE:-0}
GEN_CORE=${GEN_CORE:-1}
PAIRS=${PAIRS:-100}
WORK=$(mktemp -d -t promptmq-cluster.XXXXXX)
OUT=$WORK/results.jsonl

echo "cluster.sh: $(nproc) cores, $(date -u +%Y-%m-%dT%H:%MZ), load $(cut -d' ' -f1-3 /proc/loadavg)" >&2

if [ "${SKIP_AB:-0}" != 1 ]; then
	for rev in "$BASE" "$NEW"; do
		name=$(git rev-parse --short "$rev")
		mkdir -p "$WORK/src-$name"
		git archive "$rev" | tar -x -C "$WORK/src-$name"
		(cd "$WORK/src-$name" && go build -o "$WORK/promptmqd-$name" ./cmd/promptmqd)
	done
	go build -o "$WORK/bench" ./bench
	base=$(git rev-parse --short "$BASE")
	new=$(git rev-parse --short "$NEW")

	PID=""
	stop() {
		if [ -n "$PID" ]; then
			kill "$PID" 2>/dev/null || true
			wait "$PID" 2>/dev/null || true
			PID=""
		fi
	}
	trap stop EXIT
	args_of() {
		case $1 in
		fanin-q0) echo "-scenario fanin -qos 0 -size 64 -publishers 16" ;;
		pairs-q0) echo "-scenario pairs -qos 0 -size 64 -pairs 100" ;;
		pairs-q1) echo "-scenario pairs -qos 1 -size 64 -pairs 100 -inflight 16" ;;
		fanout-q0) echo "-scenario fanout -qos 0 -size 64 -subscribers 1000 -window 100" ;;
		latency-q1) echo "-scenario latency -qos 1 -size 64 -pairs 100 -rate 20000" ;;
		*) echo "cluster.sh: unknown row $1" >&2; exit 2 ;;
		esac
	}
	for round in $(seq 1 "$ROUNDS"); do
		for row in $ROWS; do
			for name in "$base" "$new"; do
				taskset -c "$BROKER_CORE" "$WORK/promptmqd-$name" --bind "127.0.0.1:$PORT" --data-dir "" \
					--metrics-enabled=false --sys-interval 0s --log-level warn >"$WORK/$name.log" 2>&1 &
				PID=$!
				for _ in $(seq 1 200); do
					(exec 3<>"/dev/tcp/127.0.0.1/$PORT") 2>/dev/null && break
					sleep 0.05
				done
				# shellcheck disable=SC2046 # the row's flags are words
				taskset -c "$GEN_CORE" "$WORK/bench" -addr "127.0.0.1:$PORT" -label "$name" -broker-pid "$PID" \
					-duration "$DURATION" -row "$row" -round "$round" -json $(args_of "$row") >>"$OUT" ||
					echo "cluster.sh: round $round $row $name: the generator reported a failure" >&2
				stop
				printf 'round %d %-10s %-8s %s\n' "$round" "$row" "$name" "$(tail -n1 "$OUT" | cut -c1-140)" >&2
			done
		done
	done
	echo
	echo "enabled = false: $new (with the cluster code) against $base (before it), medians of $ROUNDS rounds of $DURATION, load $(cut -d' ' -f1-3 /proc/loadavg)"
	"$WORK/bench" summarize "$OUT" "$base" "$new"
	echo "results: $OUT"
fi

if [ "${SKIP_HOP:-0}" != 1 ]; then
	echo
	HOP_BINARY=""
	if [ -n "${HOP_BASE:-}" ]; then
		mkdir -p "$WORK/src-hop"
		git archive "$HOP_BASE" | tar -x -C "$WORK/src-hop"
		(cd "$WORK/src-hop" && go build -o "$WORK/promptmqd-hop-base" ./cmd/promptmqd)
		HOP_BINARY=$WORK/promptmqd-hop-base
		echo "hop: base build $(git rev-parse --short "$HOP_BASE") interleaved with the working tree" >&2
	fi
	PMQ_BENCH_BASE="$HOP_BINARY" PMQ_CLUSTER_BENCH=1 PMQ_BENCH_PAIRS="$PAIRS" PMQ_BENCH_ROUNDS="$ROUNDS" PMQ_BENCH_SECONDS="${DURATION%s}" \
		go test -count=1 -run TestClusterPairsBenchmark -v ./cmd/promptmqd 2>&1 | grep -E 'cluster_bench_test|^(ok|FAIL|---)'
fi
