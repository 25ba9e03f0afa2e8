#!/bin/sh
# `lmpool gguf` on a fixture: the text table and the --json object.
set -eu
: "${LMPOOL_BIN:?}" "${LMPOOL_FIXTURES:?}"
f="$LMPOOL_FIXTURES/models/llama-q4_k_m.gguf"
[ -f "$f" ] || { echo "fixtures not found: skipped"; exit 77; }
out=$(mktemp)
trap 'rm -f "$out"' EXIT

"$LMPOOL_BIN" gguf "$f" > "$out"
grep -q 'tokenizer.ggml.tokens: \[string × 512\]' "$out"
grep -q 'tokenizer.ggml.model: "llama"' "$out"
for t in q4_K q6_K f32; do grep -Eq "^  $t +[0-9]+ tensors" "$out"; done
grep -Eq '^  all +21 tensors' "$out"
[ "$(grep -c '^  blk\.' "$out")" -eq 18 ]

"$LMPOOL_BIN" gguf --json "$f" | python3 -c '
import json, sys
d = json.load(sys.stdin)
assert d["version"] == 3
assert len(d["tensors"]) == 21
assert len(d["metadata"]["tokenizer.ggml.tokens"]) == 512
types = {t["type"] for t in d["tensors"]}
assert {"q4_K", "q6_K", "f32"} <= types, types
t = [t for t in d["tensors"] if t["name"] == "token_embd.weight"][0]
assert t["shape"] == [256, 512] and t["bytes"] == 73728, t
with open(sys.argv[1], "rb") as fh:
    fh.seek(t["offset"]); assert len(fh.read(t["bytes"])) == t["bytes"]
' "$f"

# Errors: a clear message and exit code 1, never a crash.
printf 'GGUF\003\000\000\000' > "$out"
if "$LMPOOL_BIN" gguf "$out" 2>"$out.err"; then exit 1; fi
grep -q 'not a GGUF file' "$out.err"
printf 'GGUF\003\000\000\000\000\000\000\000\000\000\000\000\001\000\000\000\000\000\000\000' > "$out"
if "$LMPOOL_BIN" gguf "$out" 2>"$out.err"; then exit 1; fi
grep -q 'offset 16: metadata count 1 is impossible' "$out.err"
if "$LMPOOL_BIN" gguf /nonexistent 2>"$out.err"; then exit 1; fi
grep -q 'No such file' "$out.err"
rm -f "$out.err"
echo "lmpool gguf: ok"
