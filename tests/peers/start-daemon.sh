#!/usr/bin/env bash
# Starts a daemon that speaks the Docker Engine API, for hoist's docker-daemon interop tests,
# with ALL its state under DIR, in the background; stop it with stop-daemon.sh DIR.
#   usage: start-daemon.sh ENGINE DIR
#   ENGINE  docker20  Debian bookworm's docker.io: Engine 20.10, API 1.41 (DIR/docker.sock)
#           docker26  trixie's docker.io extracted by install.sh under
#                     $HOIST_PEERS_DIR/docker-26: Engine 26.1, API 1.45 (DIR/docker.sock)
#           podman    podman's Docker-compatible service (DIR/podman.sock)
#   DIR     new or empty; keep it short: the socket path must stay under 108 bytes, and the
#           daemon puts sockets of its own deeper under DIR
# In DIR: engine (which one; marks DIR as a daemon's), daemon.pid, daemon.log, the socket,
# data and run roots. Nothing touches the host network: no bridge, no iptables, no forwarding.
# Waits until the daemon answers /_ping (at most $HOIST_DAEMON_TIMEOUT seconds, default 30);
# on failure prints its log, stops it and removes DIR.
# HOIST_DAEMON_OWNER=PID: also stop the daemon (stop-daemon.sh) once process PID has exited,
# so that a test process killed before it could stop its daemon leaves nothing running.
# Idempotent: if DIR's daemon of ENGINE still answers, only prints its socket URL.
# The socket URL (unix://DIR/X.sock) is the last line of stdout; everything else goes to stderr.
set -euo pipefail
HERE="$(cd "$(dirname "$0")" && pwd)"
if [ "$#" -ne 2 ]; then
  echo "usage: $0 docker20|docker26|podman DIR" >&2
  exit 2
fi
ENGINE="$1"
peers_dir="${HOIST_PEERS_DIR:-/opt/hoist-peers}"
timeout="${HOIST_DAEMON_TIMEOUT:-30}"

case "$ENGINE" in
  docker20) bin=/usr/sbin/dockerd sock=docker.sock ;;
  docker26) bin="$peers_dir/docker-26/usr/sbin/dockerd" sock=docker.sock ;;
  podman) bin="$(command -v podman || echo podman)" sock=podman.sock ;;
  *)
    echo "unknown engine $ENGINE: docker20, docker26 or podman" >&2
    exit 2
    ;;
esac
if [ ! -x "$bin" ]; then
  echo "$ENGINE: $bin not installed (run tests/peers/install.sh)" >&2
  exit 3
fi
command -v curl >/dev/null 2>&1 || {
  echo "curl not installed (run tests/peers/install.sh)" >&2
  exit 3
}

mkdir -p "$2"
DIR="$(cd "$2" && pwd -P)"
SOCK="$DIR/$sock" LOG="$DIR/daemon.log" PIDFILE="$DIR/daemon.pid"
if [ "${#SOCK}" -gt 100 ]; then
  echo "$SOCK is too long for a unix socket (and the daemon's own sockets under DIR)" >&2
  exit 2
fi

answers() { curl -fsS -o /dev/null --max-time 2 --unix-socket "$SOCK" http://daemon/_ping 2>/dev/null; }
# The daemon in the pidfile, if alive: every daemon's command line names DIR. A zombie (whose
# command line is empty) or a reused PID is not it.
ours() {
  local pid cmdline
  pid="$(cat "$PIDFILE" 2>/dev/null)" || return 1
  [ -n "$pid" ] || return 1
  cmdline="$(tr '\0' ' ' <"/proc/$pid/cmdline" 2>/dev/null)" || return 1
  [[ $cmdline == *"$DIR/"* ]]
}

if [ -e "$DIR/engine" ]; then
  if [ "$(cat "$DIR/engine")" = "$ENGINE" ] && ours && answers; then
    echo "$ENGINE already running in $DIR" >&2
    echo "unix://$SOCK"
    exit 0
  fi
  echo "$DIR holds another or a dead daemon: stop-daemon.sh $DIR first" >&2
  exit 1
fi
if [ -n "$(ls -A "$DIR")" ]; then
  echo "$DIR is not empty: give start-daemon.sh a new or empty directory" >&2
  exit 1
fi
echo "$ENGINE" >"$DIR/engine"

case "$ENGINE" in
  docker20 | docker26)
    # Its own daemon.json, not /etc/docker's; the 20.10 trust key (written to
    # /etc/docker/key.json by default) under DIR too. dockerd writes its own pidfile, which
    # must not be ours: it refuses to start when the pidfile names a live process.
    printf '{"deprecated-key-path": "%s/key.json"}\n' "$DIR" >"$DIR/daemon.json"
    args=(--config-file "$DIR/daemon.json" --host "unix://$SOCK"
      --data-root "$DIR/data" --exec-root "$DIR/exec" --pidfile "$DIR/dockerd.pid"
      --iptables=false --ip6tables=false --ip-forward=false --ip-masq=false --bridge=none
      --storage-driver="${HOIST_DOCKER_STORAGE_DRIVER:-overlay2}")
    # dockerd finds containerd, runc, docker-init and docker-proxy on PATH; 26.1's own
    # docker-proxy and docker-init come first.
    path="/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
    [ "$ENGINE" = docker20 ] || path="$peers_dir/docker-26/usr/sbin:$peers_dir/docker-26/usr/bin:$path"
    ;;
  podman)
    # Its own containers.conf, not /etc/containers'; file locks under DIR/tmp instead of the
    # machine-wide /dev/shm/libpod_lock that every podman would share.
    printf '[engine]\nlock_type = "file"\n' >"$DIR/containers.conf"
    export CONTAINERS_CONF="$DIR/containers.conf"
    args=(--root "$DIR/root" --runroot "$DIR/run" --tmpdir "$DIR/tmp"
      --network-config-dir "$DIR/net" --storage-driver "${HOIST_PODMAN_STORAGE_DRIVER:-overlay}"
      --cgroup-manager cgroupfs --events-backend file
      system service --time=0 "unix://$SOCK")
    path="/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
    ;;
esac

# In a session of its own (no terminal's signals), with no descriptor of the caller's: a
# caller reading this script's output to its end must not wait for the daemon.
(cd "$DIR" && exec env PATH="$path" setsid "$bin" "${args[@]}" >>"$LOG" 2>&1 </dev/null) &
echo "$!" >"$PIDFILE"

fail() {
  echo "$ENGINE in $DIR $1; its log:" >&2
  cat "$LOG" >&2 || true
  bash "$HERE/stop-daemon.sh" "$DIR" >&2 || true
  exit 1
}
# The daemon just started has not exited: it is this shell's child, so its PID cannot be reused
# while we wait, and a child that exited is a zombie (state Z) until this shell reaps it. Not
# `ours`: until the child has exec'd the daemon its command line is this script's, which on a
# loaded machine the first check can see.
running() {
  local stat
  stat="$(cat "/proc/$(cat "$PIDFILE")/stat" 2>/dev/null)" || return 1
  stat="${stat##*) }"
  [ -n "$stat" ] && [ "${stat:0:1}" != Z ]
}
deadline=$((SECONDS + timeout))
until answers; do
  running || fail "exited"
  [ "$SECONDS" -lt "$deadline" ] || fail "did not answer within $timeout s"
  sleep 0.1
done

if [ -n "${HOIST_DAEMON_OWNER:-}" ]; then
  owner="$HOIST_DAEMON_OWNER"
  # Polls the owner each second; exits on its own once DIR's daemon is stopped.
  # shellcheck disable=SC2016 # expanded by the watcher's shell
  setsid bash -c 'while kill -0 "$1" 2>/dev/null && [ -e "$2/engine" ]; do sleep 1; done
    [ -e "$2/engine" ] && rm -f "$2/watcher.pid" && exec bash "$3" "$2"' \
    watcher "$owner" "$DIR" "$HERE/stop-daemon.sh" >/dev/null 2>&1 </dev/null &
  echo "$!" >"$DIR/watcher.pid"
fi

echo "$ENGINE ($("$bin" --version)) answers on unix://$SOCK (log $LOG)" >&2
echo "unix://$SOCK"
