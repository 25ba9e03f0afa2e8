#!/bin/sh
# The systemd unit as meson installs it passes `systemd-analyze verify`
# (with ExecStart pointed at the built binary, since nothing is installed).
set -eu
: "${LMPOOL_UNIT:?}" "${LMPOOLD_BIN:?}"
command -v systemd-analyze >/dev/null || { echo "systemd-analyze not found: skipped"; exit 77; }
dir=$(mktemp -d)
trap 'rm -rf "$dir"' EXIT
sed "s#^ExecStart=[^ ]*#ExecStart=$LMPOOLD_BIN#" "$LMPOOL_UNIT" > "$dir/lmpoold.service"
grep -q '^Type=notify$' "$dir/lmpoold.service"
grep -q '^WatchdogSec=' "$dir/lmpoold.service"
grep -q '^MemoryMax=' "$dir/lmpoold.service"
grep -q '^Delegate=' "$dir/lmpoold.service"
grep -q '^LimitNOFILE=' "$dir/lmpoold.service"
grep -q '^RuntimeDirectory=lmpool$' "$dir/lmpoold.service"
# no world-writable sockets: a private umask, a directory closed to others
grep -q '^UMask=0077$' "$dir/lmpoold.service"
grep -q '^RuntimeDirectoryMode=0750$' "$dir/lmpoold.service"
out=$(SYSTEMD_LOG_LEVEL=warning systemd-analyze verify --man=no "$dir/lmpoold.service" 2>&1) || {
        echo "$out"
        exit 1
}
# verify reports some problems only as messages
if echo "$out" | grep -i "lmpoold.service" | grep -vi "Documentation" ; then
        exit 1
fi
echo "unit file: ok"
