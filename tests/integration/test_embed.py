#!/usr/bin/env python3
"""Integration tests of embed requests: a real lmpoold on a private ipc
endpoint serving an embedding model (the embeddings fixtures' BERT), a
generative model beside it, and a copy of the BERT file whose pooling_type
is none; clients speak the wire protocol with pyzmq and the lmpool CLI.

- One text and a batch of texts: the vectors equal llama.cpp's pooled
  vectors (normalized, and as they are with "normalize": false) within the
  fixtures' limits, the ids exactly; usage and timings are there.
- `lmpool embed --model` through the daemon prints what `lmpool embed
  FILE` prints in-process.
- Bounds: more than 256 texts, a text over limits.max_prompt_tokens
  (too_long, naming the input), the same with "truncate": true.
- The wrong kind of model both ways, and a model without pooling: each a
  bad_request that says why."""

import json
import math
import os
import shutil
import struct
import subprocess
import sys
import tempfile
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from test_daemon import BIN, FIXTURES, MODEL, Daemon, generate, model_yaml  # noqa: E402

EMB = os.path.join(FIXTURES, "embeddings")
BERT = os.path.join(EMB, "bert-mean-f32.gguf")
LIMIT_TOKENS = 100


def refs():
    with open(os.path.join(EMB, "bert-mean-f32.refs.json")) as f:
        return json.load(f)


def cosine(a, b):
    dot = sum(x * y for x, y in zip(a, b))
    return dot / math.sqrt(sum(x * x for x in a) * sum(y * y for y in b))


def unit(v):
    n = math.sqrt(sum(x * x for x in v))
    return [x / n for x in v]


def embed(model, inp, id="e", **kw):
    req = {"v": 1, "id": id, "type": "embed", "model": model, "input": inp}
    req.update(kw)
    return req


def without_pooling(path, out):
    """A copy of path with bert.pooling_type set to 0 (none)."""
    with open(path, "rb") as f:
        data = bytearray(f.read())
    key = b"bert.pooling_type"
    at = data.index(key) + len(key)
    vtype, value = struct.unpack_from("<II", data, at)
    assert vtype == 4 and value == 1, (vtype, value)  # GGUF u32
    struct.pack_into("<I", data, at + 4, 0)
    with open(out, "wb") as f:
        f.write(data)


class EmbedTests(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.tmp = tempfile.mkdtemp(prefix="lmpool-embed-")
        cls.nopool = os.path.join(cls.tmp, "bert-nopool.gguf")
        without_pooling(BERT, cls.nopool)
        cls.d = Daemon([model_yaml("bge", BERT, slots=2, ctx=512), model_yaml("llama", MODEL),
                        model_yaml("nopool", cls.nopool, ctx=512)],
                       limits=f"  max_prompt_tokens: {LIMIT_TOKENS}\n")
        cls.d.wait_ready()
        cls.refs = refs()

    @classmethod
    def tearDownClass(cls):
        cls.d.stop()
        shutil.rmtree(cls.tmp, ignore_errors=True)

    def answer(self, req):
        evs = self.d.request(req)
        self.assertEqual(len(evs), 1, evs)
        return evs[0]

    def check_vector(self, got, want, normalized):
        want = unit(want) if normalized else want
        self.assertEqual(len(got), len(want))
        self.assertGreaterEqual(cosine(got, want), 0.99999)
        self.assertLessEqual(max(abs(x - y) for x, y in zip(got, want)), 0.002)

    def test_single_text(self):
        case = self.refs["cases"][0]
        ev = self.answer(embed("bge", case["text"], return_ids=True))
        self.assertEqual(ev["event"], "embedding", ev)
        self.assertEqual(ev["id"], "e")
        self.assertEqual(len(ev["embeddings"]), 1)
        self.assertEqual(ev["ids"], [case["ids"]])
        self.check_vector(ev["embeddings"][0], case["embedding"], True)
        self.assertAlmostEqual(math.sqrt(sum(x * x for x in ev["embeddings"][0])), 1.0, places=5)
        self.assertEqual(ev["usage"]["prompt_tokens"], len(case["ids"]))
        self.assertIn("total_ms", ev["timings"])
        self.assertEqual(ev["worker"], "bge/0")

    def test_batch(self):
        cases = [c for c in self.refs["cases"] if len(c["ids"]) <= LIMIT_TOKENS]
        self.assertGreater(len(cases), 10)
        ev = self.answer(embed("bge", [c["text"] for c in cases], normalize=False, return_ids=True))
        self.assertEqual(ev["event"], "embedding", ev)
        self.assertEqual(ev["ids"], [c["ids"] for c in cases])
        for got, c in zip(ev["embeddings"], cases):
            self.check_vector(got, c["embedding"], False)
        self.assertEqual(ev["usage"]["prompt_tokens"], sum(len(c["ids"]) for c in cases))
        # Without return_ids, no ids.
        ev = self.answer(embed("bge", ["a", "b"]))
        self.assertNotIn("ids", ev)
        self.assertEqual(len(ev["embeddings"]), 2)

    def test_cli_through_the_daemon_equals_in_process(self):
        texts = ["Hello world", "What is the capital of France?"]
        args = [a for t in texts for a in ("--text", t)]
        local = subprocess.run([BIN, "embed", BERT] + args, check=True, capture_output=True, text=True).stdout
        remote = subprocess.run([BIN, "embed", "--model", "bge", "--endpoint", self.d.endpoint] + args,
                                check=True, capture_output=True, text=True).stdout
        lo = [json.loads(x) for x in local.splitlines()]
        re_ = [json.loads(x) for x in remote.splitlines()]
        self.assertEqual(len(lo), 2)
        self.assertEqual([x["ids"] for x in lo], [x["ids"] for x in re_])
        for a, b in zip(lo, re_):
            self.assertLessEqual(max(abs(x - y) for x, y in zip(a["embedding"], b["embedding"])), 1e-6)
        # Lines of stdin, and --no-normalize.
        out = subprocess.run([BIN, "embed", "--model", "bge", "--endpoint", self.d.endpoint, "--no-normalize"],
                             input="Hello world\n", check=True, capture_output=True, text=True).stdout
        self.check_vector(json.loads(out)["embedding"], self.refs["cases"][0]["embedding"], False)

    def test_bounds(self):
        ev = self.answer(embed("bge", ["x"] * 257))
        self.assertEqual((ev["event"], ev["code"]), ("error", "bad_request"), ev)
        self.assertIn("256", ev["message"])
        ev = self.answer(embed("bge", []))
        self.assertEqual((ev["event"], ev["code"]), ("error", "bad_request"), ev)
        self.assertEqual(len(self.answer(embed("bge", ["x"] * 256))["embeddings"]), 256)

        long_text = "word " * 300
        ev = self.answer(embed("bge", ["short", long_text]))
        self.assertEqual((ev["event"], ev["code"]), ("error", "too_long"), ev)
        self.assertIn("input 1", ev["message"])
        self.assertIn(str(LIMIT_TOKENS), ev["message"])
        ev = self.answer(embed("bge", ["short", long_text], truncate=True, return_ids=True))
        self.assertEqual(ev["event"], "embedding", ev)
        self.assertEqual(len(ev["ids"][1]), LIMIT_TOKENS)
        self.assertEqual((ev["ids"][1][0], ev["ids"][1][-1]), (101, 102), "[CLS] ... [SEP] kept")
        # More bytes than any tokenization of the limit: refused by the router.
        ev = self.answer(embed("bge", "x" * (LIMIT_TOKENS * 64 + 1)))
        self.assertEqual((ev["event"], ev["code"]), ("error", "too_long"), ev)
        r = subprocess.run([BIN, "embed", "--model", "bge", "--endpoint", self.d.endpoint, "--text", long_text],
                           capture_output=True, text=True)
        self.assertEqual(r.returncode, 6, r.stderr)
        self.assertIn("too_long", r.stderr)

    def test_wrong_kind_of_model(self):
        ev = self.answer(embed("llama", "hello"))
        self.assertEqual((ev["event"], ev["code"]), ("error", "bad_request"), ev)
        self.assertIn("generative", ev["message"])
        ev = self.d.request(generate("bge", max_tokens=2))[-1]
        self.assertEqual((ev["event"], ev["code"]), ("error", "bad_request"), ev)
        self.assertIn("embedding model", ev["message"])
        ev = self.answer({"v": 1, "id": "c", "type": "chat", "model": "bge",
                          "messages": [{"role": "user", "content": "hi"}]})
        self.assertEqual((ev["event"], ev["code"]), ("error", "bad_request"), ev)
        ev = self.answer(embed("nopool", "hello"))
        self.assertEqual((ev["event"], ev["code"]), ("error", "bad_request"), ev)
        self.assertIn("no pooling", ev["message"])
        ev = self.d.request(generate("nopool", max_tokens=2))[-1]
        self.assertEqual((ev["event"], ev["code"]), ("error", "bad_request"), ev)
        ev = self.answer(embed("bge", "hello", prompt="p"))
        self.assertEqual((ev["event"], ev["code"], ev.get("field", "prompt")), ("error", "bad_request", "prompt"), ev)
        r = subprocess.run([BIN, "embed", "--model", "llama", "--endpoint", self.d.endpoint, "--text", "x"],
                           capture_output=True, text=True)
        self.assertEqual(r.returncode, 3, r.stderr)
        # The generative model still generates; models says what each is.
        self.assertEqual(self.d.request(generate("llama", max_tokens=2))[-1]["event"], "done")
        models = {m["name"]: m for m in self.answer({"v": 1, "id": "m", "type": "models"})["models"]}
        self.assertEqual((models["bge"]["kind"], models["llama"]["kind"]), ("embedding", "generative"))
        self.assertEqual(models["bge"]["ctx"], 512)


if __name__ == "__main__":
    if not os.path.exists(BERT) or not os.path.exists(MODEL):
        print("fixtures not found: skipped")
        sys.exit(77)
    unittest.main(verbosity=2)
