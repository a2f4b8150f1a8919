#!/usr/bin/env bash
# Start a single-node Apache Kafka broker (KRaft, broker+controller in one
# JVM) on 127.0.0.1, without Docker: the jars come from Maven Central via
# infra/kafka/pom.xml. Safe to run again: if the broker is already running it
# says so and exits 0. Stop it with infra/kafka/stop.sh.
#
# Environment (all optional):
#   KAFKA_PORT              client port                      (9092)
#   KAFKA_CONTROLLER_PORT   KRaft controller port            (9093)
#   KAFKA_STATE_DIR         jars, config, data, logs, pid    (<repo>/.kafka)
#   KAFKA_LIB_DIR           where the jars go, to share them (<state dir>/lib)
#   KAFKA_HEAP_OPTS         JVM heap                         (-Xms256m -Xmx1g)
#   KAFKA_JVM_OPTS          more JVM flags, appended
#   KAFKA_EXTRA_PROPERTIES  lines appended to server.properties (last wins)
#   KAFKA_CLUSTER_ID        cluster id used when formatting  (random)
#   KAFKA_NODE_ID           this node's id                   (1)
#   KAFKA_QUORUM_VOTERS     the KRaft controller quorum, id@host:port,...
#                           (1@127.0.0.1:<controller port>: this node alone);
#                           infra/kafka/cluster.sh starts three nodes with it
#   KAFKA_FORMAT_ARGS       more arguments to the storage format, e.g.
#                           --add-scram SCRAM-SHA-512=[name=u,password=p]
#                           (SCRAM users of a SASL listener; split on spaces)
#   KAFKA_START_TIMEOUT     seconds to wait for readiness    (90)
#   KAFKA_FETCH_ONLY        1: fetch the jars and stop there (0)
#   MVN                     maven command                    (mvn)
#   MVN_OPTS                extra maven args, e.g. "-s settings.xml"
#                           or "-Dmaven.repo.local=/path"; MAVEN_OPTS is
#                           honoured by mvn itself as usual.
set -euo pipefail

SCRIPT_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
REPO_ROOT="$(cd "$SCRIPT_DIR/../.." && pwd)"

KAFKA_PORT="${KAFKA_PORT:-9092}"
KAFKA_CONTROLLER_PORT="${KAFKA_CONTROLLER_PORT:-9093}"
KAFKA_STATE_DIR="${KAFKA_STATE_DIR:-$REPO_ROOT/.kafka}"
KAFKA_HEAP_OPTS="${KAFKA_HEAP_OPTS:--Xms256m -Xmx1g}"
KAFKA_JVM_OPTS="${KAFKA_JVM_OPTS:-}"
KAFKA_EXTRA_PROPERTIES="${KAFKA_EXTRA_PROPERTIES:-}"
KAFKA_START_TIMEOUT="${KAFKA_START_TIMEOUT:-90}"
KAFKA_NODE_ID="${KAFKA_NODE_ID:-1}"
KAFKA_QUORUM_VOTERS="${KAFKA_QUORUM_VOTERS:-$KAFKA_NODE_ID@127.0.0.1:$KAFKA_CONTROLLER_PORT}"
read -ra KAFKA_FORMAT_ARGS <<<"${KAFKA_FORMAT_ARGS:-}"  # no globbing of [name=…]
MVN="${MVN:-mvn}"
MVN_OPTS="${MVN_OPTS:-}"

log() { echo "kafka: $*"; }
# Wall-clock milliseconds, and "X.Y s" since a given start.
now_ms() { local t="${EPOCHREALTIME//[.,]/}"; echo $((t / 1000)); }
since() { local ms=$(($(now_ms) - $1)); printf '%d.%d s' $((ms / 1000)) $((ms % 1000 / 100)); }
die() { echo "kafka: ERROR: $*" >&2; exit 1; }

for p in "$KAFKA_PORT" "$KAFKA_CONTROLLER_PORT"; do
  [[ "$p" =~ ^[0-9]+$ ]] || die "port must be a number, got '$p'"
done
[[ "$KAFKA_NODE_ID" =~ ^[0-9]+$ ]] || die "KAFKA_NODE_ID must be a number, got '$KAFKA_NODE_ID'"
[[ "$KAFKA_QUORUM_VOTERS" =~ ^[0-9]+@[^,]+:[0-9]+(,[0-9]+@[^,]+:[0-9]+)*$ ]] ||
  die "KAFKA_QUORUM_VOTERS must read id@host:port[,id@host:port...], got '$KAFKA_QUORUM_VOTERS'"
[[ "$KAFKA_PORT" != "$KAFKA_CONTROLLER_PORT" ]] || die "KAFKA_PORT and KAFKA_CONTROLLER_PORT must differ"
command -v java >/dev/null || die "java not found (Kafka 4.x needs Java 17+)"

mkdir -p "$KAFKA_STATE_DIR"
KAFKA_STATE_DIR="$(cd "$KAFKA_STATE_DIR" && pwd)"
LIB_DIR="${KAFKA_LIB_DIR:-$KAFKA_STATE_DIR/lib}"
mkdir -p "$(dirname "$LIB_DIR")"
DATA_DIR="$KAFKA_STATE_DIR/data"
LOG_DIR="$KAFKA_STATE_DIR/logs"
PROPS="$KAFKA_STATE_DIR/server.properties"
PID_FILE="$KAFKA_STATE_DIR/kafka.pid"
OUT_FILE="$KAFKA_STATE_DIR/kafka.out"
POM="$SCRIPT_DIR/pom.xml"
LOG4J_CONF="$SCRIPT_DIR/log4j2.xml"

# One start.sh at a time per state dir.
if command -v flock >/dev/null; then
  exec 9>"$KAFKA_STATE_DIR/.start.lock"
  flock 9
fi

# --- already running? --------------------------------------------------------
# shellcheck source=infra/kafka/common.sh
source "$SCRIPT_DIR/common.sh"

if [[ -f "$PID_FILE" ]]; then
  pid="$(cat "$PID_FILE" 2>/dev/null || true)"
  if kafka_pid_alive "$pid"; then
    port_now="$(sed -n 's|^advertised.listeners=PLAINTEXT://127.0.0.1:\([0-9]*\).*|\1|p' "$PROPS" 2>/dev/null || true)"
    log "already running (pid $pid) on 127.0.0.1:${port_now:-?}, data in $DATA_DIR"
    exit 0
  fi
  log "removing stale pid file (pid ${pid:-?} is not running)"
  rm -f "$PID_FILE"
fi

port_in_use() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }
for p in "$KAFKA_PORT" "$KAFKA_CONTROLLER_PORT"; do
  if port_in_use "$p"; then
    die "port $p on 127.0.0.1 is already in use by another process (set KAFKA_PORT / KAFKA_CONTROLLER_PORT)"
  fi
done

# --- (a) jars from Maven Central, once per pom version -----------------------
pom_hash="$(sha256sum "$POM" | cut -c1-16)"
marker="$LIB_DIR/.fetched-$pom_hash"
if [[ ! -f "$marker" ]]; then
  command -v "$MVN" >/dev/null || die "maven ('$MVN') not found; needed once to fetch the Kafka jars"
  log "fetching Kafka jars from Maven Central into $LIB_DIR ..."
  t0=$(now_ms)
  tmp_lib="$LIB_DIR.tmp.$$"
  rm -rf "$tmp_lib"
  mvn_log="$KAFKA_STATE_DIR/mvn.log"
  # shellcheck disable=SC2086  # MVN_OPTS is a list of arguments
  if ! "$MVN" -B -q -Dstyle.color=never $MVN_OPTS -f "$POM" \
        dependency:copy-dependencies -DincludeScope=runtime \
        -DoutputDirectory="$tmp_lib" >"$mvn_log" 2>&1; then
    sed 's/\x1b\[[0-9;]*m//g' "$mvn_log" >&2
    rm -rf "$tmp_lib"
    die "maven could not fetch the Kafka jars (log above, also in $mvn_log)"
  fi
  compgen -G "$tmp_lib/kafka_2.13-*.jar" >/dev/null || { rm -rf "$tmp_lib"; die "maven ran but no kafka_2.13 jar was copied"; }
  rm -rf "$LIB_DIR"
  mv "$tmp_lib" "$LIB_DIR"
  touch "$LIB_DIR/.fetched-$pom_hash"
  log "fetched $(ls "$LIB_DIR"/*.jar | wc -l) jars in $(since "$t0")"
fi
if [[ "${KAFKA_FETCH_ONLY:-0}" == 1 ]]; then
  log "jars in $LIB_DIR"  # cluster.sh: fetched once, before its nodes start together
  exit 0
fi
kafka_jar="$(compgen -G "$LIB_DIR/kafka_2.13-*.jar" | head -n1)"
KAFKA_VERSION="${kafka_jar##*/kafka_2.13-}"
KAFKA_VERSION="${KAFKA_VERSION%.jar}"
CP="$LIB_DIR/*"

# --- (b) server.properties ---------------------------------------------------
sed_escape() { printf '%s' "$1" | sed -e 's/[\\|&]/\\&/g'; }
mkdir -p "$DATA_DIR" "$LOG_DIR"
{
  sed -e "s|@KAFKA_PORT@|$KAFKA_PORT|g" \
      -e "s|@KAFKA_CONTROLLER_PORT@|$KAFKA_CONTROLLER_PORT|g" \
      -e "s|@KAFKA_DATA_DIR@|$(sed_escape "$DATA_DIR")|g" \
      -e "s|@KAFKA_NODE_ID@|$KAFKA_NODE_ID|g" \
      -e "s|@KAFKA_QUORUM_VOTERS@|$(sed_escape "$KAFKA_QUORUM_VOTERS")|g" \
      "$SCRIPT_DIR/server.properties.template"
  if [[ -n "$KAFKA_EXTRA_PROPERTIES" ]]; then
    printf '\n# from KAFKA_EXTRA_PROPERTIES\n%s\n' "$KAFKA_EXTRA_PROPERTIES"
  fi
} >"$PROPS.tmp"
mv "$PROPS.tmp" "$PROPS"

JAVA_OPTS=(
  $KAFKA_HEAP_OPTS
  -server -XX:+UseG1GC -XX:MaxGCPauseMillis=20 -XX:InitiatingHeapOccupancyPercent=35
  -XX:+ExplicitGCInvokesConcurrent -Djava.awt.headless=true
  -Dlog4j2.configurationFile="$LOG4J_CONF"
  -Dkafka.logs.dir="$LOG_DIR"
  $KAFKA_JVM_OPTS
)

# --- (c) format storage once -------------------------------------------------
if [[ ! -f "$DATA_DIR/meta.properties" ]]; then
  cluster_id="${KAFKA_CLUSTER_ID:-}"
  if [[ -z "$cluster_id" ]]; then
    cluster_id="$(java -cp "$CP" kafka.tools.StorageTool random-uuid 2>/dev/null | tail -n1)"
  fi
  [[ -n "$cluster_id" ]] || die "could not generate a cluster id"
  log "formatting storage in $DATA_DIR (cluster id $cluster_id)"
  if ! fmt_out="$(java -Xmx256m -Dlog4j2.configurationFile="$LOG4J_CONF" -Dkafka.logs.dir="$LOG_DIR" \
        -cp "$CP" kafka.tools.StorageTool format -t "$cluster_id" -c "$PROPS" \
        "${KAFKA_FORMAT_ARGS[@]}" 2>&1)"; then
    echo "$fmt_out" >&2
    die "formatting storage failed"
  fi
fi

# --- (d) start ---------------------------------------------------------------
t0=$(now_ms)
cd "$KAFKA_STATE_DIR"
# 9>&- : the broker must not inherit (and so hold) the start lock.
nohup java "${JAVA_OPTS[@]}" -cp "$CP" kafka.Kafka "$PROPS" >"$OUT_FILE" 2>&1 </dev/null 9>&- &
pid=$!
echo "$pid" >"$PID_FILE"

# --- (e) wait until it answers a Kafka request -------------------------------
# Ready = "Kafka Server started" in kafka.out (written fresh by this start)
# and the client port answers an ApiVersions request (python3) or, without
# python3, accepts a TCP connection.
api_versions_ok() {
  if command -v python3 >/dev/null; then
    python3 - "$1" <<'PY' 2>/dev/null
import socket, struct, sys
port = int(sys.argv[1])
client = b"canhbao-start"
body = struct.pack(">hhih", 18, 0, 4242, len(client)) + client  # ApiVersions v0
with socket.create_connection(("127.0.0.1", port), timeout=2) as s:
    s.settimeout(2)
    s.sendall(struct.pack(">i", len(body)) + body)
    buf = b""
    while len(buf) < 10:
        chunk = s.recv(4096)
        if not chunk:
            sys.exit(1)
        buf += chunk
    size, corr, err = struct.unpack(">iih", buf[:10])
    sys.exit(0 if corr == 4242 and err == 0 else 1)
PY
  else
    port_in_use "$1"
  fi
}

tail_log() {
  echo "---- tail of $OUT_FILE ----" >&2
  tail -n 30 "$OUT_FILE" >&2 || true
  if [[ -f "$LOG_DIR/server.log" ]]; then
    echo "---- tail of $LOG_DIR/server.log ----" >&2
    tail -n 40 "$LOG_DIR/server.log" >&2 || true
  fi
}

deadline=$((SECONDS + KAFKA_START_TIMEOUT))
while :; do
  if ! pid_running "$pid"; then
    rm -f "$PID_FILE"
    tail_log
    die "broker process exited during startup"
  fi
  if grep -q "Kafka Server started" "$OUT_FILE" 2>/dev/null && api_versions_ok "$KAFKA_PORT"; then
    break
  fi
  if ((SECONDS >= deadline)); then
    tail_log
    log "not ready after ${KAFKA_START_TIMEOUT} s; stopping pid $pid"
    kill "$pid" 2>/dev/null || true
    for _ in $(seq 1 20); do pid_running "$pid" || break; sleep 0.5; done
    kill -9 "$pid" 2>/dev/null || true
    rm -f "$PID_FILE"
    die "broker not ready in time"
  fi
  sleep 0.5
done

log "Apache Kafka $KAFKA_VERSION ready on 127.0.0.1:$KAFKA_PORT (pid $pid, data in $DATA_DIR, started in $(since "$t0"))"
