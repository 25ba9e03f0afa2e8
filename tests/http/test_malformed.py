#!/usr/bin/env python3
"""Malformed and oversized HTTP on raw sockets against lmpool-http (with a
real lmpoold behind it): each gets a clear refusal or a closed connection,
never a crash, and the gateway keeps serving after every one."""

import json
import os
import socket
import sys
import time
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness  # noqa: E402
from harness import KEY, Daemon, Gateway  # noqa: E402

AUTH = f"Authorization: Bearer {KEY}\r\n".encode()


def status_of(resp):
    line = resp.split(b"\r\n", 1)[0]
    parts = line.split()
    return int(parts[1]) if len(parts) >= 2 and parts[0].startswith(b"HTTP/") else None


class MalformedTest(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.d = Daemon()
        try:
            cls.gw = Gateway(cls.d, http="  max_body: 4K\n  max_header: 8K\n  idle_timeout_s: 2\n"
                                         "  key_rate: 1000\n  key_burst: 1000\n")
            cls.gw.wait_healthy()
        except Exception:
            cls.d.stop()  # tearDownClass does not run after a failed setUpClass
            raise

    @classmethod
    def tearDownClass(cls):
        rc = cls.gw.stop()
        cls.d.stop()
        assert rc == 0, f"lmpool-http exited with {rc}"

    def tearDown(self):
        # after each case: still alive and serving a real request
        self.assertTrue(self.gw.alive(), self.gw.logs())
        # requests of clients that went away are cancelled and let go of
        deadline = time.time() + 30
        while time.time() < deadline:
            m = harness.metrics(self.gw.request("GET", "/metrics")[2].decode())
            if m[("lmpool_http_requests_in_flight", frozenset())] == 0:
                break
            time.sleep(0.05)
        self.assertEqual(m[("lmpool_http_requests_in_flight", frozenset())], 0)
        st, _, data = self.gw.request("POST", "/v1/completions", {"model": "tiny", "prompt": "hi", "max_tokens": 2})
        self.assertEqual(st, 200, data)

    def post_raw(self, body, extra=b"", path=b"/v1/completions"):
        return self.gw.raw(b"POST " + path + b" HTTP/1.1\r\nHost: t\r\n" + AUTH + extra +
                           b"Content-Length: " + str(len(body)).encode() + b"\r\nConnection: close\r\n\r\n" + body)

    def test_garbage_request_line(self):
        for junk in (b"\x00\x01\x02\r\n\r\n", b"GARBAGE\r\n\r\n", b"GET\r\n\r\n", b"GET / HTTP/9.9\r\n\r\n",
                     b"\xff\xfe\xfd / HTTP/1.1\r\n\r\n", b"GET / HTTP/1.1\r\nNoColonHeader\r\n\r\n"):
            resp = self.gw.raw(junk)
            st = status_of(resp)
            self.assertTrue(st is None or 400 <= st < 600, (junk, resp[:200]))

    def test_header_too_large(self):
        resp = self.gw.raw(b"GET /v1/models HTTP/1.1\r\nHost: t\r\n" + AUTH + b"X-Big: " + b"a" * 20000 + b"\r\n\r\n")
        self.assertIn(status_of(resp), (413, 431, None), resp[:200])
        many = b"".join(b"X-H%d: v\r\n" % i for i in range(3000))
        resp = self.gw.raw(b"GET /v1/models HTTP/1.1\r\nHost: t\r\n" + many + b"\r\n")
        self.assertIn(status_of(resp), (413, 431, None), resp[:200])

    def test_uri_too_long(self):
        resp = self.gw.raw(b"GET /" + b"a" * 20000 + b" HTTP/1.1\r\nHost: t\r\n\r\n")
        self.assertIn(status_of(resp), (414, 431, None), resp[:200])

    def test_body_too_large_announced(self):
        resp = self.gw.raw(b"POST /v1/completions HTTP/1.1\r\nHost: t\r\n" + AUTH +
                           b"Content-Length: 100000\r\n\r\n" + b"{" * 5000)
        self.assertEqual(status_of(resp), 413, resp[:300])
        self.assertIn(b"http.max_body", resp)

    def test_body_too_large_chunked(self):
        chunk = b"{" * 1000
        body = b"".join(b"%x\r\n" % len(chunk) + chunk + b"\r\n" for _ in range(10)) + b"0\r\n\r\n"
        resp = self.gw.raw(b"POST /v1/completions HTTP/1.1\r\nHost: t\r\n" + AUTH +
                           b"Transfer-Encoding: chunked\r\n\r\n" + body)
        # over the limit without a Content-Length: the connection is closed
        self.assertIn(status_of(resp), (None, 413), resp[:300])

    def test_chunked_within_limit(self):
        body = json.dumps({"model": "tiny", "prompt": "Once", "max_tokens": 2}).encode()
        chunks = b"".join(b"%x\r\n" % len(body[i:i + 7]) + body[i:i + 7] + b"\r\n" for i in range(0, len(body), 7))
        resp = self.gw.raw(b"POST /v1/completions HTTP/1.1\r\nHost: t\r\n" + AUTH +
                           b"Transfer-Encoding: chunked\r\nConnection: close\r\n\r\n" + chunks + b"0\r\n\r\n")
        self.assertEqual(status_of(resp), 200, resp[:300])

    def test_bad_chunked_encoding(self):
        resp = self.gw.raw(b"POST /v1/completions HTTP/1.1\r\nHost: t\r\n" + AUTH +
                           b"Transfer-Encoding: chunked\r\n\r\nZZZZ\r\nabc\r\n0\r\n\r\n")
        self.assertIn(status_of(resp), (None, 400), resp[:300])

    def test_bad_bodies(self):
        for body in (b"", b"{", b"null", b"\"s\"", b"{\"model\":", b"\xff\xfe\x00\x00", b"{\"model\":\"\xc3\x28\"}",
                     b"[" * 2000 + b"]" * 2000, b"{\"model\":\"tiny\",\"prompt\":\"a\\u0000b\"}",
                     b"{\"model\":\"tiny\",\"prompt\":\"\\ud800\"}"):
            resp = self.post_raw(body)
            self.assertEqual(status_of(resp), 400, (body[:40], resp[:300]))
            self.assertIn(b"\"error\"", resp)

    def test_content_length_lies(self):
        # shorter than said: the gateway waits, then its idle timeout closes
        # the connection (empty, or a 408) before ours would raise
        s = socket.create_connection(("127.0.0.1", self.gw.port), timeout=30)
        s.sendall(b"POST /v1/completions HTTP/1.1\r\nHost: t\r\n" + AUTH + b"Content-Length: 100\r\n\r\n{\"a\":")
        data = s.recv(1000)
        s.close()
        self.assertIn(status_of(data), (None, 408), data)
        # a bad Content-Length
        resp = self.gw.raw(b"POST /v1/completions HTTP/1.1\r\nHost: t\r\n" + AUTH + b"Content-Length: -5\r\n\r\n")
        self.assertIn(status_of(resp), (None, 400), resp[:200])

    def test_pipelined(self):
        req = (b"GET /health HTTP/1.1\r\nHost: t\r\n\r\n") * 5
        resp = self.gw.raw(req + b"GET /health HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n")
        self.assertEqual(resp.count(b"HTTP/1.1 200"), 6, resp[:500])

    def test_slow_and_abandoned(self):
        # many connections opened and dropped half-way
        for i in range(50):
            s = socket.create_connection(("127.0.0.1", self.gw.port), timeout=5)
            s.sendall(b"POST /v1/chat/completions HTTP/1.1\r\nHost: t\r\n" + AUTH + b"Content-Le")
            s.close()
        # streaming requests dropped right after sending
        body = json.dumps({"model": "tiny", "prompt": "Once upon", "max_tokens": 40, "stream": True}).encode()
        for i in range(10):
            s = socket.create_connection(("127.0.0.1", self.gw.port), timeout=5)
            s.sendall(b"POST /v1/completions HTTP/1.1\r\nHost: t\r\n" + AUTH + b"Content-Length: " +
                      str(len(body)).encode() + b"\r\n\r\n" + body)
            s.close()

    def test_methods(self):
        for method in (b"DELETE", b"PUT", b"PATCH", b"OPTIONS", b"FOO"):
            resp = self.gw.raw(method + b" /v1/chat/completions HTTP/1.1\r\nHost: t\r\n" + AUTH +
                               b"Connection: close\r\n\r\n")
            self.assertIn(status_of(resp), (405, 400, 501), resp[:200])


if __name__ == "__main__":
    harness.skip_unless_ready()
    unittest.main(verbosity=2)
