#!/bin/sh
# Image input, lmpool beside llama.cpp, on the same files: a random-weight
# Qwen2-VL 2B pair (lmpool mkmodel --shape qwen2-vl-2b, TYPE q4_k_m by
# default, and --shape qwen2-vl-2b-mmproj in f16, the real downloads'
# shapes and sizes) and one 448 x 448 PNG written here (a deterministic
# gradient, 1024 patches, 256 image tokens), on each thread count of
# THREADS ("1 2"), ROUNDS times (3): each round runs the peer, then
# lmpool, at each thread count, so both see the same machine.
#
#   benchmarks/vision_side_by_side.sh BUILD_DIR [TYPE]
#
# Two figures a side, from process start excluded (loading the files is
# not counted):
#   encode       the vision encoder on the image. lmpool: `lmpool run`'s
#                "image: ... encoded in X s" (lmp_vision_encode()).
#                llama.cpp: llama-mtmd-cli's "mtmd batch encoding done in
#                X ms" (-lv 4).
#   first token  from the encoder's start to the first generated token:
#                the encoder, the image's tokens and the text through the
#                language model, one token sampled. lmpool: `lmpool run -n
#                1`'s "first token X s after the encoder's start".
#                llama.cpp: its log's timestamp of llama_perf_context_print
#                less that of "encoding mtmd batch", less its "eval time"
#                (the decode of the sampled token, which it runs before
#                printing). Its own "prompt eval time" is not used.
# Prompts: "Describe the image." after the image; llama-mtmd-cli wraps it
# in the model's chat template (about 20 text tokens), lmpool run takes it
# as it is (a few tokens): the 256 image tokens dominate both.
#
# MODELS_DIR (/tmp/lmpool-vision-bench) keeps the generated files between
# runs (about 2.3 GB; made once, in about two minutes).
#
# Prints one JSON line per round and thread count, then a table: the best
# and the median of the rounds for each side, and the ratio of the bests
# (llama.cpp's time / lmpool's: above 1, lmpool is faster).
set -eu
build=${1:?usage: vision_side_by_side.sh BUILD_DIR [TYPE]}
type=${2:-q4_k_m}
threads_list=${THREADS:-1 2}
rounds=${ROUNDS:-3}
peer=${LLAMA_MTMD_CLI:-/tmp/llamacpp/build/bin/llama-mtmd-cli}
dir=${MODELS_DIR:-/tmp/lmpool-vision-bench}
lmpool=$build/src/client/lmpool
# Debian 12's OpenBLAS on these CPUs: its AVX2 kernels (see ../shared/PEERS.md)
export OPENBLAS_CORETYPE="${OPENBLAS_CORETYPE:-Haswell}" OPENBLAS_L2_SIZE="${OPENBLAS_L2_SIZE:-512}"
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT

mkdir -p "$dir"
model=$dir/qwen2-vl-2b-$type.gguf
mmproj=$dir/mmproj-qwen2-vl-2b-f16.gguf
[ -f "$model" ] || "$lmpool" mkmodel --shape qwen2-vl-2b --type "$type" -o "$model" 2>/dev/null
[ -f "$mmproj" ] || "$lmpool" mkmodel --shape qwen2-vl-2b-mmproj --type f16 -o "$mmproj" 2>/dev/null

# The image: RGB gradients and an xor pattern, an uncompressed-filter PNG.
image=$tmp/image448.png
python3 - "$image" <<'EOF'
import struct, sys, zlib
w = h = 448
raw = bytearray()
for y in range(h):
    raw.append(0)
    for x in range(w):
        raw += bytes((x * 255 // (w - 1), y * 255 // (h - 1), ((x ^ y) * 7) & 255))
def chunk(t, d):
    return struct.pack('>I', len(d)) + t + d + struct.pack('>I', zlib.crc32(t + d) & 0xffffffff)
with open(sys.argv[1], 'wb') as f:
    f.write(b'\x89PNG\r\n\x1a\n' + chunk(b'IHDR', struct.pack('>IIBBBBB', w, h, 8, 2, 0, 0, 0)) +
            chunk(b'IDAT', zlib.compress(bytes(raw), 9)) + chunk(b'IEND', b''))
EOF

peer_times() { # threads -> "encode_ms first_ms"
        [ -x "$peer" ] || { echo "0 0"; return; }
        "$peer" -m "$model" --mmproj "$mmproj" --image "$image" -p "Describe the image." -n 1 -t "$1" \
                --temp 0 -lv 4 > /dev/null 2> "$tmp/peer.err" || { echo "0 0"; return; }
        # "M.SS.mmm.uuu I ..." timestamps
        awk 'function ts(f,   t) { split(f, t, "."); return t[1] * 60 + t[2] + t[3] / 1e3 + t[4] / 1e6 }
             /encoding mtmd batch/ && !s { s = ts($1) }
             /mtmd batch encoding done in/ { enc = $(NF - 1) }
             /llama_perf_context_print: +eval time/ { v = $0; sub(/.*eval time = */, "", v); ev = v + 0 }
             /llama_perf_context_print: +load time/ { e = ts($1) }
             END { if (s && e) printf "%.0f %.0f\n", enc, (e - s) * 1e3 - ev; else print "0 0" }' "$tmp/peer.err"
}

ours_times() { # threads -> "encode_ms first_ms"
        "$lmpool" run "$model" --mmproj "$mmproj" --image "$image" --prompt "<__media__>Describe the image." \
                -n 1 --temp 0 --threads "$1" > /dev/null 2> "$tmp/ours.err" || { echo "0 0"; return; }
        sed -n 's/^image: .* encoded in \([0-9.]*\) s; first token \([0-9.]*\) s .*/\1 \2/p' "$tmp/ours.err" |
                awk '{ printf "%.0f %.0f\n", $1 * 1e3, $2 * 1e3 }'
}

r=1
while [ "$r" -le "$rounds" ]; do
        for t in $threads_list; do
                p=$(peer_times "$t")
                o=$(ours_times "$t")
                printf '{"bench":"vision_side_by_side","type":"%s","round":%d,"threads":%s,"lmpool_encode_ms":%s,"lmpool_first_ms":%s,"llama_encode_ms":%s,"llama_first_ms":%s,"load":%s}\n' \
                        "$type" "$r" "$t" ${o% *} ${o#* } ${p% *} ${p#* } "$(cut -d' ' -f1 /proc/loadavg)" \
                        | tee -a "$tmp/rounds.json"
        done
        r=$((r + 1))
done

printf '\n%-22s %7s %-12s %22s %22s %7s\n' model threads figure "lmpool ms best (median)" \
        "llama.cpp ms best (median)" "ratio"
for t in $threads_list; do
        for f in encode first; do
                for side in lmpool llama; do
                        sed -n "s/.*\"threads\":$t,.*\"${side}_${f}_ms\":\([0-9]*\).*/\1/p" "$tmp/rounds.json" |
                                sort -n | awk '{ v[NR] = $1 } END { printf "%d %d\n", v[1], v[int((NR + 1) / 2)] }' \
                                > "$tmp/$side"
                done
                read lb lm < "$tmp/lmpool"
                read pb pm < "$tmp/llama"
                printf '%-22s %7s %-12s %22s %22s %7s\n' "qwen2-vl-2b-$type" "$t" \
                        "$([ $f = first ] && echo "first token" || echo encode)" "$lb ($lm)" "$pb ($pm)" \
                        "$(awk -v l="$lb" -v p="$pb" 'BEGIN { if (l > 0 && p > 0) printf "%.2fx", p / l; else print "n/a" }')"
        done
done
