#!/usr/bin/env python3
"""lmpool-http against a real lmpoold: OpenAI and Ollama answers, streamed
and whole, compared with what the daemon says directly over ZeroMQ for the
same greedy request; usage; stop strings; the error mapping and its status
codes; a disconnect that cancels the request in the pool; keys; the
per-key rate and concurrency limits; a daemon that is not there; /metrics
checked against the requests made; curl as a client."""

import json
import os
import signal
import socket
import subprocess
import sys
import time
import unittest

import zmq

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness  # noqa: E402
from harness import KEY, KEY2, Daemon, Gateway, metrics, sse_events  # noqa: E402

PROMPT = "The quick brown fox jumps over the lazy dog. Once upon a time"


def daemon_request(d, req, timeout=30):
    s = zmq.Context.instance().socket(zmq.DEALER)
    s.setsockopt(zmq.LINGER, 0)
    s.connect(d.endpoint)
    s.send_json(req)
    events = []
    while True:
        if not s.poll(timeout * 1000):
            raise TimeoutError(f"no answer to {req}")
        ev = s.recv_json()
        events.append(ev)
        if ev["event"] != "token":
            break
    s.close()
    return events


class GatewayTest(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.d = Daemon(router_extra="  heartbeat_ms: 60000\n")
        try:
            cls.gw = Gateway(cls.d, http="  key_rate: 1000\n  key_burst: 1000\n  key_requests: 16\n")
            cls.gw.wait_healthy()
        except Exception:
            cls.d.stop()  # tearDownClass does not run after a failed setUpClass
            raise
        cls.made = {}  # (endpoint, code) -> count, for /metrics
        cls.tokens = [0, 0]  # prompt, generated

    @classmethod
    def tearDownClass(cls):
        rc = cls.gw.stop()
        cls.d.stop()
        assert rc == 0, f"lmpool-http exited with {rc}"

    def count(self, path, status, usage=None):
        k = (path, str(status))
        self.made[k] = self.made.get(k, 0) + 1
        if usage:
            self.tokens[0] += usage["prompt_tokens"]
            self.tokens[1] += usage["completion_tokens"]

    def post(self, path, body, **kw):
        status, headers, data = self.gw.request("POST", path, body, **kw)
        self.count(path, status, json.loads(data).get("usage") if status == 200 and not body.get("stream") else None)
        return status, headers, data

    def direct_text(self, kind, body):
        req = {"v": 1, "id": "d", "type": kind, "model": "tiny", "stream": False, **body}
        ev = daemon_request(self.d, req)[-1]
        self.assertEqual(ev["event"], "done", ev)
        return ev["text"], ev

    # ---------------------------------------------------------------- OpenAI

    def test_chat_whole_equals_daemon(self):
        msgs = [{"role": "system", "content": "You are terse."}, {"role": "user", "content": "Say hello"}]
        status, headers, data = self.post("/v1/chat/completions",
                                          {"model": "tiny", "messages": msgs, "max_tokens": 12, "temperature": 0})
        self.assertEqual(status, 200, data)
        self.assertEqual(headers["content-type"], "application/json")
        ans = json.loads(data)
        self.assertEqual(ans["object"], "chat.completion")
        self.assertTrue(ans["id"].startswith("chatcmpl-"))
        self.assertEqual(ans["model"], "tiny")
        ch = ans["choices"][0]
        self.assertEqual(ch["message"]["role"], "assistant")
        text, ev = self.direct_text("chat", {"messages": msgs, "max_tokens": 12, "temperature": 0})
        self.assertEqual(ch["message"]["content"], text)
        self.assertEqual(ch["finish_reason"], "stop" if ev["finish"] in ("stop", "eos") else "length")
        u = ans["usage"]
        self.assertEqual(u["prompt_tokens"], ev["usage"]["prompt_tokens"])
        self.assertEqual(u["completion_tokens"], ev["usage"]["generated_tokens"])
        self.assertEqual(u["total_tokens"], u["prompt_tokens"] + u["completion_tokens"])
        self.assertIn("cached_tokens", u["prompt_tokens_details"])

    def test_completion_stream_equals_whole(self):
        body = {"model": "tiny", "prompt": PROMPT, "max_tokens": 20, "temperature": 0, "ignore_eos": True}
        status, _, whole = self.post("/v1/completions", body)
        self.assertEqual(status, 200, whole)
        whole = json.loads(whole)
        self.assertEqual(whole["object"], "text_completion")
        self.assertEqual(whole["usage"]["completion_tokens"], 20)
        self.assertEqual(whole["choices"][0]["finish_reason"], "length")
        text, _ = self.direct_text("generate", {"prompt": PROMPT, "max_tokens": 20, "temperature": 0})
        self.assertEqual(whole["choices"][0]["text"], text)

        status, headers, data = self.gw.request("POST", "/v1/completions",
                                                dict(body, stream=True, stream_options={"include_usage": True}))
        self.assertEqual(status, 200)
        self.assertEqual(headers["content-type"], "text/event-stream")
        evs = sse_events(data)
        self.assertEqual(evs[-1], "[DONE]")
        usage_chunk = evs[-2]
        self.assertEqual(usage_chunk["choices"], [])
        self.assertEqual(usage_chunk["usage"]["completion_tokens"], 20)
        self.count("/v1/completions", 200, usage_chunk["usage"])
        chunks = evs[:-2]
        self.assertEqual("".join(c["choices"][0]["text"] for c in chunks), text)
        self.assertEqual(chunks[-1]["choices"][0]["finish_reason"], "length")
        self.assertTrue(all(c["choices"][0]["finish_reason"] is None for c in chunks[:-1]))
        self.assertEqual(len({c["id"] for c in chunks}), 1)

    def test_chat_stream(self):
        msgs = [{"role": "user", "content": [{"type": "text", "text": "Tell"}, {"type": "text", "text": " a story"}]}]
        status, _, data = self.gw.request("POST", "/v1/chat/completions",
                                          {"model": "tiny", "messages": msgs, "max_tokens": 10, "temperature": 0,
                                           "stream": True})
        self.assertEqual(status, 200)
        self.count("/v1/chat/completions", 200)
        evs = sse_events(data)
        self.assertEqual(evs[-1], "[DONE]")
        chunks = evs[:-1]
        self.assertEqual(chunks[0]["object"], "chat.completion.chunk")
        self.assertEqual(chunks[0]["choices"][0]["delta"]["role"], "assistant")
        self.assertIsNotNone(chunks[-1]["choices"][0]["finish_reason"])
        self.assertNotIn("usage", chunks[0])  # only with stream_options.include_usage
        text = "".join(c["choices"][0]["delta"].get("content", "") for c in chunks)
        direct, ev = self.direct_text("chat", {"messages": [{"role": "user", "content": "Tell a story"}],
                                               "max_tokens": 10, "temperature": 0})
        self.assertEqual(text, direct)
        self.tokens[0] += ev["usage"]["prompt_tokens"]
        self.tokens[1] += ev["usage"]["generated_tokens"]

    def test_bench_server(self):
        """`lmpool bench --server --http`: the chat load over this gateway;
        its token counts come from the streams' usage, so /metrics must
        agree with them (test_zz_metrics)."""
        out = subprocess.run([os.environ["LMPOOL_BIN"], "bench", "--server", "--http",
                              f"http://127.0.0.1:{self.gw.port}", "--api-key", KEY, "--model", "tiny", "-u", "2",
                              "-m", "2", "-n", "4", "--json", "--pid", str(self.d.proc.pid)],
                             capture_output=True, text=True, timeout=300)
        self.assertEqual(out.returncode, 0, out.stderr)
        r = json.loads(out.stdout)
        self.assertEqual((r["answers"], r["generated"], r["failed_users"]), (4, 16, 0), r)
        self.assertGreater(r["cached_tokens"], 0, r)
        self.assertGreater(r["pss_bytes"], 0, r)
        self.made[("/v1/chat/completions", "200")] = self.made.get(("/v1/chat/completions", "200"), 0) + 4
        self.tokens[0] += r["prompt_tokens"]
        self.tokens[1] += r["generated"]
        # a wrong key: 401, said by each user, exit 1
        out = subprocess.run([os.environ["LMPOOL_BIN"], "bench", "--server", "--http",
                              f"http://127.0.0.1:{self.gw.port}", "--api-key", "sk-wrong", "--model", "tiny",
                              "-u", "1", "-m", "1", "-n", "2"], capture_output=True, text=True, timeout=60)
        self.assertEqual(out.returncode, 1, out.stdout)
        self.assertIn("user 0 stopped after 0 of 1 answers: HTTP 401", out.stderr)
        self.made[("/v1/chat/completions", "401")] = self.made.get(("/v1/chat/completions", "401"), 0) + 1

    def test_session(self):
        """X-Session-Id (or a body's session) reaches the daemon: its turns
        count as one conversation in the router's affinity table."""
        def affinity():
            return daemon_request(self.d, {"v": 1, "id": "s", "type": "stats"})[-1]["affinity"]
        before = affinity()
        body = {"model": "tiny", "max_tokens": 2, "temperature": 0.9}
        # turns that differ from their first message on: one conversation only by its name
        for i in range(3):
            msgs = [{"role": "user", "content": f"Turn {i} of a conversation"}]
            st, _, _ = self.post("/v1/chat/completions", dict(body, messages=msgs),
                                 headers={"X-Session-Id": "conversation-42"})
            self.assertEqual(st, 200)
        msgs = [{"role": "user", "content": "Turn 0 of a conversation"}]
        st, _, _ = self.post("/v1/chat/completions", dict(body, messages=msgs, session="conversation-43"))
        self.assertEqual(st, 200)
        after = affinity()
        self.assertEqual(after["new"] - before["new"], 2, (before, after))
        self.assertEqual(after["hits"] - before["hits"], 2, (before, after))
        self.check_error("/v1/chat/completions", dict(body, messages=msgs), 400, param="X-Session-Id",
                         headers={"X-Session-Id": "x" * 200})

    def test_stop_string(self):
        body = {"model": "tiny", "prompt": PROMPT, "max_tokens": 24, "temperature": 0, "ignore_eos": True}
        _, _, data = self.post("/v1/completions", body)
        full = json.loads(data)["choices"][0]["text"]
        # a stop string from the middle of the greedy answer
        stop = full[len(full) // 2:len(full) // 2 + 3]
        self.assertTrue(stop.strip(), f"no usable stop string in {full!r}")
        status, _, data = self.post("/v1/completions", dict(body, stop=stop))
        self.assertEqual(status, 200, data)
        ans = json.loads(data)
        self.assertEqual(ans["choices"][0]["finish_reason"], "stop")
        self.assertEqual(ans["choices"][0]["text"], full[:full.index(stop)])

    def test_models(self):
        status, _, ans = self.gw.json("GET", "/v1/models")
        self.count("/v1/models", status)
        self.assertEqual(status, 200)
        self.assertEqual(ans["object"], "list")
        self.assertEqual([m["id"] for m in ans["data"]], ["tiny"])
        status, _, ans = self.gw.json("GET", "/v1/models/tiny")
        self.count("/v1/models/", status)
        self.assertEqual((status, ans["id"]), (200, "tiny"))
        status, _, ans = self.gw.json("GET", "/v1/models/nope")
        self.count("/v1/models/", status)
        self.assertEqual((status, ans["error"]["code"]), (404, "model_not_found"))

    # ---------------------------------------------------------------- errors

    def check_error(self, path, body, status, code=None, param=None, **kw):
        st, headers, data = self.post(path, body, **kw) if isinstance(body, dict) else \
            self.gw.request("POST", path, body, **kw)
        if not isinstance(body, dict):
            self.count(path, st)
        self.assertEqual(st, status, data)
        err = json.loads(data)["error"]
        self.assertTrue(err["message"])
        if code:
            self.assertEqual(err["code"], code, err)
        if param:
            self.assertEqual(err["param"], param, err)
        return headers, err

    # ---------------------------------------------------------------- constrained output

    SCHEMA = {"type": "object", "properties": {
        "color": {"enum": ["red", "green"]}, "n": {"type": "integer"},
        "items": {"type": "array", "items": {"type": "string", "maxLength": 3}, "maxItems": 2}},
        "required": ["color", "n"], "additionalProperties": False}

    def check_doc(self, text, finish, schema):
        """A document that finished must parse and fit the schema; one cut
        short must say so. Returns whether it was complete."""
        if finish == "length":
            return False
        self.assertIn(finish, ("stop", "eos"))
        doc = json.loads(text)
        self.assertIsInstance(doc, dict)
        if schema:
            self.assertIn(doc["color"], ("red", "green"))
            self.assertIsInstance(doc["n"], int)
            self.assertLessEqual(set(doc), {"color", "n", "items"})
            for s in doc.get("items", []):
                self.assertLessEqual(len(s), 3)
        return True

    def test_format_daemon(self):
        complete = 0
        for seed in range(1, 13):
            schema = self.SCHEMA if seed % 2 else None
            text, ev = self.direct_text("generate", {"prompt": "JSON:", "max_tokens": 200, "temperature": 1,
                                                     "seed": seed, "format": schema or "json"})
            complete += self.check_doc(text, ev["finish"], schema)
        self.assertGreater(complete, 3)
        ev = daemon_request(self.d, {"v": 1, "id": "f", "type": "generate", "model": "tiny", "prompt": "x",
                                     "format": {"type": "string", "pattern": "a"}})[-1]
        self.assertEqual((ev["event"], ev["code"]), ("error", "bad_request"), ev)
        self.assertIn('"pattern"', ev["message"])

    def test_format_http(self):
        complete = 0
        for seed in range(1, 9):
            rf = {"type": "json_schema", "json_schema": {"name": "t", "schema": self.SCHEMA}} if seed % 2 else \
                {"type": "json_object"}
            status, _, data = self.post("/v1/chat/completions", {
                "model": "tiny", "messages": [{"role": "user", "content": "JSON please"}], "max_tokens": 200,
                "temperature": 1, "seed": seed, "response_format": rf})
            self.assertEqual(status, 200, data)
            ch = json.loads(data)["choices"][0]
            complete += self.check_doc(ch["message"]["content"], "stop" if ch["finish_reason"] == "stop" else "length",
                                       self.SCHEMA if seed % 2 else None)
            status, _, data = self.post("/api/chat", {
                "model": "tiny", "messages": [{"role": "user", "content": "JSON please"}], "stream": False,
                "format": self.SCHEMA, "options": {"num_predict": 200, "temperature": 1, "seed": seed}})
            self.assertEqual(status, 200, data)
            ans = json.loads(data)
            self.tokens[0] += ans["prompt_eval_count"]  # Ollama's usage, for test_zz_metrics
            self.tokens[1] += ans["eval_count"]
            complete += self.check_doc(ans["message"]["content"],
                                       "stop" if ans.get("done_reason") == "stop" else "length", self.SCHEMA)
        self.assertGreater(complete, 3)

    def test_errors(self):
        chat = "/v1/chat/completions"
        m = [{"role": "user", "content": "hi"}]
        self.check_error(chat, {"model": "nope", "messages": m}, 404, "model_not_found")
        self.check_error(chat, b"{not json", 400)
        self.check_error(chat, b"[1,2]", 400)
        self.check_error(chat, {"messages": m}, 400, param="model")
        self.check_error(chat, {"model": "tiny"}, 400, param="messages")
        self.check_error(chat, {"model": "tiny", "messages": []}, 400, param="messages")
        self.check_error(chat, {"model": "tiny", "messages": m, "n": 2}, 400, param="n")
        self.check_error(chat, {"model": "tiny", "messages": m, "tools": [{"type": "function"}]}, 400, param="tools")
        self.check_error(chat, {"model": "tiny", "messages": m, "max_tokens": 0}, 400, param="max_tokens")
        self.check_error(chat, {"model": "tiny", "messages": m, "temperature": "hot"}, 400, param="temperature")
        self.check_error(chat, {"model": "tiny", "messages": m, "stop": ["a"] * 9}, 400, param="stop")
        self.check_error(chat, {"model": "tiny", "messages": [{"role": "tool", "content": 7}]}, 400)
        # tools need the model's own template; tiny renders with a named family's
        self.check_error(chat, {"model": "tiny", "messages": m, "tools": [
            {"type": "function", "function": {"name": "f"}}]}, 400)
        self.check_error(chat, {"model": "tiny", "messages": m, "response_format": {
            "type": "json_schema", "json_schema": {"name": "x", "schema": {"type": "string", "pattern": "a"}}}},
            400, param="response_format")
        self.check_error(chat, {"model": "tiny", "messages": [{"role": "user", "content": "a\u0000b"}]}, 400)
        self.check_error("/v1/completions", {"model": "tiny", "prompt": [1, 2, 3]}, 400, param="prompt")
        # a prompt longer than the context (512 tokens)
        self.check_error("/v1/completions", {"model": "tiny", "prompt": "word " * 2000}, 400,
                         "context_length_exceeded")
        st, headers, data = self.gw.request("GET", "/v1/chat/completions")
        self.count("/v1/chat/completions", st)
        self.assertEqual(st, 405)
        self.assertEqual(headers["allow"], "POST")
        st, _, data = self.gw.request("GET", "/v2/nothing")
        self.count("(other)", st)
        self.assertEqual(st, 404)
        self.assertTrue(self.gw.alive())

    def test_keys(self):
        m = {"model": "tiny", "messages": [{"role": "user", "content": "hi"}], "max_tokens": 2}
        _, err = self.check_error("/v1/chat/completions", m, 401, "invalid_api_key", key=None)
        _, err = self.check_error("/v1/chat/completions", m, 401, "invalid_api_key", key="sk-not-a-key-at-all-000000")
        st, _, _ = self.gw.request("GET", "/v1/models", key=KEY[:-1] + "x")
        self.count("/v1/models", st)
        self.assertEqual(st, 401)
        st, _, _ = self.gw.request("GET", "/metrics", key=None)
        self.assertEqual(st, 401)
        self.count("/metrics", st)
        # the second key works, and the journal event carries the key's name
        st, _, _ = self.post("/v1/chat/completions", m, key=KEY2)
        self.assertEqual(st, 200)
        # the event is logged once the response is out: wait for it
        deadline = time.time() + 10
        while time.time() < deadline:
            names = {e.get("key") for e in self.gw.events("http_request")}
            if "key2" in names:
                break
            time.sleep(0.05)
        self.assertIn("alice", names)
        self.assertIn("key2", names)  # no name in the file: keyN, N its place

    # ------------------------------------------------------------ cancelling

    def worker_pid(self):
        ev = daemon_request(self.d, {"v": 1, "id": "s", "type": "stats"})[-1]
        return ev["workers"][0]["pid"], ev

    def test_disconnect_cancels(self):
        """A client that goes away cancels its request in the pool: with
        the worker stopped, the request is surely still running when the
        client leaves."""
        pid, before = self.worker_pid()
        os.kill(pid, signal.SIGSTOP)
        try:
            body = json.dumps({"model": "tiny", "prompt": PROMPT, "max_tokens": 50, "stream": True}).encode()
            s = socket.create_connection(("127.0.0.1", self.gw.port), timeout=30)
            s.sendall(b"POST /v1/completions HTTP/1.1\r\nHost: t\r\nAuthorization: Bearer " + KEY.encode() +
                      b"\r\nContent-Type: application/json\r\nContent-Length: " + str(len(body)).encode() +
                      b"\r\n\r\n" + body)
            deadline = time.time() + 30
            while time.time() < deadline:
                _, st = self.worker_pid()
                if st["workers"][0]["active"] == 1:
                    break
                time.sleep(0.05)
            self.assertEqual(st["workers"][0]["active"], 1, st)
            s.close()
            deadline = time.time() + 30
            while time.time() < deadline:
                m = metrics(self.gw.request("GET", "/metrics")[2].decode())
                if m.get(("lmpool_http_client_gone_total", frozenset()), 0) >= 1:
                    break
                time.sleep(0.05)
            self.count("/metrics", 200)
            self.assertGreaterEqual(m[("lmpool_http_client_gone_total", frozenset())], 1)
            self.made[("/v1/completions", "499")] = self.made.get(("/v1/completions", "499"), 0) + 1
        finally:
            os.kill(pid, signal.SIGCONT)
        # the daemon ended it as cancelled (an error), not as served
        deadline = time.time() + 30
        while time.time() < deadline:
            _, after = self.worker_pid()
            if after["requests"]["errors"] > before["requests"]["errors"] and after["workers"][0]["active"] == 0:
                break
            time.sleep(0.05)
        self.assertGreater(after["requests"]["errors"], before["requests"]["errors"], after)
        self.assertEqual(after["requests"]["ok"], before["requests"]["ok"], after)

    def test_daemon_busy_is_429(self):
        """limits.client_requests counts per uid on ipc: with one request of
        ours held by a stopped worker and the limit at 1, the gateway's is
        refused by the daemon with busy, which is 429 with Retry-After."""
        d = Daemon(client_requests=1, router_extra="  heartbeat_ms: 60000\n")
        gw = None
        try:
            d2 = d
            gw = Gateway(d2, http="  key_requests: 16\n")
            gw.wait_healthy()
            ev = daemon_request(d2, {"v": 1, "id": "s", "type": "stats"})[-1]
            pid = ev["workers"][0]["pid"]
            os.kill(pid, signal.SIGSTOP)
            s = zmq.Context.instance().socket(zmq.DEALER)
            s.setsockopt(zmq.LINGER, 0)
            s.connect(d2.endpoint)
            try:
                s.send_json({"v": 1, "id": "held", "type": "generate", "model": "tiny", "prompt": "x"})
                deadline = time.time() + 30
                while time.time() < deadline:
                    st = daemon_request(d2, {"v": 1, "id": "s", "type": "stats"})[-1]
                    if st["workers"][0]["active"] == 1:
                        break
                    time.sleep(0.05)
                self.assertEqual(st["workers"][0]["active"], 1, st)
                st, headers, data = gw.request("POST", "/v1/completions",
                                               {"model": "tiny", "prompt": "hi", "max_tokens": 2})
                self.assertEqual(st, 429, data)
                self.assertEqual(headers["retry-after"], "1")
                self.assertEqual(json.loads(data)["error"]["code"], "server_busy")
            finally:
                os.kill(pid, signal.SIGCONT)
                s.close()
        finally:
            if gw:
                gw.stop()
            d.stop()

    # ---------------------------------------------------------------- Ollama

    def test_ollama(self):
        st, _, ans = self.gw.json("GET", "/api/version")
        self.count("/api/version", st)
        self.assertEqual(st, 200)
        self.assertIn("version", ans)
        st, _, ans = self.gw.json("GET", "/api/tags")
        self.count("/api/tags", st)
        self.assertEqual([m["name"] for m in ans["models"]], ["tiny"])
        st, _, ans = self.gw.json("POST", "/api/show", {"model": "tiny"})
        self.count("/api/show", st)
        self.assertEqual((st, ans["details"]["family"], ans["model_info"]["lmpool.context_length"]), (200, "llama", 512))
        st, _, ans = self.gw.json("POST", "/api/show", {"name": "nope"})
        self.count("/api/show", st)
        self.assertEqual(st, 404)
        self.assertIn("not found", ans["error"])
        st, _, ans = self.gw.json("GET", "/api/ps")
        self.count("/api/ps", st)
        self.assertEqual([m["name"] for m in ans["models"]], ["tiny"])
        msgs = [{"role": "user", "content": "Say hello"}]
        st, headers, data = self.gw.request("POST", "/api/chat",
                                            {"model": "tiny", "messages": msgs, "options": {"num_predict": 8,
                                                                                            "temperature": 0}})
        self.count("/api/chat", st)
        self.assertEqual(st, 200)
        self.assertEqual(headers["content-type"], "application/x-ndjson")
        lines = [json.loads(x) for x in data.decode().splitlines()]
        self.assertTrue(all(not x["done"] for x in lines[:-1]))
        self.assertTrue(lines[-1]["done"])
        self.assertEqual(lines[-1]["eval_count"], 8 if lines[-1]["done_reason"] == "length" else lines[-1]["eval_count"])
        text = "".join(x["message"]["content"] for x in lines)
        direct, ev = self.direct_text("chat", {"messages": msgs, "max_tokens": 8, "temperature": 0})
        self.assertEqual(text, direct)
        self.assertEqual(lines[-1]["prompt_eval_count"], ev["usage"]["prompt_tokens"])
        self.tokens[0] += ev["usage"]["prompt_tokens"]
        self.tokens[1] += ev["usage"]["generated_tokens"]
        st, _, ans = self.gw.json("POST", "/api/generate",
                                  {"model": "tiny", "prompt": PROMPT, "raw": True, "stream": False,
                                   "options": {"num_predict": 6, "temperature": 0}})
        self.count("/api/generate", st)
        self.assertEqual(st, 200)
        direct, ev = self.direct_text("generate", {"prompt": PROMPT, "max_tokens": 6, "temperature": 0})
        self.assertEqual(ans["response"], direct)
        self.assertTrue(ans["done"])
        self.tokens[0] += ans["prompt_eval_count"]
        self.tokens[1] += ans["eval_count"]
        st, _, ans = self.gw.json("POST", "/api/generate", {"model": "tiny"})
        self.count("/api/generate", st)
        self.assertEqual((st, ans["done_reason"]), (200, "load"))
        st, _, ans = self.gw.json("POST", "/api/chat", {"model": "nope", "messages": msgs})
        self.count("/api/chat", st)
        self.assertEqual(st, 404)
        self.assertIn("not found", ans["error"])

    # ----------------------------------------------------------------- curl

    def test_curl(self):
        out = subprocess.run(["curl", "-sS", "-N", "-H", f"Authorization: Bearer {KEY}",
                              f"http://127.0.0.1:{self.gw.port}/v1/chat/completions", "-d",
                              json.dumps({"model": "tiny", "messages": [{"role": "user", "content": "hi"}],
                                          "max_tokens": 5, "stream": True,
                                          "stream_options": {"include_usage": True}})],
                             capture_output=True, timeout=60)
        self.assertEqual(out.returncode, 0, out.stderr)
        evs = sse_events(out.stdout)
        self.assertEqual(evs[-1], "[DONE]")
        self.count("/v1/chat/completions", 200, evs[-2]["usage"])
        out = subprocess.run(["curl", "-sS", "-o", "/dev/null", "-w", "%{http_code}",
                              f"http://127.0.0.1:{self.gw.port}/health"], capture_output=True, timeout=60)
        self.assertEqual(out.stdout, b"200")

    # -------------------------------------------------------- /metrics last

    def test_zz_metrics(self):
        """Every request the tests above made, by endpoint and code, and the
        tokens of those that were served, as /metrics counts them. Runs
        last (unittest orders by name)."""
        st, headers, data = self.gw.request("GET", "/metrics")
        self.assertEqual(st, 200)
        self.assertTrue(headers["content-type"].startswith("text/plain"))
        m = metrics(data.decode())
        got = {}
        for (name, labels), v in m.items():
            if name == "lmpool_http_requests_total":
                lab = dict(labels)
                if lab["endpoint"] in ("/health",):
                    continue
                k = (lab["endpoint"], lab["code"])
                got[k] = got.get(k, 0) + int(v)
        want = dict(self.made)
        # the metrics scrapes themselves: counted when they end, so this one is not
        self.assertEqual({k: v for k, v in got.items() if k[0] != "/metrics"},
                         {k: v for k, v in want.items() if k[0] != "/metrics"})
        self.assertEqual(got.get(("/metrics", "200"), 0), want.get(("/metrics", "200"), 0))
        self.assertEqual(m[("lmpool_http_prompt_tokens_total", frozenset({("model", "tiny")}))], self.tokens[0])
        self.assertEqual(m[("lmpool_http_generated_tokens_total", frozenset({("model", "tiny")}))], self.tokens[1])
        served = sum(v for (p, c), v in want.items() if c == "200" and p in (
            "/v1/chat/completions", "/v1/completions", "/api/chat", "/api/generate"))
        # the load-only /api/generate generates nothing: no latency sample
        self.assertEqual(m[("lmpool_http_request_duration_seconds_count", frozenset())], served - 1)
        self.assertEqual(m[("lmpool_http_ttft_seconds_count", frozenset())], served - 1)
        self.assertEqual(m[("lmpool_daemon_up", frozenset())], 1)
        self.assertIn(("lmpool_queue_length", frozenset()), m)
        w = [k for k in m if k[0] == "lmpool_worker_pss_bytes"]
        self.assertEqual(len(w), 1)
        self.assertGreater(m[w[0]], 0)
        self.assertIn(("lmpool_worker_restarts_total", w[0][1]), m)
        # the daemon's conversation placement and response cache, as its stats say
        st = daemon_request(self.d, {"v": 1, "id": "s", "type": "stats"})[-1]
        self.assertEqual(m[("lmpool_daemon_affinity_total", frozenset({("result", "new")}))], st["affinity"]["new"])
        self.assertEqual(m[("lmpool_daemon_cache_requests_total", frozenset({("result", "hits")}))],
                         st["cache"]["hits"])
        self.assertGreater(m[("lmpool_daemon_cache_entries", frozenset())], 0)


class LimitsTest(unittest.TestCase):
    """The per-key limits and a daemon that does not answer, each with a
    gateway of its own."""

    @classmethod
    def setUpClass(cls):
        cls.d = Daemon()

    @classmethod
    def tearDownClass(cls):
        cls.d.stop()

    def test_rate_limit(self):
        gw = Gateway(self.d, http="  key_rate: 0.01\n  key_burst: 2\n")
        try:
            gw.wait_healthy()
            body = {"model": "tiny", "prompt": "hi", "max_tokens": 1}
            self.assertEqual(gw.request("POST", "/v1/completions", body)[0], 200)
            self.assertEqual(gw.request("POST", "/v1/completions", body)[0], 200)
            st, headers, data = gw.request("POST", "/v1/completions", body)
            self.assertEqual(st, 429, data)
            self.assertGreaterEqual(int(headers["retry-after"]), 1)
            self.assertEqual(json.loads(data)["error"]["code"], "rate_limit_exceeded")
            self.assertIn("http.key_rate", json.loads(data)["error"]["message"])
            # another key has its own bucket
            self.assertEqual(gw.request("POST", "/v1/completions", body, key=KEY2)[0], 200)
            m = metrics(gw.request("GET", "/metrics")[2].decode())
            self.assertEqual(m[("lmpool_http_key_limited_total", frozenset({("key", "alice"), ("limit", "rate")}))], 1)
            self.assertEqual(m[("lmpool_http_key_requests_total", frozenset({("key", "alice")}))], 2)
        finally:
            self.assertEqual(gw.stop(), 0)

    def test_no_daemon(self):
        """Nothing listens at the endpoint: requests wait until the
        gateway's deadline (504), the concurrency limit holds meanwhile,
        /health says 503 with the reason, /metrics says the daemon is down."""
        gw = Gateway(self.d, endpoint=f"ipc://{self.d.dir}/nothing.sock",
                     http="  key_requests: 1\n  request_timeout_ms: 500\n")
        try:
            st, _, data = gw.request("GET", "/health", key=None, timeout=30)
            self.assertEqual(st, 503)
            self.assertIn("did not answer", json.loads(data)["reason"])
            c = gw.conn(60)
            c.request("POST", "/v1/completions", body=json.dumps({"model": "tiny", "prompt": "hi"}),
                      headers={"Authorization": f"Bearer {KEY}"})
            # the first is in flight (no daemon answers it): the second is over the key's limit
            deadline = time.time() + 10
            st = None
            while time.time() < deadline:
                m = metrics(gw.request("GET", "/metrics", timeout=30)[2].decode())
                if m[("lmpool_http_requests_in_flight", frozenset())] == 1:
                    break
                time.sleep(0.05)
            self.assertEqual(m[("lmpool_daemon_up", frozenset())], 0)
            st, headers, data = gw.request("POST", "/v1/completions", {"model": "tiny", "prompt": "hi"})
            self.assertEqual(st, 429, data)
            self.assertIn("http.key_requests", json.loads(data)["error"]["message"])
            r = c.getresponse()
            self.assertEqual(r.status, 504)
            self.assertEqual(json.loads(r.read())["error"]["code"], "timeout")
        finally:
            self.assertEqual(gw.stop(), 0)

    def test_daemon_dies(self):
        """lmpoold killed with a request in flight: the request ends at
        once with 502 (not at its deadline), /health says 503, the gateway
        lives on."""
        d = Daemon(router_extra="  heartbeat_ms: 60000\n")
        gw = None
        worker = None
        try:
            gw = Gateway(d)
            gw.wait_healthy()
            st = daemon_request(d, {"v": 1, "id": "s", "type": "stats"})[-1]
            worker = st["workers"][0]["pid"]
            os.kill(worker, signal.SIGSTOP)
            c = gw.conn(60)
            c.request("POST", "/v1/completions", body=json.dumps({"model": "tiny", "prompt": "hi"}),
                      headers={"Authorization": f"Bearer {KEY}"})
            deadline = time.time() + 30
            while time.time() < deadline:
                st = daemon_request(d, {"v": 1, "id": "s", "type": "stats"})[-1]
                if st["workers"][0]["active"] == 1:
                    break
                time.sleep(0.05)
            self.assertEqual(st["workers"][0]["active"], 1)
            d.proc.kill()
            d.proc.wait()
            os.kill(worker, signal.SIGKILL)
            worker = None
            r = c.getresponse()
            self.assertEqual(r.status, 502)
            self.assertIn("connection to lmpoold was lost", json.loads(r.read())["error"]["message"])
            st, _, _ = gw.request("GET", "/health", key=None)
            self.assertEqual(st, 503)
            self.assertTrue(gw.alive())
            m = metrics(gw.request("GET", "/metrics")[2].decode())
            self.assertEqual(m[("lmpool_http_daemon_disconnects_total", frozenset())], 1)
        finally:
            if worker:
                os.kill(worker, signal.SIGKILL)
            if gw:
                self.assertEqual(gw.stop(), 0)
            d.stop()

    def test_reload_keys(self):
        """SIGHUP reloads the key file: a new key works, a removed one is
        refused, a kept one keeps its bucket; a bad file keeps the old keys."""
        gw = Gateway(self.d, http="  key_rate: 0.01\n  key_burst: 1\n")
        try:
            gw.wait_healthy()
            body = {"model": "tiny", "prompt": "hi", "max_tokens": 1}
            self.assertEqual(gw.request("POST", "/v1/completions", body)[0], 200)
            self.assertEqual(gw.request("POST", "/v1/completions", body)[0], 429)  # alice's bucket is empty
            new = "sk-lmpool-new-key-000000000000"
            with open(gw.keys, "w") as f:
                f.write(f"{KEY} alice\n{new} carol\n")
            gw.proc.send_signal(signal.SIGHUP)
            deadline = time.time() + 10
            while time.time() < deadline and not gw.events("keys_reloaded"):
                time.sleep(0.05)
            self.assertEqual(gw.events("keys_reloaded")[0]["keys"], "2")
            self.assertEqual(gw.request("POST", "/v1/completions", body, key=new)[0], 200)
            self.assertEqual(gw.request("POST", "/v1/completions", body, key=KEY2)[0], 401)  # removed
            self.assertEqual(gw.request("POST", "/v1/completions", body)[0], 429)  # still empty
            with open(gw.keys, "w") as f:
                f.write("short\n")
            gw.proc.send_signal(signal.SIGHUP)
            deadline = time.time() + 10
            while time.time() < deadline and not gw.events("keys_reload_failed"):
                time.sleep(0.05)
            self.assertIn(":1: a key must be", gw.events("keys_reload_failed")[0]["error"])
            self.assertEqual(gw.request("GET", "/v1/models", key=new)[0], 200)
        finally:
            self.assertEqual(gw.stop(), 0)

    def test_error_mid_stream(self):
        """A worker killed after the first token: the stream (status 200
        already sent) ends with an error event and no [DONE] (OpenAI), or an
        {"error"} line (Ollama)."""
        d = Daemon(deep=True)
        gw = None
        try:
            gw = Gateway(d)
            gw.wait_healthy()
            for path, body, ollama in (
                    ("/v1/completions", {"model": "deep", "prompt": "Once", "max_tokens": 2000, "stream": True,
                                         "ignore_eos": True}, False),
                    ("/api/generate", {"model": "deep", "prompt": "Once", "raw": True,
                                       "options": {"num_predict": 2000, "ignore_eos": True}}, True)):
                st = daemon_request(d, {"v": 1, "id": "s", "type": "stats"})[-1]
                pid = [w["pid"] for w in st["workers"] if w["model"] == "deep"][0]
                data = json.dumps(body).encode()
                s = socket.create_connection(("127.0.0.1", gw.port), timeout=60)
                s.sendall(f"POST {path} HTTP/1.1\r\nHost: t\r\nAuthorization: Bearer {KEY}\r\n"
                          f"Content-Length: {len(data)}\r\nConnection: close\r\n\r\n".encode() + data)
                got = b""
                while b"\r\n\r\n" not in got or (b'"text":' not in got and b'"response":' not in got):
                    b = s.recv(65536)
                    self.assertTrue(b, got)
                    got += b
                os.kill(pid, signal.SIGKILL)  # the request is running: its first token is here
                while True:
                    b = s.recv(65536)
                    if not b:
                        break
                    got += b
                s.close()
                self.assertTrue(got.startswith(b"HTTP/1.1 200"), got[:100])
                self.assertNotIn(b"[DONE]", got)
                self.assertIn(b"worker_lost" if not ollama else b'{"error":', got)
                # the worker is respawned before the next round
                deadline = time.time() + 60
                while time.time() < deadline:
                    st = daemon_request(d, {"v": 1, "id": "s", "type": "stats"})[-1]
                    if all(w["state"] == "ready" for w in st["workers"]) and \
                            [w["pid"] for w in st["workers"] if w["model"] == "deep"][0] != pid:
                        break
                    time.sleep(0.1)
            self.assertTrue(gw.alive())
        finally:
            if gw:
                self.assertEqual(gw.stop(), 0)
            d.stop()

    def test_refuses_to_start_without_keys(self):
        gw_dir = Gateway(self.d, loopback=True, keys="")  # loopback without key: starts
        try:
            st, _, _ = gw_dir.request("GET", "/v1/models", key=None)
            self.assertEqual(st, 200)
        finally:
            gw_dir.stop()
        with self.assertRaises(RuntimeError) as e:
            Gateway(self.d, keys="")
        self.assertIn("no API keys", str(e.exception))
        with self.assertRaises(RuntimeError) as e:
            Gateway(self.d, keys="short\n")
        self.assertIn(":2: a key must be", str(e.exception))


if __name__ == "__main__":
    harness.skip_unless_ready()
    unittest.main(verbosity=2)
