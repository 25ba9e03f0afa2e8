#!/usr/bin/env python3
"""lmpool-http's embedding endpoints against a real lmpoold serving the
embeddings fixtures' BERT beside the tiny generative model: OpenAI's
/v1/embeddings (floats and base64, one input and many) and Ollama's
/api/embed, both equal to what the daemon answers directly and to
llama.cpp's vectors; their errors (unsupported fields, token arrays, a
generative model, an unknown one, an over-long input; Ollama truncates by
default, OpenAI does not)."""

import base64
import json
import math
import os
import struct
import sys
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness  # noqa: E402
from harness import Daemon, Gateway  # noqa: E402
from test_http import daemon_request  # noqa: E402

BERT = os.path.join(harness.FIXTURES, "embeddings", "bert-mean-f32.gguf")


def refs():
    with open(os.path.join(harness.FIXTURES, "embeddings", "bert-mean-f32.refs.json")) as f:
        return json.load(f)["cases"]


def unit(v):
    n = math.sqrt(sum(x * x for x in v))
    return [x / n for x in v]


def close(a, b, tol=0.002):
    return len(a) == len(b) and max(abs(x - y) for x, y in zip(a, b)) <= tol


class EmbedHttpTest(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.d = Daemon(model_extra=f"  - name: bge\n    path: {BERT}\n    ctx: 512\n")
        try:
            cls.gw = Gateway(cls.d, http="  key_rate: 1000\n  key_burst: 1000\n")
            cls.gw.wait_healthy()
        except Exception:
            cls.d.stop()
            raise
        cls.cases = refs()

    @classmethod
    def tearDownClass(cls):
        rc = cls.gw.stop()
        cls.d.stop()
        assert rc == 0, f"lmpool-http exited with {rc}"

    def post(self, path, body):
        status, headers, data = self.gw.request("POST", path, body)
        return status, json.loads(data)

    def test_openai_floats(self):
        case = self.cases[0]
        status, ans = self.post("/v1/embeddings", {"model": "bge", "input": case["text"]})
        self.assertEqual(status, 200, ans)
        self.assertEqual((ans["object"], ans["model"]), ("list", "bge"))
        self.assertEqual(len(ans["data"]), 1)
        item = ans["data"][0]
        self.assertEqual((item["object"], item["index"]), ("embedding", 0))
        self.assertTrue(close(item["embedding"], unit(case["embedding"])))
        self.assertEqual(ans["usage"], {"prompt_tokens": len(case["ids"]), "total_tokens": len(case["ids"])})

        texts = [c["text"] for c in self.cases[:3]]
        status, ans = self.post("/v1/embeddings", {"model": "bge", "input": texts, "user": "u"})
        self.assertEqual(status, 200, ans)
        direct = daemon_request(self.d, {"v": 1, "id": "d", "type": "embed", "model": "bge", "input": texts})[-1]
        self.assertEqual([d["index"] for d in ans["data"]], [0, 1, 2])
        self.assertEqual([d["embedding"] for d in ans["data"]], direct["embeddings"])

    def test_openai_base64(self):
        texts = ["Hello world", "What is the capital of France?"]
        _, floats = self.post("/v1/embeddings", {"model": "bge", "input": texts, "encoding_format": "float"})
        status, b64 = self.post("/v1/embeddings", {"model": "bge", "input": texts, "encoding_format": "base64"})
        self.assertEqual(status, 200, b64)
        for f, b in zip(floats["data"], b64["data"]):
            raw = base64.b64decode(b["embedding"])
            vec = struct.unpack(f"<{len(raw) // 4}f", raw)
            self.assertEqual(len(vec), len(f["embedding"]))
            self.assertTrue(close(vec, f["embedding"], 1e-7))

    def test_openai_errors(self):
        def err(body, status, words, code=None):
            st, ans = self.post("/v1/embeddings", body)
            self.assertEqual(st, status, ans)
            self.assertIn(words, ans["error"]["message"])
            if code:
                self.assertEqual(ans["error"]["code"], code)

        err({"model": "bge", "input": "x", "dimensions": 64}, 400, "dimensions")
        err({"model": "bge", "input": [[101, 102]]}, 400, "token arrays")
        err({"model": "bge", "input": "x", "encoding_format": "int8"}, 400, "encoding_format")
        err({"model": "bge"}, 400, "'input' is required")
        err({"model": "bge", "input": []}, 400, "1 to 256")
        err({"model": "tiny", "input": "x"}, 400, "generative")
        err({"model": "nope", "input": "x"}, 404, "nope", "model_not_found")
        err({"model": "bge", "input": "word " * 600}, 400, "over the limit", "context_length_exceeded")
        st, ans = self.post("/v1/chat/completions", {"model": "bge", "messages": [{"role": "user", "content": "hi"}]})
        self.assertEqual(st, 400, ans)
        self.assertIn("embedding model", ans["error"]["message"])

    def test_ollama(self):
        texts = ["Hello world", "Paris"]
        status, ans = self.post("/api/embed", {"model": "bge", "input": texts, "keep_alive": "5m",
                                               "options": {"num_ctx": 512}})
        self.assertEqual(status, 200, ans)
        self.assertEqual(ans["model"], "bge")
        self.assertEqual(len(ans["embeddings"]), 2)
        self.assertTrue(close(ans["embeddings"][0], unit(self.cases[0]["embedding"])))
        self.assertGreater(ans["prompt_eval_count"], 4)
        self.assertGreater(ans["total_duration"], 0)
        # One string; an over-long one is truncated unless truncate is false.
        status, ans = self.post("/api/embed", {"model": "bge", "input": "word " * 600})
        self.assertEqual(status, 200, ans)
        self.assertEqual(ans["prompt_eval_count"], 512)
        status, ans = self.post("/api/embed", {"model": "bge", "input": "word " * 600, "truncate": False})
        self.assertEqual(status, 400, ans)
        self.assertIn("over the limit", ans["error"])
        status, ans = self.post("/api/embed", {"model": "nope", "input": "x"})
        self.assertEqual(status, 404, ans)
        self.assertIn("not found", ans["error"])


if __name__ == "__main__":
    harness.skip_unless_ready()
    if not os.path.exists(BERT):
        print("embeddings fixtures missing: skipped")
        sys.exit(77)
    unittest.main(verbosity=2)
