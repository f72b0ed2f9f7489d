#!/usr/bin/env bash
# Builds each Go reference program (test/interop/<name>/, bench/fs/loopback/, bench/stargz/ and
# bench/stargz-snapshotter/) into .interop-bin/<name>, in GOPATH mode against Debian's packaged
# sources (golang-github-containerd-stargz-snapshotter-dev, golang-github-containers-storage-dev,
# golang-github-hanwen-go-fuse-dev). The packages they share (bench/go/<name>/) are importable as
# starling-interop/<name>. Rebuilds only when the program's or the shared packages' sources change.
set -euo pipefail
cd "$(dirname "$0")/.."
mkdir -p .interop-bin
root="$PWD"
gopath="$PWD/.interop-bin/gopath"
# GOPATH mode needs the sources inside a GOPATH src tree; symlinks keep them where they are.
mkdir -p "$gopath/src/starling-interop"
for lib in bench/go/*/; do ln -sfn "$root/$lib" "$gopath/src/starling-interop/$(basename "$lib")"; done
shared=$(cat bench/go/*/*.go | sha256sum | cut -c1-16)
for dir in test/interop/*/ bench/fs/loopback/ bench/stargz/ bench/stargz-snapshotter/; do
  name=$(basename "$dir")
  ls "$dir"*.go >/dev/null 2>&1 || continue
  stamp=$( (cat "$dir"*; echo "$shared") | sha256sum | cut -c1-16)
  out=".interop-bin/$name"
  if [ -x "$out" ] && [ "$(cat "$out.stamp" 2>/dev/null)" = "$stamp" ]; then continue; fi
  echo "build-interop: building $name (Go, GOPATH mode; the first build takes a minute or two)" >&2
  ln -sfn "$root/$dir" "$gopath/src/starling-interop/$name"
  (cd "$gopath/src/starling-interop/$name" && GO111MODULE=off CGO_ENABLED=0 \
     GOPATH="$gopath:/usr/share/gocode" GOCACHE="$root/.interop-bin/gocache" go build -o "$root/$out" .) \
     || { echo "build-interop: building $name failed" >&2; exit 1; }
  echo "$stamp" > "$out.stamp"
done
