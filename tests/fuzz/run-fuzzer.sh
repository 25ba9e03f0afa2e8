#!/bin/sh
# Runs one libFuzzer target for a bounded time, seeded with the files of a
# fixture directory (copied into a fresh corpus so the fixtures stay as
# they are). Usage: run-fuzzer.sh TARGET SEED_DIR SECONDS
# A finding exits 1: libFuzzer's own default, 77, is what meson counts as
# a skipped test.
set -eu
target=$1 seeds=$2 seconds=$3
if [ ! -d "$seeds" ]; then
        echo "fixtures not found at $seeds: skipped"
        exit 77
fi
corpus=$(mktemp -d)
trap 'rm -rf "$corpus"' EXIT
# Seed with the fixtures (small files only: libFuzzer's max_len bounds
# what it mutates anyway).
find "$seeds" -maxdepth 1 -type f -size -4M -exec cp {} "$corpus"/ \;
exec "$target" -error_exitcode=1 -timeout_exitcode=1 -max_total_time="$seconds" -max_len=1048576 -timeout=10 -rss_limit_mb=2048 \
        -print_final_stats=1 "$corpus"
