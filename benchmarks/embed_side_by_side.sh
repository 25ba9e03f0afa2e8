#!/bin/sh
# Embedding throughput, lmpool beside llama.cpp, on the same file: a
# random-weight model in BGE-small's shape (lmpool mkmodel --shape
# bge-small: 12 layers x 384, 12 heads, ffn 1536, the 30522-token WordPiece
# vocabulary of the embeddings fixtures), 32 short texts
# (benchmarks/embed_texts.txt, 8 to 13 tokens each), at batches of 1 and 32
# texts per forward pass, on each thread count of THREADS ("1 2"), ROUNDS
# times (5): each round runs the peer, then lmpool, at each thread count.
#
#   benchmarks/embed_side_by_side.sh BUILD_DIR [TYPE]       (TYPE: f16)
#
# lmpool: build/benchmarks/bench_embed (the worker's embedder, in process,
# load excluded; tokenization and L2 normalization included), each batch
# size for SECONDS_PER_RUN (3) seconds. llama.cpp:
# /tmp/llamacpp/build/bin/llama-embedding (../shared/peers/setup.sh builds
# it) on the texts repeated 10 times, pooling and normalization as the file
# and its defaults say (mean, L2: the same as lmpool's); it logs the start
# of each forward pass, so a batch's time is the interval between two of
# them (load and tokenization excluded, its normalization included); its
# batch is set by tokens: -c -b -ub 15 hold one of these texts and never
# two, 316 exactly the 32 (316 tokens; -np the sequences).
#
# Prints one JSON line per round and thread count, then a table: the best
# of the rounds for each side, the spread (lowest-highest), and the ratio
# of the bests. On a shared machine, read the best-of figures and the
# spread together.
set -eu
build=${1:?usage: embed_side_by_side.sh BUILD_DIR [TYPE]}
type=${2:-f16}
threads_list=${THREADS:-1 2}
rounds=${ROUNDS:-5}
src=$(cd "$(dirname "$0")/.." && pwd)
fixtures=${LMPOOL_FIXTURES:-$src/../shared/fixtures}
peer=${LLAMA_EMBEDDING:-/tmp/llamacpp/build/bin/llama-embedding}
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT

model=$tmp/bge-small-$type.gguf
"$build/src/client/lmpool" mkmodel --shape bge-small --type "$type" \
        --vocab "$fixtures/embeddings/bert-mean-f32.gguf" -o "$model" >/dev/null
texts=$src/benchmarks/embed_texts.txt
for i in 1 2 3 4 5 6 7 8 9 10; do cat "$texts"; done | head -c -1 > "$tmp/texts320.txt"

peer_rate() { # threads, tokens per pass, sequences -> texts/s
        [ -x "$peer" ] || { echo 0; return; }
        "$peer" -m "$model" -f "$tmp/texts320.txt" -t "$1" -c "$2" -b "$2" -ub "$2" -np "$3" \
                --embd-output-format array > /dev/null 2> "$tmp/peer.err"
        # "M.SS.mmm.uuu I batch_decode: n_tokens = N, n_seq = K": the
        # passes but the last, each timed to the next one's start.
        awk '/batch_decode: n_tokens/ {
                split($1, t, "."); s = t[1] * 60 + t[2] + t[3] / 1e3 + t[4] / 1e6
                if (n) { total += s - last; texts += seqs }
                last = s; seqs = $NF; n++
             } END { if (total > 0) printf "%.1f\n", texts / total; else print 0 }' "$tmp/peer.err"
}

r=1
while [ "$r" -le "$rounds" ]; do
        for t in $threads_list; do
                p1=$(peer_rate "$t" 15 2)
                p32=$(peer_rate "$t" 316 32)
                "$build/benchmarks/bench_embed" "$model" "$texts" --threads "$t" \
                        --seconds "${SECONDS_PER_RUN:-3}" | grep '^{' > "$tmp/lmpool.json"
                l1=$(sed -n 's/.*"batch":1,.*"texts_per_s":\([0-9.]*\).*/\1/p' "$tmp/lmpool.json")
                l32=$(sed -n 's/.*"batch":32,.*"texts_per_s":\([0-9.]*\).*/\1/p' "$tmp/lmpool.json")
                printf '{"bench":"embed_side_by_side","type":"%s","round":%d,"threads":%s,"lmpool_b1":%s,"lmpool_b32":%s,"llama_b1":%s,"llama_b32":%s,"load":%s}\n' \
                        "$type" "$r" "$t" "$l1" "$l32" "$p1" "$p32" "$(cut -d' ' -f1 /proc/loadavg)" \
                        | tee -a "$tmp/rounds.json"
        done
        r=$((r + 1))
done

printf '\n%-14s %7s %5s %30s %33s %7s\n' model threads batch "lmpool texts/s best (spread)" \
        "llama.cpp texts/s best (spread)" "ratio"
for t in $threads_list; do
        for b in 1 32; do
                awk -v t="$t" -v b="$b" -v m="bge-small-$type" '
                        function num(key,   s) { s = $0; sub(".*\"" key "\":", "", s); sub("[,}].*", "", s); return s + 0 }
                        num("threads") == t {
                                l = num("lmpool_b" b); p = num("llama_b" b)
                                if (n == 0 || l > lb) lb = l; if (n == 0 || l < ll) ll = l
                                if (n == 0 || p > pb) pb = p; if (n == 0 || p < pl) pl = p
                                n++
                        }
                        END {
                                printf "%-14s %7s %5s %30s %33s %7s\n", m, t, b,
                                       sprintf("%.1f (%.1f-%.1f)", lb, ll, lb), sprintf("%.1f (%.1f-%.1f)", pb, pl, pb),
                                       (pb > 0 ? sprintf("%.2fx", lb / pb) : "n/a")
                        }' "$tmp/rounds.json"
        done
done
