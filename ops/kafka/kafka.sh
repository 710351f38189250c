#!/usr/bin/env bash
# Single-node Apache Kafka (KRaft, combined broker+controller) on loopback, without Docker.
#
#   bash ops/kafka/kafka.sh fetch    # broker jars from Maven Central into $KAFKA_HOME_DIR/libs
#   bash ops/kafka/kafka.sh start    # fetch if needed, format storage, start in the background
#   bash ops/kafka/kafka.sh wait     # block until a client can list topics (up to ~90 s)
#   bash ops/kafka/kafka.sh status   # exit 0 when running and ready
#   bash ops/kafka/kafka.sh stop     # SIGTERM, wait, then SIGKILL
#
# Environment (defaults in brackets):
#   KAFKA_HOME_DIR [<repo>/var/kafka]   libs/, data/, server.properties, kafka.pid, kafka.log
#   KAFKA_PORT [19092]  KAFKA_CONTROLLER_PORT [19093]  KAFKA_NUM_PARTITIONS [4]
#   KAFKA_HEAP_OPTS [-Xms256m -Xmx512m]  KAFKA_WAIT_SECONDS [90]  KAFKA_STOP_SECONDS [30]
#   KAFKA_PYTHON [<repo>/.venv/bin/python, else python3]  (needs kafka-python, for wait/status)
#   JAVA [java]
set -euo pipefail

SCRIPT_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
REPO_ROOT="$(cd "$SCRIPT_DIR/../.." && pwd)"

KAFKA_HOME_DIR="${KAFKA_HOME_DIR:-$REPO_ROOT/var/kafka}"
KAFKA_PORT="${KAFKA_PORT:-19092}"
KAFKA_CONTROLLER_PORT="${KAFKA_CONTROLLER_PORT:-19093}"
KAFKA_NUM_PARTITIONS="${KAFKA_NUM_PARTITIONS:-4}"
KAFKA_HEAP_OPTS="${KAFKA_HEAP_OPTS:--Xms256m -Xmx512m}"
KAFKA_WAIT_SECONDS="${KAFKA_WAIT_SECONDS:-90}"
KAFKA_STOP_SECONDS="${KAFKA_STOP_SECONDS:-30}"
JAVA="${JAVA:-java}"
NODE_ID=1

LIBS_DIR="$KAFKA_HOME_DIR/libs"
DATA_DIR="$KAFKA_HOME_DIR/data"
CONFIG_FILE="$KAFKA_HOME_DIR/server.properties"
CLUSTER_ID_FILE="$KAFKA_HOME_DIR/cluster.id"
PID_FILE="$KAFKA_HOME_DIR/kafka.pid"
LOG_FILE="$KAFKA_HOME_DIR/kafka.log"
POM_FILE="$SCRIPT_DIR/pom.xml"
LOG4J_FILE="$SCRIPT_DIR/log4j2.properties"
BOOTSTRAP="127.0.0.1:$KAFKA_PORT"

log() { echo "kafka: $*"; }
die() { echo "kafka: ERROR: $*" >&2; exit 1; }

python_bin() {
    if [[ -n "${KAFKA_PYTHON:-}" ]]; then
        echo "$KAFKA_PYTHON"
    elif [[ -x "$REPO_ROOT/.venv/bin/python" ]]; then
        echo "$REPO_ROOT/.venv/bin/python"
    else
        echo python3
    fi
}

# The libs are current when the stamp names the checksum of the POM that produced them.
libs_stamp() { echo "$LIBS_DIR/.fetched-$(cksum < "$POM_FILE" | cut -d' ' -f1)"; }

cmd_fetch() {
    if [[ -f "$(libs_stamp)" ]]; then
        log "jars already in $LIBS_DIR ($(find "$LIBS_DIR" -name '*.jar' | wc -l) jars)"
        return 0
    fi
    command -v mvn > /dev/null || die "mvn (Apache Maven) is not installed"
    log "fetching broker jars from Maven Central into $LIBS_DIR"
    rm -rf "$LIBS_DIR"
    mkdir -p "$LIBS_DIR"
    local output  # Maven's output is shown only when it fails
    if ! output="$(mvn -q -B -f "$POM_FILE" dependency:copy-dependencies \
        -DincludeScope=runtime -DoutputDirectory="$LIBS_DIR" 2>&1)"; then
        echo "$output" >&2
        die "mvn dependency:copy-dependencies failed"
    fi
    compgen -G "$LIBS_DIR/kafka_2.13-*.jar" > /dev/null || die "kafka_2.13 jar missing after fetch"
    touch "$(libs_stamp)"
    log "fetched $(find "$LIBS_DIR" -name '*.jar' | wc -l) jars"
}

read_pid() { [[ -f "$PID_FILE" ]] && cat "$PID_FILE" || true; }

is_running() {
    local pid
    pid="$(read_pid)"
    [[ -n "$pid" ]] && kill -0 "$pid" 2> /dev/null
}

port_in_use() {
    (exec 3<> "/dev/tcp/127.0.0.1/$1") 2> /dev/null
}

jvm_args() {
    # shellcheck disable=SC2206  # KAFKA_HEAP_OPTS holds several JVM flags on purpose
    JVM_ARGS=($KAFKA_HEAP_OPTS -XX:+UseG1GC -XX:MaxGCPauseMillis=20 -Djava.awt.headless=true
        "-Dlog4j2.configurationFile=$LOG4J_FILE" -cp "$LIBS_DIR/*")
}

java_run() {
    jvm_args
    "$JAVA" "${JVM_ARGS[@]}" "$@"
}

# log.index.size.max.bytes: a segment of 64 MiB needs at most 16,384 offset-index entries
# (128 KiB) at the default index interval of 4 KiB; the default 10 MiB index and time-index
# files are sparse and memory-mapped, and on a kernel that reads ahead megabytes around an mmap
# fault (read_ahead_kb 8192 here) the first touch of every new partition's index zeroes that
# much page cache: in `make bench` that was 95% of the broker's CPU while the pipeline ran.
write_config() {
    cat > "$CONFIG_FILE" <<EOF
# Written by ops/kafka/kafka.sh start; edits are overwritten on the next start.
process.roles=broker,controller
node.id=$NODE_ID
controller.quorum.voters=$NODE_ID@127.0.0.1:$KAFKA_CONTROLLER_PORT
listeners=PLAINTEXT://127.0.0.1:$KAFKA_PORT,CONTROLLER://127.0.0.1:$KAFKA_CONTROLLER_PORT
advertised.listeners=PLAINTEXT://127.0.0.1:$KAFKA_PORT
inter.broker.listener.name=PLAINTEXT
controller.listener.names=CONTROLLER
listener.security.protocol.map=PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT
log.dirs=$DATA_DIR
num.partitions=$KAFKA_NUM_PARTITIONS
default.replication.factor=1
auto.create.topics.enable=true
offsets.topic.replication.factor=1
transaction.state.log.replication.factor=1
transaction.state.log.min.isr=1
share.coordinator.state.topic.replication.factor=1
share.coordinator.state.topic.min.isr=1
min.insync.replicas=1
group.initial.rebalance.delay.ms=0
log.cleaner.dedupe.buffer.size=2097152
log.retention.hours=24
log.segment.bytes=67108864
log.index.size.max.bytes=1048576
num.network.threads=2
num.io.threads=4
num.recovery.threads.per.data.dir=1
EOF
}

cluster_id() {
    if [[ ! -s "$CLUSTER_ID_FILE" ]]; then
        java_run kafka.tools.StorageTool random-uuid | tail -n 1 > "$CLUSTER_ID_FILE"
    fi
    cat "$CLUSTER_ID_FILE"
}

cmd_start() {
    if is_running; then
        log "already running (pid $(read_pid)) on $BOOTSTRAP"
        return 0
    fi
    if port_in_use "$KAFKA_PORT" || port_in_use "$KAFKA_CONTROLLER_PORT"; then
        die "port $KAFKA_PORT or $KAFKA_CONTROLLER_PORT is already taken by another process"
    fi
    command -v "$JAVA" > /dev/null || die "java not found (Kafka 4.x needs Java 17+)"
    cmd_fetch
    mkdir -p "$DATA_DIR"
    write_config
    local cid
    cid="$(cluster_id)"
    log "formatting storage in $DATA_DIR (cluster id $cid)"
    java_run kafka.tools.StorageTool format -t "$cid" -c "$CONFIG_FILE" --ignore-formatted \
        >> "$LOG_FILE" 2>&1 || die "storage format failed; see $LOG_FILE"
    log "starting broker on $BOOTSTRAP (controller 127.0.0.1:$KAFKA_CONTROLLER_PORT), log $LOG_FILE"
    jvm_args
    # nohup execs java, so $! is the JVM's own pid and `stop` signals the broker itself
    nohup "$JAVA" "${JVM_ARGS[@]}" kafka.Kafka "$CONFIG_FILE" >> "$LOG_FILE" 2>&1 < /dev/null &
    echo "$!" > "$PID_FILE"
    log "started (pid $!)"
}

cmd_wait() {
    local pid
    pid="$(read_pid)"
    [[ -n "$pid" ]] || die "not started (no $PID_FILE); run: bash ops/kafka/kafka.sh start"
    log "waiting up to ${KAFKA_WAIT_SECONDS} s for $BOOTSTRAP to answer a client"
    if ! "$(python_bin)" "$SCRIPT_DIR/ready.py" --bootstrap "$BOOTSTRAP" \
        --timeout "$KAFKA_WAIT_SECONDS" --pid "$pid"; then
        echo "kafka: last lines of $LOG_FILE:" >&2
        tail -n 40 "$LOG_FILE" >&2 || true
        die "broker not ready"
    fi
}

cmd_status() {
    if ! is_running; then
        log "not running"
        return 1
    fi
    if "$(python_bin)" "$SCRIPT_DIR/ready.py" --bootstrap "$BOOTSTRAP" --timeout 5 \
        --pid "$(read_pid)" > /dev/null 2>&1; then
        log "running (pid $(read_pid)) and ready on $BOOTSTRAP"
        return 0
    fi
    log "running (pid $(read_pid)) but not answering on $BOOTSTRAP"
    return 1
}

cmd_stop() {
    if ! is_running; then
        log "not running"
        rm -f "$PID_FILE"
        return 0
    fi
    local pid waited=0
    pid="$(read_pid)"
    log "stopping pid $pid (SIGTERM, up to ${KAFKA_STOP_SECONDS} s)"
    kill -TERM "$pid" 2> /dev/null || true
    while kill -0 "$pid" 2> /dev/null && ((waited < KAFKA_STOP_SECONDS)); do
        sleep 1
        waited=$((waited + 1))
    done
    if kill -0 "$pid" 2> /dev/null; then
        log "still running after ${KAFKA_STOP_SECONDS} s; sending SIGKILL"
        kill -KILL "$pid" 2> /dev/null || true
        sleep 1
    fi
    rm -f "$PID_FILE"
    log "stopped after ${waited} s"
}

case "${1:-}" in
    fetch) cmd_fetch ;;
    start) cmd_start ;;
    wait) cmd_wait ;;
    status) cmd_status ;;
    stop) cmd_stop ;;
    *)
        echo "usage: $0 {fetch|start|stop|status|wait}" >&2
        exit 2
        ;;
esac
