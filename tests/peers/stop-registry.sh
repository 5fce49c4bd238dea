#!/usr/bin/env bash
# Stops the registry started by start-registry.sh, by the PID in its pidfile only.
#   REGISTRY_DIR   as for start-registry.sh (default /tmp/peer-registry)
#   REGISTRY_WIPE=1  also delete its data
set -euo pipefail
DIR="${REGISTRY_DIR:-/tmp/peer-registry}"
CONF="$DIR/config.yml" PIDFILE="$DIR/registry.pid"

if [ -f "$PIDFILE" ]; then
  pid="$(cat "$PIDFILE")"
  # Only a live process that is our registry: a stale pidfile may name a reused PID.
  if [ -n "$pid" ] && kill -0 "$pid" 2>/dev/null &&
    tr '\0' ' ' <"/proc/$pid/cmdline" | grep -q "docker-registry serve $CONF"; then
    kill "$pid"
    for _ in $(seq 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
    kill -0 "$pid" 2>/dev/null && kill -9 "$pid"
    echo "stopped registry (PID $pid)" >&2
  else
    echo "PID ${pid:-?} is not a running peer registry; removing the stale pidfile" >&2
  fi
  rm -f "$PIDFILE"
else
  echo "no registry running (no $PIDFILE)" >&2
fi

if [ "${REGISTRY_WIPE:-0}" = "1" ]; then
  rm -rf "$DIR/data"
  echo "wiped $DIR/data" >&2
fi
