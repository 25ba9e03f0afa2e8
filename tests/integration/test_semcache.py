#!/usr/bin/env python3
"""Integration tests of the semantic cache: a real lmpoold on a private ipc
endpoint serving a generative model (the llama fixture) whose semantic
cache is keyed by an embedding model of the same pool (the embeddings
fixtures' BERT). Which worker served what comes from the daemon's stats.

- A near-duplicate (the same question in other case, which WordPiece
  lower-cases to the same ids: similarity 1) is answered from the cache,
  "cached": "semantic" and the similarity on done, the first answer's
  events under the new id, without the generative worker; a chat's last
  user message keys it the same way.
- A different question is a miss; another sampling field is a miss.
- "cache": false goes to the worker and keeps nothing.
- The entry bound: a third answer evicts the least recently used one,
  counted; entries never pass the bound.
- After its TTL an entry is no longer served (counted as an expiration).
- With the embedding model's one slot taken, a request goes on uncached
  (counted unavailable) instead of waiting."""

import json
import os
import sys
import time
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from test_daemon import FIXTURES, MODEL, Daemon, generate, ids_of, model_yaml  # noqa: E402

BERT = os.path.join(FIXTURES, "embeddings", "bert-mean-f32.gguf")
TTL_S = 2

SEMANTIC = ("    chat_template: zephyr\n    semantic_cache:\n      model: bge\n      threshold: 0.99\n"
            f"      ttl_s: {TTL_S}\n      max_entries: 2\n")

Q1 = "What are the opening hours on Sunday?"
Q1_CASE = "WHAT are the opening HOURS on sunday?"
Q2 = "How do I renew a library book?"
Q3 = "Where can I park my bicycle?"


class SemanticCacheTests(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.d = Daemon([model_yaml("m", MODEL, extra=SEMANTIC), model_yaml("bge", BERT, ctx=512)])
        cls.d.wait_ready()

    @classmethod
    def tearDownClass(cls):
        cls.d.stop()

    def stream(self, req):
        evs = self.d.request(req)
        self.assertEqual(evs[-1]["event"], "done", evs[-1])
        return evs

    def served(self, name):
        return {w["name"]: w["served"] for w in self.d.stats()["workers"]}[name]

    def sem(self):
        return self.d.stats()["semantic_cache"]

    def ask(self, text, id, max_tokens=6, **kw):
        return self.stream(generate("m", prompt=text, id=id, max_tokens=max_tokens, ignore_eos=True, **kw))

    def test_1_near_duplicate_miss_and_opt_out(self):
        before = self.sem()
        first = self.ask(Q1, "a")
        self.assertNotIn("cached", first[-1])
        n = self.served("m/0")
        e = self.served("bge/0")
        again = self.ask(Q1_CASE, "b")
        self.assertEqual(again[-1].get("cached"), "semantic", again[-1])
        self.assertAlmostEqual(again[-1]["similarity"], 1.0, places=3)
        self.assertEqual(self.served("m/0"), n, "the generative worker served no new request")
        self.assertEqual(self.served("bge/0"), e + 1, "the key was embedded")
        self.assertEqual([x.get("text") for x in again], [x.get("text") for x in first])
        self.assertEqual(ids_of(again), ids_of(first))
        self.assertTrue(all(x["id"] == "b" for x in again))
        st = self.sem()
        self.assertEqual(st["hits"] - before["hits"], 1, st)
        self.assertEqual(st["misses"] - before["misses"], 1, st)
        self.assertGreater(st["bytes"], 0)
        # A different question: a miss, served by the worker.
        other = self.ask(Q2, "c")
        self.assertNotIn("cached", other[-1])
        self.assertEqual(self.served("m/0"), n + 1)
        # The same question with another sampling field: a miss.
        self.assertNotIn("cached", self.stream(generate("m", prompt=Q1_CASE, id="d", max_tokens=5,
                                                        ignore_eos=True))[-1])
        # "cache": false: the worker answers and nothing is kept or counted.
        st = self.sem()
        n = self.served("m/0")
        out = self.ask(Q1_CASE, "e", cache=False)
        self.assertNotIn("cached", out[-1])
        self.assertEqual(self.served("m/0"), n + 1)
        after = self.sem()
        self.assertEqual((after["hits"], after["misses"]), (st["hits"], st["misses"]))
        # A chat is keyed by its last user message.
        chat = {"v": 1, "type": "chat", "model": "m", "temperature": 0, "max_tokens": 4,
                "messages": [{"role": "user", "content": Q3}]}
        c1 = self.stream(dict(chat, id="c1"))
        self.assertNotIn("cached", c1[-1])
        c2 = self.stream(dict(chat, id="c2", messages=[{"role": "user", "content": Q3.upper()}]))
        self.assertEqual(c2[-1].get("cached"), "semantic", c2[-1])
        # Another system message makes another signature.
        c3 = self.stream(dict(chat, id="c3", messages=[{"role": "system", "content": "Be brief."},
                                                       {"role": "user", "content": Q3}]))
        self.assertNotIn("cached", c3[-1])

    def test_2_entry_bound_and_ttl(self):
        # Wait out the entries of the other test (TTL), then three answers
        # into a cache of two.
        time.sleep(TTL_S + 0.2)
        st0 = self.sem()
        for i, q in enumerate((Q1, Q2, Q3)):
            self.assertNotIn("cached", self.ask(q, f"t{i}", max_tokens=3)[-1])
            self.assertLessEqual(self.sem()["entries"], 2)
        st = self.sem()
        self.assertEqual(st["entries"], 2, st)
        self.assertGreaterEqual(st["evictions"] - st0["evictions"], 1, st)
        # The first was evicted (least recently used); the last is there.
        self.assertNotIn("cached", self.ask(Q1.upper(), "u1", max_tokens=3)[-1])
        self.assertEqual(self.ask(Q3.lower(), "u3", max_tokens=3)[-1].get("cached"), "semantic")
        # Past the TTL: expired, counted, and the worker answers again.
        time.sleep(TTL_S + 0.2)
        n = self.served("m/0")
        self.assertNotIn("cached", self.ask(Q3.lower(), "u4", max_tokens=3)[-1])
        self.assertEqual(self.served("m/0"), n + 1)
        self.assertGreater(self.sem()["expirations"], st["expirations"])

    def test_3_embedding_model_busy(self):
        # A long embed batch holds bge's one slot; a generate sent after it
        # on the same connection (so the router reads it second, long
        # before 256 texts are embedded) does not wait for it: it goes on
        # uncached, counted unavailable.
        st = self.sem()
        n = self.served("m/0")
        s = self.d.socket()
        s.send(json.dumps({"v": 1, "id": "big", "type": "embed", "model": "bge",
                           "input": [Q1 * 8] * 256}).encode())
        s.send(json.dumps(generate("m", prompt="Is the library open on public holidays?", id="busy",
                                   max_tokens=3, ignore_eos=True)).encode())
        last = {}
        while len(last) < 2:
            self.assertTrue(s.poll(60000))
            ev = json.loads(s.recv())
            if ev["event"] != "token":
                last[ev["id"]] = ev
        s.close()
        self.assertEqual(last["big"]["event"], "embedding", last["big"])
        self.assertEqual(last["busy"]["event"], "done", last["busy"])
        self.assertNotIn("cached", last["busy"])
        after = self.sem()
        self.assertEqual(after["unavailable"] - st["unavailable"], 1, after)
        self.assertEqual((after["hits"], after["misses"]), (st["hits"], st["misses"]))
        self.assertEqual(self.served("m/0"), n + 1)


if __name__ == "__main__":
    unittest.main()
