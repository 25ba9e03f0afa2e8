#!/bin/sh
# The chat-bot load (`lmpool bench --server`) against lmpoold and against
# llama-server, one after the other, on the same model file:
#
#   benchmarks/chat_load.sh MODEL.gguf [LLAMA_SERVER_BIN]
#
# Environment: USERS (4), MESSAGES (10), NGEN (100), and lmpoold's layout
# WORKERS x THREADS x SLOTS (2 x 1 x 2) and CACHE_REUSE (64: the model's
# cache_reuse, 0 for the common prefix only; llama-server gets the same as
# --cache-reuse); llama-server runs as
# `llama-server -t $PEER_THREADS -np $USERS -c $((USERS * 4096))` (2
# threads). Without LLAMA_SERVER_BIN (or when it is not executable) only
# lmpoold is measured. Prints each server's summary. Run it on a quiet
# machine; compare only the figures of one run.
set -eu

model=${1:?usage: benchmarks/chat_load.sh MODEL.gguf [LLAMA_SERVER_BIN]}
peer=${2:-}
here=$(cd "$(dirname "$0")/.." && pwd)
build=${BUILD:-$here/build}
lmpool=$build/src/client/lmpool
lmpoold=$build/src/supervisor/lmpoold
users=${USERS:-4}
messages=${MESSAGES:-10}
ngen=${NGEN:-100}
workers=${WORKERS:-2}
threads=${THREADS:-1}
slots=${SLOTS:-2}
cache_reuse=${CACHE_REUSE:-64}
peer_threads=${PEER_THREADS:-2}
port=${PORT:-18431}

dir=$(mktemp -d)
pids=""
cleanup() {
        for p in $pids; do kill "$p" 2>/dev/null || true; done
        wait 2>/dev/null || true
        rm -rf "$dir"
}
trap cleanup EXIT INT TERM

model=$(realpath "$model")
cat > "$dir/lmpool.yaml" <<EOF
router:
  endpoint: ipc://$dir/lmpool.sock
limits:
  queue_length: 256
  client_requests: 64
log:
  target: stderr
  requests: false
  memory_interval_s: 0
models:
  - name: m
    path: $model
    workers: $workers
    threads: $threads
    slots: $slots
    cache_reuse: $cache_reuse
    ctx: 4096
EOF

echo "== lmpoold: $workers workers x $threads threads x $slots slots, cache_reuse $cache_reuse, $(basename "$model")"
"$lmpoold" --config "$dir/lmpool.yaml" 2> "$dir/lmpoold.log" &
pid=$!
pids="$pids $pid"
i=0
until "$lmpool" health --endpoint "ipc://$dir/lmpool.sock" > /dev/null 2>&1; do
        i=$((i + 1))
        if [ $i -gt 600 ] || ! kill -0 $pid 2>/dev/null; then
                echo "lmpoold did not become ready:" >&2
                cat "$dir/lmpoold.log" >&2
                exit 1
        fi
        sleep 0.2
done
"$lmpool" bench --server --endpoint "ipc://$dir/lmpool.sock" --model m -u "$users" -m "$messages" -n "$ngen" \
        --pid $pid
kill $pid
wait $pid || true

if [ -n "$peer" ] && [ -x "$peer" ]; then
        echo "== llama-server -t $peer_threads -np $users -c $((users * 4096)) --cache-reuse $cache_reuse, $(basename "$model")"
        "$peer" -m "$model" -t "$peer_threads" -np "$users" -c $((users * 4096)) --cache-reuse "$cache_reuse" \
                --host 127.0.0.1 --port "$port" > "$dir/peer.log" 2>&1 &
        pid=$!
        pids="$pids $pid"
        i=0
        until curl -sf "http://127.0.0.1:$port/health" > /dev/null 2>&1; do
                i=$((i + 1))
                if [ $i -gt 600 ] || ! kill -0 $pid 2>/dev/null; then
                        echo "llama-server did not become ready:" >&2
                        tail -20 "$dir/peer.log" >&2
                        exit 1
                fi
                sleep 0.2
        done
        "$lmpool" bench --server --http "http://127.0.0.1:$port" --model m -u "$users" -m "$messages" -n "$ngen" \
                --pid $pid
        kill $pid
        wait $pid || true
fi
