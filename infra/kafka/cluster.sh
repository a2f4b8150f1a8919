#!/usr/bin/env bash
# A local three-node Apache Kafka cluster (KRaft; each node is a broker and one of
# three controller voters, in its own JVM), from the same jars and start.sh as the
# single broker: for the fault that loses one broker of three (replication factor 3,
# min.insync.replicas 2). Only 127.0.0.1, plain text.
#
#   cluster.sh start          format (first time) and start the three nodes, wait
#                             until each answers; prints the bootstrap list
#   cluster.sh stop [--wipe]  stop every node (SIGTERM, then SIGKILL); --wipe also
#                             deletes their data and logs
#   cluster.sh kill N         SIGKILL node N (1-3), as a power cut would
#   cluster.sh start-node N   start node N again on its logs
#   cluster.sh status         which nodes run
#
# Any two nodes keep the cluster serving: the controller quorum (2 of 3 voters) and
# every partition's in-sync replicas (2 of 3) survive the loss of one node.
#
# Environment (all optional):
#   KAFKA_CLUSTER_DIR               state of the nodes, node-1..node-3   (<repo>/.kafka-cluster)
#   KAFKA_CLUSTER_PORTS             client ports, comma-separated        (19092,19094,19096)
#   KAFKA_CLUSTER_CONTROLLER_PORTS  controller ports, comma-separated    (19093,19095,19097)
#   KAFKA_HEAP_OPTS                 heap of each JVM                     (-Xms128m -Xmx512m)
#   KAFKA_LIB_DIR                   jars, shared with the single broker  (<repo>/.kafka/lib)
#   KAFKA_EXTRA_PROPERTIES          more lines for every node (after the cluster's own)
#   and start.sh's KAFKA_JVM_OPTS, KAFKA_START_TIMEOUT, MVN, MVN_OPTS.
set -euo pipefail

SCRIPT_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
REPO_ROOT="$(cd "$SCRIPT_DIR/../.." && pwd)"
KAFKA_CLUSTER_DIR="${KAFKA_CLUSTER_DIR:-$REPO_ROOT/.kafka-cluster}"
IFS=, read -ra PORTS <<<"${KAFKA_CLUSTER_PORTS:-19092,19094,19096}"
IFS=, read -ra CPORTS <<<"${KAFKA_CLUSTER_CONTROLLER_PORTS:-19093,19095,19097}"
export KAFKA_HEAP_OPTS="${KAFKA_HEAP_OPTS:--Xms128m -Xmx512m}"
export KAFKA_LIB_DIR="${KAFKA_LIB_DIR:-$REPO_ROOT/.kafka/lib}"
NODES=3

log() { echo "kafka cluster: $*"; }
die() { echo "kafka cluster: ERROR: $*" >&2; exit 1; }

((${#PORTS[@]} == NODES && ${#CPORTS[@]} == NODES)) ||
  die "KAFKA_CLUSTER_PORTS and KAFKA_CLUSTER_CONTROLLER_PORTS need $NODES ports each"

voters=""
for i in 1 2 3; do voters+="${voters:+,}$i@127.0.0.1:${CPORTS[i - 1]}"; done
bootstrap=""
for i in 1 2 3; do bootstrap+="${bootstrap:+,}127.0.0.1:${PORTS[i - 1]}"; done

# What makes three nodes one cluster that survives the loss of one: three copies of
# everything, including Kafka's own topics, and a write acknowledged (acks=all) only
# once two of them have it.
CLUSTER_PROPERTIES='default.replication.factor=3
min.insync.replicas=2
offsets.topic.replication.factor=3
transaction.state.log.replication.factor=3
transaction.state.log.min.isr=2
share.coordinator.state.topic.replication.factor=3
share.coordinator.state.topic.min.isr=2'

node_env() {  # the start.sh / stop.sh environment of node $1
  local i="$1"
  echo "KAFKA_STATE_DIR=$KAFKA_CLUSTER_DIR/node-$i"
  echo "KAFKA_NODE_ID=$i"
  echo "KAFKA_PORT=${PORTS[i - 1]}"
  echo "KAFKA_CONTROLLER_PORT=${CPORTS[i - 1]}"
  echo "KAFKA_QUORUM_VOTERS=$voters"
}

run_node() {  # run_node N script [args]: start.sh or stop.sh for node N
  local i="$1" script="$2"
  shift 2
  local -a envs
  mapfile -t envs < <(node_env "$i")
  [[ "$script" != fetch ]] || { script=start.sh; envs+=(KAFKA_FETCH_ONLY=1); }
  env "${envs[@]}" \
    KAFKA_CLUSTER_ID="$cluster_id" \
    KAFKA_EXTRA_PROPERTIES="$CLUSTER_PROPERTIES${KAFKA_EXTRA_PROPERTIES:+
$KAFKA_EXTRA_PROPERTIES}" \
    "$SCRIPT_DIR/$script" "$@"
}

node_pid() {  # the pid of node $1 if it runs, else nothing
  local props="$KAFKA_CLUSTER_DIR/node-$1/server.properties" pid
  pid="$(cat "$KAFKA_CLUSTER_DIR/node-$1/kafka.pid" 2>/dev/null || true)"
  # shellcheck source=infra/kafka/common.sh
  PROPS="$props" && source "$SCRIPT_DIR/common.sh"
  if kafka_pid_alive "$pid"; then echo "$pid"; fi
}

node_arg() {
  [[ "${1:-}" =~ ^[1-3]$ ]] || die "name a node: 1, 2 or 3"
  echo "$1"
}

mkdir -p "$KAFKA_CLUSTER_DIR"
KAFKA_CLUSTER_DIR="$(cd "$KAFKA_CLUSTER_DIR" && pwd)"
# One cluster id for the three nodes' storage, kept for later starts.
id_file="$KAFKA_CLUSTER_DIR/cluster.id"
cluster_id="$(cat "$id_file" 2>/dev/null || true)"

case "${1:-}" in
  start)
    if [[ -z "$cluster_id" ]]; then
      # 22 characters of URL-safe base64: a Kafka cluster id (a UUID's 16 bytes).
      cluster_id="$(head -c16 /dev/urandom | base64 | tr '+/' '-_' | tr -d '=')"
      echo "$cluster_id" >"$id_file"
    fi
    # The jars first, once: three starts fetching them at once would race.
    run_node 1 fetch >"$KAFKA_CLUSTER_DIR/fetch.out" 2>&1 </dev/null ||
      { cat "$KAFKA_CLUSTER_DIR/fetch.out" >&2; die "could not fetch the Kafka jars"; }
    # Together: a node is ready only once a majority of the voters has elected a
    # controller, so one started alone would wait for the others in vain.
    pids=()
    for i in 1 2 3; do
      run_node "$i" start.sh >"$KAFKA_CLUSTER_DIR/start-$i.out" 2>&1 &
      pids+=("$!")
    done
    failed=0
    for i in 1 2 3; do
      if ! wait "${pids[i - 1]}"; then
        failed=1
        echo "---- node $i ----" >&2
        cat "$KAFKA_CLUSTER_DIR/start-$i.out" >&2
      fi
    done
    if ((failed)); then
      for i in 1 2 3; do run_node "$i" stop.sh >/dev/null 2>&1 || true; done
      die "the cluster did not start (each node's output above)"
    fi
    cat "$KAFKA_CLUSTER_DIR"/start-{1,2,3}.out | grep -h "ready on" || true
    log "3 nodes ready; bootstrap $bootstrap"
    ;;
  stop)
    shift
    for i in 1 2 3; do run_node "$i" stop.sh "$@" & done
    wait
    if [[ "${1:-}" == "--wipe" ]]; then rm -f "$id_file"; fi
    ;;
  kill)
    i="$(node_arg "${2:-}")"
    pid="$(node_pid "$i")"
    [[ -n "$pid" ]] || die "node $i is not running"
    kill -KILL "$pid"
    PROPS="$KAFKA_CLUSTER_DIR/node-$i/server.properties" && source "$SCRIPT_DIR/common.sh"
    for _ in $(seq 1 100); do pid_running "$pid" || break; sleep 0.1; done
    log "node $i (pid $pid) killed"
    ;;
  start-node)
    i="$(node_arg "${2:-}")"
    [[ -n "$cluster_id" ]] || die "the cluster was never started (no $id_file)"
    run_node "$i" start.sh
    ;;
  status)
    for i in 1 2 3; do
      pid="$(node_pid "$i")"
      if [[ -n "$pid" ]]; then
        echo "node $i: running (pid $pid) on 127.0.0.1:${PORTS[i - 1]}"
      else
        echo "node $i: stopped"
      fi
    done
    ;;
  *)
    sed -n '2,16p' "$0" | sed 's/^# \{0,1\}//'
    exit 2
    ;;
esac
