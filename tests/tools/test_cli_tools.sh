#!/bin/sh
# `lmpool quantize` and `lmpool mkmodel` from the command line: a small
# model made, quantized again and read back, and the usage errors.
set -eu
: "${LMPOOL_BIN:?}"
dir=$(mktemp -d)
trap 'rm -rf "$dir"' EXIT

expect_fail() { # exit code, then the command
        code=$1
        shift
        set +e
        "$@" >"$dir/out" 2>"$dir/err"
        got=$?
        set -e
        [ "$got" -eq "$code" ] || { echo "expected exit $code, got $got: $*"; cat "$dir/err"; exit 1; }
}

# mkmodel: a small model, in q8_0 and then re-quantized from f16.
"$LMPOOL_BIN" mkmodel --shape test-llama --type f16 --seed 5 -o "$dir/f16.gguf" 2>"$dir/err"
grep -q 'wrote test-llama f16' "$dir/err"
"$LMPOOL_BIN" gguf "$dir/f16.gguf" | grep -Eq '^  all +21 tensors'
"$LMPOOL_BIN" quantize "$dir/f16.gguf" "$dir/q4.gguf" q4_k_m --threads 2 2>"$dir/err"
grep -q "wrote $dir/q4.gguf (q4_k_m): [0-9]* bytes" "$dir/err"
"$LMPOOL_BIN" gguf "$dir/q4.gguf" > "$dir/out"
grep -q 'general.file_type: 15' "$dir/out"
grep -Eq '^  q6_K +3 tensors' "$dir/out"     # output, blk.1's attn_v and ffn_down
grep -Eq '^  q4_K +13 tensors' "$dir/out"
grep -q 'tokenizer.chat_template' "$dir/out"
[ ! -e "$dir/q4.gguf.tmp" ]

# --dry-run plans without writing.
"$LMPOOL_BIN" mkmodel --shape tinyllama-1.1b --type q4_k_m --dry-run -o "$dir/big.gguf" 2>/dev/null > "$dir/out"
grep -q 'tensor data 667078656 bytes (636.2 MiB)' "$dir/out"
[ ! -e "$dir/big.gguf" ]

# Usage errors are exit 2, failures exit 1 with the reason.
expect_fail 2 "$LMPOOL_BIN" quantize "$dir/f16.gguf" "$dir/x.gguf" q9_k
grep -q "unknown type 'q9_k'" "$dir/err"
expect_fail 2 "$LMPOOL_BIN" quantize "$dir/f16.gguf"
expect_fail 2 "$LMPOOL_BIN" quantize "$dir/f16.gguf" "$dir/x.gguf" q8_0 --threads 0
expect_fail 2 "$LMPOOL_BIN" mkmodel --shape nope --type q8_0 -o "$dir/x.gguf"
grep -q "unknown shape 'nope'" "$dir/err"
expect_fail 2 "$LMPOOL_BIN" mkmodel --shape test-llama -o "$dir/x.gguf"
expect_fail 2 "$LMPOOL_BIN" mkmodel --shape test-llama --type q8_0 --seed -3 -o "$dir/x.gguf"
"$LMPOOL_BIN" quantize "$dir/q4.gguf" "$dir/q8.gguf" q8_0      # re-quantization
"$LMPOOL_BIN" gguf "$dir/q8.gguf" | grep -Eq '^  q8_0 +16 tensors'
expect_fail 1 "$LMPOOL_BIN" quantize "$dir/nonexistent.gguf" "$dir/x.gguf" q8_0
grep -q 'No such file' "$dir/err"
expect_fail 1 "$LMPOOL_BIN" mkmodel --shape test-llama --type q8_0 -o "$dir/no/such/dir/x.gguf"
[ ! -e "$dir/x.gguf" ]
# Random models are usable and not degenerate: greedy decoding of 32 tokens
# does not repeat one token forever (at least 16 distinct ids, no run of 8).
if "$LMPOOL_BIN" run --help >/dev/null 2>&1; then
        for shape in test-llama test-qwen2 test-llama3; do
                "$LMPOOL_BIN" mkmodel --shape "$shape" --type q4_k_m -o "$dir/$shape.gguf" 2>/dev/null
                "$LMPOOL_BIN" run "$dir/$shape.gguf" --ids "5 300 400 500 600" -n 32 --ignore-eos \
                        --print-ids --threads 2 2>/dev/null | head -1 > "$dir/ids"
                python3 - "$shape" "$dir/ids" <<'PY'
import sys
ids = open(sys.argv[2]).read().split()
assert len(ids) == 32, (sys.argv[1], ids)
run = longest = 1
for a, b in zip(ids, ids[1:]):
    run = run + 1 if a == b else 1
    longest = max(longest, run)
assert len(set(ids)) >= 16 and longest < 8, (sys.argv[1], ids)
PY
        done
fi
"$LMPOOL_BIN" quantize --help | grep -q 'q4_k_m'
"$LMPOOL_BIN" mkmodel --help | grep -q 'qwen2.5-0.5b'
echo "lmpool quantize, mkmodel: ok"
