#!/bin/sh
# lmpool bench and llama.cpp's llama-bench on the same GGUF files, model by
# model (the peer first, then lmpool, never at the same time), joined into
# one table: t/s of each, the ratio, and lmpool's share of the bandwidth
# ceiling for generation rows.
#
#   benchmarks/side_by_side.sh [-t 1,2] [-p 128,512] [-n 64] [-d 0] [-r 3] MODEL.gguf...
#
# -d: tokens already in the cache before each test (both tools' -d).
#
# Environment: LMPOOL (default build/src/client/lmpool), LLAMA_BENCH (default
# /tmp/llamacpp/build/bin/llama-bench, built by ../shared/peers/setup.sh),
# OUT (a directory for the raw JSON lines; default a new temporary one).
# Prints the markdown table on stdout; the raw lines stay in $OUT.
set -eu

threads=1,2 prompts=128,512 gen=64 depth=0 reps=3
while getopts t:p:n:d:r: opt; do
        case $opt in
        t) threads=$OPTARG ;;
        p) prompts=$OPTARG ;;
        n) gen=$OPTARG ;;
        d) depth=$OPTARG ;;
        r) reps=$OPTARG ;;
        *) echo "usage: $0 [-t THREADS] [-p PROMPTS] [-n GEN] [-d DEPTHS] [-r REPS] MODEL.gguf..." >&2; exit 2 ;;
        esac
done
shift $((OPTIND - 1))
[ $# -gt 0 ] || { echo "usage: $0 [-t THREADS] [-p PROMPTS] [-n GEN] [-d DEPTHS] [-r REPS] MODEL.gguf..." >&2; exit 2; }

here=$(cd "$(dirname "$0")/.." && pwd)
LMPOOL=${LMPOOL:-$here/build/src/client/lmpool}
LLAMA_BENCH=${LLAMA_BENCH:-/tmp/llamacpp/build/bin/llama-bench}
OUT=${OUT:-$(mktemp -d /tmp/side-by-side.XXXXXX)}
mkdir -p "$OUT"
[ -x "$LMPOOL" ] || { echo "$0: no lmpool at $LMPOOL (build first, or set LMPOOL)" >&2; exit 1; }
[ -x "$LLAMA_BENCH" ] || { echo "$0: no llama-bench at $LLAMA_BENCH (run ../shared/peers/setup.sh, or set LLAMA_BENCH)" >&2; exit 1; }

# The machine's OpenBLAS settings (see ../shared/PEERS.md), for both.
export OPENBLAS_CORETYPE="${OPENBLAS_CORETYPE:-Haswell}" OPENBLAS_L2_SIZE="${OPENBLAS_L2_SIZE:-512}"

echo "# raw results in $OUT; load before: $(cut -d' ' -f1-3 /proc/loadavg)" >&2
for m in "$@"; do
        name=$(basename "$m" .gguf)
        echo "# $name: llama-bench" >&2
        "$LLAMA_BENCH" -m "$m" -t "$threads" -p "$prompts" -n "$gen" -d "$depth" -r "$reps" -o jsonl \
                >"$OUT/$name.peer.jsonl" 2>"$OUT/$name.peer.log"
        echo "# $name: lmpool bench" >&2
        "$LMPOOL" bench "$m" -t "$threads" -p "$prompts" -n "$gen" -d "$depth" -r "$reps" --json \
                >"$OUT/$name.lmpool.jsonl" 2>"$OUT/$name.lmpool.log"
done
echo "# load after: $(cut -d' ' -f1-3 /proc/loadavg)" >&2

python3 - "$OUT" "$@" <<'EOF'
import json, os, sys
out, models = sys.argv[1], sys.argv[2:]

def lines(path):
    with open(path) as f:
        return [json.loads(l) for l in f if l.startswith("{")]

print("| model | threads | test | llama.cpp t/s | lmpool t/s | lmpool ÷ llama.cpp | lmpool share of ceiling |")
print("|---|---|---|---|---|---|---|")
for m in models:
    name = os.path.basename(m)[:-5] if m.endswith(".gguf") else os.path.basename(m)
    peer = {}
    for r in lines(os.path.join(out, name + ".peer.jsonl")):
        test = "pp%d" % r["n_prompt"] if r["n_gen"] == 0 else "tg%d" % r["n_gen"]
        if r.get("n_depth", 0):
            test += " @ d%d" % r["n_depth"]
        peer[(r["n_threads"], test)] = (r["avg_ts"], r["stddev_ts"])
    for r in lines(os.path.join(out, name + ".lmpool.jsonl")):
        key = (r["n_threads"], r["test"])
        p = peer.get(key)
        share = "%.0f%%" % (100 * r["ceiling_share"]) if r.get("ceiling_share") else ""
        print("| %s | %d | %s | %s | %.2f ± %.2f | %s | %s |" % (
            name, key[0], key[1], "%.2f ± %.2f" % p if p else "-", r["avg_ts"], r["stddev_ts"],
            "%.2f×" % (r["avg_ts"] / p[0]) if p else "-", share))
EOF
