#!/bin/sh
# `lmpool bench` on two fixture models with tiny sizes: the markdown table
# and the JSON lines have llama-bench's shape (one row per model, thread
# count and test; pp rows without a bandwidth share, tg rows with one),
# batched rows are named "ppP xS" / "tgN xS", rows after a filled cache
# "ppP @ dD" / "tgN @ dD", and every option's bounds are
# refused with a message and exit 2. No figure is checked: they are timings.
set -eu
: "${LMPOOL_BIN:?}" "${LMPOOL_FIXTURES:?}"
m1="$LMPOOL_FIXTURES/models/llama-q4_k_m.gguf"
m2="$LMPOOL_FIXTURES/models/qwen2-q8_0.gguf"
[ -f "$m1" ] && [ -f "$m2" ] || { echo "fixtures not found: skipped"; exit 77; }
dir=$(mktemp -d)
trap 'rm -rf "$dir"' EXIT

fail() { echo "FAIL: $*"; for f in "$dir"/out "$dir"/err; do [ -f "$f" ] && { echo "--- $f"; cat "$f"; }; done; exit 1; }
expect_status() { # want, command...
        want=$1; shift
        set +e; "$@" > "$dir/out" 2> "$dir/err"; got=$?; set -e
        [ "$got" -eq "$want" ] || fail "exit $got, expected $want: $*"
}

# The table: 2 models x 2 thread counts x (pp8, pp16, tg4, pp8 x3, tg4 x3).
expect_status 0 "$LMPOOL_BIN" bench "$m1" "$m2" -p 8,16 -n 4 -b 1,3 -r 2 -t 1,2 --probe-mib=64
python3 - "$dir/out" <<'PY'
import re, sys
lines = open(sys.argv[1], encoding="utf-8").read().splitlines()
assert re.match(r"^memory bandwidth probe \(streaming read of 64 MiB.*: 1 thread [0-9.]+ GB/s, 2 threads [0-9.]+ GB/s$", lines[0]), lines[0]
rows = [l for l in lines if l.startswith("|")]
cells = lambda l: [c.strip() for c in l.strip("|").split("|")]
assert cells(rows[0]) == ["model", "size", "params", "threads", "test", "t/s", "GB/s", "ceiling"], rows[0]
assert all(re.fullmatch(r"-+:?", c) for c in cells(rows[1])), rows[1]
body = [cells(l) for l in rows[2:]]
assert len(body) == 20, len(body)
tests = ["pp8", "pp16", "tg4", "pp8 x3", "tg4 x3"]
want = [(m, t, x) for m in ("llama-q4_k_m", "qwen2-q8_0") for t in ("1", "2") for x in tests]
assert [(r[0], r[3], r[4]) for r in body] == want, [(r[0], r[3], r[4]) for r in body]
for r in body:
    assert len(r) == 8, r
    assert re.fullmatch(r"[0-9.]+ MiB", r[1]) and re.fullmatch(r"[0-9.]+ M", r[2]), r
    assert re.fullmatch(r"[0-9]+\.[0-9]{2} ± [0-9]+\.[0-9]{2}", r[5]), r
    if r[4].startswith("tg"):
        assert re.fullmatch(r"[0-9]+\.[0-9]", r[6]) and re.fullmatch(r"[0-9]+%", r[7]), r
    else:
        assert r[6] == "" and r[7] == "", r
PY
[ $? -eq 0 ] || fail "table shape"

# JSON lines, with no probe: the share is null; the probe line is not on stdout.
expect_status 0 "$LMPOOL_BIN" bench "$m1" --n-prompt=8 --n-gen=0,4 --seqs=2 --repetitions=3 --threads=2 --json --probe-mib 0
python3 - "$dir/out" "$m1" <<'PY'
import json, sys
rows = [json.loads(l) for l in open(sys.argv[1])]
assert [r["test"] for r in rows] == ["pp8 x2", "tg4 x2"], rows
keys = {"model", "model_filename", "model_size", "model_n_params", "n_threads", "test", "n_prompt", "n_gen",
        "n_depth", "n_seqs", "repetitions", "avg_ts", "stddev_ts", "samples_ts", "step_weight_bytes", "probe_gbs",
        "step_ms_min", "weight_gbs", "ceiling_share", "repacked_matrices"}
for r in rows:
    assert set(r) == keys, set(r) ^ keys
    assert r["model"] == "llama-q4_k_m" and r["model_filename"] == sys.argv[2]
    assert r["n_threads"] == 2 and r["n_seqs"] == 2 and r["n_prompt"] == 8 and r["repetitions"] == 3
    assert r["n_depth"] == 0
    assert len(r["samples_ts"]) == 3 and all(s > 0 for s in r["samples_ts"])
    assert abs(sum(r["samples_ts"]) / 3 - r["avg_ts"]) < 0.01 * r["avg_ts"] + 0.002
    assert r["probe_gbs"] is None and r["ceiling_share"] is None
    assert 0 < r["step_weight_bytes"] <= r["model_size"]
assert rows[0]["n_gen"] == 0 and rows[0]["weight_gbs"] is None and rows[0]["step_ms_min"] is None
assert rows[1]["n_gen"] == 4 and rows[1]["weight_gbs"] > 0
# The fastest step is no slower than the mean step (aggregate t/s over 2 sequences).
assert 0 < rows[1]["step_ms_min"] <= 1e3 * 2 / min(rows[1]["samples_ts"]) * 1.0001
PY
[ $? -eq 0 ] || fail "json shape"

# The file's layout repacks nothing; the store's (the default) repacks the
# q4_K matrices when the CPU has AVX-512, and gives the same kind of rows.
expect_status 0 "$LMPOOL_BIN" bench "$m1" -p 8 -n 0 -r 1 -t 1 --json --probe-mib 0 --layout file
python3 -c '
import json, sys
(r,) = [json.loads(l) for l in open(sys.argv[1])]
assert r["repacked_matrices"] == 0, r
' "$dir/out" || fail "file layout"
if grep -q avx512_vnni /proc/cpuinfo && [ "${LMPOOL_ISA:-avx512}" = avx512 ]; then
        expect_status 0 "$LMPOOL_BIN" bench "$m1" -p 8 -n 2 -r 1 -t 1 --json --probe-mib 0 --layout=store
        python3 -c '
import json, sys
rows = [json.loads(l) for l in open(sys.argv[1])]
assert len(rows) == 2 and all(r["repacked_matrices"] > 0 and r["avg_ts"] > 0 for r in rows), rows
' "$dir/out" || fail "store layout"
fi

# -d: each single-sequence test after that many tokens; depth 0 rows keep
# their names. The context must hold the depth plus the test.
expect_status 0 "$LMPOOL_BIN" bench "$m2" -p 8 -n 4 -d 0,24 -r 2 -t 1 --json --probe-mib 0
python3 -c '
import json, sys
rows = [json.loads(l) for l in open(sys.argv[1])]
assert [(r["test"], r["n_depth"]) for r in rows] == [("pp8", 0), ("tg4", 0), ("pp8 @ d24", 24), ("tg4 @ d24", 24)], rows
assert all(r["avg_ts"] > 0 and len(r["samples_ts"]) == 2 for r in rows), rows
' "$dir/out" || fail "depth rows"
expect_status 2 "$LMPOOL_BIN" bench "$m2" -p 8 -n 4 -d 16 -b 2
grep -q -- '-d applies to single-sequence rows' "$dir/err" || fail "depth with -b message"
expect_status 1 "$LMPOOL_BIN" bench "$m2" -p 0 -n 4 -d 16384 --probe-mib 0
grep -q 'the tests need 16388 positions per sequence' "$dir/err" || fail "depth past the context message"

# With a probe, JSON generation rows carry it and their share.
expect_status 0 "$LMPOOL_BIN" bench "$m2" -p 0 -n 2 -r 1 -t 1 --json --probe-mib 64
python3 -c '
import json, sys
(r,) = [json.loads(l) for l in open(sys.argv[1])]
assert r["test"] == "tg2" and r["probe_gbs"] > 0 and r["ceiling_share"] > 0, r
' "$dir/out" || fail "json probe"
grep -q '^memory bandwidth probe' "$dir/err" || fail "probe line on stderr"

# A file name that needs escaping still gives valid JSON.
cp "$m1" "$dir/a\"b\\c.gguf"
expect_status 0 "$LMPOOL_BIN" bench "$dir/a\"b\\c.gguf" -p 4 -n 0 -r 1 -t 1 --json --probe-mib 0
python3 -c '
import json, sys
(r,) = [json.loads(l) for l in open(sys.argv[1])]
assert r["model"] == "a\"b\\c" and r["model_filename"].endswith("/a\"b\\c.gguf"), r
' "$dir/out" || fail "json escaping"

# Bounds and usage errors: exit 2 with a message naming the option, worded
# as every subcommand words it (common/args.h).
expect_status 2 "$LMPOOL_BIN" bench
grep -q 'no model given' "$dir/err" || fail "no model message"
for bad in "-p abc" "-p 8,,16" "-p -1" "-p 16385" "-n 99999" "-b 0" "-b 129" "-r 0" "-r 101" "-t 0" "-t 513" "-d -1" "-d 16385" \
           "-p 1,2,3,4,5,6,7,8,9,10,11,12,13,14,15,16,17" "--probe-mib 10" "--probe-mib=65537" "--layout mmap"; do
        # shellcheck disable=SC2086
        expect_status 2 "$LMPOOL_BIN" bench "$m1" $bad
        opt=${bad%% *}; opt=${opt%%=*}
        grep -q -- "^lmpool bench: bad value '.*' for $opt: " "$dir/err" || fail "message for $bad"
done
expect_status 2 "$LMPOOL_BIN" bench "$m1" -p 0 -n 0
grep -q 'nothing to measure' "$dir/err" || fail "nothing to measure"
expect_status 2 "$LMPOOL_BIN" bench "$m1" --frobnicate
expect_status 0 "$LMPOOL_BIN" bench --help
grep -q '^usage: lmpool bench' "$dir/out" || fail "--help"

# Failures: exit 1 with the reason.
expect_status 1 "$LMPOOL_BIN" bench "$dir/missing.gguf" -p 8 -n 0 --probe-mib 0
grep -q "lmpool bench: $dir/missing.gguf:" "$dir/err" || fail "missing file message"
expect_status 1 "$LMPOOL_BIN" bench "$m1" -p 4000 -n 0 --probe-mib 0
grep -q 'the tests need 4000 positions per sequence, the model has 2048' "$dir/err" || fail "positions message"
echo "cli-bench: ok"
