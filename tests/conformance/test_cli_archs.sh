#!/bin/sh
# `lmpool run` on the archs/ fixtures (qwen3, phi3, gemma3): on each f32
# file, greedy generation reproduces llama.cpp's reference continuation;
# every other file of the three generates its 32 tokens. phi3 runs with
# --ctx 4096: its training context is 131072, and a context past
# rope.scaling.original_context_length (4096) takes LongRoPE's long factors,
# as llama.cpp does, while the references were made with the short ones, so
# the default context must give another continuation.
set -eu
: "${LMPOOL_BIN:?}" "${LMPOOL_FIXTURES:?}"
d="$LMPOOL_FIXTURES/archs"
[ -f "$d/qwen3-f32.gguf" ] || { echo "archs fixtures not found: skipped"; exit 77; }
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
ids=$(sed -n 2p "$LMPOOL_FIXTURES/models/prompts.txt")

for a in qwen3 phi3 gemma3; do
        ctx=""
        [ "$a" = phi3 ] && ctx="--ctx 4096"
        # shellcheck disable=SC2086
        "$LMPOOL_BIN" run "$d/$a-f32.gguf" --ids "$ids" -n 32 --ignore-eos --threads 2 $ctx --print-ids \
                > "$tmp/$a" 2> "$tmp/stats"
        grep -Eq '^generation: 32 tokens in ' "$tmp/stats"
        python3 - "$d/$a-f32.refs.json" "$ids" "$tmp/$a" <<'PY'
import json, sys
refs, ids = json.load(open(sys.argv[1])), [int(x) for x in sys.argv[2].split()]
p = [p for p in refs["prompts"] if p["tokens"] == ids][0]
got = [int(x) for x in open(sys.argv[3]).read().split()]
assert got == p["greedy"], (sys.argv[1], got, p["greedy"])
PY
        for t in f16 q8_0 q4_k_m; do
                # shellcheck disable=SC2086
                n=$("$LMPOOL_BIN" run "$d/$a-$t.gguf" --ids "$ids" -n 32 --ignore-eos --threads 2 $ctx \
                        --print-ids 2>/dev/null | wc -w)
                [ "$n" -eq 32 ] || { echo "$a-$t: $n tokens"; exit 1; }
        done
done

long=$("$LMPOOL_BIN" run "$d/phi3-f32.gguf" --ids "$ids" -n 32 --ignore-eos --threads 2 --print-ids 2>/dev/null)
[ "$long" != "$(cat "$tmp/phi3")" ] || { echo "phi3: the long rope factors changed nothing"; exit 1; }

# The generator's small shapes of the three families load and generate.
for s in test-qwen3 test-phi3 test-gemma3; do
        "$LMPOOL_BIN" mkmodel --shape "$s" --type q4_k_m --threads 2 -o "$tmp/$s.gguf" > /dev/null
        n=$("$LMPOOL_BIN" run "$tmp/$s.gguf" --prompt "Hello there" -n 8 --ignore-eos --ctx 256 --threads 2 \
                --print-ids 2>/dev/null | wc -w)
        [ "$n" -eq 8 ] || { echo "$s: $n tokens"; exit 1; }
done
echo "mkmodel shapes: test-qwen3, test-phi3, test-gemma3 ok"
echo "run: qwen3, phi3, gemma3 ok"
