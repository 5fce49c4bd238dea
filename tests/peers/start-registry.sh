#!/usr/bin/env bash
# Starts the CNCF distribution registry (Debian "docker-registry") on loopback, for the interop
# tests of hoist's registry client and server.
#   REGISTRY_ADDR  listen address (default 127.0.0.1:5000)
#   REGISTRY_DIR   config, data, log and pidfile (default /tmp/peer-registry)
#   REGISTRY_RESET=1  stop a running instance and wipe its data first
# Idempotent: if the registry this script started still answers, only prints its PID.
# Storage is the filesystem under $REGISTRY_DIR/data, with deletes enabled.
# The PID is the last line of stdout; everything else goes to stderr.
set -euo pipefail
ADDR="${REGISTRY_ADDR:-127.0.0.1:5000}"
DIR="${REGISTRY_DIR:-/tmp/peer-registry}"
CONF="$DIR/config.yml" PIDFILE="$DIR/registry.pid" LOG="$DIR/registry.log"
HERE="$(cd "$(dirname "$0")" && pwd)"

command -v docker-registry >/dev/null 2>&1 || bash "$HERE/install.sh" >&2

# True when the pidfile names a live process that is our registry (not a reused PID).
ours() {
  local pid
  pid="$(cat "$PIDFILE" 2>/dev/null)" || return 1
  [ -n "$pid" ] && kill -0 "$pid" 2>/dev/null &&
    tr '\0' ' ' <"/proc/$pid/cmdline" | grep -q "docker-registry serve $CONF"
}
answers() { curl -fsS -o /dev/null --max-time 2 "http://$ADDR/v2/" 2>/dev/null; }

if [ "${REGISTRY_RESET:-0}" = "1" ]; then
  REGISTRY_DIR="$DIR" bash "$HERE/stop-registry.sh" || true
  rm -rf "$DIR/data"
fi
mkdir -p "$DIR/data"
cat >"$CONF.tmp" <<YAML
version: 0.1
log:
  level: warn
storage:
  filesystem:
    rootdirectory: $DIR/data
  delete:
    enabled: true
  maintenance:
    uploadpurging:
      enabled: false
http:
  addr: $ADDR
YAML
mv "$CONF.tmp" "$CONF"

if ours && answers; then
  echo "registry already running on http://$ADDR" >&2
  cat "$PIDFILE"
  exit 0
fi
rm -f "$PIDFILE"
if answers; then
  echo "something else serves http://$ADDR/v2/; stop it or set REGISTRY_ADDR" >&2
  exit 1
fi

# Detached from this shell so that it outlives the caller.
setsid nohup docker-registry serve "$CONF" >>"$LOG" 2>&1 </dev/null &
pid=$!
echo "$pid" >"$PIDFILE"
for _ in $(seq 100); do
  if answers; then
    echo "registry started on http://$ADDR (data $DIR/data, log $LOG)" >&2
    echo "$pid"
    exit 0
  fi
  if ! kill -0 "$pid" 2>/dev/null; then
    echo "registry exited; end of $LOG:" >&2
    tail -n 20 "$LOG" >&2
    rm -f "$PIDFILE"
    exit 1
  fi
  sleep 0.1
done
echo "registry did not answer within 10 s; see $LOG" >&2
exit 1
