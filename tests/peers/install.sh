#!/usr/bin/env bash
# Installs the third-party peers hoist's interop tests run against, from Debian packages:
#   skopeo           containers/image client (layouts, archives, registries)
#   umoci            OCI image layout tool (stat, unpack, repack)
#   docker-registry  the CNCF distribution registry (what "registry:2" runs)
#   curl             to probe the registry and the daemons
#   docker.io        bookworm's Docker Engine 20.10 (API 1.41, classic `docker save` archives):
#                    /usr/sbin/dockerd and the /usr/bin/docker client
#   podman           podman 4.3, whose `podman system service` speaks the Docker Engine API
#   tinyproxy        a forward proxy (CONNECT and plain forwarding), started by the proxy tests
#                    on loopback with a configuration of their own
#   docker-26        trixie's docker.io (Engine 26.1, API 1.45, Docker 25+ archives), not
#                    installed but extracted from its .deb under $HOIST_PEERS_DIR/docker-26
#                    (default /opt/hoist-peers/docker-26), beside 20.10: its dockerd runs with
#                    bookworm's containerd and runc. Getting it adds Debian trixie as an apt
#                    source pinned at priority 100 (nothing comes from trixie unless asked for
#                    with -t trixie) when no source for trixie is configured yet.
#   oras             the reference client for artifacts (Debian trixie's oras 1.2, which depends
#                    only on libc6): installed with -t trixie, trixie added as above
#   moto             an S3-compatible server (PyPI `moto[server]`), for the object-storage
#                    backend: installed into a Python virtual environment under
#                    $HOIST_PEERS_DIR/moto-venv (default /opt/hoist-peers/moto-venv); its
#                    `moto_server` is started by the tests (by hand: moto-venv/bin/moto_server -H
#                    127.0.0.1 -p PORT, then create a bucket with curl -X PUT URL/BUCKET).
# The daemons are started by start-daemon.sh, tinyproxy by the tests (never as system
# services: a policy-rc.d keeps the packages from starting them while they are installed).
# Idempotent: apt-get runs only when one of them is missing. Needs root for that.
# Prints the versions found. Used by .ci/run; run it by hand to enable the interop tests.
set -euo pipefail

peers_dir="${HOIST_PEERS_DIR:-/opt/hoist-peers}"
docker26="$peers_dir/docker-26"

# package name -> command it provides
declare -A cmd=([skopeo]=skopeo [umoci]=umoci [docker-registry]=docker-registry [curl]=curl
  [podman]=podman [tinyproxy]=tinyproxy)
missing=()
for pkg in skopeo umoci docker-registry curl podman tinyproxy; do
  command -v "${cmd[$pkg]}" >/dev/null 2>&1 || missing+=("$pkg")
done
# By path: another docker client (say /usr/local/bin/docker) on PATH is not docker.io's.
[ -x /usr/sbin/dockerd ] && [ -x /usr/bin/docker ] || missing+=(docker.io)
need26=0
[ -x "$docker26/usr/sbin/dockerd" ] || need26=1
# oras 1.2 comes from trixie (bookworm has none); it depends only on libc6.
need_oras=0
command -v oras >/dev/null 2>&1 || need_oras=1

sudo=""
[ "$(id -u)" -eq 0 ] || sudo="sudo"

# Debian trixie as an apt source, pinned low, unless some source for trixie exists already.
add_trixie() {
  if ! grep -qsE '^[^#]*[[:space:]]trixie([[:space:]]|$)' /etc/apt/sources.list \
    /etc/apt/sources.list.d/*.list /etc/apt/sources.list.d/*.sources; then
    echo "adding Debian trixie as an apt source (/etc/apt/sources.list.d/hoist-trixie.sources)" >&2
    $sudo tee /etc/apt/sources.list.d/hoist-trixie.sources >/dev/null <<'EOF'
# Added by hoist's tests/peers/install.sh: Debian trixie, for single leaf packages only
# (pinned at priority 100 in /etc/apt/preferences.d/hoist-trixie).
Types: deb
URIs: http://deb.debian.org/debian
Suites: trixie
Components: main
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg
EOF
  fi
  if ! grep -qsE '^Pin:.*n=trixie' /etc/apt/preferences /etc/apt/preferences.d/*; then
    echo "pinning Debian trixie at priority 100 (/etc/apt/preferences.d/hoist-trixie)" >&2
    $sudo tee /etc/apt/preferences.d/hoist-trixie >/dev/null <<'EOF'
# Added by hoist's tests/peers/install.sh: nothing from trixie unless asked for (-t trixie).
Package: *
Pin: release n=trixie
Pin-Priority: 100
EOF
  fi
}

if [ "${#missing[@]}" -gt 0 ] || [ "$need26" -eq 1 ] || [ "$need_oras" -eq 1 ]; then
  [ "$need26" -eq 0 ] && [ "$need_oras" -eq 0 ] || add_trixie
  $sudo apt-get update -qq >&2
  if [ "${#missing[@]}" -gt 0 ]; then
    echo "installing from Debian: ${missing[*]}" >&2
    # No service may start while installing (docker.io and containerd would start daemons on
    # the host network): without a policy-rc.d already there, one that denies every start.
    policy=""
    if [ ! -e /usr/sbin/policy-rc.d ]; then
      policy=/usr/sbin/policy-rc.d
      printf '#!/bin/sh\n# hoist tests/peers/install.sh: no service starts\nexit 101\n' |
        $sudo tee "$policy" >/dev/null
      $sudo chmod 0755 "$policy"
      trap '$sudo rm -f "$policy"' EXIT
    fi
    $sudo env DEBIAN_FRONTEND=noninteractive \
      apt-get install -y -qq --no-install-recommends "${missing[@]}" >&2
  fi
  if [ "$need_oras" -eq 1 ]; then
    echo "installing oras from Debian trixie" >&2
    $sudo env DEBIAN_FRONTEND=noninteractive \
      apt-get install -y -qq --no-install-recommends -t trixie oras >&2
  fi
  if [ "$need26" -eq 1 ]; then
    echo "extracting Debian trixie's docker.io into $docker26" >&2
    deb_dir="$(mktemp -d)"
    chmod 0755 "$deb_dir"
    # apt downloads as the _apt user where it can.
    if id _apt >/dev/null 2>&1; then $sudo chown _apt "$deb_dir"; fi
    (cd "$deb_dir" && $sudo apt-get download -qq -t trixie docker.io >&2)
    $sudo rm -rf "$docker26.tmp"
    $sudo mkdir -p "$peers_dir"
    $sudo dpkg -x "$deb_dir"/docker.io_*.deb "$docker26.tmp"
    $sudo rm -rf "$deb_dir" "$docker26"
    $sudo mv "$docker26.tmp" "$docker26"
  fi
fi

# moto from PyPI into a virtual environment of its own (no Debian package has moto 5).
moto_venv="$peers_dir/moto-venv"
if [ ! -x "$moto_venv/bin/moto_server" ]; then
  echo "installing moto[server] from PyPI into $moto_venv" >&2
  $sudo mkdir -p "$peers_dir"
  $sudo rm -rf "$moto_venv"
  # Debian's python3 makes virtual environments only with python3-venv (ensurepip).
  if ! "${PYTHON:-python3}" -c 'import ensurepip' >/dev/null 2>&1; then
    $sudo apt-get install -y -q python3-venv >&2
  fi
  $sudo "${PYTHON:-python3}" -m venv "$moto_venv"
  $sudo "$moto_venv/bin/pip" install -q --disable-pip-version-check 'moto[server]>=5,<6' >&2
fi

skopeo --version
umoci --version
docker-registry --version
curl --version | head -n 1
echo "docker.io client: $(/usr/bin/docker --version)"
echo "docker.io daemon: $(/usr/sbin/dockerd --version)"
echo "docker-26 daemon: $("$docker26/usr/sbin/dockerd" --version)"
podman --version
echo "oras: $(oras version | head -n 1)"
echo "moto: $("$moto_venv/bin/python" -c 'import moto; print(moto.__version__)')"
