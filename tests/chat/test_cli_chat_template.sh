#!/bin/sh
# `lmpool chat-template` with a .jinja file: the output equals the fixture's
# expected render byte for byte, a refused conversation fails with the
# template's message, and bad usage is refused.
set -eu
: "${LMPOOL_BIN:?}" "${LMPOOL_FIXTURES:?}"
t="$LMPOOL_FIXTURES/templates"
[ -f "$t/llama-3.1.json" ] || { echo "fixtures not found: skipped"; exit 77; }
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
# `! cmd` does not stop a `set -e` script, so refusals are checked here.
refused() {
        if "$LMPOOL_BIN" chat-template "$@" > /dev/null 2>&1; then
                echo "not refused: $*"; exit 1
        fi
}

for name in llama-3.1 gemma-2 zephyr-tinyllama; do
        python3 - "$t/$name.json" "$tmp" <<'PY'
import json, sys
d = json.load(open(sys.argv[1]))
for k, conv in d["conversations"].items():
    json.dump(conv, open(f"{sys.argv[2]}/{k}.json", "w"))
    exp = d["expected"][k]
    if isinstance(exp, str):
        open(f"{sys.argv[2]}/{k}.want", "wb").write(exp.encode())
    else:
        open(f"{sys.argv[2]}/{k}.err", "w").write(exp["error"])
open(f"{sys.argv[2]}/bos", "w").write(d["bos_token"])
open(f"{sys.argv[2]}/eos", "w").write(d["eos_token"])
PY
        for c in one-turn with-system multi-turn; do
                set -- --template "$t/$name.jinja" --bos "$(cat "$tmp/bos")" --eos "$(cat "$tmp/eos")" \
                        --messages "$tmp/$c.json" --date "15 Jan 2026"
                if [ -f "$tmp/$c.want" ]; then
                        "$LMPOOL_BIN" chat-template "$@" > "$tmp/out"
                        cmp "$tmp/out" "$tmp/$c.want"
                        rm "$tmp/$c.want"
                else
                        if "$LMPOOL_BIN" chat-template "$@" > "$tmp/out" 2> "$tmp/stderr"; then
                                echo "$name/$c: not refused"; exit 1
                        fi
                        grep -qF "$(cat "$tmp/$c.err")" "$tmp/stderr"
                        [ ! -s "$tmp/out" ]
                        rm "$tmp/$c.err"
                fi
        done
done

# --family renders a named family instead of the template.
printf '[{"role": "user", "content": "Hi"}]' > "$tmp/hi.json"
"$LMPOOL_BIN" chat-template --template "$t/llama-2.jinja" --family chatml --messages "$tmp/hi.json" > "$tmp/out"
printf '<|im_start|>user\nHi<|im_end|>\n<|im_start|>assistant\n' | cmp - "$tmp/out"

# Messages from standard input.
printf '[{"role": "user", "content": "Hi"}]' | "$LMPOOL_BIN" chat-template --template "$t/gemma-2.jinja" \
        --bos '<bos>' --messages - > "$tmp/out"
printf '<bos><start_of_turn>user\nHi<end_of_turn>\n<start_of_turn>model\n' | cmp - "$tmp/out"

# A model's own template and bos text, read from its GGUF: Phi-3 mini
# (bos, no system turn) and Qwen2 (its default system prompt).
printf '[{"role": "system", "content": "S"}, {"role": "user", "content": "Hi"}]' > "$tmp/sys.json"
"$LMPOOL_BIN" chat-template "$LMPOOL_FIXTURES/tokenizer/phi-3.gguf" --messages "$tmp/sys.json" > "$tmp/out"
printf '<s><|user|>\nHi<|end|>\n<|assistant|>\n' | cmp - "$tmp/out"
"$LMPOOL_BIN" chat-template "$LMPOOL_FIXTURES/tokenizer/qwen2.gguf" --messages "$tmp/hi.json" > "$tmp/out"
printf '<|im_start|>system\nYou are a helpful assistant<|im_end|>\n<|im_start|>user\nHi<|im_end|>\n<|im_start|>assistant\n' | cmp - "$tmp/out"
# A model without a template needs --family.
refused "$LMPOOL_FIXTURES/tokenizer/llama-spm.gguf" --messages "$tmp/hi.json"
"$LMPOOL_BIN" chat-template "$LMPOOL_FIXTURES/tokenizer/llama-spm.gguf" --family llama2 --messages "$tmp/hi.json" > "$tmp/out"
printf '<s>[INST] Hi [/INST]' | cmp - "$tmp/out"

# --tools: the tools list reaches the template (Qwen3's tools conversation).
r="$LMPOOL_FIXTURES/templates-real"
python3 - "$r/Qwen-Qwen3-0.6B.json" "$tmp" <<'PY'
import json, sys
d = json.load(open(sys.argv[1]))
conv = d["conversations"]["tools"]
json.dump(conv["messages"], open(f"{sys.argv[2]}/tmsgs.json", "w"))
json.dump(conv["tools"], open(f"{sys.argv[2]}/tools.json", "w"))
open(f"{sys.argv[2]}/tools.want", "wb").write(d["expected"]["tools"].encode())
PY
"$LMPOOL_BIN" chat-template --template "$r/Qwen-Qwen3-0.6B.jinja" --bos '<|bos|>' --eos '<|eos|>' \
        --messages "$tmp/tmsgs.json" --tools "$tmp/tools.json" > "$tmp/out"
cmp "$tmp/out" "$tmp/tools.want"

# Errors: bad JSON, unknown family, missing file, no arguments.
printf '{"role": "user"}' > "$tmp/bad.json"
refused --template "$t/gemma-2.jinja" --messages "$tmp/bad.json"
printf '[{"content": "Hi"}]' > "$tmp/bad.json"
refused --template "$t/gemma-2.jinja" --messages "$tmp/bad.json"
# Jinja that does not parse, and --tools that is not a list.
printf '{%% if %%}' > "$tmp/bad.jinja"
refused --template "$tmp/bad.jinja" --messages "$tmp/hi.json"
printf '{"type": "function"}' > "$tmp/badtools.json"
refused --template "$t/gemma-2.jinja" --messages "$tmp/hi.json" --tools "$tmp/badtools.json"
refused --template "$t/gemma-2.jinja" --family nope --messages "$tmp/hi.json"
refused --template "$tmp/missing.jinja" --messages "$tmp/hi.json"
set +e
"$LMPOOL_BIN" chat-template
[ $? -eq 2 ] || { echo "usage error not 2"; exit 1; }
echo ok
