#!/usr/bin/env bash
# Stops the daemon that start-daemon.sh started in DIR and removes DIR.
#   usage: stop-daemon.sh DIR
# The daemon (by its pidfile) gets TERM, then KILL after $HOIST_DAEMON_STOP_TIMEOUT seconds
# (default 20); then any process still naming DIR in its command line (containerd shims, say).
# Then everything mounted under DIR is unmounted, deepest first (podman leaves a bind mount
# of its storage, dockerd may leave overlay and bind mounts after a KILL), and DIR is removed,
# never crossing into another file system. Refuses a DIR that start-daemon.sh did not make,
# and keeps DIR (exit 1) when a mount under it cannot be undone.
# Idempotent: a missing DIR is already stopped.
set -euo pipefail
if [ "$#" -ne 1 ]; then
  echo "usage: $0 DIR" >&2
  exit 2
fi
if [ ! -d "$1" ]; then
  echo "$1 does not exist: nothing to stop" >&2
  exit 0
fi
DIR="$(cd "$1" && pwd -P)"
grace="${HOIST_DAEMON_STOP_TIMEOUT:-20}"
if [ "$DIR" = / ] || [ ! -e "$DIR/engine" ]; then
  if rmdir "$DIR" 2>/dev/null; then exit 0; fi
  echo "$DIR was not made by start-daemon.sh (no $DIR/engine): not touching it" >&2
  exit 1
fi
engine="$(cat "$DIR/engine")"

# The command line of process $1 when it names something under DIR (a zombie's is empty).
names_dir() {
  local cmdline
  cmdline="$(tr '\0' ' ' <"/proc/$1/cmdline" 2>/dev/null)" || return 1
  [[ $cmdline == *"$DIR/"* ]]
}
# TERM the given processes, wait for them up to $grace seconds, KILL the rest.
terminate() {
  local pid alive
  kill -TERM "$@" 2>/dev/null || true
  for _ in $(seq $((grace * 10))); do
    alive=0
    for pid in "$@"; do if names_dir "$pid"; then alive=1; fi; done
    [ "$alive" -eq 1 ] || return 0
    sleep 0.1
  done
  for pid in "$@"; do
    if names_dir "$pid"; then
      echo "PID $pid did not stop within $grace s: KILL" >&2
      kill -KILL "$pid" 2>/dev/null || true
    fi
  done
  for _ in $(seq 50); do
    alive=0
    for pid in "$@"; do if names_dir "$pid"; then alive=1; fi; done
    [ "$alive" -eq 1 ] || return 0
    sleep 0.1
  done
}

# The watcher of start-daemon.sh's HOIST_DAEMON_OWNER, unless it is what runs this script.
if [ -f "$DIR/watcher.pid" ]; then
  watcher="$(cat "$DIR/watcher.pid")"
  if [ -n "$watcher" ] && [ "$watcher" != "$$" ]; then kill "$watcher" 2>/dev/null || true; fi
  rm -f "$DIR/watcher.pid"
fi

pid="$(cat "$DIR/daemon.pid" 2>/dev/null || true)"
if [ -n "$pid" ] && names_dir "$pid"; then
  terminate "$pid"
  echo "stopped $engine (PID $pid)" >&2
fi

# Whatever else the daemon left running in DIR.
others=()
for proc in /proc/[0-9]*; do
  p="${proc#/proc/}"
  if [ "$p" != "$$" ] && names_dir "$p"; then others+=("$p"); fi
done
if [ "${#others[@]}" -gt 0 ]; then
  echo "stopping what $engine left running: ${others[*]}" >&2
  terminate "${others[@]}"
fi

# Mount points at or under DIR, the most recent first (field 5 of mountinfo; paths with
# spaces are escaped there, and DIR has none worth unmounting when it does).
mounts() { awk -v d="$DIR" '$5 == d || index($5, d "/") == 1 { print $5 }' /proc/self/mountinfo | tac; }
for _ in 1 2 3; do
  left="$(mounts)"
  [ -n "$left" ] || break
  while read -r mnt; do
    umount "$mnt" 2>/dev/null || umount -l "$mnt" 2>/dev/null || true
  done <<<"$left"
done
left="$(mounts)"
if [ -n "$left" ]; then
  echo "still mounted under $DIR, kept:" >&2
  echo "$left" >&2
  exit 1
fi

rm -rf --one-file-system -- "$DIR"
echo "removed $DIR" >&2
