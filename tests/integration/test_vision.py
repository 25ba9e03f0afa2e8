#!/usr/bin/env python3
"""Images through the pool: a real lmpoold serving the Qwen2-VL fixture
pair (model + mmproj). A request with an image answers with the greedy
tokens `lmpool run --mmproj --image` gives for the same prompt; the second
question about an image skips the encoder (usage says so); broken and
oversized images are refused with bad_request and the next request still
works; a model whose mmproj cannot serve it is refused at load."""

import base64
import os
import struct
import subprocess
import sys
import unittest
import zlib

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from test_daemon import BIN, FIXTURES, MODEL, Daemon, ids_of, smaps_region  # noqa: E402

VISION = os.path.join(FIXTURES, "vision")
VLM = os.path.join(VISION, "qwen2vl-f16.gguf")
MMPROJ = os.path.join(VISION, "mmproj-qwen2vl-f16.gguf")
IMG1 = os.path.join(VISION, "img1.png")
IMG2 = os.path.join(VISION, "img2.png")
N = 8


def b64(path):
    with open(path, "rb") as f:
        return base64.b64encode(f.read()).decode()


def png(width, height, grey=0x80):
    """A grey PNG of width x height (its pixels compress to almost nothing)."""
    def chunk(kind, data):
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))
    rows = b"".join(b"\0" + bytes([grey]) * width for _ in range(height))
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)) +
            chunk(b"IDAT", zlib.compress(rows, 9)) + chunk(b"IEND", b""))


def run_ids(prompt, image, n=N):
    out = subprocess.run([BIN, "run", VLM, "--mmproj", MMPROJ, "--image", image, "--prompt", prompt, "-n", str(n),
                          "--temp", "0", "--print-ids", "--threads", "1"], check=True, capture_output=True,
                         text=True).stdout
    return [int(x) for x in out.split()]


def vlm_yaml(name="vlm", mmproj=MMPROJ, path=VLM, workers=1):
    return (f"  - name: {name}\n    path: {path}\n    mmproj: {mmproj}\n    workers: {workers}\n    slots: 1\n"
            f"    ctx: 1024\n    threads: 1\n")


class VisionPool(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.d = Daemon([vlm_yaml()])
        cls.d.wait_ready()

    @classmethod
    def tearDownClass(cls):
        cls.d.stop()

    def req(self, **kw):
        # "cache": false: answers come from the worker, not the router's cache.
        r = {"v": 1, "id": kw.pop("id", "g"), "model": "vlm", "temperature": 0, "return_ids": True,
             "max_tokens": N, "cache": False}
        r.update(kw)
        return self.d.request(r, timeout=120)

    def test_generate_matches_run_and_cache(self):
        prompt = "<|im_start|>user\n<__media__>Describe the image.<|im_end|>\n<|im_start|>assistant\n"
        # An image no other test sends: the first request encodes it.
        img = os.path.join(self.d.dir, "grey.png")
        with open(img, "wb") as f:
            f.write(png(70, 50, 0x31))
        want = run_ids(prompt, img)
        ev = self.req(type="generate", prompt=prompt, images=[b64(img)])
        self.assertEqual(ev[-1]["event"], "done", ev[-1])
        self.assertEqual(ids_of(ev), want)
        self.assertEqual(ev[-1]["usage"]["images"], 1)
        self.assertEqual(ev[-1]["usage"]["images_cached"], 0)
        # Another question about the same image: from the encoder cache.
        prompt2 = prompt.replace("Describe the image.", "What colour is it?")
        ev = self.req(type="generate", prompt=prompt2, images=[b64(img)])
        self.assertEqual(ids_of(ev), run_ids(prompt2, img))
        self.assertEqual(ev[-1]["usage"]["images"], 1)
        self.assertEqual(ev[-1]["usage"]["images_cached"], 1)

    def test_chat_matches_run(self):
        # Qwen2-VL's template around the message: the image where the
        # content part was, before the text.
        prompt = subprocess.run([BIN, "chat-template", VLM, "--messages", "-"], check=True, capture_output=True,
                                text=True, input='[{"role":"user","content":"<__media__>What is in the image?"}]'
                                ).stdout
        self.assertIn("user\n<__media__>What is in the image?<|im_end|>", prompt)
        want = run_ids(prompt, IMG1)
        parts = [{"type": "image_url", "image_url": {"url": "data:image/png;base64," + b64(IMG1)}},
                 {"type": "text", "text": "What is in the image?"}]
        ev = self.req(type="chat", messages=[{"role": "user", "content": parts}])
        self.assertEqual(ev[-1]["event"], "done", ev[-1])
        self.assertEqual(ids_of(ev), want)
        ev = self.req(type="chat", messages=[{"role": "user", "content": "What is in the image?",
                                              "images": [b64(IMG1)]}])
        self.assertEqual(ids_of(ev), want)

    def test_different_images_not_confused(self):
        """Two images with the same text: the slot's cache must not take
        one for the other (their tokens share one id)."""
        prompt = "Look: <__media__>Describe the image."
        a, b = run_ids(prompt, IMG1), run_ids(prompt, IMG2)
        # One slot: each request finds the previous one's cache.
        ev = self.req(type="generate", prompt=prompt, images=[b64(IMG1)])
        self.assertEqual(ids_of(ev), a)
        n = ev[-1]["usage"]["prompt_tokens"]
        ev = self.req(type="generate", prompt=prompt, images=[b64(IMG2)])
        self.assertEqual(ids_of(ev), b)
        # Only the text before the image is reused ("Look: <|vision_start|>").
        self.assertLessEqual(ev[-1]["usage"]["cached_tokens"], 4, ev[-1])
        ev = self.req(type="generate", prompt=prompt, images=[b64(IMG2)])
        self.assertEqual(ids_of(ev), b)
        self.assertEqual(ev[-1]["usage"]["cached_tokens"], n - 1, ev[-1])

    def test_refused(self):
        cases = [
            ({"images": ["not base64!"]}, "base64"),
            ({"images": [base64.b64encode(b"GIF89a broken").decode()]}, "image 0"),
            ({"images": [base64.b64encode(png(9000, 1)).decode()]}, "image 0"),
            ({"images": [b64(IMG1)], "prompt": "<__media__><__media__>x"}, "marks 2 images"),
        ]
        for extra, needle in cases:
            r = {"type": "generate", "prompt": "Describe."}
            r.update(extra)
            ev = self.req(**r)
            self.assertEqual(ev[-1]["event"], "error", ev[-1])
            self.assertEqual(ev[-1]["code"], "bad_request", ev[-1])
            self.assertIn(needle, ev[-1]["message"])
        ev = self.req(type="chat", messages=[{"role": "user", "content": [
            {"type": "image_url", "image_url": {"url": "https://example.com/a.png"}}]}])
        self.assertEqual(ev[-1]["code"], "bad_request")
        self.assertIn("data URL", ev[-1]["message"])
        # Still serving.
        ev = self.req(type="generate", prompt="<__media__>Describe the image.", images=[b64(IMG1)])
        self.assertEqual(ev[-1]["event"], "done", ev[-1])
        self.assertEqual(len(ids_of(ev)), N)

    def test_memory_reported(self):
        ev = self.d.events("model_loaded")
        self.assertTrue(ev, self.d.logs())
        self.assertEqual(int(ev[0]["mmproj_store_bytes"]), os.path.getsize(MMPROJ))
        self.assertEqual(ev[0]["mmproj"], MMPROJ)


class VisionShared(unittest.TestCase):
    def test_mmproj_one_copy(self):
        """Two workers that have both encoded an image map the encoder's
        store and hold none of its pages privately."""
        d = Daemon([vlm_yaml(workers=2)])
        try:
            d.wait_ready()
            for i in range(2):  # two different prompts: one to each worker
                ev = d.request({"v": 1, "id": f"s{i}", "type": "generate", "model": "vlm", "max_tokens": 2,
                                "prompt": f"<__media__>Question {i}?", "images": [b64(IMG1)]}, timeout=120)[-1]
                self.assertEqual(ev["event"], "done", ev)
            workers = d.stats()["workers"]
            self.assertTrue(all(w["served"] > 0 for w in workers), workers)
            for w in workers:
                region = smaps_region(w["pid"], "lmpool-store:vlm.mmproj")
                self.assertGreater(region["Rss"], 0, f"worker {w['pid']} does not map the mmproj store")
                self.assertLess(region["Private"], 64 * 1024, f"worker {w['pid']} copied mmproj pages: {region}")
        finally:
            d.stop()


class VisionRefusedAtLoad(unittest.TestCase):
    def test_mmproj_for_a_text_model(self):
        d = Daemon([vlm_yaml("text", path=MODEL), vlm_yaml("vlm")])
        try:
            h = d.wait_ready()
            failed = {name: m.get("failed") for name, m in h["models"].items()}
            self.assertIn("takes no image input", failed["text"] or "")
            self.assertIsNone(failed["vlm"])
        finally:
            d.stop()

    def test_broken_mmproj(self):
        d = Daemon([vlm_yaml("broken", mmproj=VLM), vlm_yaml("vlm")])
        try:
            h = d.wait_ready()
            self.assertIn("mmproj", h["models"]["broken"].get("failed") or "", h)
            self.assertIsNone(h["models"]["vlm"].get("failed"))
        finally:
            d.stop()


if __name__ == "__main__":
    unittest.main(verbosity=2)
