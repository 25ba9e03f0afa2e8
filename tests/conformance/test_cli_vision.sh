#!/bin/sh
# Qwen2-VL with an image, through the CLI, against llama.cpp's libmtmd on
# both vision fixture images, with the best kernels and with the scalar
# ones (LMPOOL_ISA=scalar): `lmpool image-embed` (embeddings max |d| <=
# 0.005, token count, n_pos, grid), `lmpool logits` with the prompt (token
# ids, image token count and rotary positions exact; logits within 0.025 of
# every listed id at every listed position: each token after the image,
# the end of the prompt, and each greedy token fed back with --ids), and
# `lmpool run` (the same 8 greedy tokens). Then refusals: a missing marker
# puts the image first, two markers and a text model are refused.
set -eu
: "${LMPOOL_BIN:?}" "${LMPOOL_FIXTURES:?}"
d="$LMPOOL_FIXTURES/vision"
[ -f "$d/qwen2vl-f16.gguf" ] || { echo "vision fixtures not found: skipped"; exit 77; }
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
m="$d/qwen2vl-f16.gguf"
mm="$d/mmproj-qwen2vl-f16.gguf"
prompt="$(cat "$d/prompt.txt"; printf x)"
prompt="${prompt%x}"

for isa in "" scalar; do
        for img in img1 img2; do
                export LMPOOL_ISA="$isa"
                "$LMPOOL_BIN" image-embed "$mm" --image "$d/$img.png" --threads 2 > "$tmp/embd"
                gen=$(python3 -c 'import json, sys; print(" ".join(str(g["id"]) for g in json.load(open(sys.argv[1]))["generated"]))' "$d/$img.refs.json")
                "$LMPOOL_BIN" logits "$m" --mmproj "$mm" --image "$d/$img.png" --prompt "$prompt" --ids "$gen" \
                        --threads 2 > "$tmp/logits"
                "$LMPOOL_BIN" run "$m" --mmproj "$mm" --image "$d/$img.png" --prompt "$prompt" -n 8 --ignore-eos \
                        --print-ids --threads 2 > "$tmp/greedy" 2> /dev/null
                python3 - "$d/$img.refs.json" "$tmp" "${isa:-best}/$img" <<'PY'
import json, sys
refs, tmp, name = json.load(open(sys.argv[1])), sys.argv[2], sys.argv[3]
text0, image, text1 = refs["chunks"]
assert (text0["type"], image["type"], text1["type"]) == ("text", "image", "text")

e = json.loads(open(tmp + "/embd").read())
assert (e["n_tokens"], e["n_pos"]) == (image["n_tokens"], image["n_pos"]), e
rows = 1 + max(p[1] for p in image["decoder_pos"])
cols = 1 + max(p[2] for p in image["decoder_pos"])
assert e["grid"] == [rows, cols], (e["grid"], rows, cols)
assert len(e["embeddings"]) == len(image["embeddings"])
d_embd = max(abs(a - b) for a, b in zip(e["embeddings"], image["embeddings"]))
assert d_embd <= 0.005, (name, d_embd)

lines = [json.loads(l) for l in open(tmp + "/logits")]
gen = refs["generated"]
n0, ni, n1 = len(text0["ids"]), image["n_tokens"], len(text1["ids"])
assert len(lines) == n0 + ni + n1 + len(gen), len(lines)
assert [l["pos"] for l in lines] == list(range(len(lines)))
assert [l.get("token") for l in lines[:n0]] == text0["ids"]
assert [l.get("image_token") for l in lines[n0:n0 + ni]] == list(range(ni))
assert [l.get("token") for l in lines[n0 + ni:n0 + ni + n1]] == text1["ids"]
assert [l.get("token") for l in lines[n0 + ni + n1:]] == [g["id"] for g in gen]
assert [l["rope_pos"] for l in lines[:n0]] == [[i, i, i] for i in range(n0)]
assert [l["rope_pos"] for l in lines[n0:n0 + ni]] == [[n0 + t, n0 + y, n0 + x] for t, y, x in image["decoder_pos"]]
after = lines[n0 + ni:]
assert [l["rope_pos"] for l in after] == [[n0 + image["n_pos"] + i] * 3 for i in range(len(after))]
assert after[n1 - 1]["rope_pos"][0] + 1 == refs["n_past"]

def check(line, ids, logits):
    return max(abs(line["logits"][i] - v) for i, v in zip(ids, logits))
listed = [(after[i], r["ids"], r["logits"]) for i, r in enumerate(refs["after_image_top"])]
listed.append((after[n1 - 1], refs["prompt_top"]["ids"], refs["prompt_top"]["logits"]))
listed += [(after[n1 + k], g["top"]["ids"], g["top"]["logits"]) for k, g in enumerate(gen)]
assert len(refs["after_image_top"]) == n1
d_logits = max(check(*x) for x in listed)
assert d_logits <= 0.025, (name, d_logits)

greedy = [int(x) for x in open(tmp + "/greedy").read().split()]
assert greedy == [g["id"] for g in gen], (greedy, gen)
print(f"{name}: embeddings max |d| {d_embd:.6f}, logits max |d| {d_logits:.6f} at {len(listed)} positions, "
      f"{len(greedy)} greedy tokens equal")
PY
        done
done
unset LMPOOL_ISA

# The encoder's other weight paths, against the f16 pair's embeddings.
# f32 weights: the ViT's products are f16's (whose rows convert to f32
# exactly; q, k and v stacked), only the merger's few-token products keep
# their input in f32 where f16's kernels round it to f16. q8_0 weights: the
# type's own kernels, q, k and v as three products into one row per patch;
# within q8_0's rounding.
"$LMPOOL_BIN" quantize "$mm" "$tmp/mm-f32.gguf" f32 > /dev/null
"$LMPOOL_BIN" quantize "$mm" "$tmp/mm-q8_0.gguf" q8_0 > /dev/null
for t in f16 f32 q8_0; do
        p="$mm"; [ "$t" = f16 ] || p="$tmp/mm-$t.gguf"
        "$LMPOOL_BIN" image-embed "$p" --image "$d/img1.png" > "$tmp/embd-$t" 2> /dev/null
done
python3 - "$tmp" <<'PY'
import json, sys
e = {t: json.load(open(f"{sys.argv[1]}/embd-{t}"))["embeddings"] for t in ("f16", "f32", "q8_0")}
top = max(abs(v) for v in e["f16"])
d = {t: max(abs(a - b) for a, b in zip(e[t], e["f16"])) for t in ("f32", "q8_0")}
assert all(len(e[t]) == len(e["f16"]) for t in d), {t: len(v) for t, v in e.items()}
assert d["f32"] <= 0.002 * top and 0 < d["q8_0"] <= 0.05 * top, (d, top)
print(f"encoder weights against f16 (max |e| {top:.3f}): f32 max |d| {d['f32']:.6f}, q8_0 {d['q8_0']:.5f}")
PY

# bf16 weights (every value a bf16 value): where the CPU has AVX512-BF16,
# the ViT's and the merger's products run on bf16 operands (activations
# rounded to bf16) and must stay close to the same weights' f32 products
# (LMPOOL_BF16=off) and to the f16 pair's embeddings; the f16 fixture's
# values are not bf16 values, so it never takes that path.
"$LMPOOL_BIN" quantize "$mm" "$tmp/mm-bf16.gguf" bf16 > /dev/null 2>&1
"$LMPOOL_BIN" image-embed "$tmp/mm-bf16.gguf" --image "$d/img1.png" > "$tmp/embd-bf16" 2> "$tmp/bf16.err"
LMPOOL_BF16=off "$LMPOOL_BIN" image-embed "$tmp/mm-bf16.gguf" --image "$d/img1.png" > "$tmp/embd-bf16-off" \
        2> "$tmp/bf16-off.err"
"$LMPOOL_BIN" image-embed "$mm" --image "$d/img1.png" 2> "$tmp/f16.err" > /dev/null
grep -q ' 0 of 16 matrices on bf16 products' "$tmp/bf16-off.err"
grep -q ' 0 of 16 matrices on bf16 products' "$tmp/f16.err"
on=0
if ! grep -q ' 0 of 16 matrices on bf16 products' "$tmp/bf16.err"; then
        grep -q ' 15 of 16 matrices on bf16 products' "$tmp/bf16.err"     # all but the f16 patch kernel
        on=1
fi
python3 - "$tmp" "$on" <<'PY'
import json, sys
tmp, on = sys.argv[1], sys.argv[2] == "1"
e = {t: json.load(open(f"{tmp}/embd-{t}"))["embeddings"] for t in ("f16", "bf16", "bf16-off")}
top = max(abs(v) for v in e["f16"])
d_path = max(abs(a - b) for a, b in zip(e["bf16"], e["bf16-off"]))
d_f16 = max(abs(a - b) for a, b in zip(e["bf16"], e["f16"]))
assert (d_path > 0) == on and d_path <= 0.01 * top and d_f16 <= 0.01 * top, (on, d_path, d_f16, top)
print(f"bf16 weights, {'bf16' if on else 'f32'} products: max |d| {d_path:.6f} from f32 products, "
      f"{d_f16:.6f} from the f16 pair (max |e| {top:.3f})")
PY

# Without the marker the image goes first; with two it is refused; a
# model without M-RoPE has no image input.
"$LMPOOL_BIN" logits "$m" --mmproj "$mm" --image "$d/img1.png" --prompt "Describe." --top 1 > "$tmp/first"
python3 - "$tmp/first" <<'PY'
import json, sys
lines = [json.loads(l) for l in open(sys.argv[1])]
assert lines[0]["token"] == 151652 and "image_token" in lines[1], lines[:2]
PY
fails() { if "$@" > /dev/null 2> "$tmp/err"; then return 1; fi; [ -s "$tmp/err" ]; }
fails "$LMPOOL_BIN" logits "$m" --mmproj "$mm" --image "$d/img1.png" --prompt "<__media__><__media__>"
grep -q 'more than one image' "$tmp/err"
fails "$LMPOOL_BIN" logits "$LMPOOL_FIXTURES/models/qwen2-f32.gguf" --mmproj "$mm" --image "$d/img1.png" --prompt "x"
grep -q 'no image input' "$tmp/err"
fails "$LMPOOL_BIN" image-embed "$m" --image "$d/img1.png"
grep -q 'not clip' "$tmp/err"
fails "$LMPOOL_BIN" image-embed "$mm" --image "$d/img1.rgb"
grep -q 'not a PNG, JPEG or WebP' "$tmp/err"
fails "$LMPOOL_BIN" run "$m" --image "$d/img1.png" --prompt "x"
