#!/usr/bin/env python3
"""Tool calls through a real lmpoold (issue 17): a random-weight fixture
model given a real model's chat template (Qwen 2.5's <tool_call>, Llama
3.1's JSON, Mistral Nemo's [TOOL_CALLS]) and an OpenAI-style tools list.
With tool_choice "required" or a named function the sampler is held to the
template's call syntax, so that at temperature 1, over many seeds, every
answer that ends is one call whose arguments validate against the
function's schema (the model's noise must not matter); runs cut short by
max_tokens end "length" and are counted apart. Also: a call sent back as
an assistant message with the tool's result renders and is answered, a
streamed call sends no text before its done event, tool_choice "auto"
streams the same text as it answers whole, and bad tools are refused with
the bound they break."""
import json
import os
import shutil
import sys
import tempfile
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import test_daemon as td  # noqa: E402

SEEDS = int(os.environ.get("LMPOOL_TOOL_SEEDS", "120"))
TEMPLATES = os.path.join(td.FIXTURES, "templates-real")

WEATHER = {"type": "object",
           "properties": {"city": {"type": "string", "minLength": 1, "maxLength": 8},
                          "unit": {"enum": ["celsius", "fahrenheit"]},
                          "days": {"type": "integer"},
                          "tags": {"type": "array", "items": {"type": "string", "maxLength": 3}, "maxItems": 2}},
           "required": ["city", "unit"], "additionalProperties": False}
ADD = {"type": "object", "properties": {"a": {"type": "integer"}, "b": {"type": "number"}},
       "required": ["a", "b"], "additionalProperties": False}
TOOLS = [{"type": "function", "function": {"name": "get_weather", "description": "The weather in a city",
                                           "parameters": WEATHER}},
         {"type": "function", "function": {"name": "add", "description": "Adds two numbers", "parameters": ADD}},
         {"type": "function", "function": {"name": "now", "description": "The time"}}]
SCHEMAS = {"get_weather": WEATHER, "add": ADD, "now": {"type": "object", "additionalProperties": False}}
ASK = [{"role": "user", "content": "What is the weather in Paris?"}]


def validate(v, s, path="$"):
    """None when v is valid for the schema s (the subset used here), else
    what is wrong."""
    kinds = {"object": dict, "array": list, "string": str, "boolean": bool}
    if "enum" in s and v not in s["enum"]:
        return f"{path}: {v!r} not in the enum"
    t = s.get("type")
    if t in kinds and not isinstance(v, kinds[t]):
        return f"{path}: {v!r} is not {t}"
    if t == "integer" and (not isinstance(v, int) or isinstance(v, bool)):
        return f"{path}: {v!r} is not an integer"
    if t == "number" and (not isinstance(v, (int, float)) or isinstance(v, bool)):
        return f"{path}: {v!r} is not a number"
    if isinstance(v, str) and not s.get("minLength", 0) <= len(v) <= s.get("maxLength", len(v)):
        return f"{path}: {len(v)} characters"
    if isinstance(v, list):
        if len(v) > s.get("maxItems", len(v)):
            return f"{path}: {len(v)} items"
        for i, x in enumerate(v):
            e = validate(x, s.get("items", {}), f"{path}[{i}]")
            if e:
                return e
    if isinstance(v, dict):
        props = s.get("properties", {})
        for r in s.get("required", []):
            if r not in v:
                return f"{path}: {r!r} missing"
        for k, x in v.items():
            if k not in props:
                if s.get("additionalProperties") is False:
                    return f"{path}: {k!r} is not a property"
                continue
            e = validate(x, props[k], f"{path}.{k}")
            if e:
                return e
    return None


def chat(d, rid, **kw):
    req = {"v": 1, "id": rid, "type": "chat", "model": "m", "messages": ASK, "tools": TOOLS}
    req.update(kw)
    return d.request(req, timeout=300)


class ToolTests(unittest.TestCase):
    template = "Qwen-Qwen2.5-7B-Instruct"
    seeds = SEEDS

    @classmethod
    def setUpClass(cls):
        cls.tmp = tempfile.mkdtemp(prefix="lmpool-tools-")
        path = os.path.join(cls.tmp, "m.gguf")
        with open(os.path.join(TEMPLATES, cls.template + ".jinja")) as f:
            td.with_chat_template(td.MODEL, path, f.read())
        cls.d = td.Daemon([td.model_yaml("m", path, slots=2, ctx=2048)])
        cls.d.wait_ready()

    @classmethod
    def tearDownClass(cls):
        cls.d.stop()
        shutil.rmtree(cls.tmp, ignore_errors=True)

    def check_call(self, ev, names):
        self.assertEqual(ev["event"], "done", ev)
        self.assertEqual(ev["finish"], "tool_calls", ev)
        calls = ev["tool_calls"]
        self.assertEqual(len(calls), 1, ev)
        c = calls[0]
        self.assertIn(c["name"], names, ev)
        self.assertRegex(c["id"], r"^[A-Za-z0-9]{9}$")
        err = validate(c["arguments"], SCHEMAS[c["name"]])
        self.assertIsNone(err, f"{c}: {err}")
        return c

    def test_required_over_many_seeds(self):
        complete, cut, seen = 0, 0, set()
        for seed in range(self.seeds):
            stream = seed % 2 == 1
            evs = chat(self.d, f"r{seed}", tool_choice="required", temperature=1, seed=seed, max_tokens=200,
                       stream=stream)
            ev = evs[-1]
            if ev.get("finish") == "length":
                cut += 1
                continue
            c = self.check_call(ev, SCHEMAS)
            seen.add(c["name"])
            complete += 1
            if stream:
                # a forced call streams no text: the call comes whole in done
                self.assertEqual("".join(e["text"] for e in evs[:-1]), "", evs[:-1])
            else:
                self.assertEqual(ev["text"], "")
        print(f"{self.template}: {complete} calls, {cut} cut short by max_tokens, functions {sorted(seen)}")
        self.assertGreaterEqual(complete, self.seeds * 3 // 4)

    def test_named_function(self):
        for seed in range(max(4, self.seeds // 6)):
            ev = chat(self.d, f"n{seed}", tool_choice={"type": "function", "function": {"name": "get_weather"}},
                      temperature=1, seed=seed, max_tokens=200, stream=False)[-1]
            if ev.get("finish") != "length":
                self.check_call(ev, {"get_weather"})

    def test_round_trip(self):
        # a call, its result sent back, an answer
        ev = chat(self.d, "t1", tool_choice="required", temperature=0, max_tokens=200, stream=False)[-1]
        c = self.check_call(ev, SCHEMAS)
        first = ev["usage"]["prompt_tokens"]
        msgs = ASK + [{"role": "assistant", "content": None,
                       "tool_calls": [{"id": c["id"], "type": "function",
                                       "function": {"name": c["name"], "arguments": json.dumps(c["arguments"])}}]},
                      {"role": "tool", "tool_call_id": c["id"], "name": c["name"], "content": "21 degrees, sunny"}]
        ev = chat(self.d, "t2", messages=msgs, temperature=0, max_tokens=8, stream=False, tool_choice="none")[-1]
        self.assertEqual(ev["event"], "done", ev)
        self.assertNotIn("tool_calls", ev)
        self.assertGreater(ev["usage"]["prompt_tokens"], first + 8)

    def test_auto_streams_what_it_answers(self):
        for seed in range(6):
            whole = chat(self.d, f"a{seed}", temperature=1, seed=seed, max_tokens=24, stream=False)[-1]
            evs = chat(self.d, f"s{seed}", temperature=1, seed=seed, max_tokens=24, stream=True)
            self.assertEqual(whole["event"], "done", whole)
            self.assertEqual(evs[-1]["finish"], whole["finish"])
            streamed = "".join(e["text"] for e in evs[:-1])
            if whole["finish"] != "tool_calls":
                self.assertEqual(streamed, whole["text"])

    def test_refusals(self):
        many = [{"type": "function", "function": {"name": f"f{i}"}} for i in range(65)]
        cases = [
            ({"tools": many}, "tools", "at most 64"),
            ({"tool_choice": {"type": "function", "function": {"name": "nope"}}}, "tool_choice", "does not hold"),
            ({"tools": [{"type": "function", "function": {"name": "f", "parameters": {
                "type": "object", "properties": {"x": {"type": "string", "format": "date"}}}}}],
              "tool_choice": "required"}, "tools", "unsupported keyword \"format\""),
            ({"tools": [{"type": "function", "function": {"name": "f", "description": "x" * (300 << 10)}}]},
             "", "over the limit"),
        ]
        for extra, _field, words in cases:
            ev = chat(self.d, "bad", **extra)[-1]
            self.assertEqual((ev["event"], ev["code"]), ("error", "bad_request"), ev)
            self.assertIn(words, ev["message"])


class Llama3Tests(ToolTests):
    template = "meta-llama-Llama-3.1-8B-Instruct"
    seeds = max(8, SEEDS // 4)


class MistralTests(ToolTests):
    template = "mistralai-Mistral-Nemo-Instruct-2407"
    seeds = max(8, SEEDS // 4)


if __name__ == "__main__":
    if not os.path.exists(td.MODEL) or not os.path.isdir(TEMPLATES):
        print("fixtures not found: skipped")
        sys.exit(77)
    result = unittest.main(exit=False, verbosity=2).result
    sys.exit(0 if result.wasSuccessful() else 1)
