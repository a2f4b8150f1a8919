#!/usr/bin/env bash
# Stop the broker started by infra/kafka/start.sh: SIGTERM (Kafka then shuts
# down cleanly), wait up to KAFKA_STOP_TIMEOUT seconds (30), then SIGKILL.
# Exits 0 if nothing was running.
#
#   stop.sh          stop; keep data (topics, offsets) for the next start
#   stop.sh --wipe   stop and delete the data dir (and logs); the jars in
#                    lib/ are kept, the next start formats fresh storage
#
# Environment: KAFKA_STATE_DIR (<repo>/.kafka), KAFKA_STOP_TIMEOUT (30).
set -euo pipefail

SCRIPT_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
REPO_ROOT="$(cd "$SCRIPT_DIR/../.." && pwd)"
KAFKA_STATE_DIR="${KAFKA_STATE_DIR:-$REPO_ROOT/.kafka}"
KAFKA_STOP_TIMEOUT="${KAFKA_STOP_TIMEOUT:-30}"

log() { echo "kafka: $*"; }
# Wall-clock milliseconds, and "X.Y s" since a given start.
now_ms() { local t="${EPOCHREALTIME//[.,]/}"; echo $((t / 1000)); }
since() { local ms=$(($(now_ms) - $1)); printf '%d.%d s' $((ms / 1000)) $((ms % 1000 / 100)); }

wipe=0
for arg in "$@"; do
  case "$arg" in
    --wipe) wipe=1 ;;
    -h|--help) sed -n '2,11p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
    *) echo "usage: $0 [--wipe]" >&2; exit 2 ;;
  esac
done

if [[ ! -d "$KAFKA_STATE_DIR" ]]; then
  log "not running (no state dir $KAFKA_STATE_DIR)"
  exit 0
fi
KAFKA_STATE_DIR="$(cd "$KAFKA_STATE_DIR" && pwd)"
PID_FILE="$KAFKA_STATE_DIR/kafka.pid"
PROPS="$KAFKA_STATE_DIR/server.properties"

# shellcheck source=infra/kafka/common.sh
source "$SCRIPT_DIR/common.sh"

pid="$(cat "$PID_FILE" 2>/dev/null || true)"
if [[ -n "$pid" ]] && kafka_pid_alive "$pid"; then
  log "stopping pid $pid ..."
  t0=$(now_ms)
  kill -TERM "$pid" 2>/dev/null || true
  deadline=$((SECONDS + KAFKA_STOP_TIMEOUT))
  while pid_running "$pid" && ((SECONDS < deadline)); do
    sleep 0.2
  done
  if pid_running "$pid"; then
    log "still running after ${KAFKA_STOP_TIMEOUT} s; sending SIGKILL"
    kill -KILL "$pid" 2>/dev/null || true
    for _ in $(seq 1 50); do pid_running "$pid" || break; sleep 0.1; done
  else
    log "stopped in $(since "$t0")"
  fi
  # The kernel frees the listening ports as the last thread exits; wait for it
  # so a start right after this one does not find them still taken.
  ports="$(sed -n 's/^listeners=//p' "$PROPS" 2>/dev/null | tr ',' '\n' | sed -n 's/.*:\([0-9][0-9]*\)$/\1/p')"
  for port in $ports; do
    for _ in $(seq 1 50); do
      (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null || break
      sleep 0.1
    done
  done
else
  log "not running"
fi
rm -f "$PID_FILE"

if ((wipe)); then
  rm -rf "$KAFKA_STATE_DIR/data" "$KAFKA_STATE_DIR/logs" "$KAFKA_STATE_DIR/kafka.out"
  log "wiped data in $KAFKA_STATE_DIR/data (jars in lib/ kept)"
fi
