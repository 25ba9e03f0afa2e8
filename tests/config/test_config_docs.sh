#!/bin/sh
# docs/config.md must be exactly what lmp-config-doc prints from the
# settings table. Usage: test_config_docs.sh GENERATOR DOCS_FILE
set -eu
gen=$1 doc=$2
out=$(mktemp)
trap 'rm -f "$out"' EXIT
"$gen" >"$out"
if ! diff -u "$doc" "$out"; then
        echo "docs/config.md is out of date: regenerate it with lmp-config-doc > docs/config.md"
        exit 1
fi
echo "docs/config.md matches the settings table"
