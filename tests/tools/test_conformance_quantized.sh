#!/bin/sh
# The engine conformance criteria on files we quantize ourselves: quantizes
# FIXTURES/models/<arch>-f32.gguf to TYPE with `lmpool quantize`, then runs
# the conformance harness (tests/conformance/test_conformance.c) against the
# fixture's llama.cpp references with the fixture's tolerances doubled
# (max |Δlogit| x 2, 1 - min correlation x 2), since our quantization may
# round a few values differently from llama.cpp's. Our file must also give
# each tensor the type llama.cpp's file of that type has (its type mix).
# usage: test_conformance_quantized.sh HARNESS [DIR/]MODEL-NAME   (e.g.
# llama-q4_k_m, archs/gemma3-q4_k_m; DIR defaults to models)
set -eu
: "${LMPOOL_BIN:?}" "${LMPOOL_FIXTURES:?}"
harness=$1
sub=models
name=$2
case $name in */*) sub=${name%/*}; name=${name##*/} ;; esac
base=${name%-*}
type=${name##*-}
src="$LMPOOL_FIXTURES/$sub/$base-f32.gguf"
[ -f "$src" ] && [ -f "$LMPOOL_FIXTURES/$sub/$name.refs.json" ] ||
        { echo "fixtures for $name not found: skipped"; exit 77; }

dir=$(mktemp -d)
trap 'rm -rf "$dir"' EXIT
mkdir "$dir/models"
ln -s "$LMPOOL_FIXTURES/$sub/$name.refs.json" "$dir/models/$name.refs.json"
python3 - "$LMPOOL_FIXTURES/$sub/tolerances.json" "$dir/models/tolerances.json" "$name" <<'PY'
import json, sys
t = json.load(open(sys.argv[1]))
row = t[sys.argv[3]]
row["max_abs_logit_diff"] *= 2
row["min_last_logits_correlation"] = 1 - (1 - row["min_last_logits_correlation"]) * 2
json.dump({sys.argv[3]: row}, open(sys.argv[2], "w"))
PY
"$LMPOOL_BIN" quantize "$src" "$dir/models/$name.gguf" "$type" --threads 2
types() { "$LMPOOL_BIN" gguf "$1" | awk '$1 ~ /\.weight$/ && $3 ~ /^[0-9]/ { print $1, $2 }' | sort; }
if [ -f "$LMPOOL_FIXTURES/$sub/$name.gguf" ]; then
        types "$LMPOOL_FIXTURES/$sub/$name.gguf" > "$dir/theirs"
        types "$dir/models/$name.gguf" > "$dir/ours"
        [ -s "$dir/ours" ] && diff "$dir/theirs" "$dir/ours" ||
                { echo "$name: tensor types differ from llama.cpp's (< theirs, > ours)"; exit 1; }
fi
LMPOOL_FIXTURES="$dir" "$harness" "$name"
