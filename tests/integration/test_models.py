#!/usr/bin/env python3
"""Integration tests of the models' lifecycle in lmpoold: real daemons on
private ipc endpoints (the helpers of test_daemon.py), fixture models and
copies of them that the tests break on purpose.

- A model whose workers cannot load it is failed after
  workers.load_attempts tries: not respawned, its requests answered
  `model_failed` at once, `health` degraded and naming it, READY=1 sent
  (read from a NOTIFY_SOCKET the test binds) while a good model serves.
- `store: mmap`: the file rewritten in place while a request runs, then
  truncated, then written back, then replaced by a rename: no crash loop,
  no `done` computed from changed weights, the new weights served after
  each reload, the model failed while its file does not load, a request
  running on a replaced file finishing on the old one.
- SIGHUP: limits.max_prompt_tokens raised and lowered reaches the workers."""

import json
import os
import shutil
import signal
import socket
import sys
import tempfile
import time
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from test_daemon import (DEEP, MODEL, PROMPT, Daemon, generate, ids_of,  # noqa: E402
                         model_yaml, reference_ids)

FIXTURES = os.path.dirname(MODEL)
DEEP_Q4 = os.path.join(FIXTURES, "llama-deep-q4_k_m.gguf")


def wait_for(what, fn, timeout=60.0, step=0.05):
    """Polls fn() until it returns something true; fails after timeout."""
    deadline = time.time() + timeout
    while time.time() < deadline:
        v = fn()
        if v:
            return v
        time.sleep(step)
    raise AssertionError(f"gave up waiting for {what}")


def health(d):
    return d.request({"v": 1, "id": "h", "type": "health"})[-1]


class NotifySocket:
    """The socket systemd listens on for sd_notify(): a unix datagram socket."""

    def __init__(self, directory):
        self.path = os.path.join(directory, "notify.sock")
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.sock.bind(self.path)
        self.messages = []

    def wait(self, line, timeout=60.0):
        deadline = time.time() + timeout
        while time.time() < deadline:
            if any(line in m.split("\n") for m in self.messages):
                return True
            self.sock.settimeout(max(0.01, deadline - time.time()))
            try:
                self.messages.append(self.sock.recv(4096).decode())
            except socket.timeout:
                break
        return any(line in m.split("\n") for m in self.messages)

    def close(self):
        self.sock.close()


class FailedModelTests(unittest.TestCase):
    def test_model_that_cannot_load_is_failed(self):
        tmp = tempfile.mkdtemp(prefix="lmpool-models-")
        notify = NotifySocket(tmp)
        # The header parses (the supervisor's fit check reads it), the
        # tensors do not: the worker misses blk.0.attn_q.weight.
        bad = os.path.join(tmp, "bad.gguf")
        with open(MODEL, "rb") as f:
            data = f.read()
        self.assertEqual(data.count(b"blk.0.attn_q.weight"), 1)
        with open(bad, "wb") as f:
            f.write(data.replace(b"blk.0.attn_q.weight", b"blk.0.attn_X.weight"))
        d = Daemon([model_yaml("good", MODEL), model_yaml("bad", bad, workers=2)],
                   env={"NOTIFY_SOCKET": notify.path})
        try:
            # Queued before the model fails: answered when it does, long
            # before its deadline.
            early = d.socket()
            early.send(json.dumps(generate("bad", id="early", max_tokens=2)).encode())
            self.assertTrue(notify.wait("READY=1"), "READY=1 once every model is ready or failed: " + d.logs())
            self.assertTrue(early.poll(30000), "the queued request is answered")
            ev = json.loads(early.recv())
            self.assertEqual((ev["event"], ev["code"]), ("error", "model_failed"), ev)
            self.assertIn("blk.0.attn_q.weight", ev["message"])
            early.close()

            h = health(d)
            self.assertEqual(h["status"], "degraded", h)
            self.assertIn("blk.0.attn_q.weight", h["models"]["bad"]["failed"])
            self.assertNotIn("failed", h["models"]["good"])
            self.assertEqual(h["models"]["good"]["ready"], 1)

            # The good model serves; the bad one is refused at once.
            self.assertEqual(d.request(generate("good", max_tokens=3))[-1]["event"], "done")
            ev = d.request(generate("bad", id="late", max_tokens=2))[-1]
            self.assertEqual((ev["event"], ev["code"]), ("error", "model_failed"), ev)

            failed = d.events("model_failed")
            self.assertEqual([e["model"] for e in failed], ["bad"])
            self.assertIn("could not load its model", failed[0]["reason"])
            # The model failing stops its other worker (SIGKILL): count the
            # exits once both are reaped, then check that none follows.
            wait_for("bad's workers reaped", lambda: all(
                w["state"] == "exited" for w in d.stats()["workers"] if w["name"].startswith("bad/")))
            exits = [e for e in d.events("worker_exited") if e["model"] == "bad"]
            self.assertTrue(all(e["exit_code"] == "3" or e["exit_signal"] == "9" for e in exits), exits)
            # workers.load_attempts (3) fail the model; the other worker's
            # attempt may have ended too before it was reaped.
            self.assertIn(len([e for e in exits if e["exit_code"] == "3"]), (3, 4), exits)
            # No respawn afterwards: the workers stay exited.
            time.sleep(1.0)
            self.assertEqual(len([e for e in d.events("worker_exited") if e["model"] == "bad"]), len(exits))
            st = {w["name"]: w for w in d.stats()["workers"]}
            self.assertEqual((st["bad/0"]["state"], st["bad/1"]["state"]), ("exited", "exited"))
            self.assertIsNone(d.proc.poll())
        finally:
            d.stop()
            notify.close()
            shutil.rmtree(tmp, ignore_errors=True)


class MmapStoreTests(unittest.TestCase):
    def assert_serves(self, d, want):
        evs = d.request(generate("m", max_tokens=8, ignore_eos=True))
        self.assertEqual(ids_of(evs), want, f"{evs[-1]}\n{d.logs()[-6000:]}")

    def test_file_rewritten_truncated_and_restored(self):
        tmp = tempfile.mkdtemp(prefix="lmpool-models-")
        path = os.path.join(tmp, "m.gguf")
        shutil.copyfile(DEEP, path)
        want_q8 = reference_ids(DEEP, PROMPT, 8)
        want_q4 = reference_ids(DEEP_Q4, PROMPT, 8)
        self.assertNotEqual(want_q8, want_q4)
        d = Daemon([model_yaml("m", path, workers=2, ctx=4096, extra="    store: mmap\n"),
                    model_yaml("other", MODEL)])
        try:
            d.wait_ready()
            stores = {e["model"]: e["store"] for e in d.events("model_loaded")}
            self.assertEqual(stores, {"m": "mmap", "other": "memfd"}, "memfd is the default")
            self.assert_serves(d, want_q8)

            # Rewritten in place (cp truncates, then writes) while a request runs.
            s = d.socket()
            s.send(json.dumps(generate("m", id="long", max_tokens=4000, ignore_eos=True)).encode())
            self.assertTrue(s.poll(30000))
            self.assertEqual(json.loads(s.recv())["event"], "token")
            shutil.copyfile(DEEP_Q4, path)
            while True:
                self.assertTrue(s.poll(60000), "the running request ends")
                ev = json.loads(s.recv())
                if ev["event"] != "token":
                    break
            self.assertEqual(ev["event"], "error", "no done from weights that changed under it")
            self.assertIn(ev["code"], ("worker_lost", "model_failed"), ev)
            s.close()
            # Loaded again: the new weights answer.
            wait_for("m reloaded", lambda: health(d)["status"] == "ok" and health(d)["models"]["m"]["ready"] == 2)
            self.assert_serves(d, want_q4)

            # Truncated: the model is failed, with the reason, not crash-looping.
            os.truncate(path, 4096)
            h = wait_for("m failed", lambda: (lambda h: h if "failed" in h["models"]["m"] else None)(health(d)))
            self.assertEqual(h["status"], "degraded")
            ev = d.request(generate("m", max_tokens=2))[-1]
            self.assertEqual((ev["event"], ev["code"]), ("error", "model_failed"), ev)
            self.assertEqual(d.request(generate("other", max_tokens=2))[-1]["event"], "done")
            exits = len([e for e in d.events("worker_exited") if e["model"] == "m"])
            time.sleep(1.5)
            self.assertEqual(len([e for e in d.events("worker_exited") if e["model"] == "m"]), exits,
                             "no respawns while the file does not load")
            self.assertFalse([e for e in d.events("worker_exited") if e["exit_signal"] == "7"
                              and not e.get("reason")], "a SIGBUS is reported with its reason")
            self.assertEqual(len(d.events("model_file_changed")), 2, "rewritten, then truncated")

            # Written back: served again.
            shutil.copyfile(DEEP, path)
            wait_for("m back", lambda: health(d)["status"] == "ok")
            self.assert_serves(d, want_q8)

            # Replaced by a rename: the running request finishes on the old
            # file, which is intact; then the new one is served.
            s = d.socket()
            s.send(json.dumps(generate("m", id="during", max_tokens=300, ignore_eos=True)).encode())
            self.assertTrue(s.poll(30000))
            self.assertEqual(json.loads(s.recv())["event"], "token")
            shutil.copyfile(DEEP_Q4, path + ".new")
            os.rename(path + ".new", path)
            while True:
                self.assertTrue(s.poll(60000), "the running request ends")
                ev = json.loads(s.recv())
                if ev["event"] != "token":
                    break
            s.close()
            self.assertEqual(ev["event"], "done", f"{ev}\n{d.logs()[-6000:]}")
            self.assertEqual(ev["usage"]["generated_tokens"], 300, ev)
            wait_for("m on the new file", lambda: len(d.events("model_file_changed")) == 3
                     and health(d)["status"] == "ok")
            self.assert_serves(d, want_q4)
            self.assertIsNone(d.proc.poll(), "the daemon lives")
        finally:
            d.stop()
            shutil.rmtree(tmp, ignore_errors=True)


    def test_file_that_keeps_changing(self):
        """Truncated and written back hundreds of times while served: the
        daemon lives through whatever the workers and the reloads meet, then
        serves the file once it is left alone."""
        tmp = tempfile.mkdtemp(prefix="lmpool-models-")
        path = os.path.join(tmp, "m.gguf")
        shutil.copyfile(DEEP, path)
        with open(DEEP, "rb") as f:
            data = f.read()
        # Its requests pile up while the model reloads: all of them are this
        # test's (one uid), so limits.client_requests must hold them.
        d = Daemon([model_yaml("m", path, workers=2, ctx=4096, extra="    store: mmap\n")],
                   limits="  client_requests: 256\n")
        try:
            d.wait_ready()
            s = d.socket()
            t0, n = time.time(), 0
            with open(path, "r+b") as f:
                while time.time() - t0 < 8:
                    if n % 20 == 0:
                        s.send(json.dumps(generate("m", id=f"r{n}", max_tokens=50, ignore_eos=True)).encode())
                    f.truncate(1000 + (n * 7919) % len(data))
                    f.flush()
                    time.sleep(0.001 * (n % 5))
                    f.seek(0)
                    f.write(data)
                    f.flush()
                    n += 1
                    if n % 60 == 0:
                        time.sleep(1.2)  # long enough for a reload to start
            self.assertIsNone(d.proc.poll(), "the daemon lives")
            wait_for("m served again", lambda: health(d)["status"] == "ok")
            # The last writes may still be on their way to the daemon (a
            # health answer can come before it reads them): a request may
            # meet one more reload, and end with its error, before the file
            # is served for good.
            last, t1 = None, time.time()
            while time.time() - t1 < 60:
                last = d.request(generate("m", id=f"after{int((time.time() - t1) * 1000)}", max_tokens=4))[-1]
                if last["event"] == "done":
                    break
                self.assertIn(last.get("code"), ("worker_lost", "model_failed"), last)
                wait_for("m served again", lambda: health(d)["status"] == "ok")
            self.assertEqual(last["event"], "done", last)
            # Each request sent meanwhile ended once, with done or an error.
            ended = {}
            while s.poll(20000 if len(ended) < (n + 19) // 20 else 0):
                ev = json.loads(s.recv())
                if ev["event"] != "token":
                    self.assertNotIn(ev["id"], ended)
                    ended[ev["id"]] = ev["event"]
            self.assertEqual(len(ended), (n + 19) // 20)
            s.close()
        finally:
            d.stop()
            shutil.rmtree(tmp, ignore_errors=True)


class ReloadTests(unittest.TestCase):
    def test_sighup_changes_max_prompt_tokens_in_workers(self):
        d = Daemon([model_yaml("m", MODEL, workers=2, extra="    defaults:\n      max_tokens: 3\n")],
                   limits="  max_prompt_tokens: 8\n")

        def reload(limit, ctx=2048, max_tokens=3):
            with open(d.config) as f:
                text = f.read()
            n = len(d.events("reloaded"))
            text = text.replace(text[text.index("  max_prompt_tokens:"):].split("\n")[0],
                                f"  max_prompt_tokens: {limit}")
            text = text.replace(text[text.index("    ctx:"):].split("\n")[0], f"    ctx: {ctx}")
            text = text.replace(text[text.index("      max_tokens:"):].split("\n")[0], f"      max_tokens: {max_tokens}")
            with open(d.config, "w") as f:
                f.write(text)
            d.proc.send_signal(signal.SIGHUP)
            wait_for("reloaded", lambda: len(d.events("reloaded")) > n, timeout=10)
            return d.events("reloaded")[-1]

        try:
            d.wait_ready()
            # Every worker sees each limit: one request per worker each time
            # (sampled, so that none is answered from the response cache).
            for _ in range(2):
                ev = d.request(generate("m", max_tokens=2, temperature=0.7))[-1]
                self.assertEqual((ev["event"], ev["code"]), ("error", "too_long"), ev)
            raised = reload(64, max_tokens=5)
            for _ in range(4):
                ev = d.request(generate("m", max_tokens=2, temperature=0.7))[-1]
                self.assertEqual(ev["event"], "done", ev)
            # A sampling default: requests that leave max_tokens out get the new one.
            gen = generate("m", ignore_eos=True)
            del gen["return_ids"]
            self.assertEqual(d.request(gen)[-1]["usage"]["generated_tokens"], 5)
            lowered = reload(8, ctx=1024)
            for _ in range(4):
                ev = d.request(generate("m", max_tokens=2, temperature=0.7))[-1]
                self.assertEqual((ev["event"], ev["code"]), ("error", "too_long"), ev)
            # The log says what was applied and what waits for a restart.
            self.assertIn("limits.max_prompt_tokens", raised["applied"])
            self.assertIn("models[m].defaults.max_tokens", raised["applied"])
            self.assertIn("models[m].ctx", lowered["needs_restart"])
            self.assertNotIn("models[m].ctx", lowered["applied"])
        finally:
            d.stop()


if __name__ == "__main__":
    if not os.path.exists(MODEL):
        print("fixtures not found: skipped")
        sys.exit(77)
    unittest.main(verbosity=2)
