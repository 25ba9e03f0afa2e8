#!/bin/sh
# `lmpoold --check-config` through its entry point: a good file prints the
# effective configuration and exits 0; a bad file prints every error as
# FILE:LINE:COL: message on stderr and exits 1; a missing model file is an
# error; LMPOOL_CONFIG names the default file; misuse exits 2.
# Usage: test_check_config.sh CHECK_PROGRAM EXAMPLE_YAML
set -u
check=$1 example=$2
dir=$(mktemp -d)
trap 'rm -rf "$dir"' EXIT
fail=0
bad() { echo "FAIL: $*"; fail=1; }
unset LMPOOL_PROFILE LMPOOL_CONFIG

: >"$dir/model.gguf"
cat >"$dir/good.yaml" <<YAML
limits:
  queue_length: 5
models:
  - name: tiny
    path: model.gguf
YAML
if "$check" --check-config "$dir/good.yaml" >"$dir/out" 2>"$dir/err"; then
        grep -q "^  queue_length: 5  # $dir/good.yaml:2$" "$dir/out" || bad "good: queue_length line missing"
        grep -q "^  - name: \"tiny\"  # $dir/good.yaml:4$" "$dir/out" || bad "good: model line missing"
        grep -q "^    path: \"$dir/model.gguf\"" "$dir/out" || bad "good: path not resolved against the file"
        [ -s "$dir/err" ] && bad "good: stderr not empty: $(cat "$dir/err")"
else
        bad "good file rejected: $(cat "$dir/err")"
fi

# The printed configuration is itself a good file.
cp "$dir/out" "$dir/printed.yaml"
"$check" "$dir/printed.yaml" >/dev/null 2>"$dir/err" || bad "printed config rejected: $(cat "$dir/err")"

# Environment overrides and profiles reach it.
LMPOOL_LIMITS_QUEUE_LENGTH=7 "$check" "$dir/good.yaml" >"$dir/out" 2>&1 || bad "env override rejected"
grep -q "^  queue_length: 7  # env LMPOOL_LIMITS_QUEUE_LENGTH$" "$dir/out" || bad "env override not shown"

cat >"$dir/bad.yaml" <<YAML
limits:
  queue_length: 0
  colour: red
models:
  - name: tiny
    path: missing.gguf
    workers: 0
YAML
"$check" --check-config "$dir/bad.yaml" >"$dir/out" 2>"$dir/err"
rc=$?
[ $rc -eq 1 ] || bad "bad file: exit $rc, expected 1"
[ -s "$dir/out" ] && bad "bad file: printed a configuration"
grep -qx "$dir/bad.yaml:2:17: key 'limits.queue_length': 0 is below the minimum 1" "$dir/err" || bad "bad: line 2 error"
grep -qx "$dir/bad.yaml:3:3: unknown key 'limits.colour'" "$dir/err" || bad "bad: line 3 error"
grep -qx "$dir/bad.yaml:7:14: key 'models\[0\].workers': 0 is below the minimum 1" "$dir/err" || bad "bad: line 7 error"
[ "$(wc -l <"$dir/err")" -eq 3 ] || bad "bad: expected 3 errors, got: $(cat "$dir/err")"

# A model file that does not exist.
sed 's/^  queue_length: 0$/  queue_length: 1/; /colour/d; /workers: 0/d' "$dir/bad.yaml" >"$dir/nofile.yaml"
"$check" "$dir/nofile.yaml" >"$dir/out" 2>"$dir/err"
rc=$?
[ $rc -eq 1 ] || bad "missing model: exit $rc, expected 1"
grep -q "^$dir/nofile.yaml:5:11: key 'models\[0\].path': $dir/missing.gguf: No such file or directory$" "$dir/err" \
        || bad "missing model: $(cat "$dir/err")"

# LMPOOL_CONFIG, then the default path.
LMPOOL_CONFIG="$dir/good.yaml" "$check" --check-config >/dev/null 2>&1 || bad "LMPOOL_CONFIG not used"
LMPOOL_CONFIG="$dir/none.yaml" "$check" --check-config >/dev/null 2>"$dir/err"
[ $? -eq 1 ] && grep -q "^$dir/none.yaml: cannot open" "$dir/err" || bad "missing file: $(cat "$dir/err")"

"$check" a.yaml b.yaml >/dev/null 2>&1
[ $? -eq 2 ] || bad "two files: expected exit 2"
"$check" --bogus >/dev/null 2>&1
[ $? -eq 2 ] || bad "unknown option: expected exit 2"

# The example parses (its model file lives on the target machine only).
"$check" "$example" >/dev/null 2>"$dir/err"
grep -v "key 'models\[0\].path'" "$dir/err" | grep . && bad "example has errors"

[ $fail -eq 0 ] && echo "check-config: all checks passed"
exit $fail
