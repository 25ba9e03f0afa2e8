#!/bin/sh
# docs/examples/client.py (pyzmq) against the protocol peer: generate
# streamed and not, chat, models/health, and error codes as exit status.
set -eu
: "${LMPOOL_PEER:?}" "${LMPOOL_CLIENT_PY:?}"
py=
for p in python3 /usr/bin/python3; do
        if command -v "$p" > /dev/null 2>&1 && "$p" -c 'import zmq' 2> /dev/null; then py=$p; break; fi
done
[ -n "$py" ] || { echo "no python3 with the zmq module (Debian python3-zmq): skipped"; exit 77; }
dir=$(mktemp -d)
peer_pid=
cleanup() {
        [ -n "$peer_pid" ] && kill "$peer_pid" 2>/dev/null && wait "$peer_pid" 2>/dev/null
        rm -rf "$dir"
}
trap cleanup EXIT
ep="ipc://$dir/peer.sock"
"$LMPOOL_PEER" "$ep" 100 > "$dir/peer.out" &
peer_pid=$!
for _ in $(seq 50); do grep -q ready "$dir/peer.out" 2>/dev/null && break; sleep 0.1; done
grep -q ready "$dir/peer.out"

fail() { echo "FAIL: $*"; for f in "$dir"/out "$dir"/err; do [ -f "$f" ] && { echo "--- $f"; cat "$f"; }; done; exit 1; }
run() { # want, args...
        want=$1; shift
        set +e; "$py" "$LMPOOL_CLIENT_PY" --endpoint "$ep" "$@" > "$dir/out" 2> "$dir/err"; got=$?; set -e
        [ "$got" -eq "$want" ] || fail "exit $got, expected $want: $*"
}

run 0 generate --model tiny --prompt 'héllo' --max-tokens 100 --temperature 0 --seed 1
[ "$(cat "$dir/out")" = "Echo: héllo" ] || fail "generate text"
grep -q 'finish=eos' "$dir/err" || fail "generate figures"
# options before the command and the prompt as an argument, as the
# daemon's integration tests call it
run 0 --model tiny --max-tokens 8 --temperature 0 generate 'as argument'
[ "$(cat "$dir/out")" = "Echo: as argument" ] || fail "top-level options text"
run 0 --model tiny --max-tokens 100 generate --max-tokens 2 abcdefgh
[ "$(cat "$dir/out")" = "Echo: ab" ] || fail "the option after the command wins"
run 0 generate --model tiny --prompt abcdefgh --max-tokens 2 --no-stream
[ "$(cat "$dir/out")" = "Echo: ab" ] || fail "no-stream text"
grep -q 'finish=length' "$dir/err" || fail "finish=length"
printf 'piped' | "$py" "$LMPOOL_CLIENT_PY" --endpoint "$ep" generate --model tiny > "$dir/out" 2> "$dir/err" || fail "stdin"
[ "$(cat "$dir/out")" = "Echo: piped" ] || fail "stdin text"
run 0 chat --model tiny --system 'be brief' --message 'first' --message 'second'
[ "$(cat "$dir/out")" = "Echo(3): second" ] || fail "chat text"
run 0 models
grep -q '"tiny"' "$dir/out" || fail "models"
run 0 health
grep -q '"status": "ok"' "$dir/out" || fail "health"
run 0 stats
run 4 generate --model nope --prompt x
grep -q 'unknown_model' "$dir/err" || fail "unknown_model"
run 5 generate --model busy --prompt x
run 6 generate --model long --prompt x
run 12 generate --model failed --prompt x
grep -q 'model_failed' "$dir/err" || fail "model_failed"
run 3 generate --model tiny --prompt x --temperature 11
grep -q 'bad_request' "$dir/err" || fail "bad_request from the peer"
run 7 generate --model silent --prompt x --timeout-ms 300
grep -q 'no answer' "$dir/err" || fail "timeout message"
run 2 generate --prompt x
# Ctrl-C cancels on the daemon: exit 130 long before the 5 s of tokens end
"$py" "$LMPOOL_CLIENT_PY" --endpoint "$ep" generate --model slow --prompt x > "$dir/out" 2> "$dir/err" &
py_pid=$!
sleep 1
kill -INT "$py_pid"
set +e; wait "$py_pid"; got=$?; set -e
[ "$got" -eq 130 ] || fail "Ctrl-C: exit $got"
grep -q 'cancelled' "$dir/err" || fail "Ctrl-C message"
echo "client.py: ok"
