#!/bin/sh
# Every program's options are read one way (src/common/args.c): each
# subcommand of lmpool, lmpoold and lmpool-http is run with its options
# written --name=value, and gives what --name value gives; options may
# follow the operands; and the mistakes are worded the same everywhere.
# Self-contained: the model is made by mkmodel, the daemon side is the
# protocol peer.
set -eu
: "${LMPOOL_BIN:?}" "${LMPOOL_PEER:?}" "${LMPOOLD_BIN:?}" "${LMPOOL_GATEWAY_BIN:?}"
dir=$(mktemp -d)
peer_pid=
cleanup() {
        [ -n "$peer_pid" ] && kill "$peer_pid" 2>/dev/null && wait "$peer_pid" 2>/dev/null
        rm -rf "$dir"
}
trap cleanup EXIT

fail() { echo "FAIL: $*"; for f in "$dir"/out "$dir"/err; do [ -f "$f" ] && { echo "--- $f"; cat "$f"; }; done; exit 1; }
expect_status() { # want, command...
        want=$1; shift
        set +e; "$@" > "$dir/out" 2> "$dir/err"; got=$?; set -e
        [ "$got" -eq "$want" ] || fail "exit $got, expected $want: $*"
}
# same OUTFILE command...: stdout must equal OUTFILE's
same() {
        ref=$1; shift
        expect_status 0 "$@"
        cmp -s "$ref" "$dir/out" || fail "not the same output as the --name value form: $*"
}

m="$dir/m.gguf"
L=$LMPOOL_BIN

# mkmodel, quantize, gguf
expect_status 0 "$L" mkmodel --shape=test-llama --type=f16 --seed=5 --threads=1 --output="$m"
expect_status 0 "$L" mkmodel --shape=test-llama --type=f16 --dry-run
expect_status 0 "$L" quantize "$m" "$dir/q8.gguf" q8_0 --threads=1
"$L" gguf --json "$dir/q8.gguf" > "$dir/ref"
expect_status 0 "$L" gguf "$dir/q8.gguf" --json
cmp -s "$dir/ref" "$dir/out" || fail "gguf: an option after the operand"
expect_status 0 "$L" gguf --json -- "$dir/q8.gguf"

# tokenize, detokenize, logits, run
"$L" tokenize "$m" --text 'hello world' > "$dir/ref"
same "$dir/ref" "$L" tokenize "$m" --text='hello world'
same "$dir/ref" "$L" tokenize --text='hello world' "$m"
ids=$(cat "$dir/ref")
"$L" detokenize "$m" --ids "$ids" > "$dir/ref"
same "$dir/ref" "$L" detokenize --ids="$ids" "$m"
"$L" logits "$m" --ids '1 5 9' --top 3 --threads 1 > "$dir/ref"
same "$dir/ref" "$L" logits "$m" --ids='1 5 9' --top=3 --threads=1
"$L" run "$m" --prompt 'hi there' -n 4 --threads 1 --ctx 64 --temp 0.7 --top-k 20 --top-p 0.9 --seed 11 \
        > "$dir/ref" 2> /dev/null
same "$dir/ref" "$L" run "$m" --prompt='hi there' --max-tokens=4 --threads=1 --ctx=64 --temp=0.7 --top-k=20 \
        --top-p=0.9 --seed=11
same "$dir/ref" "$L" run --prompt='hi there' -n4 --threads=1 --ctx=64 --temp=0.7 --top-k=20 --top-p=0.9 \
        --seed=11 "$m"
"$L" run "$m" --ids '1 5' -n 3 --print-ids --ignore-eos --threads 1 > "$dir/ref" 2> /dev/null
same "$dir/ref" "$L" run "$m" --ids='1 5' --max-tokens=3 --print-ids --ignore-eos --threads=1

# chat-template
printf '[{"role": "user", "content": "Hi"}]' > "$dir/hi.json"
"$L" chat-template "$m" --messages "$dir/hi.json" --date '1 Jan 2026' > "$dir/ref"
same "$dir/ref" "$L" chat-template "$m" --messages="$dir/hi.json" --date='1 Jan 2026'
"$L" chat-template "$m" --messages - --no-generation-prompt < "$dir/hi.json" > "$dir/ref"
same "$dir/ref" "$L" chat-template --no-generation-prompt --messages=- "$m" < "$dir/hi.json"

# keygen
expect_status 0 "$L" keygen --output="$dir/k"
[ -s "$dir/k" ] && [ -s "$dir/k.pub" ] || fail "keygen --output="
expect_status 0 "$L" keygen --output="$dir/k" --force

# bench (no measuring: the options only)
expect_status 0 "$L" bench "$m" --n-prompt=8 --n-gen=2 --seqs=1 --repetitions=1 --threads=1 --probe-mib=0 --json

# generate, chat, models, stats, health, bench --server: against the peer
ep="ipc://$dir/peer.sock"
"$LMPOOL_PEER" "$ep" 100 > "$dir/peer.out" &
peer_pid=$!
for _ in $(seq 50); do grep -q ready "$dir/peer.out" 2>/dev/null && break; sleep 0.1; done
grep -q ready "$dir/peer.out"
expect_status 0 "$L" generate --model=tiny --prompt=abcdefgh --max-tokens=2 --temp=0 --top-k=1 --top-p=0.5 \
        --min-p=0 --repeat-penalty=1 --seed=7 --timeout-ms=5000 --endpoint="$ep"
[ "$(cat "$dir/out")" = "Echo: ab" ] || fail "generate --name=value text"
expect_status 0 "$L" generate --model=tiny --prompt='one. two' --stop=. --endpoint="$ep"
[ "$(cat "$dir/out")" = "Echo: one" ] || fail "generate --stop="
printf 'how are you?\n' | "$L" chat --model=tiny --system='be brief' --endpoint="$ep" > "$dir/out" 2> "$dir/err" \
        || fail "chat --name=value"
[ "$(cat "$dir/out")" = "Echo(2): how are you?" ] || fail "chat text"
for cmd in models stats health; do
        expect_status 0 "$L" $cmd --endpoint="$ep" --timeout-ms=5000 --json
done
expect_status 0 "$L" bench --server --model=tiny --users=1 --messages=1 --n-gen=2 --history=0 --temp=0 \
        --endpoint="$ep" --timeout-ms=5000 --json

# lmpoold and lmpool-http
printf 'models: []\n' > "$dir/empty.yaml"
expect_status 1 "$LMPOOLD_BIN" --check-config --config="$dir/missing.yaml"
grep -q "^$dir/missing.yaml: cannot open" "$dir/err" || fail "lmpoold --check-config --config="
expect_status 1 "$LMPOOLD_BIN" --config="$dir/missing.yaml"
grep -q "$dir/missing.yaml" "$dir/err" || fail "lmpoold --config="
expect_status 0 "$LMPOOLD_BIN" --version
expect_status 1 "$LMPOOL_GATEWAY_BIN" --config="$dir/missing.yaml" --listen=127.0.0.1:0 --endpoint="$ep"
grep -q "$dir/missing.yaml" "$dir/err" || fail "lmpool-http --config="
expect_status 0 "$LMPOOL_GATEWAY_BIN" --version

# One wording for the mistakes, exit 2.
usage_error() { # expected stderr line, then the command
        line=$1; shift
        expect_status 2 "$@"
        head -n 1 "$dir/err" | grep -qxF -- "$line" || fail "expected '$line': $*"
}
for cmd in gguf quantize mkmodel tokenize detokenize chat-template logits run bench generate chat models \
           stats health keygen; do
        usage_error "lmpool $cmd: unknown option '--frobnicate'" "$L" $cmd --frobnicate=1
done
usage_error "lmpool bench: unknown option '--frobnicate'" "$L" bench --server --frobnicate
usage_error "lmpoold: unknown option '--frobnicate'" "$LMPOOLD_BIN" --frobnicate
usage_error "lmpoold: unknown option '--frobnicate'" "$LMPOOLD_BIN" --check-config --frobnicate
usage_error "lmpool-http: unknown option '--frobnicate'" "$LMPOOL_GATEWAY_BIN" --frobnicate

usage_error "lmpool run: option '--prompt' needs a value" "$L" run "$m" --prompt
usage_error "lmpool run: option '-n' needs a value" "$L" run "$m" --prompt x -n
usage_error "lmpool tokenize: option '--text' needs a value" "$L" tokenize "$m" --text
usage_error "lmpool quantize: option '--threads' needs a value" "$L" quantize a b c --threads
usage_error "lmpool mkmodel: option '--shape' needs a value" "$L" mkmodel --shape
usage_error "lmpool chat-template: option '--messages' needs a value" "$L" chat-template "$m" --messages
usage_error "lmpool logits: option '--ids' needs a value" "$L" logits "$m" --ids
usage_error "lmpool generate: option '--model' needs a value" "$L" generate --model
usage_error "lmpool health: option '--endpoint' needs a value" "$L" health --endpoint
usage_error "lmpool keygen: option '-o' needs a value" "$L" keygen -o
usage_error "lmpool bench: option '--model' needs a value" "$L" bench --server --model
usage_error "lmpoold: option '--config' needs a value" "$LMPOOLD_BIN" --config
usage_error "lmpool-http: option '--listen' needs a value" "$LMPOOL_GATEWAY_BIN" --listen

usage_error "lmpool gguf: option '--json' takes no value" "$L" gguf --json=yes "$m"
usage_error "lmpool run: option '--ignore-eos' takes no value" "$L" run "$m" --ignore-eos=1
usage_error "lmpool run: ambiguous option '--t'" "$L" run "$m" --t=1
usage_error "lmpool run: unknown option '-q'" "$L" run "$m" -q
usage_error "lmpool run: unexpected argument 'extra'" "$L" run "$m" extra --prompt=x
usage_error "lmpool quantize: bad value '0' for --threads: expected an integer from 1 to 64" \
        "$L" quantize a b c --threads=0
usage_error "lmpool run: bad value 'x' for --temp: expected a number from 0 to 100" "$L" run "$m" --temp=x
usage_error "lmpool bench: bad value '0' for --users: expected an integer from 1 to 256" \
        "$L" bench --server --model=tiny --users=0
usage_error "lmpool bench: bad value '0' for -u: expected an integer from 1 to 256" "$L" bench --server --model tiny -u 0
usage_error "lmpool bench: bad value 'hot' for --temp: expected a number from 0 to 100" \
        "$L" bench --server --model=tiny --temp hot
usage_error "lmpool bench: bad value '8,,16' for -p: expected a comma-separated list of integers from 0 to 16384" \
        "$L" bench "$m" -p 8,,16
usage_error "lmpool bench: unexpected argument 'extra'" "$L" bench --server --model=tiny extra
usage_error "lmpool mkmodel: bad value '-1' for --seed: expected an integer from 0 to 18446744073709551615" \
        "$L" mkmodel --seed=-1
echo "cli-args: ok"
