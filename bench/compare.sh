#!/usr/bin/env bash
# Corvus side by side with Mosquitto and rumqttd (issue 7). For each round, each scenario and
# each broker: start the broker fresh on loopback, pinned to CPU 0, run `corvus bench` pinned to
# CPU 1, stop the broker, and append the JSON result to target/bench/results-<UTC>.jsonl. Corvus
# also runs unpinned (broker and generator) for fan-out and topics. Then bench/render.py writes
# the medians, ratios and targets into docs/benchmarks.md and the chart
# docs/benchmarks-compare.svg. See bench/README.md for the knobs.
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."

ROUNDS=${ROUNDS:-3}
DURATION=${DURATION:-10}
SCENARIOS=${SCENARIOS:-fanin-q0 fanin-q1 fanout-q0 topics-q0 latency-5k latency-20k conns}
UNPINNED=${UNPINNED-fanout-q0 topics-q0}
BROKERS=${BROKERS:-corvus mosquitto rumqttd}
MQTT=${MQTT:-5}
CONNS=${CONNS:-10000}
BENCH_ARGS=${BENCH_ARGS:-}
CORVUS_BIN=${CORVUS_BIN:-target/release/corvus}
CORVUS_BENCH=${CORVUS_BENCH:-$CORVUS_BIN bench}
CORVUS_BENCH_REQUIRE=${CORVUS_BENCH_REQUIRE:-0}
RUMQTTD_VERSION=${RUMQTTD_VERSION:-0.20.0}
DOC=${DOC:-docs/benchmarks.md}
CHART=${CHART:-docs/benchmarks-compare.svg}
BROKER_CPU=${BROKER_CPU:-0}
BENCH_CPU=${BENCH_CPU:-1}
# Seconds a generator run may take beyond its duration (connecting, the conns ramp, draining).
GEN_SLACK=${GEN_SLACK:-120}
START_TIMEOUT=${START_TIMEOUT:-20}

say() { printf '%s\n' "$*" >&2; }
die() { say "compare.sh: $*"; exit 1; }

[[ $ROUNDS =~ ^[1-9][0-9]*$ ]] || die "ROUNDS must be a positive integer, not '$ROUNDS'"
[[ $DURATION =~ ^[1-9][0-9]*$ ]] || die "DURATION must be a positive integer (seconds), not '$DURATION'"
[[ $CONNS =~ ^[1-9][0-9]*$ ]] || die "CONNS must be a positive integer, not '$CONNS'"
[[ $MQTT == 3 || $MQTT == 5 ]] || die "MQTT must be 3 (3.1.1) or 5, not '$MQTT'"

# The generator's arguments for a scenario name.
scenario_args() { # NAME
    local n=$1
    if [[ $n =~ ^(fanin|fanout|topics)-q([012])$ ]]; then
        echo "${BASH_REMATCH[1]} --qos ${BASH_REMATCH[2]}"
    elif [[ $n =~ ^latency-([1-9][0-9]*)(k?)$ ]]; then
        echo "latency --qos 0 --rate ${BASH_REMATCH[1]}${BASH_REMATCH[2]:+000}"
    elif [[ $n == conns ]]; then
        echo "conns --connections $CONNS"
    else
        return 1
    fi
}

for s in $SCENARIOS; do
    scenario_args "$s" >/dev/null || die "unknown scenario '$s' (known: fanin-qN, fanout-qN, topics-qN with N 0-2, latency-RATE or latency-Nk, conns)"
done

for tool in python3 taskset timeout; do
    command -v "$tool" >/dev/null || die "$tool is needed"
done

# Every process started here, killed on exit.
WORK=$(mktemp -d "${TMPDIR:-/tmp}/corvus-compare.XXXXXX")
BROKER_PID=""
BROKER_WRAP=""
GEN_PID=""
cleanup() {
    local pid
    for pid in $GEN_PID $BROKER_PID $BROKER_WRAP; do
        kill -TERM "$pid" 2>/dev/null || true
    done
    sleep 0.2
    for pid in $GEN_PID $BROKER_PID $BROKER_WRAP; do
        kill -KILL "$pid" 2>/dev/null || true
    done
    if [[ ${KEEP_WORK:-0} == 1 ]]; then
        say "kept $WORK"
    else
        rm -rf "$WORK"
    fi
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

# Brokers and generator get as many open files as the hard limit allows.
ulimit -n "$(ulimit -Hn)" 2>/dev/null || say "could not raise the open-file limit (now $(ulimit -n))"

# ---- the brokers -----------------------------------------------------------------------------

missing() { # NAME HOW-TO-INSTALL
    if [[ $CORVUS_BENCH_REQUIRE == 1 ]]; then
        die "$1 not found (CORVUS_BENCH_REQUIRE=1). $2"
    fi
    say "compare.sh: $1 not found, skipped. $2"
}

# Corvus: built when missing or older than its sources (only at the default path, and not
# with CORVUS_BUILD=0).
if [[ ${CORVUS_BUILD:-1} != 0 && $CORVUS_BIN == target/release/corvus ]]; then
    if [[ ! -x $CORVUS_BIN ]] || [[ -n $(find crates Cargo.toml Cargo.lock -newer "$CORVUS_BIN" \
        \( -name '*.rs' -o -name Cargo.toml -o -name Cargo.lock \) -print -quit 2>/dev/null) ]]; then
        say "building Corvus: cargo build --release -p corvus"
        cargo build --release -p corvus
    fi
fi
[[ -x $CORVUS_BIN ]] || die "no Corvus binary at $CORVUS_BIN"
read -r -a BENCH_CMD <<<"$CORVUS_BENCH"
if ! "${BENCH_CMD[@]}" --help >/dev/null 2>&1; then
    die "the load generator does not run: '$CORVUS_BENCH --help' failed (is $CORVUS_BIN built from a commit with \`corvus bench\`?)"
fi

want() { [[ " $BROKERS " == *" $1 "* ]]; }
ACTIVE=()
want corvus && ACTIVE+=(corvus)

MOSQUITTO=${MOSQUITTO:-}
if want mosquitto; then
    if [[ -z $MOSQUITTO ]]; then
        MOSQUITTO=$(command -v mosquitto || true)
        [[ -z $MOSQUITTO && -x /usr/sbin/mosquitto ]] && MOSQUITTO=/usr/sbin/mosquitto
    fi
    if [[ -n $MOSQUITTO && -x $MOSQUITTO ]]; then
        ACTIVE+=(mosquitto)
    else
        missing mosquitto "Install Debian's package: apt-get install mosquitto (or set MOSQUITTO=/path/to/mosquitto)."
    fi
fi

RUMQTTD=${RUMQTTD:-}
if want rumqttd; then
    if [[ -z $RUMQTTD ]]; then
        RUMQTTD=$(command -v rumqttd || true)
        [[ -z $RUMQTTD ]] && RUMQTTD=target/bench-tools/bin/rumqttd
    fi
    if [[ ! -x $RUMQTTD && $RUMQTTD == target/bench-tools/bin/rumqttd && ${RUMQTTD_INSTALL:-1} == 1 ]]; then
        say "installing rumqttd $RUMQTTD_VERSION from crates.io into target/bench-tools (this takes several minutes)"
        # With its own lock file first; metrics 0.22.1 in that lock file no longer compiles on
        # recent rustc (rust-lang/rust#141402), in which case the newest compatible versions
        # (metrics 0.22.4 has the fix) are taken instead.
        if ! cargo install rumqttd --version "$RUMQTTD_VERSION" --locked --root target/bench-tools; then
            say "rumqttd did not build with its lock file; trying again without --locked"
            cargo install rumqttd --version "$RUMQTTD_VERSION" --root target/bench-tools || true
        fi
    fi
    if [[ -x $RUMQTTD ]]; then
        ACTIVE+=(rumqttd)
    else
        missing rumqttd "Install it with: cargo install rumqttd --version $RUMQTTD_VERSION --root target/bench-tools (or set RUMQTTD=/path/to/rumqttd)."
    fi
fi
((${#ACTIVE[@]} > 0)) || die "no broker to run (BROKERS='$BROKERS')"

version_of() { # BROKER
    case $1 in
        corvus) "$CORVUS_BIN" --version 2>/dev/null | head -n 1 || true ;;
        mosquitto) { "$MOSQUITTO" -h 2>&1 || true; } | head -n 1 ;;
        rumqttd) { "$RUMQTTD" --version 2>&1 || true; } | head -n 1 ;;
    esac
}

# rumqttd 0.20 speaks MQTT 3.1.1 here: its MQTT 5 server is unfinished (bench/rumqttd.toml).
mqtt_for() { # BROKER
    if [[ $1 == rumqttd ]]; then echo 3; else echo "$MQTT"; fi
}

free_port() {
    python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

listening() { # PORT
    if command -v ss >/dev/null; then
        [[ -n $(ss -Hltn "sport = :$1" 2>/dev/null) ]]
    else
        (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null
    fi
}

# Starts BROKER on PORT (pinned to BROKER_CPU when PINNED=1); sets BROKER_PID (the broker's
# own PID, for --pid) and BROKER_WRAP (its `timeout`). Returns non-zero when it does not listen.
start_broker() { # BROKER PORT PINNED LIMIT_SECONDS
    local broker=$1 port=$2 pinned=$3 limit=$4 dir="$WORK/run" i
    rm -rf "$dir" && mkdir -p "$dir"
    local cmd=()
    case $broker in
        corvus)
            mkdir -p "$dir/data"
            cmd=("$CORVUS_BIN" --listen "127.0.0.1:$port" --data-dir "$dir/data" --config bench/corvus.toml)
            ;;
        mosquitto)
            sed -E "s/^listener [0-9]+ /listener $port /" bench/mosquitto.conf >"$dir/mosquitto.conf"
            cmd=("$MOSQUITTO" -c "$dir/mosquitto.conf")
            ;;
        rumqttd)
            sed -E "s/^(listen = \"127\\.0\\.0\\.1:)[0-9]+\"/\\1$port\"/" bench/rumqttd.toml >"$dir/rumqttd.toml"
            cmd=("$RUMQTTD" -q -c "$dir/rumqttd.toml")
            ;;
    esac
    if [[ $pinned == 1 ]]; then
        cmd=(taskset -c "$BROKER_CPU" "${cmd[@]}")
    fi
    timeout -k 5 "$limit" "${cmd[@]}" >"$dir/broker.log" 2>&1 &
    BROKER_WRAP=$!
    BROKER_PID=""
    for ((i = 0; i < START_TIMEOUT * 20; i++)); do
        if [[ -z $BROKER_PID ]]; then
            BROKER_PID=$(pgrep -P "$BROKER_WRAP" | head -n 1 || true)
        fi
        if [[ -n $BROKER_PID ]] && listening "$port"; then
            return 0
        fi
        kill -0 "$BROKER_WRAP" 2>/dev/null || break
        sleep 0.05
    done
    say "    $broker did not listen on 127.0.0.1:$port; its output:"
    tail -n 5 "$dir/broker.log" | sed 's/^/      /' >&2 || true
    return 1
}

stop_broker() {
    local pid i
    [[ -n $BROKER_PID ]] && kill -TERM "$BROKER_PID" 2>/dev/null || true
    for ((i = 0; i < 50; i++)); do
        kill -0 "${BROKER_PID:-$BROKER_WRAP}" 2>/dev/null || break
        sleep 0.1
    done
    for pid in $BROKER_PID $BROKER_WRAP; do
        kill -KILL "$pid" 2>/dev/null || true
    done
    wait "$BROKER_WRAP" 2>/dev/null || true
    BROKER_PID="" BROKER_WRAP=""
}

# ---- the runs --------------------------------------------------------------------------------

mkdir -p target/bench
STAMP=$(date -u +%Y%m%dT%H%M%SZ)
RESULTS=target/bench/results-$STAMP.jsonl

INVOCATION="ROUNDS=$ROUNDS DURATION=$DURATION MQTT=$MQTT CONNS=$CONNS SCENARIOS='$SCENARIOS'"
[[ $UNPINNED != "fanout-q0 topics-q0" ]] && INVOCATION+=" UNPINNED='$UNPINNED'"
[[ -n $BENCH_ARGS ]] && INVOCATION+=" BENCH_ARGS='$BENCH_ARGS'"
INVOCATION+=" bench/compare.sh"

meta=(--invocation "$INVOCATION" --duration "$DURATION")
for b in "${ACTIVE[@]}"; do
    meta+=(--version "$b=$(version_of "$b")")
done
meta+=(--version "commit=$(git rev-parse --short HEAD 2>/dev/null || echo unknown)$(git diff --quiet HEAD -- crates 2>/dev/null || echo ' (with local changes)')")
if [[ " ${ACTIVE[*]} " == *" rumqttd "* && $MQTT == 5 ]]; then
    meta+=(--note "rumqttd runs with MQTT 3.1.1: MQTT 5 in rumqttd 0.20 is unfinished (the rumqtt README lists it as planned), so its rows compare Corvus over MQTT 5 with rumqttd over 3.1.1.")
fi
for b in corvus mosquitto rumqttd; do
    if want "$b" && [[ " ${ACTIVE[*]} " != *" $b "* ]]; then
        meta+=(--note "$b was not found and was skipped.")
    fi
done
python3 bench/render.py meta "${meta[@]}" >"$RESULTS"

runs_per_round=0
for s in $SCENARIOS; do
    runs_per_round=$((runs_per_round + ${#ACTIVE[@]}))
    [[ " $UNPINNED " == *" $s "* && " ${ACTIVE[*]} " == *" corvus "* ]] && runs_per_round=$((runs_per_round + 1))
done
say "compare.sh: $ROUNDS round(s) of $runs_per_round runs of ${DURATION} s each (about $((ROUNDS * runs_per_round * (DURATION + 4) / 60 + 1)) min); brokers: ${ACTIVE[*]}"
say "results: $RESULTS"

GEN_LIMIT=$((DURATION * 2 + GEN_SLACK))
BROKER_LIMIT=$((GEN_LIMIT + START_TIMEOUT + 30))

measure() { # ROUND CASE BROKER PINNED
    local round=$1 case=$2 broker=$3 pinned=$4 port args mqtt rc=0 error="" where
    port=$(free_port)
    mqtt=$(mqtt_for "$broker")
    read -r -a args <<<"$(scenario_args "$case")"
    where="CPU $BROKER_CPU"
    [[ $pinned == 1 ]] || where="unpinned"
    say "  round $round/$ROUNDS  $case  $broker ($where), port $port"
    local gen=("${BENCH_CMD[@]}" "${args[@]}" --host 127.0.0.1 --port "$port" --mqtt "$mqtt" --duration "$DURATION")
    # shellcheck disable=SC2206 # BENCH_ARGS is a list of words on purpose
    [[ -n $BENCH_ARGS ]] && gen+=($BENCH_ARGS)
    if [[ $pinned == 1 ]]; then
        gen=(taskset -c "$BENCH_CPU" "${gen[@]}")
    fi
    : >"$WORK/gen.out"
    : >"$WORK/gen.err"
    if start_broker "$broker" "$port" "$pinned" "$BROKER_LIMIT"; then
        gen+=(--pid "$BROKER_PID" --json)
        timeout -k 5 "$GEN_LIMIT" "${gen[@]}" >"$WORK/gen.out" 2>"$WORK/gen.err" &
        GEN_PID=$!
        wait "$GEN_PID" || rc=$?
        GEN_PID=""
        if ((rc == 124 || rc == 137)); then
            error="the generator did not finish within ${GEN_LIMIT} s"
        elif ! kill -0 "$BROKER_PID" 2>/dev/null; then
            error="the broker exited during the run"
        fi
        if ((rc != 0)); then
            tail -n 3 "$WORK/gen.err" | sed 's/^/      /' >&2 || true
        fi
    else
        rc=1
        error="$broker did not start"
        gen+=(--pid BROKER_PID --json)
    fi
    stop_broker
    python3 bench/render.py record --case "$case" --broker "$broker" --round "$round" --pinned "$pinned" \
        --exit-code "$rc" --command "${gen[*]}" --stdout "$WORK/gen.out" --stderr "$WORK/gen.err" \
        ${error:+--error "$error"} >>"$RESULTS"
}

for ((round = 1; round <= ROUNDS; round++)); do
    for s in $SCENARIOS; do
        # The brokers' order turns with the rounds, so none always runs first or last.
        order=()
        n=${#ACTIVE[@]}
        for ((k = 0; k < n; k++)); do
            order+=("${ACTIVE[$(((k + round - 1) % n))]}")
        done
        for b in "${order[@]}"; do
            measure "$round" "$s" "$b" 1
        done
        if [[ " $UNPINNED " == *" $s "* && " ${ACTIVE[*]} " == *" corvus "* ]]; then
            measure "$round" "$s" corvus 0
        fi
    done
done

say ""
python3 bench/render.py "$RESULTS" --doc "$DOC" --svg "$CHART"
