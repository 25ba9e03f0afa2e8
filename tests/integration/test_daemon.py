#!/usr/bin/env python3
"""Integration tests of lmpoold: real processes, a private ipc endpoint,
fixture models, clients speaking the wire protocol with pyzmq (and the
lmpool CLI, which uses liblmpool).

Each scenario starts its own daemon with its own configuration and checks
what a user would: answers equal `lmpool run`'s, the weights are shared,
bounds answer with their error codes, a killed worker costs one request."""

import json
import os
import re
import shutil
import signal
import struct
import subprocess
import sys
import tempfile
import threading
import time
import unittest

import zmq

BIN = os.environ.get("LMPOOL_BIN")
DAEMON = os.environ.get("LMPOOLD_BIN")
FIXTURES = os.environ.get("LMPOOL_FIXTURES", "")
SRCDIR = os.environ.get("LMPOOL_SRCDIR", ".")
MODEL = os.path.join(FIXTURES, "models", "llama-q4_k_m.gguf")
DEEP = os.path.join(FIXTURES, "models", "llama-deep-q8_0.gguf")

PROMPT = "The quick brown fox jumps over the lazy dog. Once upon a time"


def model_yaml(name, path, workers=1, slots=1, ctx=2048, threads=1, extra=""):
    return (f"  - name: {name}\n    path: {path}\n    workers: {workers}\n    slots: {slots}\n"
            f"    ctx: {ctx}\n    threads: {threads}\n{extra}")


class Daemon:
    """One lmpoold in a temporary directory, logs captured."""

    def __init__(self, models, limits="", cgroup=None, env=None, router_extra="", extra_sections=""):
        self.dir = tempfile.mkdtemp(prefix="lmpool-it-")
        self.endpoint = f"ipc://{self.dir}/lmpool.sock"
        self.config = os.path.join(self.dir, "lmpool.yaml")
        with open(self.config, "w") as f:
            f.write(f"router:\n  endpoint: {self.endpoint}\n  heartbeat_ms: 200\n{router_extra}")
            f.write("log:\n  target: stderr\n  memory_interval_s: 1\n")
            f.write("workers:\n  respawn_min_ms: 100\n")
            if limits:
                f.write("limits:\n" + limits)
            f.write(extra_sections)
            f.write("models:\n" + "".join(models))
        self.log_path = os.path.join(self.dir, "lmpoold.log")
        self.log = open(self.log_path, "w")
        e = dict(os.environ)
        e.pop("LMPOOL_PROFILE", None)
        e["RUNTIME_DIRECTORY"] = self.dir
        e.update(env or {})

        def enter_cgroup():
            if cgroup:
                with open(os.path.join(cgroup, "cgroup.procs"), "w") as cg:
                    cg.write(str(os.getpid()))

        self.proc = subprocess.Popen([DAEMON, "--config", self.config], stdout=self.log, stderr=self.log,
                                     env=e, preexec_fn=enter_cgroup)
        self.ctx = zmq.Context()

    def socket(self):
        s = self.ctx.socket(zmq.DEALER)
        s.setsockopt(zmq.LINGER, 0)
        s.connect(self.endpoint)
        return s

    def request(self, req, timeout=30.0, sock=None):
        """Sends one request, returns the list of events up to the last."""
        s = sock or self.socket()
        s.send(json.dumps(req).encode() if isinstance(req, dict) else req)
        events = []
        deadline = time.time() + timeout
        while True:
            left = deadline - time.time()
            if left <= 0 or not s.poll(int(left * 1000)):
                raise TimeoutError(f"no answer to {req!r}; events so far {events}")
            ev = json.loads(s.recv())
            events.append(ev)
            if ev["event"] != "token":
                break
        if sock is None:
            s.close()
        return events

    def wait_ready(self, timeout=60.0):
        deadline = time.time() + timeout
        while time.time() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError("lmpoold exited: " + self.logs())
            try:
                ev = self.request({"v": 1, "id": "h", "type": "health"}, timeout=1.0)[-1]
                if ev.get("status") in ("ok", "degraded"):
                    return ev
            except TimeoutError:
                pass
            time.sleep(0.1)
        raise TimeoutError("lmpoold not ready: " + self.logs())

    def stats(self):
        return self.request({"v": 1, "id": "s", "type": "stats"})[-1]

    def logs(self):
        self.log.flush()
        with open(self.log_path) as f:
            return f.read()

    def events(self, name=None):
        """The logfmt lines of one event (of every event: None), as dicts,
        in the order the daemon logged them."""
        out = []
        for line in self.logs().splitlines():
            if (f" event={name} " if name else " event=") not in line:
                continue
            out.append(dict(re.findall(r'(\w+)=("(?:[^"\\]|\\.)*"|\S+)', line)))
        return out

    def stop(self):
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.ctx.destroy(linger=0)
        self.log.close()
        shutil.rmtree(self.dir, ignore_errors=True)


class socket_free_port:
    """A TCP port on 127.0.0.1 that nothing listens on (closed on exit)."""

    def __enter__(self):
        import socket
        self.s = socket.socket()
        self.s.bind(("127.0.0.1", 0))
        return self.s.getsockname()[1]

    def __exit__(self, *exc):
        self.s.close()


def generate(model, prompt=PROMPT, **kw):
    req = {"v": 1, "id": kw.pop("id", "g"), "type": "generate", "model": model, "prompt": prompt,
           "temperature": 0, "return_ids": True}
    req.update(kw)
    return req


def ids_of(events):
    return [i for e in events if e["event"] == "token" for i in e.get("ids", [])]


def reference_ids(model_path, prompt, n):
    """Greedy ids from `lmpool run`, the engine without the daemon."""
    toks = subprocess.run([BIN, "tokenize", model_path, "--text", prompt], check=True, capture_output=True,
                          text=True).stdout.split()
    out = subprocess.run([BIN, "run", model_path, "--ids", " ".join(toks), "-n", str(n), "--temp", "0",
                          "--print-ids", "--threads", "1"], check=True, capture_output=True, text=True).stdout
    return [int(x) for x in out.split()]


def smaps_region(pid, name):
    """Rss/Pss/Private bytes of the mappings of pid whose name contains name."""
    tot = {"Rss": 0, "Pss": 0, "Private": 0}
    inside = False
    with open(f"/proc/{pid}/smaps") as f:
        for line in f:
            if re.match(r"^[0-9a-f]+-[0-9a-f]+ ", line):
                inside = name in line
            elif inside:
                k, v = line.split(":", 1)
                kb = int(v.split()[0]) * 1024 if v.strip().endswith("kB") else 0
                if k in ("Rss", "Pss"):
                    tot[k] += kb
                elif k in ("Private_Clean", "Private_Dirty"):
                    tot["Private"] += kb
    return tot


def pss(pid):
    with open(f"/proc/{pid}/smaps_rollup") as f:
        for line in f:
            if line.startswith("Pss:"):
                return int(line.split()[1]) * 1024
    return 0


class PoolTests(unittest.TestCase):
    """Three workers of one model."""

    @classmethod
    def setUpClass(cls):
        cls.d = Daemon([model_yaml("m", MODEL, workers=3, slots=2)],
                       limits="  queue_length: 4\n  max_prompt_tokens: 64\n")
        cls.d.wait_ready()

    @classmethod
    def tearDownClass(cls):
        cls.d.stop()

    def test_concurrent_streams_conform(self):
        n = 24
        want = reference_ids(MODEL, PROMPT, n)
        results = [None] * 3

        def client(i):
            results[i] = self.d.request(generate("m", id=f"c{i}", max_tokens=n, ignore_eos=True))

        threads = [threading.Thread(target=client, args=(i,)) for i in range(3)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        for evs in results:
            self.assertEqual(evs[-1]["event"], "done", evs[-1])
            self.assertEqual(ids_of(evs), want)
            self.assertEqual(evs[-1]["usage"]["generated_tokens"], n)
            self.assertIn("ttft_ms", evs[-1]["timings"])

    def test_weights_shared(self):
        st = self.d.stats()
        pids = [w["pid"] for w in st["workers"] if w["state"] == "ready"]
        self.assertEqual(len(pids), 3)
        # Serve something on every worker so that they have touched the
        # weights: three different prompts, which the response cache cannot
        # answer, go to the three workers in turn (ties go to the one that
        # served fewest); the same prompt thrice would be served once.
        for i in range(3):
            ev = self.d.request(generate("m", prompt=f"{PROMPT} {i}", id=f"w{i}", max_tokens=4))[-1]
            self.assertFalse(ev.get("cached"), ev)
        self.assertTrue(all(w["served"] > 0 for w in self.d.stats()["workers"]), self.d.stats()["workers"])
        loaded = self.d.events("model_loaded")[0]
        store = int(loaded["store_bytes"])
        per_worker = int(loaded["kv_bytes_per_worker"]) + int(loaded["scratch_bytes_per_worker"])
        total = pss(self.d.proc.pid)
        for pid in pids:
            region = smaps_region(pid, "lmpool-store:m")
            self.assertGreater(region["Rss"], 0, "the worker maps the store")
            self.assertLess(region["Private"], 64 * 1024, f"worker {pid} holds store pages privately: {region}")
            total += pss(pid)
        self.assertLess(total, store + 3 * per_worker + 64 * 2**20)

    def test_errors_keep_serving(self):
        d = self.d
        ev = d.request(generate("nope"))[-1]
        self.assertEqual((ev["event"], ev["code"]), ("error", "unknown_model"))
        ev = d.request(b"{not json")[-1]
        self.assertEqual((ev["event"], ev["code"]), ("error", "bad_request"))
        self.assertIsNone(ev["id"])
        ev = d.request({"v": 1, "id": "x", "type": "generate", "model": "m", "prompt": "a", "top_p": 7})[-1]
        self.assertEqual(ev["code"], "bad_request")
        self.assertIn("top_p", ev["message"])
        ev = d.request(generate("m", prompt="word " * 200, max_tokens=2))[-1]
        self.assertEqual((ev["event"], ev["code"]), ("error", "too_long"))
        ev = d.request(generate("m", max_tokens=2))[-1]
        self.assertEqual(ev["event"], "done")

    def test_python_example(self):
        out = subprocess.run([sys.executable, os.path.join(SRCDIR, "docs", "examples", "client.py"),
                              "--endpoint", self.d.endpoint, "--model", "m", "--max-tokens", "8",
                              "--temperature", "0", "generate", PROMPT],
                             capture_output=True, text=True, timeout=60)
        self.assertEqual(out.returncode, 0, out.stderr)

    def test_cli_generate(self):
        out = subprocess.run([BIN, "generate", "--endpoint", self.d.endpoint, "--model", "m", "--prompt", PROMPT,
                              "-n", "8", "--temp", "0"], capture_output=True, text=True, timeout=60)
        self.assertEqual(out.returncode, 0, out.stderr)
        out = subprocess.run([BIN, "health", "--endpoint", self.d.endpoint], capture_output=True, text=True,
                             timeout=30)
        self.assertEqual(out.returncode, 0, out.stderr)


class EndpointTests(unittest.TestCase):
    def test_tcp_endpoint_and_models(self):
        with socket_free_port() as port:
            pass
        d = Daemon([model_yaml("m", MODEL, workers=2)], router_extra=f"  tcp: tcp://127.0.0.1:{port}\n")
        try:
            d.wait_ready()
            s = d.ctx.socket(zmq.DEALER)
            s.setsockopt(zmq.LINGER, 0)
            s.connect(f"tcp://127.0.0.1:{port}")
            ev = d.request({"v": 1, "id": "m", "type": "models"}, sock=s)[-1]
            self.assertEqual(ev["event"], "models")
            self.assertEqual([(m["name"], m["workers"], m["ready"], m["arch"]) for m in ev["models"]],
                             [("m", 2, 2, "llama")])
            self.assertEqual(d.request(generate("m", max_tokens=3), sock=s)[-1]["event"], "done")
            s.close()
        finally:
            d.stop()


def with_chat_template(src, dst, template):
    """Copies the GGUF file src to dst with tokenizer.chat_template set to
    template (the fixture models carry none): the key is appended to the
    metadata, and the tensor data re-aligned after it."""
    with open(src, "rb") as f:
        data = f.read()
    magic, version, n_tensors, n_kv = struct.unpack_from("<IIQQ", data, 0)
    pos = 24
    sizes = {0: 1, 1: 1, 2: 2, 3: 2, 4: 4, 5: 4, 6: 4, 7: 1, 10: 8, 11: 8, 12: 8}

    def skip_value(pos, t):
        if t == 8:
            (n,) = struct.unpack_from("<Q", data, pos)
            return pos + 8 + n
        if t == 9:
            et, n = struct.unpack_from("<IQ", data, pos)
            pos += 12
            for _ in range(n):
                pos = skip_value(pos, et)
            return pos
        return pos + sizes[t]

    alignment = 32
    for _ in range(n_kv):
        (klen,) = struct.unpack_from("<Q", data, pos)
        key = data[pos + 8:pos + 8 + klen].decode()
        pos += 8 + klen
        (t,) = struct.unpack_from("<I", data, pos)
        if key == "general.alignment":
            (alignment,) = struct.unpack_from("<I", data, pos + 4)
        pos = skip_value(pos + 4, t)
    kv_end = pos
    for _ in range(n_tensors):
        (nlen,) = struct.unpack_from("<Q", data, pos)
        pos += 8 + nlen
        (ndim,) = struct.unpack_from("<I", data, pos)
        pos += 4 + 8 * ndim + 4 + 8
    infos_end = pos
    data_start = (infos_end + alignment - 1) // alignment * alignment
    key, val = b"tokenizer.chat_template", template.encode()
    kv = struct.pack("<Q", len(key)) + key + struct.pack("<IQ", 8, len(val)) + val
    head = struct.pack("<IIQQ", magic, version, n_tensors, n_kv + 1) + data[24:kv_end] + kv + data[kv_end:infos_end]
    head += b"\0" * ((-len(head)) % alignment)
    with open(dst, "wb") as f:
        f.write(head + data[data_start:])


class ChatTests(unittest.TestCase):
    def test_chat_through_the_models_own_template(self):
        # The model's tokenizer.chat_template, rendered by the Jinja
        # interpreter: a chat is answered, and the template's own refusal
        # (raise_exception) comes back as bad_request with its words.
        tmp = tempfile.mkdtemp(prefix="lmpool-tmpl-")
        path = os.path.join(tmp, "m.gguf")
        with_chat_template(MODEL, path,
                           "{%- for m in messages %}{%- if m.role == 'system' %}"
                           "{{- raise_exception('System role not supported here!') }}{%- endif %}"
                           "{{- '<|' ~ m.role ~ '|>\\n' ~ m.content | trim ~ eos_token ~ '\\n' }}"
                           "{%- endfor %}{%- if add_generation_prompt %}{{- '<|assistant|>\\n' }}{%- endif %}")
        d = Daemon([model_yaml("m", path)])
        try:
            d.wait_ready()
            evs = d.request({"v": 1, "id": "c", "type": "chat", "model": "m", "max_tokens": 4, "temperature": 0,
                             "messages": [{"role": "user", "content": "  Hello there  "}]})
            self.assertEqual(evs[-1]["event"], "done", evs[-1])
            self.assertGreater(evs[-1]["usage"]["prompt_tokens"], 5)
            ev = d.request({"v": 1, "id": "c2", "type": "chat", "model": "m",
                            "messages": [{"role": "system", "content": "S"}, {"role": "user", "content": "U"}]})[-1]
            self.assertEqual((ev["event"], ev["code"]), ("error", "bad_request"), ev)
            self.assertIn("System role not supported here!", ev["message"])
        finally:
            d.stop()
            shutil.rmtree(tmp, ignore_errors=True)

    def test_chat_through_template(self):
        d = Daemon([model_yaml("m", MODEL, extra="    chat_template: zephyr\n")])
        try:
            d.wait_ready()
            evs = d.request({"v": 1, "id": "c", "type": "chat", "model": "m", "max_tokens": 6, "temperature": 0,
                             "messages": [{"role": "system", "content": "Be brief."},
                                          {"role": "user", "content": "Hello there"}]})
            self.assertEqual(evs[-1]["event"], "done", evs[-1])
            # <|system|>\nBe brief.</s>\n<|user|>\nHello there</s>\n<|assistant|>\n: more tokens than the text alone
            self.assertGreater(evs[-1]["usage"]["prompt_tokens"], 10)
            # A model without a template refuses chat with a clear message.
        finally:
            d.stop()
        d = Daemon([model_yaml("m", MODEL)])
        try:
            d.wait_ready()
            ev = d.request({"v": 1, "id": "c", "type": "chat", "model": "m",
                            "messages": [{"role": "user", "content": "Hi"}]})[-1]
            self.assertEqual((ev["event"], ev["code"]), ("error", "bad_request"))
            self.assertIn("chat_template", ev["message"])
        finally:
            d.stop()
        # A family lmpool does not know costs chat, not the model: logged,
        # and the model's own template (none here) is used.
        d = Daemon([model_yaml("m", MODEL, extra="    chat_template: nonesuch\n")])
        try:
            d.wait_ready()
            self.assertEqual(d.request(generate("m", max_tokens=2))[-1]["event"], "done")
            ev = d.request({"v": 1, "id": "c", "type": "chat", "model": "m",
                            "messages": [{"role": "user", "content": "Hi"}]})[-1]
            self.assertEqual((ev["event"], ev["code"]), ("error", "bad_request"))
            self.assertIn("unknown chat template family 'nonesuch'", d.logs())
        finally:
            d.stop()


class LifecycleTests(unittest.TestCase):
    def test_sigterm_drains_and_sighup_reloads(self):
        d = Daemon([model_yaml("m", DEEP, workers=1, slots=2, ctx=4096)])
        try:
            d.wait_ready()
            with open(d.config) as f:
                text = f.read()
            with open(d.config, "w") as f:
                f.write(text.replace("log:\n", "limits:\n  queue_length: 7\nlog:\n"))
            d.proc.send_signal(signal.SIGHUP)
            deadline = time.time() + 5
            while not d.events("reloaded") and time.time() < deadline:
                time.sleep(0.05)
            self.assertTrue(d.events("reloaded"))
            s = d.socket()
            s.send(json.dumps(generate("m", id="long", max_tokens=400, ignore_eos=True)).encode())
            self.assertTrue(s.poll(10000))
            first = json.loads(s.recv())
            self.assertEqual(first["event"], "token")
            d.proc.send_signal(signal.SIGTERM)
            # The running request still finishes; new ones are refused.
            ev = d.request(generate("m", id="late", max_tokens=2), timeout=10)[-1]
            self.assertEqual((ev["event"], ev.get("code")), ("error", "busy"))
            while True:
                self.assertTrue(s.poll(30000))
                ev = json.loads(s.recv())
                if ev["event"] != "token":
                    break
            self.assertEqual(ev["event"], "done", ev)
            s.close()
            self.assertEqual(d.proc.wait(timeout=20), 0)
            self.assertTrue(d.events("stopped"))
        finally:
            d.stop()

    def test_sighup_reapplies_logging_in_workers(self):
        """log.level and log.target are applied on reload by the supervisor
        and, through the config message, by running workers: a worker logs
        its new setting at debug, which only the new level lets through."""
        d = Daemon([model_yaml("m", MODEL, workers=1)])
        try:
            d.wait_ready()
            self.assertNotIn("logging at priority", d.logs())
            with open(d.config) as f:
                text = f.read()
            with open(d.config, "w") as f:
                f.write(text.replace("log:\n  target: stderr\n", "log:\n  target: auto\n  level: debug\n"))
            d.proc.send_signal(signal.SIGHUP)
            deadline = time.time() + 20
            line = re.compile(r"worker \S+: logging at priority 7, sink 0")
            while not (d.events("reloaded") and line.search(d.logs())) and time.time() < deadline:
                time.sleep(0.05)
            (ev,) = d.events("reloaded")
            self.assertIn("log.level", ev["applied"], ev)
            self.assertIn("log.target", ev["applied"], ev)
            self.assertNotIn("log.target", ev.get("needs_restart", ""), ev)
            self.assertRegex(d.logs(), line)
        finally:
            d.stop()


class DeadlineTests(unittest.TestCase):
    def test_timeout_and_cancel(self):
        d = Daemon([model_yaml("m", DEEP, workers=1, slots=2, ctx=4096)])
        try:
            d.wait_ready()
            # The daemon's deadline ends the request, not its length: the
            # timeout comes after some tokens, long before the 4000th.
            evs = d.request(generate("m", id="t", max_tokens=4000, ignore_eos=True, timeout_ms=300))
            self.assertEqual((evs[-1]["event"], evs[-1]["code"]), ("error", "timeout"))
            self.assertTrue(all(ev["event"] == "token" for ev in evs[:-1]), evs[:-1])
            self.assertLess(len(evs) - 1, 4000, "the deadline, not max_tokens, ended it")
            self.assertFalse([e for e in d.events("request_done") if e["request"] == "t"], "it did not finish")
            s = d.socket()
            s.send(json.dumps(generate("m", id="c", max_tokens=4000, ignore_eos=True)).encode())
            self.assertEqual(json.loads(s.recv())["event"], "token")
            s.send(json.dumps({"v": 1, "id": "x", "type": "cancel", "target": "c"}).encode())
            got = {}
            while len(got) < 2:
                self.assertTrue(s.poll(5000))
                ev = json.loads(s.recv())
                if ev["event"] != "token":
                    got[ev["id"]] = ev
            self.assertEqual((got["c"]["event"], got["c"]["code"]), ("error", "cancelled"))
            self.assertEqual((got["x"]["event"], got["x"]["found"]), ("cancelled", True))
            s.close()
            # Both slots are free again.
            self.assertEqual(d.request(generate("m", max_tokens=2))[-1]["event"], "done")
            st = d.stats()
            self.assertEqual(st["requests"]["timeouts"], 1)
        finally:
            d.stop()


class QueueTests(unittest.TestCase):
    def test_queue_full_is_busy(self):
        d = Daemon([model_yaml("m", DEEP, workers=1, slots=1, ctx=4096)], limits="  queue_length: 1\n")
        try:
            d.wait_ready()
            socks = [d.socket() for _ in range(3)]
            for i, s in enumerate(socks):
                s.send(json.dumps(generate("m", id=f"q{i}", max_tokens=3000, ignore_eos=True,
                                           stream=False)).encode())
                time.sleep(0.05)
            ev = json.loads(socks[2].recv())
            self.assertEqual((ev["event"], ev["code"]), ("error", "busy"))
            self.assertTrue(d.events("overload"))
            for s in socks[:2]:
                s.send(json.dumps({"v": 1, "id": "cx", "type": "cancel",
                                   "target": "q0" if s is socks[0] else "q1"}).encode())
            for s in socks:
                s.close()
            self.assertEqual(d.request(generate("m", max_tokens=2))[-1]["event"], "done")
        finally:
            d.stop()


class CrashTests(unittest.TestCase):
    def test_kill_busy_worker(self):
        d = Daemon([model_yaml("m", DEEP, workers=2, slots=1, ctx=4096)])
        try:
            d.wait_ready()
            socks = [d.socket(), d.socket()]
            for i, s in enumerate(socks):
                s.send(json.dumps(generate("m", id=f"k{i}", max_tokens=4000, ignore_eos=True)).encode())
            # Wait for both streams to have begun (before its first token a
            # request would be run again, not lost), then kill one worker.
            for s in socks:
                self.assertTrue(s.poll(30000), "a first token")
                self.assertEqual(json.loads(s.recv())["event"], "token")
            deadline = time.time() + 10
            while time.time() < deadline:
                busy = [w for w in d.stats()["workers"] if w["active"] > 0]
                if len(busy) == 2:
                    break
            self.assertEqual(len(busy), 2, "both workers busy")
            victim = busy[0]
            os.kill(victim["pid"], signal.SIGKILL)
            # The victim's client hears worker_lost while the other request
            # is still streaming: the kill, not a deadline, ended it. (No
            # wall-clock bound: the order of events is the claim.)
            poller = zmq.Poller()
            for s in socks:
                poller.register(s, zmq.POLLIN)
            outcomes = {}
            while len(outcomes) < 2:
                ready = poller.poll(120000)
                self.assertTrue(ready, f"no event for 120 s; ended so far: {outcomes}")
                for s, _ in ready:
                    i = socks.index(s)
                    ev = json.loads(s.recv())
                    if ev["event"] != "token":
                        outcomes[i] = ev
                        poller.unregister(s)
                        self.assertEqual(len(outcomes) == 1, ev.get("code") == "worker_lost",
                                         f"worker_lost comes first, while the other streams: {outcomes}\n"
                                         + d.logs()[-6000:])
            lost_i = [i for i, ev in outcomes.items() if ev.get("code") == "worker_lost"][0]
            ev = outcomes[1 - lost_i]
            # The other client finishes normally.
            self.assertEqual(ev["event"], "done", ev)
            self.assertEqual(ev["finish"], "length")
            # The daemon's own order: the victim exits, is respawned and is
            # ready again before the other request is done. (The daemon logs
            # request_done after it sent the done event: wait for the line.)
            other_id = 1 - lost_i
            for _ in range(600):
                if [e for e in d.events("request_done") if e["request"] == f"k{other_id}"]:
                    break
                time.sleep(0.05)
            order = [(e["event"], e.get("worker"), e.get("pid"), e.get("request"))
                     for e in d.events() if e["event"] in ("worker_exited", "worker_started", "request_done")]
            exited = order.index(("worker_exited", victim["name"], str(victim["pid"]), None))
            restarted = [i for i, e in enumerate(order)
                         if e[0] == "worker_started" and e[1] == victim["name"] and i > exited]
            other_done = [i for i, e in enumerate(order) if e[0] == "request_done" and e[3] == f"k{other_id}"]
            self.assertTrue(restarted and other_done and restarted[0] < other_done[0], order)
            self.assertEqual(d.events("worker_exited")[0]["exit_signal"], "9")
            w = {w["name"]: w for w in d.stats()["workers"]}[victim["name"]]
            self.assertEqual(w["state"], "ready")
            self.assertNotEqual(w["pid"], victim["pid"])
            for s in socks:
                s.close()
        finally:
            d.stop()

    def test_retry_before_first_token(self):
        """A worker that dies before its request's first token: the request
        runs again on another worker and its client sees one stream, one
        done. With limits.retries 0 the same death is worker_lost."""
        for retries in (1, 0):
            with self.subTest(retries=retries):
                d = Daemon([model_yaml("m", DEEP, workers=2, slots=1, ctx=4096)],
                           limits=f"  retries: {retries}\n")
                try:
                    d.wait_ready()
                    workers = {w["name"]: w["pid"] for w in d.stats()["workers"]}
                    # m/0 frozen: the request sent to it cannot start.
                    os.kill(workers["m/0"], signal.SIGSTOP)
                    busy = d.socket()
                    busy.send(json.dumps(generate("m", id="busy", max_tokens=1000, ignore_eos=True)).encode())
                    wait = time.time() + 10
                    while time.time() < wait and not any(w["active"] for w in d.stats()["workers"]):
                        time.sleep(0.02)
                    on = [w["name"] for w in d.stats()["workers"] if w["active"]]
                    # The second request goes to the other worker, the idle one.
                    s = d.socket()
                    # (long enough to be seen running on a loaded machine)
                    s.send(json.dumps(generate("m", id="r", max_tokens=300, ignore_eos=True)).encode())
                    wait = time.time() + 10
                    while time.time() < wait and sum(w["active"] for w in d.stats()["workers"]) < 2:
                        time.sleep(0.02)
                    self.assertEqual(sum(w["active"] for w in d.stats()["workers"]), 2, "both dispatched")
                    # Which of the two is on the frozen worker: it has no token.
                    frozen_sock = busy if on == ["m/0"] else s
                    frozen_id = "busy" if on == ["m/0"] else "r"
                    other_sock = s if frozen_sock is busy else busy
                    os.kill(workers["m/0"], signal.SIGKILL)
                    evs = []
                    while True:
                        self.assertTrue(frozen_sock.poll(60000), "the request ends")
                        ev = json.loads(frozen_sock.recv())
                        evs.append(ev)
                        if ev["event"] != "token":
                            break
                    terminal = [e for e in evs if e["event"] != "token"]
                    self.assertEqual(len(terminal), 1)
                    if retries:
                        self.assertEqual(evs[-1]["event"], "done", evs[-1])
                        self.assertEqual(evs[-1]["id"], frozen_id)
                        self.assertEqual(evs[-1]["usage"]["generated_tokens"], len(evs) - 1)
                        self.assertEqual(d.stats()["requests"]["retried"], 1)
                        self.assertIn("died before its first token", d.logs())
                    else:
                        self.assertEqual(evs, [evs[-1]], "nothing but the error")
                        self.assertEqual(evs[-1].get("code"), "worker_lost", evs[-1])
                        self.assertEqual(d.stats()["requests"]["retried"], 0)
                    self.assertFalse(frozen_sock.poll(500), "nothing after the terminal event")
                    # The other request was never touched: it is streaming.
                    self.assertTrue(other_sock.poll(30000))
                    self.assertEqual(json.loads(other_sock.recv())["event"], "token")
                    busy.close()
                    s.close()
                finally:
                    d.stop()


class ConversationTests(unittest.TestCase):
    """Session affinity: a conversation's turns go to the worker whose slot
    holds its history, reuse it, and answer as a cold run does."""

    def chat(self, d, msgs, session=None, rid="c"):
        req = {"v": 1, "id": rid, "type": "chat", "model": "m", "max_tokens": 10, "temperature": 0,
               "ignore_eos": True, "return_ids": True, "messages": msgs}
        if session:
            req["session"] = session
        evs = d.request(req)
        self.assertEqual(evs[-1]["event"], "done", evs[-1])
        text = "".join(e.get("text", "") for e in evs if e["event"] == "token")
        return evs[-1], ids_of(evs), text

    def test_turns_follow_their_worker(self):
        yaml = model_yaml("m", MODEL, workers=2, slots=2, extra="    chat_template: zephyr\n")
        # dave names no session: his first message is the key.
        users = {"alice": "Tell me about the sea", "bob": "What is a prime number", "carol": "Name a colour",
                 "dave": "Say something"}
        history = {u: [] for u in users}
        workers = {u: set() for u in users}
        last = {}
        d = Daemon([yaml])
        try:
            d.wait_ready()
            for turn in range(3):
                for u, question in users.items():
                    msgs = history[u] + [{"role": "user", "content": f"{question} ({turn})"}]
                    done, ids, text = self.chat(d, msgs, session=None if u == "dave" else u, rid=f"{u}{turn}")
                    workers[u].add(done["worker"])
                    if turn:
                        # The previous turn's whole prompt was still cached.
                        self.assertGreaterEqual(done["usage"]["cached_tokens"], last[u]["usage"]["prompt_tokens"] - 1,
                                                (u, turn, done))
                    last[u] = done
                    history[u] = msgs + [{"role": "assistant", "content": text}]
                    last[u]["ids"] = ids
            for u in users:
                self.assertEqual(len(workers[u]), 1, f"{u}'s turns went to {workers[u]}")
            aff = d.stats()["affinity"]
            self.assertEqual((aff["hits"], aff["new"], aff["misses"]), (8, 4, 0), aff)
        finally:
            d.stop()
        # Cold, on one slot that every conversation evicts in turn: the same
        # greedy answers.
        d = Daemon([model_yaml("m", MODEL, workers=1, slots=1, extra="    chat_template: zephyr\n")])
        try:
            d.wait_ready()
            for round_ in range(2):
                for u in users:
                    msgs = history[u][:-1]
                    done, ids, _ = self.chat(d, msgs, rid=f"cold-{u}-{round_}")
                    self.assertEqual(ids, last[u]["ids"], f"{u}: cold answer differs")
                    self.assertLess(done["usage"]["cached_tokens"], last[u]["usage"]["prompt_tokens"] // 2)
        finally:
            d.stop()

    def test_window_reuse(self):
        """A bot that resends only its last four messages: with cache_reuse,
        each turn after the window starts sliding reuses the kept messages
        (the KV shift) instead of only the template's opening."""
        yaml = model_yaml("m", MODEL, workers=1, slots=1,
                          extra="    chat_template: zephyr\n    cache_reuse: 16\n")
        topics = ["the sea and its tides", "prime numbers and their uses", "colours of the rainbow",
                  "trains that cross the mountains", "bread and the bakers who make it", "the moon"]
        d = Daemon([yaml])
        try:
            d.wait_ready()
            history = []
            for turn, topic in enumerate(topics):
                question = (f"Please tell me, in a few careful sentences, everything you know about {topic}, "
                            f"and why people have cared about it for such a long time ({turn}).")
                msgs = history[-4:] + [{"role": "user", "content": question}]
                done, _, text = self.chat(d, msgs, rid=f"w{turn}")
                usage = done["usage"]
                if turn >= 3:
                    # The window dropped a question and an answer at its
                    # start; the two messages after them were reused.
                    self.assertGreaterEqual(usage["cached_tokens"], usage["prompt_tokens"] // 2, (turn, usage))
                history = msgs + [{"role": "assistant", "content": text}]
        finally:
            d.stop()

    def test_bench_server(self):
        """`lmpool bench --server`: every user's every turn is answered with
        the tokens asked for, later turns find their history cached, and the
        pool's PSS is measured from its workers."""
        d = Daemon([model_yaml("m", MODEL, workers=1, slots=2, extra="    chat_template: zephyr\n")])
        try:
            d.wait_ready()
            out = subprocess.run([BIN, "bench", "--server", "--endpoint", d.endpoint, "--model", "m", "-u", "2",
                                  "-m", "3", "-n", "6", "--json"], capture_output=True, text=True, timeout=300)
            self.assertEqual(out.returncode, 0, out.stderr)
            r = json.loads(out.stdout)
            self.assertEqual((r["answers"], r["generated"], r["failed_users"]), (6, 36, 0), r)
            self.assertGreater(r["cached_tokens"], 0, r)
            self.assertLess(r["cached_tokens"], r["prompt_tokens"], r)
            self.assertGreaterEqual(r["pss_processes"], 2, r)
            self.assertGreater(r["pss_bytes"], 0, r)
            self.assertTrue(0 < r["ttft_ms"]["p50"] <= r["latency_ms"]["p50"] <= r["latency_ms"]["max"], r)
            # 5 tokens after the first in at most the whole turn's time
            self.assertGreaterEqual(r["stream_tokens_per_s"]["p50"], 5e3 / r["latency_ms"]["max"], r)
            # A model the daemon does not have: each user says why, exit 1.
            out = subprocess.run([BIN, "bench", "--server", "--endpoint", d.endpoint, "--model", "nope", "-u", "1",
                                  "-m", "1", "-n", "2"], capture_output=True, text=True, timeout=60)
            self.assertEqual(out.returncode, 1, out.stdout)
            self.assertIn("user 0 stopped after 0 of 1 answers: unknown_model", out.stderr)
        finally:
            d.stop()


class CacheTests(unittest.TestCase):
    """The exact response cache: a repeated deterministic request is
    answered without a worker, as the worker answered it; a sampled one
    without a seed never is."""

    def stream(self, d, req):
        evs = d.request(req)
        self.assertEqual(evs[-1]["event"], "done", evs[-1])
        return evs

    def served(self, d):
        return sum(w["served"] for w in d.stats()["workers"])

    def test_deterministic_requests_come_from_the_cache(self):
        d = Daemon([model_yaml("m", MODEL, workers=1, slots=1)])
        try:
            d.wait_ready()
            req = generate("m", id="a", max_tokens=12, ignore_eos=True)
            first = self.stream(d, req)
            self.assertNotIn("cached", first[-1])
            n = self.served(d)
            again = self.stream(d, dict(req, id="b", session="whatever"))
            self.assertEqual(again[-1].get("cached"), True, again[-1])
            self.assertEqual(self.served(d), n, "no worker served the repeat")
            self.assertEqual([e.get("text") for e in again], [e.get("text") for e in first])
            self.assertEqual(ids_of(again), ids_of(first))
            self.assertTrue(all(e["id"] == "b" for e in again))
            st = d.stats()["cache"]
            self.assertEqual((st["hits"], st["misses"], st["entries"]), (1, 1, 1), st)
            self.assertGreater(st["bytes"], 0)
            # Any other field makes another request.
            other = self.stream(d, dict(req, id="c", max_tokens=11))
            self.assertNotIn("cached", other[-1])
            # Whole (not streamed) answers too.
            whole = dict(req, id="w", stream=False)
            self.assertNotIn("cached", self.stream(d, whole)[-1])
            w2 = self.stream(d, dict(whole, id="w2"))
            self.assertEqual(w2[-1].get("cached"), True)
            self.assertEqual(len(w2), 1)
            # Sampled without a seed: never; with a seed: yes.
            sampled = generate("m", id="s", max_tokens=8, temperature=0.8)
            for i in range(2):
                self.assertNotIn("cached", self.stream(d, dict(sampled, id=f"s{i}"))[-1])
            seeded = dict(sampled, seed=7)
            one = self.stream(d, dict(seeded, id="k1"))
            two = self.stream(d, dict(seeded, id="k2"))
            self.assertNotIn("cached", one[-1])
            self.assertEqual(two[-1].get("cached"), True)
            self.assertEqual(ids_of(one), ids_of(two))
            # A cancelled request leaves nothing behind.
            s = d.socket()
            long = generate("m", id="long", max_tokens=400, ignore_eos=True)
            s.send(json.dumps(long).encode())
            self.assertTrue(s.poll(30000))
            s.send(json.dumps({"v": 1, "id": "x", "type": "cancel", "target": "long"}).encode())
            ends = 0
            while ends < 2:
                self.assertTrue(s.poll(30000))
                ev = json.loads(s.recv())
                ends += ev["event"] != "token"
            s.close()
            self.assertNotIn("cached", self.stream(d, dict(long, id="long2", max_tokens=400))[-1])
        finally:
            d.stop()

    def test_ttl_and_off(self):
        d = Daemon([model_yaml("m", MODEL)], extra_sections="cache:\n  ttl_s: 1\n")
        try:
            d.wait_ready()
            req = generate("m", id="a", max_tokens=4)
            self.stream(d, req)
            self.assertEqual(self.stream(d, dict(req, id="b"))[-1].get("cached"), True)
            time.sleep(1.2)
            self.assertNotIn("cached", self.stream(d, dict(req, id="c"))[-1], "expired")
        finally:
            d.stop()
        d = Daemon([model_yaml("m", MODEL)], extra_sections="cache:\n  max_bytes: 0\n")
        try:
            d.wait_ready()
            req = generate("m", id="a", max_tokens=4)
            for i in range(2):
                self.assertNotIn("cached", self.stream(d, dict(req, id=f"r{i}"))[-1])
            self.assertEqual(d.stats()["cache"]["entries"], 0)
        finally:
            d.stop()


def make_cgroup(limit):
    """A memory cgroup with a limit (v2 or v1), or None where we may not."""
    for base, limit_file in (("/sys/fs/cgroup", "memory.max"), ("/sys/fs/cgroup/memory", "memory.limit_in_bytes")):
        if not os.path.exists(os.path.join(base, limit_file.replace("memory.max", "cgroup.controllers"))) \
                and limit_file == "memory.max":
            continue
        path = os.path.join(base, f"lmpool-it-{os.getpid()}")
        try:
            os.mkdir(path)
            with open(os.path.join(path, limit_file), "w") as f:
                f.write(str(limit))
            return path
        except OSError:
            continue
    return None


class MemoryLimitTests(unittest.TestCase):
    def test_model_that_does_not_fit_is_refused(self):
        cg = make_cgroup(512 * 2**20)
        self.assertTrue(cg, "cannot create a memory cgroup (the runner checked that it could)")
        # The second model's KV cache alone (4 workers x 4 slots x 16384
        # positions x 4 KiB) is far above the limit.
        d = Daemon([model_yaml("small", MODEL), model_yaml("big", DEEP, workers=4, slots=4, ctx=16384)],
                   cgroup=cg)
        try:
            d.wait_ready()
            refused = d.events("model_refused")
            self.assertEqual(len(refused), 1)
            self.assertEqual(refused[0]["model"], "big")
            self.assertRegex(refused[0]["msg"], r"needs .* but only .* is free \(cgroup limit 512\.0 MiB")
            loaded = d.events("model_loaded")
            self.assertEqual([e["model"] for e in loaded], ["small"])
            for key in ("rss_bytes_before", "rss_bytes", "mem_available_before", "cgroup_limit", "load_ms"):
                self.assertIn(key, loaded[0])
            self.assertEqual(d.request(generate("small", max_tokens=3))[-1]["event"], "done")
            self.assertEqual(d.request(generate("big", max_tokens=3))[-1]["code"], "unknown_model")
        finally:
            d.stop()
            os.rmdir(cg)


class WorkerCgroupTests(unittest.TestCase):
    def test_memory_max_per_worker(self):
        probe = make_cgroup(1 << 40)
        self.assertTrue(probe, "cannot create a memory cgroup (the runner checked that it could)")
        os.rmdir(probe)
        d = Daemon([model_yaml("a", MODEL, extra="    memory_max: 1G\n"),
                    model_yaml("b", MODEL, extra="    memory_max: 4M\n")])
        try:
            # "a" serves inside its own 1 GiB cgroup.
            deadline = time.time() + 30
            while time.time() < deadline:
                try:
                    ws = {w["name"]: w for w in d.stats()["workers"]}
                    if ws["a/0"]["state"] == "ready":
                        break
                except (TimeoutError, KeyError):
                    pass
                time.sleep(0.1)
            pid = ws["a/0"]["pid"]
            with open(f"/proc/{pid}/cgroup") as f:
                line = [l for l in f if "worker-a-0" in l]
            self.assertTrue(line, "the worker runs in its own cgroup")
            hierarchy, path = line[0].strip().split(":", 2)[1:]
            cg_dir = "/sys/fs/cgroup" + ("" if hierarchy == "" else "/memory") + path
            self.assertEqual(d.request(generate("a", max_tokens=3))[-1]["event"], "done")
            # "b" cannot live in 4 MiB: the kernel kills it, alone, again and again.
            deadline = time.time() + 20
            while time.time() < deadline and not [e for e in d.events("worker_exited") if e["worker"] == "b/0"]:
                time.sleep(0.1)
            exits = [e for e in d.events("worker_exited") if e["worker"] == "b/0"]
            self.assertTrue(exits, d.logs())
            self.assertEqual(exits[0]["exit_signal"], "9")
            self.assertEqual(d.request(generate("a", max_tokens=3))[-1]["event"], "done")
            self.assertTrue(os.path.isdir(cg_dir), cg_dir)
        finally:
            d.stop()
        # The daemon removes its workers' cgroups when it stops.
        self.assertFalse(os.path.exists(cg_dir), cg_dir)


class ConfigTests(unittest.TestCase):
    def test_check_config_rejects_with_lines(self):
        with tempfile.NamedTemporaryFile("w", suffix=".yaml", delete=False) as f:
            f.write("limits:\n  queue_length: 0\nmodels:\n  - name: m\n    path: /x.gguf\n    workerz: 2\n")
        try:
            out = subprocess.run([DAEMON, "--check-config", f.name], capture_output=True, text=True)
            self.assertEqual(out.returncode, 1)
            self.assertIn(f"{f.name}:2:", out.stderr)
            self.assertIn(f"{f.name}:6:", out.stderr)
        finally:
            os.unlink(f.name)


CGROUP_CASES = (MemoryLimitTests, WorkerCgroupTests)


if __name__ == "__main__":
    if not os.path.exists(MODEL):
        print("fixtures not found: skipped")
        sys.exit(77)
    # `test_daemon.py cgroups` runs the cases that need a memory cgroup of
    # their own (meson's daemon-cgroups), and reports a skip, not a pass,
    # where none can be made; the plain run leaves them out.
    loader = unittest.TestLoader()
    if sys.argv[1:] == ["cgroups"]:
        probe = make_cgroup(1 << 40)
        if not probe:
            print("cannot create a memory cgroup here (needs root and a writable memory controller): skipped")
            sys.exit(77)
        os.rmdir(probe)
        suite = unittest.TestSuite(loader.loadTestsFromTestCase(c) for c in CGROUP_CASES)
    else:
        suite = unittest.TestSuite(
            loader.loadTestsFromTestCase(obj) for obj in list(globals().values())
            if isinstance(obj, type) and issubclass(obj, unittest.TestCase) and obj not in CGROUP_CASES)
    result = unittest.TextTestRunner(verbosity=2).run(suite)
    sys.exit(0 if result.wasSuccessful() else 1)
