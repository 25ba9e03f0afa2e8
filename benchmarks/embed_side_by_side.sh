#!/bin/sh
# Embedding throughput, lmpool beside llama.cpp, on the same file: a
# random-weight model in BGE-small's shape (lmpool mkmodel --shape
# bge-small: 12 layers x 384, 12 heads, ffn 1536, the 30522-token WordPiece
# vocabulary of the embeddings fixtures), 32 short texts
# (benchmarks/embed_texts.txt, 8 to 13 tokens each), at batches of 1 and 32
# texts per forward pass, on THREADS threads (2).
#
#   benchmarks/embed_side_by_side.sh BUILD_DIR [TYPE]       (TYPE: f16)
#
# lmpool: build/benchmarks/bench_embed (the worker's embedder, in process,
# load excluded). llama.cpp: /tmp/llamacpp/build/bin/llama-embedding
# (../shared/peers/setup.sh builds it) on the texts repeated 10 times;
# it logs the start of each forward pass, so a batch's time is the
# interval between two of them (load, tokenization and printing
# excluded); its batch is set by tokens: -c -b -ub 15 hold one of these texts
# and never two, 316 exactly the 32 (316 tokens; -np the sequences). Prints a table.
set -eu
build=${1:?usage: embed_side_by_side.sh BUILD_DIR [TYPE]}
type=${2:-f16}
threads=${THREADS:-2}
src=$(cd "$(dirname "$0")/.." && pwd)
fixtures=${LMPOOL_FIXTURES:-$src/../shared/fixtures}
peer=${LLAMA_EMBEDDING:-/tmp/llamacpp/build/bin/llama-embedding}
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT

model=$tmp/bge-small-$type.gguf
"$build/src/client/lmpool" mkmodel --shape bge-small --type "$type" \
        --vocab "$fixtures/embeddings/bert-mean-f32.gguf" -o "$model" >/dev/null
texts=$src/benchmarks/embed_texts.txt

"$build/benchmarks/bench_embed" "$model" "$texts" --threads "$threads" --seconds "${SECONDS_PER_RUN:-5}" \
        | grep '^{' > "$tmp/lmpool.json"

peer_rate() { # tokens per pass, sequences -> texts/s
        for i in 1 2 3 4 5 6 7 8 9 10; do cat "$texts"; done | head -c -1 > "$tmp/texts320.txt"
        "$peer" -m "$model" -f "$tmp/texts320.txt" -t "$threads" -c "$1" -b "$1" -ub "$1" -np "$2" \
                --embd-output-format array > /dev/null 2> "$tmp/peer.err"
        # "M.SS.mmm.uuu I batch_decode: n_tokens = N, n_seq = K": the
        # passes but the last, each timed to the next one's start.
        awk '/batch_decode: n_tokens/ {
                split($1, t, "."); s = t[1] * 60 + t[2] + t[3] / 1e3 + t[4] / 1e6
                if (n) { total += s - last; texts += seqs }
                last = s; seqs = $NF; n++
             } END { if (total > 0) printf "%.1f\n", texts / total; else print "n/a" }' "$tmp/peer.err"
}

if [ -x "$peer" ]; then
        p1=$(peer_rate 15 2)
        p32=$(peer_rate 316 32)
else
        p1=n/a
        p32=n/a
fi
l1=$(sed -n 's/.*"batch":1,.*"texts_per_s":\([0-9.]*\).*/\1/p' "$tmp/lmpool.json")
l32=$(sed -n 's/.*"batch":32,.*"texts_per_s":\([0-9.]*\).*/\1/p' "$tmp/lmpool.json")
printf '{"bench":"embed_side_by_side","type":"%s","threads":%s,"lmpool_b1":%s,"lmpool_b32":%s,"llama_b1":"%s","llama_b32":"%s"}\n' \
        "$type" "$threads" "$l1" "$l32" "$p1" "$p32"
printf '\n%-10s %8s %16s %18s %8s\n' model batch "lmpool texts/s" "llama.cpp texts/s" ratio
for b in 1 32; do
        if [ "$b" = 1 ]; then l=$l1; p=$p1; else l=$l32; p=$p32; fi
        r=$(awk -v l="$l" -v p="$p" 'BEGIN { if (p + 0 > 0) printf "%.2f", l / p; else print "n/a" }')
        printf '%-10s %8s %16s %18s %8s\n' "bge-small-$type" "$b" "$l" "$p" "$r"
done
