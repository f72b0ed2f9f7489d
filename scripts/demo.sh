#!/usr/bin/env bash
# The whole lazy-pull story on a fresh machine: set up, start Distribution on 127.0.0.1, build a
# small image from this machine's real files (a shell, coreutils and their libraries), convert it to
# eStargz and push it, mount it lazily with a writable upper layer, run a command in it through
# chroot, print what was fetched, unmount, stop the registry. Everything is cleaned up on any exit.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD

./scripts/setup.sh
[ -d node_modules ] || npm ci
npm run build >/dev/null

WORK=$(mktemp -d /tmp/starling-demo.XXXXXX)
export STARLING_RUN_DIR=$WORK/run
REGISTRY_PID=
MNT=$WORK/rootfs
starling() { "$ROOT/bin/starling" "$@"; }

cleanup() {
  set +e
  if grep -q " $MNT " /proc/self/mountinfo; then starling umount "$MNT" || starling umount --force "$MNT"; fi
  [ -n "$REGISTRY_PID" ] && kill "$REGISTRY_PID" 2>/dev/null && wait "$REGISTRY_PID" 2>/dev/null
  rm -rf "$WORK"
}
trap cleanup EXIT INT TERM

echo "== starting Distribution on 127.0.0.1"
PORT=$(node -e "const s=require('net').createServer().listen(0,'127.0.0.1',()=>{console.log(s.address().port);s.close()})")
cat >"$WORK/registry.yml" <<YAML
version: 0.1
log:
  level: error
  accesslog:
    disabled: true
storage:
  filesystem:
    rootdirectory: $WORK/registry
http:
  addr: 127.0.0.1:$PORT
YAML
/usr/bin/docker-registry serve "$WORK/registry.yml" 2>"$WORK/registry.log" &
REGISTRY_PID=$!
for _ in $(seq 100); do curl -fs "http://127.0.0.1:$PORT/v2/" >/dev/null && break; sleep 0.1; done
REF=docker://127.0.0.1:$PORT/demo/tools:v1

echo "== building a sample image from real files"
SRC=$WORK/rootfs-src
mkdir -p "$SRC"/{bin,etc,tmp}
for bin in /bin/sh /bin/ls /bin/cat /usr/bin/head /usr/bin/sha256sum /usr/bin/du /usr/bin/env; do
  cp -L "$bin" "$SRC/bin/"
  for lib in $(ldd "$bin" | grep -o '/[^ ]*'); do mkdir -p "$SRC$(dirname "$lib")"; cp -Ln "$lib" "$SRC$lib"; done
done
cp /etc/os-release /etc/passwd /etc/group "$SRC/etc/"
cp -r /usr/share/zoneinfo "$SRC/zoneinfo"
tar -C "$SRC" -cf "$WORK/layer.tar" .
node --import tsx -e "
  const { buildImage } = await import('$ROOT/test/fixtures/image.ts');
  await buildImage('$WORK/oci', { layers: [{ tar: '$WORK/layer.tar' }], config: { config: { Env: ['PATH=/bin'] } } }, 'v1');
" --input-type=module

echo "== converting to eStargz and pushing to $REF"
starling convert "oci:$WORK/oci:v1" "$REF" --format estargz

echo "== mounting lazily"
mkdir -p "$MNT"
time starling mount "$REF" "$MNT" --upper "$WORK/upper" --cache-dir "$WORK/cache" --no-background-fetch
starling stats "$MNT"

echo "== running a command in the image (chroot through the writable upper layer)"
chroot "$MNT" /bin/sh -c 'cat /etc/os-release | head -2; ls /bin; echo written-in-container > /tmp/note; cat /tmp/note'
echo "upper layer now holds: $(cd "$WORK/upper/upper" && find . -type f)"

echo "== what was fetched"
starling stats "$MNT"

echo "== unmounting"
starling umount "$MNT"
echo "done"
