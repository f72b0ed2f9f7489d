#!/usr/bin/env bash
# Installs every system dependency Starling's tests and demo need. Idempotent: packages already
# present are not fetched again, and the Go reference programs are rebuilt only when its source changes.
set -euo pipefail
cd "$(dirname "$0")/.."

# g++, make, python3 and zlib1g-dev build native/ during `npm ci`; pigz makes test blobs.
PKGS=(fuse libfuse2 docker-registry skopeo zstd golang-go
      golang-github-containerd-stargz-snapshotter-dev golang-github-containers-storage-dev
      golang-github-ulikunitz-xz-dev golang-github-hanwen-go-fuse-dev bindfs
      openssl iproute2 attr e2fsprogs python3 gcc
      g++ make zlib1g-dev pigz
      containerd runc stargz-snapshotter busybox-static)

missing=()
for p in "${PKGS[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  echo "setup: installing ${missing[*]}" >&2
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  # docker-registry's and containerd's postinsts try to start a service, which this machine's
  # policy refuses; policy-rc.d keeps that from failing the install (and containerd from starting).
  printf '#!/bin/sh\nexit 101\n' > /usr/sbin/policy-rc.d; chmod +x /usr/sbin/policy-rc.d
  apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
  rm -f /usr/sbin/policy-rc.d
fi

if [ ! -e /dev/fuse ]; then echo "setup: /dev/fuse is missing; FUSE mounts cannot work" >&2; exit 1; fi

# The Go reference programs (test/interop, bench/fs/loopback) are built in GOPATH mode against Debian's sources.
if [ -d test/interop ] && [ -x scripts/build-interop.sh ]; then
  scripts/build-interop.sh
fi
