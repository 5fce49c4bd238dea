#!/usr/bin/env bash
# Makes the seed corpora of the fuzz targets (fuzz/corpus/TARGET/seed-*): hand-written samples,
# and real-world ones made by the peers (skopeo- and umoci-written manifests, configs, layers
# and archives of a small image). Run from the workspace root after `cargo build -p
# hoist-tests --bins`, with skopeo and umoci installed (tests/peers/install.sh). The fuzzer adds
# its own finds beside the seeds; rerunning this replaces only the seeds.
set -euo pipefail
root=$(pwd)
hoist=${HOIST:-$root/target/debug/hoist-under-test}
corpus=$root/fuzz/corpus
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

seed() { # TARGET NAME: stdin becomes fuzz/corpus/TARGET/seed-NAME
    mkdir -p "$corpus/$1"
    cat > "$corpus/$1/seed-$2"
}

# A small image: a few files, a symlink, built by hoist into a layout, then rewritten by the
# peers in their own formats.
mkdir -p "$work/tree/etc" "$work/tree/usr/bin"
echo "hello" > "$work/tree/etc/motd"
printf '#!/bin/sh\necho hi\n' > "$work/tree/usr/bin/hi"; chmod 755 "$work/tree/usr/bin/hi"
ln -s ../etc/motd "$work/tree/usr/motd"
SOURCE_DATE_EPOCH=1700000000 "$hoist" -q build --layer "$work/tree" --label org.example=seed \
    "oci:$work/hoist:v1" > /dev/null
skopeo --insecure-policy copy -q "oci:$work/hoist:v1" "oci:$work/skopeo:v1"
skopeo --insecure-policy copy -q --format v2s2 "oci:$work/hoist:v1" "dir:$work/v2s2"
skopeo --insecure-policy copy -q "oci:$work/hoist:v1" "docker-archive:$work/docker.tar:seed/app:v1"
skopeo --insecure-policy copy -q "oci:$work/hoist:v1" "oci-archive:$work/oci.tar:v1"
gzip -c "$work/oci.tar" > "$work/oci.tar.gz"
(cd "$work" && umoci init --layout umoci && umoci new --image umoci:v1 \
    && umoci insert --image umoci:v1 "$work/tree" /srv > /dev/null)

# Every JSON blob the tools wrote: manifests, indexes and configs, for both JSON targets.
n=0
for blob in "$work"/{hoist,skopeo,umoci}/blobs/sha256/* "$work"/{hoist,skopeo,umoci}/index.json \
    "$work"/v2s2/manifest.json; do
    if head -c 1 "$blob" | grep -q '{'; then
        n=$((n + 1))
        seed manifest "json-$n" < "$blob"
        seed image_config "json-$n" < "$blob"
    fi
done
# The layers, uncompressed, for the tar target.
for blob in "$work"/{hoist,umoci}/blobs/sha256/*; do
    if gzip -t "$blob" 2> /dev/null; then
        n=$((n + 1))
        gzip -dc "$blob" | seed tar "layer-$n"
    fi
done
# Tars for the tar target, and layers to merge (flatten) for the merge target: hand-written
# stacks of whiteouts, replaced directories and hard links whose target goes, in the merge
# target's format (tars joined by its separator, lowest first).
mkdir -p "$corpus/merge"
python3 - "$corpus" << 'PY'
import io, sys, tarfile
corpus = sys.argv[1]
def tar(members, format=tarfile.PAX_FORMAT):
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=format) as t:
        for info, data in members:
            t.addfile(info, io.BytesIO(data) if data is not None else None)
        end = t.offset
    # The end-of-archive blocks without tarfile's padding to 10 KiB: smaller inputs fuzz faster.
    return buf.getvalue()[:end] + bytes(1024)
def file(name, data=b"x", **kw):
    info = tarfile.TarInfo(name); info.size = len(data)
    for k, v in kw.items(): setattr(info, k, v)
    return info, data
def link(name, target, kind=tarfile.LNKTYPE):
    info = tarfile.TarInfo(name); info.type = kind; info.linkname = target
    return info, None
def directory(name):
    info = tarfile.TarInfo(name); info.type = tarfile.DIRTYPE; info.mode = 0o755
    return info, None
def write(target, name, data):
    open(f"{corpus}/{target}/seed-{name}", "wb").write(data)
long = "d/" + "n" * 150 + "/" + "f" * 120
write("tar", "pax-long", tar([file(long), link("l", long, tarfile.SYMTYPE)]))
write("tar", "gnu-long", tar([file(long), link("h", long)], tarfile.GNU_FORMAT))
write("tar", "whiteouts", tar([file("a/.wh.b", b""), file("a/.wh..wh..opq", b""),
                               file("../../escape", b"e"), file("/abs", b"a")]))
write("tar", "xattrs", tar([file("x", pax_headers={"SCHILY.xattr.user.k": "v"})]))
def stack(name, layers):
    write("merge", name, b"\n--layer--\n".join(tar(layer) for layer in layers))
stack("whiteouts", [
    [directory("a"), file("a/b", b"b"), file("a/c", b"c"), link("a/l", "a/b"),
     directory("d"), file("d/x", b"x")],
    [file("a/.wh.b", b""), file("d/.wh..wh..opq", b""), file("d/y", b"y")],
])
stack("orphaned-links", [
    [file("f", b"content"), link("h", "f"), link("h2", "f")],
    [file(".wh.f", b"")],
    [file("g", b"g"), link("s", "g", tarfile.SYMTYPE)],
])
stack("replaced-dirs", [
    [directory("p"), file("p/q", b"q"), file("p/q2", b"q2")],
    [file("p", b"now a file")],
    [directory("p"), file("p/r", b"r")],
    [file("p/.wh.r", b""), file("z/implicit/parent", b"deep")],
])
stack("child-before-parent", [
    [file("k/v", b"v"), directory("k")],
    [file("k/w", b"w")],
])
PY
# The real layers of hoist's and umoci's images stacked, for the merge target.
layers=()
for blob in "$work"/{hoist,umoci}/blobs/sha256/*; do
    if gzip -t "$blob" 2> /dev/null; then layers+=("$blob"); fi
done
{
    gzip -dc "${layers[0]}"
    for blob in "${layers[@]:1}"; do printf '\n--layer--\n'; gzip -dc "$blob"; done
} | seed merge real

seed archive docker < "$work/docker.tar"
seed archive oci < "$work/oci.tar"
seed archive oci-gzip < "$work/oci.tar.gz"

d256=sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855
d512=sha512:cf83e1357eefb8bdf1542850d66d8007d620e4050b5715dc83f4a921d36ce9ce47d0d13c5d85f2b0ff8318d2877eec2f63b931bd47417a81a538327af927da3e
printf '%s' "$d256" | seed digest sha256
printf '%s' "$d512" | seed digest sha512
printf '%s' "SHA256:E3B0" | seed digest upper
i=0
for r in ubuntu docker://ubuntu:22.04 ghcr.io/org/app:1.2 "localhost:5000/x@$d256" \
    "[::1]:5000/a/b:c" "registry.example:443/a/b/c:v1@$d256" "oci:./dir:v1" "oci:/tmp/x" \
    "oci-archive:img.tar:v1" "docker-archive:img.tar:app:v1" "docker-archive:img.tar:@1" \
    "docker-daemon:app:v1" "index.docker.io/library/alpine"; do
    i=$((i + 1)); printf '%s' "$r" | seed reference "$i"
done
printf '%s' 'Bearer realm="https://auth.example/token",service="registry.example",scope="repository:a/b:pull,push"' | seed www_authenticate bearer
printf '%s' 'Basic realm="registry"' | seed www_authenticate basic
printf '%s' 'Bearer realm=https://auth.example/token, error="insufficient_scope"' | seed www_authenticate bare
printf '%s' '{"token":"abc","expires_in":300,"issued_at":"2026-01-01T00:00:00Z"}' | seed token_response docker
printf '%s' '{"access_token":"abc","token_type":"Bearer","expires_in":3600,"refresh_token":"r1","scope":"repository:a/b:pull"}' | seed token_response oauth2
printf '%s' '{"token":"abc"}' | seed token_response no-expiry
printf '/v2/team/app/blobs/%s\nbytes=0-99\n0-1023' "$d256" | seed server_request blob
printf '/v2/a/b/c/blobs/uploads/0123456789abcdef0123456789abcdef\nbytes=-5\nbytes 10-19' | seed server_request upload
printf '/v2/a/manifests/v1\nbytes=5-\n' | seed server_request manifest
printf '/v2/a/referrers/%s\n\n' "$d256" | seed server_request referrers
printf '/v2/_catalog?n=10\n\n' | seed server_request catalog
cat << 'TOML' | seed access_policy toml
[groups]
dev = ["alice", "bob"]

[repositories."team/**"]
users = { alice = ["pull", "push"], carol = ["pull"] }
groups = { dev = ["pull", "push", "delete"] }
anonymous = ["pull"]

[repositories."public/*"]
anonymous = ["pull"]
TOML
cat << 'YAML' | seed access_policy yaml
groups:
  dev: [alice, bob]
repositories:
  "team/**":
    users: { alice: [pull, push] }
    groups: { dev: [pull, push, delete] }
  "**":
    anonymous: [pull]
YAML
cat << 'HT' | seed htpasswd users
alice:$2y$05$abcdefghijklmnopqrstuu4W3yWXh6V5JY2Vbi/DDsh0KA9ZSbJ/K
bob:$2b$10$ABCDEFGHIJKLMNOPQRSTUOgWqXkS2I0RNOv7aqCG9GV2/XQxRBSR.
# a comment
HT
cat << 'YAML' | seed sync_config yaml
sync:
  - source: reg.example/team/app
    destination: localhost:5000/app
    tags:
      regex: '^v1\.'
      semver: '>=1.2, <2'
    platforms: [linux/amd64, linux/arm64/v8]
    referrers: true
  - source: oci:./mirror
    destination: localhost:5000/mirror
YAML
cat << 'TOML' | seed sync_config toml
[[sync]]
source = "reg.example/team/app"
destination = "localhost:5000/app"
tags = { regex = "^v[0-9]+$", semver = "^1" }
TOML
echo "seeds written under $corpus"
