#!/usr/bin/env bash
# Installs the third-party peers hoist's interop tests run against, from Debian packages:
#   skopeo           containers/image client (layouts, archives, registries)
#   umoci            OCI image layout tool (stat, unpack, repack)
#   docker-registry  the CNCF distribution registry (what "registry:2" runs)
#   curl             to probe the registry
# Idempotent: apt-get runs only when one of them is missing. Needs root for that.
# Prints the versions found. Used by .ci/run; run it by hand to enable the interop tests.
set -euo pipefail

# package name -> command it provides
declare -A cmd=([skopeo]=skopeo [umoci]=umoci [docker-registry]=docker-registry [curl]=curl)
missing=()
for pkg in skopeo umoci docker-registry curl; do
  command -v "${cmd[$pkg]}" >/dev/null 2>&1 || missing+=("$pkg")
done

if [ "${#missing[@]}" -gt 0 ]; then
  echo "installing from Debian: ${missing[*]}" >&2
  sudo=""
  [ "$(id -u)" -eq 0 ] || sudo="sudo"
  $sudo apt-get update -qq >&2
  $sudo env DEBIAN_FRONTEND=noninteractive \
    apt-get install -y -qq --no-install-recommends "${missing[@]}" >&2
fi

skopeo --version
umoci --version
docker-registry --version
curl --version | head -n 1
