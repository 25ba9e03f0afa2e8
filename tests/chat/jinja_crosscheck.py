#!/usr/bin/env python3
"""Cross-checks `lmpool chat-template` against the reference Jinja renderer.

For every template in $LMPOOL_FIXTURES/templates and templates-real (and
the chat templates stored in the tokenizer fixtures' GGUF files), renders
seeded random conversations (random roles, contents with leading and
trailing ASCII and Unicode whitespace, empty contents, tool messages; no
tools, or a tools list given with --tools) with jinja2 configured as Hugging
Face renders chat templates (trim_blocks, lstrip_blocks, loop controls,
raise_exception and strftime_now globals, tojson keeping non-ASCII, tools=None
when there are none), and with the CLI; the outputs must be equal byte for
byte, and a conversation the template refuses must be refused.
Exits 77 when jinja2 or the fixtures are missing. CROSSCHECK_N sets the
number of conversations per template (20), CROSSCHECK_TEMPLATES adds
templates (space-separated FILE.jinja:BOS:EOS)."""
import datetime
import glob
import json
import os
import random
import subprocess
import sys
import tempfile

try:
    import jinja2
    import jinja2.sandbox
except ImportError:
    print("python3 jinja2 not installed: skipped")
    sys.exit(77)

fixtures = os.environ.get("LMPOOL_FIXTURES", "")
lmpool = os.environ["LMPOOL_BIN"]
tdir = os.path.join(fixtures, "templates")
if not os.path.isdir(tdir):
    print("fixtures not found: skipped")
    sys.exit(77)


class Refused(Exception):
    pass


def raise_exception(msg):
    raise Refused(msg)


def tojson(x, ensure_ascii=False, indent=None, separators=None, sort_keys=False):
    return json.dumps(x, ensure_ascii=ensure_ascii, indent=indent, separators=separators,
                      sort_keys=sort_keys)


def strftime_now(fmt):
    return datetime.datetime(2026, 1, 15).strftime(fmt)


env = jinja2.sandbox.ImmutableSandboxedEnvironment(
    trim_blocks=True, lstrip_blocks=True, extensions=["jinja2.ext.loopcontrols"])
env.globals["raise_exception"] = raise_exception
env.globals["strftime_now"] = strftime_now
env.filters["tojson"] = tojson

templates = []  # (name, text, bos, eos)
for sub in ("templates", "templates-real"):
    for f in sorted(glob.glob(os.path.join(fixtures, sub, "*.json"))):
        d = json.load(open(f))
        text = open(os.path.join(fixtures, sub, d["template"])).read()
        templates.append((d["template"], text, d["bos_token"], d["eos_token"]))
for f in sorted(glob.glob(os.path.join(fixtures, "tokenizer", "*.gguf"))):
    meta = json.loads(subprocess.run([lmpool, "gguf", "--json", f], check=True,
                                     capture_output=True).stdout)["metadata"]
    if "tokenizer.chat_template" not in meta:
        continue
    toks = meta["tokenizer.ggml.tokens"]
    bos = toks[meta["tokenizer.ggml.bos_token_id"]] if "tokenizer.ggml.bos_token_id" in meta else ""
    eos = toks[meta["tokenizer.ggml.eos_token_id"]] if "tokenizer.ggml.eos_token_id" in meta else ""
    templates.append((os.path.basename(f), meta["tokenizer.chat_template"], bos, eos))

# More templates to check, e.g. a model's own: CROSSCHECK_TEMPLATES="a.jinja:BOS:EOS ...".
for spec in os.environ.get("CROSSCHECK_TEMPLATES", "").split():
    path, bos, eos = (spec.split(":") + ["", ""])[:3]
    templates.append((os.path.basename(path), open(path).read(), bos, eos))

WORDS = ["Hello", "a KV cache", "x", "", " ", "line one\nline two", "  padded  ",
         "\ttabbed\n", "\u00a0nbsp\u3000", "caf\u00e9 \u2003", "quote \" and \\ back",
         "<b>tag</b>", "\u00e9t\u00e9\n\n", "emoji \U0001F600 ",
         "ctl\x01\x1f\r\n", "\x1csep\x85", "\u2028ls\u202f"]


TOOLS = [{"type": "function", "function": {
    "name": "get_weather", "description": "Current weather for a city \u00e9 <b>",
    "parameters": {"type": "object", "properties": {
        "city": {"type": "string", "description": "City name"},
        "days": {"type": "integer", "enum": [1, 2, 3]},
        "metric": {"type": "boolean"}, "ratio": {"type": "number", "default": 0.5}},
        "required": ["city"]}}}]


def conversation(rng):
    n = rng.randint(1, 6)
    if rng.random() < 0.6:
        roles = (["system"] if rng.random() < 0.5 else []) + \
                ["user" if i % 2 == 0 else "assistant" for i in range(n)]
    else:
        roles = [rng.choice(["system", "user", "assistant", "tool", "user"]) for _ in range(n)]
    return [{"role": r, "content": rng.choice(WORDS) + rng.choice(WORDS)} for r in roles]


rng = random.Random(1234)
failures = checked = refused = 0
with tempfile.TemporaryDirectory() as tmp:
    tpl_path = os.path.join(tmp, "t.jinja")
    msg_path = os.path.join(tmp, "m.json")
    tools_path = os.path.join(tmp, "tools.json")
    with open(tools_path, "w") as fh:
        json.dump(TOOLS, fh)
    for name, text, bos, eos in templates:
        with open(tpl_path, "w") as fh:
            fh.write(text)
        tpl = env.from_string(text)
        for _ in range(int(os.environ.get("CROSSCHECK_N", "20"))):
            conv = conversation(rng)
            gen = rng.random() < 0.8
            tools = TOOLS if rng.random() < 0.3 else None
            try:
                want = tpl.render(messages=conv, bos_token=bos, eos_token=eos, tools=tools,
                                  add_generation_prompt=gen, date_string="15 Jan 2026")
                err = exact = None
            except Refused as e:
                want, err, exact = None, str(e), True
            except (jinja2.TemplateError, TypeError, ValueError, KeyError, IndexError,
                    AttributeError) as e:  # e.g. an undefined attribute, None iterated
                want, err, exact = None, str(e), False
            with open(msg_path, "w") as fh:
                json.dump(conv, fh)
            args = [lmpool, "chat-template", "--template", tpl_path, "--bos", bos, "--eos", eos,
                    "--messages", msg_path, "--date", "15 Jan 2026"]
            if not gen:
                args.append("--no-generation-prompt")
            if tools:
                args += ["--tools", tools_path]
            r = subprocess.run(args, capture_output=True)
            checked += 1
            if want is not None:
                if r.returncode != 0 or r.stdout.decode() != want:
                    failures += 1
                    print(f"{name}: {json.dumps(conv, ensure_ascii=False)} gen={gen}\n"
                          f"  got:  {r.stdout.decode()!r} {r.stderr.decode().strip()}\n"
                          f"  want: {want!r}")
            else:
                refused += 1
                if r.returncode == 0:
                    failures += 1
                    print(f"{name}: {json.dumps(conv, ensure_ascii=False)} not refused: {err}")
                elif exact and err not in r.stderr.decode():
                    failures += 1
                    print(f"{name}: {json.dumps(conv, ensure_ascii=False)} refused with "
                          f"{r.stderr.decode().strip()!r}, want {err!r}")
print(f"{len(templates)} templates, {checked} conversations ({refused} refused), {failures} failures")
sys.exit(1 if failures else 0)
