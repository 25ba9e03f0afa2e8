#!/bin/sh
# The lmpool client subcommands (generate, chat, models, stats, health)
# against the protocol peer on a private ipc endpoint: output on stdout,
# figures and error codes on stderr, exit codes 0/1/2, --json, endpoint
# from --endpoint and from LMPOOL_ENDPOINT, timeouts with nobody there.
set -eu
: "${LMPOOL_BIN:?}" "${LMPOOL_PEER:?}"
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
expect_status() { # want, command...
        want=$1; shift
        set +e; "$@" > "$dir/out" 2> "$dir/err"; got=$?; set -e
        [ "$got" -eq "$want" ] || fail "exit $got, expected $want: $*"
}

# generate: streamed text on stdout, exactly; figures on stderr.
expect_status 0 "$LMPOOL_BIN" generate --model tiny --prompt 'héllo wörld' --endpoint "$ep"
[ "$(cat "$dir/out")" = "Echo: héllo wörld" ] || fail "generate text"
grep -q 'finish=eos' "$dir/err" || fail "generate figures"
grep -q 'worker=tiny/0' "$dir/err" || fail "generate worker"

# prompt from stdin (one trailing newline dropped), endpoint from the environment
printf 'from stdin\n' | LMPOOL_ENDPOINT="$ep" "$LMPOOL_BIN" generate -m tiny > "$dir/out" 2> "$dir/err" || fail "stdin"
[ "$(cat "$dir/out")" = "Echo: from stdin" ] || fail "stdin text"

# --no-stream, -n, --ids, --stop
expect_status 0 "$LMPOOL_BIN" generate -m tiny -p abcdefgh -n 2 --ids --no-stream --endpoint "$ep"
[ "$(cat "$dir/out")" = "Echo: ab" ] || fail "-n 2 --no-stream text"
grep -q 'finish=length' "$dir/err" || fail "finish=length"
expect_status 0 "$LMPOOL_BIN" generate -m tiny -p abcdefgh -n 2 --ids --endpoint "$ep"
grep -q '^ids: 100 101$' "$dir/err" || fail "--ids"
expect_status 0 "$LMPOOL_BIN" generate -m tiny -p 'one. two' --stop . --temp 0 --top-k 1 --top-p 0.5 --seed 7 \
        --timeout-ms 5000 --endpoint "$ep"
[ "$(cat "$dir/out")" = "Echo: one" ] || fail "--stop text"
grep -q 'finish=stop' "$dir/err" || fail "finish=stop"

# errors: code on stderr, one exit status per code (docs/examples/client.py's);
# usage errors exit 2
expect_status 4 "$LMPOOL_BIN" generate -m nope -p x --endpoint "$ep"
grep -q '^lmpool generate: unknown_model: no model named "nope"$' "$dir/err" || fail "unknown_model message"
expect_status 5 "$LMPOOL_BIN" generate -m busy -p x --endpoint "$ep"
grep -q 'busy: queue full' "$dir/err" || fail "busy message"
expect_status 2 "$LMPOOL_BIN" generate -m tiny -p x --temp 11 --endpoint "$ep"
grep -q "bad value '11' for --temp" "$dir/err" || fail "--temp 11 message"
expect_status 2 "$LMPOOL_BIN" generate -p x --endpoint "$ep"
grep -q -- '--model is required' "$dir/err" || fail "missing --model"
expect_status 2 "$LMPOOL_BIN" generate -m tiny -p x extra --endpoint "$ep"
expect_status 0 "$LMPOOL_BIN" generate --help
grep -q '^usage: lmpool generate' "$dir/out" || fail "--help"

# timeouts: a model that never answers, and nobody at the endpoint
expect_status 6 "$LMPOOL_BIN" generate -m long -p x --endpoint "$ep"
grep -q '^lmpool generate: too_long: ' "$dir/err" || fail "too_long message"
expect_status 12 "$LMPOOL_BIN" generate -m failed -p x --endpoint "$ep"
grep -q '^lmpool generate: model_failed: its workers cannot load it$' "$dir/err" || fail "model_failed message"
expect_status 7 "$LMPOOL_BIN" generate -m silent -p x --timeout-ms 200 --endpoint "$ep"
grep -q 'timeout: no answer from' "$dir/err" || fail "silent timeout message"
expect_status 7 "$LMPOOL_BIN" health --endpoint "ipc://$dir/nobody.sock" --timeout-ms 200
grep -q "timeout: no answer from ipc://$dir/nobody.sock (no socket there: is lmpoold running?)" "$dir/err" \
        || fail "nobody message"
# Without --timeout-ms, models, stats and health give up after their own
# 3 s (not the library's 60 s of generate): timeout(1) ends a probe that
# would take longer than 5 s with 124.
for cmd in health models stats; do
        expect_status 7 timeout 5 "$LMPOOL_BIN" $cmd --endpoint ipc:///nonexistent
        grep -q "^lmpool $cmd: timeout: no answer from ipc:///nonexistent (no socket there" "$dir/err" \
                || fail "$cmd: no daemon"
done

# Ctrl-C cancels the request on the daemon: exit 130, well before the
# slow model's 5 s of tokens are over.
"$LMPOOL_BIN" generate -m slow -p x --endpoint "$ep" > "$dir/out" 2> "$dir/err" &
gen_pid=$!
sleep 0.5
kill -INT "$gen_pid"
set +e; wait "$gen_pid"; got=$?; set -e
[ "$got" -eq 130 ] || fail "Ctrl-C: exit $got"
grep -q 'lmpool generate: cancelled' "$dir/err" || fail "Ctrl-C message"
grep -q '^\.\.*$' "$dir/out" || fail "tokens before Ctrl-C"

# chat: one exchange from stdin when it is not a terminal
printf 'how are you?\n' | "$LMPOOL_BIN" chat -m tiny --system 'be brief' --endpoint "$ep" > "$dir/out" 2> "$dir/err" \
        || fail "chat"
[ "$(cat "$dir/out")" = "Echo(2): how are you?" ] || fail "chat text"
set +e; printf 'x' | "$LMPOOL_BIN" chat -m nope --endpoint "$ep" > "$dir/out" 2> "$dir/err"; got=$?; set -e
[ "$got" -eq 4 ] || fail "chat unknown model: exit $got"
grep -q 'unknown_model' "$dir/err" || fail "chat error code"

# chat on a terminal (script(1) gives it one): a REPL that keeps the
# conversation, so the second turn sends 3 messages; an empty line ends.
if command -v script > /dev/null 2>&1; then
        printf 'first\nsecond\n\n' | timeout 20 script -qec \
                "'$LMPOOL_BIN' chat -m tiny --endpoint '$ep'" /dev/null > "$dir/out" 2>&1 || fail "interactive chat"
        # The terminal echoes the piped lines whenever they arrive, before or
        # after a prompt, so check the answers and the prompts apart.
        tr -d '\r' < "$dir/out" > "$dir/tty"
        grep -q 'Echo(1): first$' "$dir/tty" || fail "interactive first turn"
        grep -q 'Echo(3): second$' "$dir/tty" || fail "interactive second turn"
        [ "$(grep -o '> ' "$dir/tty" | wc -l)" -ge 3 ] || fail "interactive prompts"
else
        echo "script(1) not found: interactive chat not tested"
fi

# models, stats, health: tables, and --json as the daemon sent it
expect_status 0 "$LMPOOL_BIN" models --endpoint "$ep"
grep -Eq '^tiny +llama +256 +1/1 +4 +1\.0  models/tiny\.gguf$' "$dir/out" || fail "models table"
expect_status 0 "$LMPOOL_BIN" models --json --endpoint "$ep"
python3 -c 'import json,sys; d=json.load(open(sys.argv[1])); assert [m["name"] for m in d["models"]] == ["tiny","slow"], d' \
        "$dir/out" || fail "models --json"
expect_status 0 "$LMPOOL_BIN" stats --endpoint "$ep"
grep -q '^requests: 9 total, 7 ok, 2 errors' "$dir/out" || fail "stats summary"
grep -Eq '^tiny/0 +tiny +4242 +ready' "$dir/out" || fail "stats workers"
expect_status 0 "$LMPOOL_BIN" stats --json --endpoint "$ep"
python3 -c 'import json,sys; d=json.load(open(sys.argv[1])); assert d["workers"][0]["pid"] == 4242, d' "$dir/out" \
        || fail "stats --json"
expect_status 0 "$LMPOOL_BIN" health --endpoint "$ep"
grep -q '^status: ok$' "$dir/out" || fail "health status"
grep -q '^  slow: 2 of 2 workers ready$' "$dir/out" || fail "health models"
expect_status 0 "$LMPOOL_BIN" health --json --endpoint "$ep"
python3 -c 'import json,sys; d=json.load(open(sys.argv[1])); assert d["status"] == "ok", d' "$dir/out" || fail "health --json"
expect_status 2 "$LMPOOL_BIN" health --bogus
expect_status 0 "$LMPOOL_BIN" models --help
echo "lmpool client commands: ok"
