#!/usr/bin/env bash
# Builds each Go reference program (test/interop/<name>/, bench/fs/loopback/, bench/stargz/ and
# bench/stargz-snapshotter/) into .interop-bin/<name>, in GOPATH mode against Debian's packaged
# sources (golang-github-containerd-stargz-snapshotter-dev, golang-github-containers-storage-dev,
# golang-github-hanwen-go-fuse-dev). Rebuilds only when the program's sources change.
set -euo pipefail
cd "$(dirname "$0")/.."
mkdir -p .interop-bin
root="$PWD"
gopath="$PWD/.interop-bin/gopath"
for dir in test/interop/*/ bench/fs/loopback/ bench/stargz/ bench/stargz-snapshotter/; do
  name=$(basename "$dir")
  ls "$dir"*.go >/dev/null 2>&1 || continue
  stamp=$(cat "$dir"* | sha256sum | cut -c1-16)
  out=".interop-bin/$name"
  if [ -x "$out" ] && [ "$(cat "$out.stamp" 2>/dev/null)" = "$stamp" ]; then continue; fi
  echo "build-interop: building $name (Go, GOPATH mode; the first build takes a minute or two)" >&2
  # GOPATH mode needs the program inside a GOPATH src tree; a symlink keeps the source where it is.
  mkdir -p "$gopath/src/starling-interop"
  ln -sfn "$root/$dir" "$gopath/src/starling-interop/$name"
  (cd "$gopath/src/starling-interop/$name" && GO111MODULE=off CGO_ENABLED=0 \
     GOPATH="$gopath:/usr/share/gocode" GOCACHE="$root/.interop-bin/gocache" go build -o "$root/$out" .) \
     || { echo "build-interop: building $name failed" >&2; exit 1; }
  echo "$stamp" > "$out.stamp"
done
