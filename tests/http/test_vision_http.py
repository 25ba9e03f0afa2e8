#!/usr/bin/env python3
"""Images through lmpool-http, against a real lmpoold serving the Qwen2-VL
fixture pair: an OpenAI chat with an image_url data URL and an Ollama chat
with "images" answer what the daemon answers to the same protocol request;
bad base64 and a URL to fetch are a 400 naming the field."""

import base64
import json
import os
import sys
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness  # noqa: E402
from harness import Daemon, Gateway  # noqa: E402
from test_http import daemon_request  # noqa: E402

VISION = os.path.join(harness.FIXTURES, "vision")
VLM = os.path.join(VISION, "qwen2vl-f16.gguf")
MMPROJ = os.path.join(VISION, "mmproj-qwen2vl-f16.gguf")
with open(os.path.join(VISION, "img1.png"), "rb") as f:
    IMG = base64.b64encode(f.read()).decode()
QUESTION = "What is in the image?"


class VisionHttpTest(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.d = Daemon(model_extra=f"  - name: vlm\n    path: {VLM}\n    mmproj: {MMPROJ}\n    ctx: 1024\n")
        try:
            cls.gw = Gateway(cls.d, http="  key_rate: 1000\n  key_burst: 1000\n")
            cls.gw.wait_healthy()
        except Exception:
            cls.d.stop()
            raise
        direct = daemon_request(cls.d, {"v": 1, "id": "d", "type": "chat", "model": "vlm", "stream": False,
                                        "temperature": 0, "max_tokens": 8, "cache": False,
                                        "messages": [{"role": "user", "content": QUESTION, "images": [IMG]}]},
                                timeout=120)[-1]
        assert direct["event"] == "done", direct
        cls.want = direct["text"]

    @classmethod
    def tearDownClass(cls):
        rc = cls.gw.stop()
        cls.d.stop()
        assert rc == 0, f"lmpool-http exited with {rc}"

    def post(self, path, body):
        status, headers, data = self.gw.request("POST", path, body, timeout=120)
        return status, json.loads(data)

    def test_openai_image_url(self):
        parts = [{"type": "image_url", "image_url": {"url": "data:image/png;base64," + IMG}},
                 {"type": "text", "text": QUESTION}]
        status, ans = self.post("/v1/chat/completions", {"model": "vlm", "temperature": 0, "max_tokens": 8,
                                                         "messages": [{"role": "user", "content": parts}]})
        self.assertEqual(status, 200, ans)
        self.assertEqual(ans["choices"][0]["message"]["content"], self.want)

    def test_ollama_images(self):
        status, ans = self.post("/api/chat", {"model": "vlm", "stream": False,
                                              "options": {"temperature": 0, "num_predict": 8},
                                              "messages": [{"role": "user", "content": QUESTION, "images": [IMG]}]})
        self.assertEqual(status, 200, ans)
        self.assertEqual(ans["message"]["content"], self.want)

    def test_refused(self):
        for url, needle in (("data:image/png;base64,@@@", "base64"), ("http://example.com/a.png", "data URL")):
            parts = [{"type": "image_url", "image_url": {"url": url}}, {"type": "text", "text": QUESTION}]
            status, ans = self.post("/v1/chat/completions", {"model": "vlm", "max_tokens": 2,
                                                             "messages": [{"role": "user", "content": parts}]})
            self.assertEqual(status, 400, ans)
            self.assertIn(needle, ans["error"]["message"])
        status, ans = self.post("/api/chat", {"model": "vlm", "stream": False, "messages": [
            {"role": "user", "content": QUESTION, "images": ["!!"]}]})
        self.assertEqual(status, 400, ans)
        self.assertIn("messages[0].images[0]", json.dumps(ans))


if __name__ == "__main__":
    harness.skip_unless_ready()
    unittest.main(verbosity=2)
