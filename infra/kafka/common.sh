# Shared by start.sh and stop.sh (sourced; expects PROPS to be set by the caller).

# Alive = exists and is not a finished zombie: an unreaped dead process still
# answers kill -0, and right after SIGKILL the JVM's main thread is a zombie
# while its other threads (which hold the sockets) are still exiting.
pid_running() {
  local state threads
  kill -0 "$1" 2>/dev/null || return 1
  state="$(sed -n 's/^State:[[:space:]]*\([A-Z]\).*/\1/p' "/proc/$1/status" 2>/dev/null || true)"
  threads="$(sed -n 's/^Threads:[[:space:]]*\([0-9]*\).*/\1/p' "/proc/$1/status" 2>/dev/null || true)"
  [[ "$state" != "Z" || "${threads:-1}" -gt 1 ]]
}

# A pid counts only if that process is a kafka.Kafka using this state dir
# (guards against a stale pid file whose pid was reused).
kafka_pid_alive() {
  local pid="$1"
  [[ "$pid" =~ ^[0-9]+$ ]] || return 1
  pid_running "$pid" || return 1
  tr '\0' ' ' <"/proc/$pid/cmdline" 2>/dev/null | grep -qF -- "kafka.Kafka $PROPS"
}
