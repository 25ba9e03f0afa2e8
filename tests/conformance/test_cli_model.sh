#!/bin/sh
# `lmpool logits` and `lmpool run` on the llama-f32 fixture: the JSON lines
# of logits (full and --top) match the llama.cpp references, greedy `run`
# reproduces the reference continuation, a seeded sampled run repeats
# itself, and bad input is refused with a message and a non-zero status.
set -eu
: "${LMPOOL_BIN:?}" "${LMPOOL_FIXTURES:?}"
m="$LMPOOL_FIXTURES/models/llama-f32"
[ -f "$m.gguf" ] || { echo "fixtures not found: skipped"; exit 77; }
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
ids=$(sed -n 2p "$LMPOOL_FIXTURES/models/prompts.txt")

"$LMPOOL_BIN" logits "$m.gguf" --ids "$ids" --top 8 --threads 2 > "$tmp/top"
"$LMPOOL_BIN" logits "$m.gguf" --ids "$ids" > "$tmp/full"
"$LMPOOL_BIN" run "$m.gguf" --ids "$ids" -n 32 --ignore-eos --threads 2 --print-ids > "$tmp/greedy" 2> "$tmp/stats"
grep -Eq '^prompt: [0-9]+ tokens in .* \([0-9.]+ tokens/s\)$' "$tmp/stats"
grep -Eq '^generation: 32 tokens in .* \([0-9.]+ tokens/s\)' "$tmp/stats"

python3 - "$m.refs.json" "$ids" "$tmp" <<'PY'
import json, sys
refs, ids, tmp = json.load(open(sys.argv[1])), [int(x) for x in sys.argv[2].split()], sys.argv[3]
p = [p for p in refs["prompts"] if p["tokens"] == ids][0]
top = [json.loads(l) for l in open(tmp + "/top")]
full = [json.loads(l) for l in open(tmp + "/full")]
assert len(top) == len(full) == len(ids), (len(top), len(full))
for i, (t, f, r) in enumerate(zip(top, full, p["prompt_top"])):
    assert t["pos"] == i and f["pos"] == i
    assert sorted(t) == ["pos", "top_ids", "top_logits"] and sorted(f) == ["logits", "pos"]
    assert len(f["logits"]) == refs["n_vocab"]
    assert t["top_ids"][:2] == r["ids"][:2], (i, t["top_ids"], r["ids"])
    for k, tok in enumerate(r["ids"]):
        assert abs(f["logits"][tok] - r["logits"][k]) < 0.013, (i, tok)
    assert all(abs(f["logits"][a] - b) < 1e-6 for a, b in zip(t["top_ids"], t["top_logits"]))
    assert t["top_logits"] == sorted(t["top_logits"], reverse=True)
greedy = [int(x) for x in open(tmp + "/greedy").read().split()]
assert greedy == p["greedy"], (greedy, p["greedy"])
PY

a=$("$LMPOOL_BIN" run "$m.gguf" --ids "$ids" -n 16 --temp 0.8 --top-k 40 --top-p 0.9 --seed 42 --print-ids 2>/dev/null)
b=$("$LMPOOL_BIN" run "$m.gguf" --ids "$ids" -n 16 --temp 0.8 --top-k 40 --top-p 0.9 --seed 42 --print-ids 2>/dev/null)
[ "$a" = "$b" ] && [ "$(echo "$a" | wc -w)" -eq 16 ]

# A text prompt is the same as its token ids; text output is the
# detokenization of the ids.
text="Once upon a time"
tids=$("$LMPOOL_BIN" tokenize "$m.gguf" --text "$text")
a=$("$LMPOOL_BIN" run "$m.gguf" --prompt "$text" -n 12 --ignore-eos --print-ids 2>/dev/null)
b=$("$LMPOOL_BIN" run "$m.gguf" --ids "$tids" -n 12 --ignore-eos --print-ids 2>/dev/null)
[ "$a" = "$b" ] && [ "$(echo "$a" | wc -w)" -eq 12 ]
"$LMPOOL_BIN" run "$m.gguf" --prompt "$text" -n 12 --ignore-eos 2>/dev/null > "$tmp/text"
"$LMPOOL_BIN" detokenize "$m.gguf" --ids "$a" > "$tmp/detok"
python3 -c 'import sys; a, b = (open(f, "rb").read().rstrip(b"\n") for f in sys.argv[1:]); assert a == b, (a, b)' "$tmp/text" "$tmp/detok"

fails() { if "$@" > /dev/null 2> "$tmp/err"; then return 1; fi; [ -s "$tmp/err" ]; }
fails "$LMPOOL_BIN" logits "$m.gguf" --ids "1 600"
grep -q 'outside the vocabulary' "$tmp/err"
fails "$LMPOOL_BIN" logits "$m.gguf" --ids "1 x"
fails "$LMPOOL_BIN" logits "$LMPOOL_FIXTURES/models/prompts.txt" --ids "1"
fails "$LMPOOL_BIN" run "$m.gguf" --ids "1" --temp -1
fails "$LMPOOL_BIN" run "$m.gguf" --ids "1" --prompt "x"
fails "$LMPOOL_BIN" run "$m.gguf" --ids "$ids" --ctx 4
grep -q 'does not fit the context' "$tmp/err"
echo "cli logits/run: ok"
