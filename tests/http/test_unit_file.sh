#!/bin/sh
# The gateway's systemd unit as meson installs it passes `systemd-analyze
# verify`, comes after lmpoold and wants it.
set -eu
: "${LMPOOL_HTTP_UNIT:?}" "${LMPOOL_GATEWAY_BIN:?}"
command -v systemd-analyze >/dev/null || { echo "systemd-analyze not found: skipped"; exit 77; }
dir=$(mktemp -d)
trap 'rm -rf "$dir"' EXIT
sed "s#^ExecStart=[^ ]*#ExecStart=$LMPOOL_GATEWAY_BIN#" "$LMPOOL_HTTP_UNIT" > "$dir/lmpool-http.service"
grep -q '^After=.*lmpoold.service' "$dir/lmpool-http.service"
grep -q '^Wants=lmpoold.service$' "$dir/lmpool-http.service"
grep -q '^Type=notify$' "$dir/lmpool-http.service"
out=$(SYSTEMD_LOG_LEVEL=warning systemd-analyze verify --man=no "$dir/lmpool-http.service" 2>&1) || {
        echo "$out"
        exit 1
}
if echo "$out" | grep -i "lmpool-http.service" | grep -vi "Documentation\|lmpoold.service" ; then
        exit 1
fi
echo "unit file: ok"
