#!/bin/sh
# `lmpool tokenize` / `lmpool detokenize` end to end on the fixture
# vocabularies: the ids of known texts (values from the fixture cases),
# the BOS flag, special-token parsing, round trips through stdin, and
# errors for bad input.
set -u
bin=${LMPOOL_BIN:?}
dir=${LMPOOL_FIXTURES:-}/tokenizer
if [ ! -f "$dir/qwen2.gguf" ]; then
        echo "tokenizer fixtures not found (LMPOOL_FIXTURES): skipped"
        exit 77
fi
fail=0
expect() { # what got want
        if [ "$2" != "$3" ]; then
                echo "FAIL $1: got '$2', want '$3'"
                fail=1
        fi
}

expect "spm ids" "$("$bin" tokenize "$dir/llama-spm.gguf" --no-special --text 'Hello world')" "15043 3186"
expect "spm bos" "$("$bin" tokenize "$dir/llama-spm.gguf" --text 'Hello world')" "1 15043 3186"
expect "qwen2 special" "$("$bin" tokenize "$dir/qwen2.gguf" --no-special --text '<|im_start|>system')" "151644 8948"
expect "llama3 bos" "$("$bin" tokenize "$dir/llama-bpe.gguf" --text '')" "128000"
expect "stdin" "$(printf ' Hello' | "$bin" tokenize "$dir/gpt-2.gguf")" "18435"

text='naïve café 🦙 <|im_end|>
  tabs	and "quotes"'
for v in llama-spm phi-3 llama-bpe qwen2 gpt-2; do
        ids=$(printf '%s' "$text" | "$bin" tokenize "$dir/$v.gguf" --no-special)
        back=$("$bin" detokenize "$dir/$v.gguf" --special --ids "$ids")
        expect "$v round trip" "$back" "$text"
done
expect "hidden special" "$("$bin" detokenize "$dir/qwen2.gguf" --ids '151644 8948')" "system"

"$bin" detokenize "$dir/qwen2.gguf" --ids "1 999999" >/dev/null 2>&1
expect "bad id exit" "$?" "1"
"$bin" tokenize "$dir/qwen2.json" --text x >/dev/null 2>&1
expect "not gguf exit" "$?" "1"
"$bin" tokenize >/dev/null 2>&1
expect "usage exit" "$?" "2"
exit $fail
