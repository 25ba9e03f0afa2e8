#!/usr/bin/env python3
"""Constrained JSON output through `lmpool run` with a random fixture model
at temperature 1 (issue 17): for hundreds of seeds under --json and under a
schema (and a quarter as many with qwen2's byte-level BPE vocabulary) with nested objects, arrays, enums and required fields, every run
that ends with a complete document prints one that parses and validates
(the model's noise must not matter); runs cut short by --max-tokens say so
with status 1 and are counted apart. Also: refused schemas name the
keyword, and a document cut short is never passed off as complete.

The validator below covers the schema subset of docs/protocol.md, written
independently of the C grammar."""
import json
import os
import subprocess
import sys
import tempfile

try:  # a second opinion where the jsonschema module is installed
    import jsonschema
except ImportError:
    jsonschema = None

LMPOOL = os.environ["LMPOOL_BIN"]
MODELS = os.path.join(os.environ["LMPOOL_FIXTURES"], "models")
MODEL = os.path.join(MODELS, "llama-q8_0.gguf")
SEEDS = int(os.environ.get("LMPOOL_JSON_SEEDS", "200"))

SCHEMA = {
    "type": "object",
    "properties": {
        "id": {"type": "integer"},
        "color": {"enum": ["red", "green", "blue", 7, None]},
        "tags": {"type": "array", "items": {"type": "string", "maxLength": 4}, "minItems": 1, "maxItems": 3},
        "owner": {
            "type": "object",
            "properties": {
                "name": {"type": "string", "minLength": 1, "maxLength": 6},
                "ok": {"type": "boolean"},
                "kind": {"const": "person"},
            },
            "required": ["name", "ok"],
            "additionalProperties": False,
        },
        "note": {"anyOf": [{"type": "null"}, {"type": "number"}, {"type": "string", "maxLength": 3}]},
        "ratio": {"type": ["number", "null"]},
    },
    "required": ["id", "color", "owner", "tags"],
    "additionalProperties": False,
}


def is_type(v, t):
    if t == "object":
        return isinstance(v, dict)
    if t == "array":
        return isinstance(v, list)
    if t == "string":
        return isinstance(v, str)
    if t == "integer":
        return isinstance(v, int) and not isinstance(v, bool)
    if t == "number":
        return isinstance(v, (int, float)) and not isinstance(v, bool)
    if t == "boolean":
        return isinstance(v, bool)
    if t == "null":
        return v is None
    raise ValueError(t)


def same(a, b):
    return type(a) == type(b) and a == b or (is_type(a, "number") and is_type(b, "number") and a == b)


def validate(v, s, path="$"):
    """None when v is valid for s, else what is wrong."""
    if s is True or s == {}:
        return None
    if "anyOf" in s:
        if any(validate(v, alt, path) is None for alt in s["anyOf"]):
            return None
        return f"{path}: no anyOf alternative matches"
    if "const" in s and not same(v, s["const"]):
        return f"{path}: {v!r} is not the const {s['const']!r}"
    if "enum" in s and not any(same(v, e) for e in s["enum"]):
        return f"{path}: {v!r} is not in the enum"
    if "type" in s:
        types = s["type"] if isinstance(s["type"], list) else [s["type"]]
        if not any(is_type(v, t) for t in types):
            return f"{path}: {v!r} is not of type {types}"
    if isinstance(v, dict):
        props = s.get("properties", {})
        for r in s.get("required", []):
            if r not in v:
                return f"{path}: required {r!r} missing"
        for k, x in v.items():
            if k in props:
                e = validate(x, props[k], f"{path}.{k}")
                if e:
                    return e
            elif s.get("additionalProperties") is False:
                return f"{path}: additional property {k!r}"
    if isinstance(v, list):
        if len(v) < s.get("minItems", 0) or len(v) > s.get("maxItems", 1 << 62):
            return f"{path}: {len(v)} items"
        for i, x in enumerate(v):
            e = validate(x, s.get("items", True), f"{path}[{i}]")
            if e:
                return e
    if isinstance(v, str):
        if len(v) < s.get("minLength", 0) or len(v) > s.get("maxLength", 1 << 62):
            return f"{path}: string of {len(v)} characters"
    return None


def run(args, seed, n, model=MODEL):
    p = subprocess.run([LMPOOL, "run", model, "--prompt", "Write JSON:", "--temp", "1", "--seed", str(seed),
                        "-n", str(n), "--threads", "1"] + args, capture_output=True, timeout=120)
    return p.returncode, p.stdout, p.stderr.decode("utf-8", "replace")


failures = 0


def fail(msg):
    global failures
    failures += 1
    print("FAIL:", msg, file=sys.stderr)


def campaign(name, args, schema, n, model=MODEL, seeds=SEEDS):
    done = cut = 0
    for seed in range(1, seeds + 1):
        rc, out, err = run(args, seed, n, model)
        if rc == 1 and "the JSON document is incomplete: stopped by length" in err:
            cut += 1
            continue
        if rc != 0:
            fail(f"{name} seed {seed}: status {rc}: {err.strip()[-300:]}")
            continue
        try:
            doc = json.loads(out.decode("utf-8"))
        except (UnicodeDecodeError, ValueError) as e:
            fail(f"{name} seed {seed}: does not parse ({e}): {out!r}")
            continue
        e = validate(doc, schema)
        if not e and jsonschema:
            try:
                jsonschema.validate(doc, schema)
            except jsonschema.ValidationError as x:
                e = f"jsonschema: {x.message}"
        if e:
            fail(f"{name} seed {seed}: invalid: {e}: {out!r}")
            continue
        done += 1
    print(f"{name}: {done} complete and valid, {cut} cut short by max tokens ({n}), of {seeds} seeds")
    if done < seeds // 4:
        fail(f"{name}: only {done} of {seeds} documents complete: the test shows too little")


with tempfile.TemporaryDirectory() as tmp:
    path = os.path.join(tmp, "schema.json")
    with open(path, "w") as f:
        json.dump(SCHEMA, f)
    campaign("schema", ["--json-schema", path], SCHEMA, 400)
    campaign("json", ["--json"], {"type": "object"}, 400)
    # A byte-level BPE vocabulary (qwen2's) as well as llama's SentencePiece one.
    campaign("schema qwen2", ["--json-schema", path], SCHEMA, 400, os.path.join(MODELS, "qwen2-q8_0.gguf"),
             max(SEEDS // 4, 1))

    # Cut short: never passed off as complete.
    rc, out, err = run(["--json-schema", path], 1, 3)
    if rc != 1 or "incomplete: stopped by length" not in err:
        fail(f"a document cut at 3 tokens: status {rc}, stderr {err!r}")

    # Refused schemas name the keyword.
    for bad, word in [({"type": "string", "pattern": "a"}, '"pattern"'),
                      ({"properties": {"a": {"$ref": "#"}}}, '"$ref"'),
                      ({"enum": []}, "enum is empty")]:
        with open(path, "w") as f:
            json.dump(bad, f)
        rc, out, err = run(["--json-schema", path], 1, 8)
        if rc == 0 or word not in err:
            fail(f"schema {bad}: status {rc}, stderr {err!r}")

if failures:
    print(f"{failures} failures", file=sys.stderr)
    sys.exit(1)
print("ok")
