#!/bin/bash
# Regenerates the checked-in seed tars of the fuzz corpus from real files of this machine (a small
# subset of test/fixtures/real-tar.ts: real text and binary files plus every entry type), so the
# fuzz runs are reproducible from the same bytes. Run as root (mknod, chown); writes small-{pax,gnu}.tar.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
r=$work/root
mkdir -p "$r/etc" "$r/usr/bin" "$r/usr/lib/json" "$r/data" "$r/dev" "$r/links"
cp /etc/passwd /etc/group "$r/etc/"
cp /usr/lib/python3.11/json/__init__.py /usr/lib/python3.11/json/scanner.py "$r/usr/lib/json/"
head -c 20000 /usr/bin/true > "$r/usr/bin/true-head"
# A zero run longer than zstd:chunked's hole threshold, between real bytes.
{ head -c 3000 /usr/bin/true; head -c 5000 /dev/zero; tail -c 3000 /usr/bin/true; } > "$r/data/holey.bin"
: > "$r/data/empty"
echo 'has extended attributes' > "$r/data/xattr-file"
setfattr -n user.starling.test -v value-1 "$r/data/xattr-file"
chown 1000:1000 "$r/data/xattr-file"
chmod 4755 "$r/data/holey.bin"
mknod "$r/dev/null" c 1 3
mkfifo "$r/dev/fifo"
ln -s ../usr/bin/true-head "$r/links/rel"
ln -s /etc/passwd "$r/links/abs"
ln "$r/etc/passwd" "$r/links/hard-passwd"
long=a-directory-with-a-rather-long-name-to-push-paths-past-the-ustar-limit-of-100-bytes
mkdir -p "$r/names/$long"
echo 'long path' > "$r/names/$long/file-with-a-long-name.txt"
echo 'non-ascii name' > "$r/names/größe-日本語.txt"
for f in pax gnu; do
  extra=()
  [ "$f" = pax ] && extra=(--xattrs --xattrs-include='*')
  tar -C "$r" -cf "$here/small-$f.tar" --sort=name --mtime=2024-01-02T03:04:05Z --format=$f "${extra[@]}" .
done
ls -l "$here"/small-*.tar
