#!/bin/sh
# Builds the Debian 12 root filesystem that the systemd suite boots with
# systemd-nspawn, once: debootstrap (minbase) with systemd, dbus, lmpool's
# run-time libraries (the HTTP gateway's and the image decoders' too) and jq (the journal recipes of docs/operations.md use
# it), so that `apt install ./lmpool_*.deb` inside needs no network.
# Usage: mkrootfs.sh DIR. Builds into DIR.tmp and renames it to DIR when
# complete, so an interrupted build is never taken for a finished one; a
# root filesystem made with another package list is made again.
set -eu
dir=$1
packages=systemd,systemd-sysv,dbus,libzmq5,libcjson1,libyaml-0-2,libopenblas0,libopenblas0-pthread,libnuma1,libpcre2-8-0,libmicrohttpd12,libpng16-16,libjpeg62-turbo,libwebp7,jq
[ "$(cat "$dir/etc/lmpool-rootfs-complete" 2>/dev/null)" = "$packages" ] && exit 0
mirror=${LMPOOL_DEBIAN_MIRROR:-http://deb.debian.org/debian}
rm -rf "$dir.tmp"
mkdir -p "$(dirname "$dir")"
debootstrap --variant=minbase \
        --include="$packages" \
        bookworm "$dir.tmp" "$mirror" >"$dir.log" 2>&1 || { tail -20 "$dir.log" >&2; exit 1; }
# A machine id, so that the journal is persistent under
# /var/log/journal/MACHINE_ID and readable from outside.
systemd-machine-id-setup --root="$dir.tmp" >/dev/null
mkdir -p "$dir.tmp/var/log/journal"
# Nothing the tests do not need runs at boot.
for u in apt-daily.timer apt-daily-upgrade.timer dpkg-db-backup.timer e2scrub_all.timer fstrim.timer; do
        ln -sf /dev/null "$dir.tmp/etc/systemd/system/$u"
done
echo "$packages" > "$dir.tmp/etc/lmpool-rootfs-complete"
rm -rf "$dir"
mv "$dir.tmp" "$dir"
