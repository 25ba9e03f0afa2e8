#!/usr/bin/env python3
"""Bounds of lmpoold against clients that do not play fair: many idle
connections with a low NOFILE limit, a multipart message that never ends,
a client that reads too slowly, clients that vanish with requests in
flight or spread them over several connections, a prompt that grows when
escaped. Real daemons, raw pyzmq clients; the daemon side is read from
`stats`, its log and /proc.

Each test failed on the daemon before these bounds: it died of EMFILE, its
memory grew with the message, requests of a slow reader never ended,
orphaned requests ran to the end and several connections escaped
limits.client_requests, and the long prompt came back `internal`."""

import atexit
import json
import os
import resource
import shutil
import signal
import socket
import struct
import subprocess
import sys
import tempfile
import threading
import time
import unittest

import zmq

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import test_daemon  # noqa: E402
from test_daemon import DEEP, MODEL, Daemon, generate, model_yaml  # noqa: E402


LIVE = "  heartbeat_liveness: 20\n"


def daemon(models, **kw):
    """A Daemon whose workers' heartbeats have room: these tests load the
    machine (floods, a thousand connections), and liveness is not what they
    test."""
    kw.setdefault("router_extra", LIVE)
    return Daemon(models, **kw)


def start_with_nofile(models, soft, hard="unlimited", **kw):
    """A Daemon started under `prlimit --nofile=SOFT:HARD`: RLIMIT_NOFILE as
    systemd's default soft limit of 1024 would leave it."""
    d = tempfile.mkdtemp(prefix="lmpool-nofile-")
    wrapper = os.path.join(d, "lmpoold")
    if hard == "unlimited":
        hard = resource.getrlimit(resource.RLIMIT_NOFILE)[1]
    with open(wrapper, "w") as f:
        f.write(f'#!/bin/sh\nexec prlimit --nofile={soft}:{hard} -- "{test_daemon.DAEMON}" "$@"\n')
    os.chmod(wrapper, 0o755)
    real = test_daemon.DAEMON
    test_daemon.DAEMON = wrapper
    atexit.register(shutil.rmtree, d, True)
    try:
        return daemon(models, **kw)
    finally:
        test_daemon.DAEMON = real


def zmtp_dealer(path):
    """A raw ZMTP 3.0 peer (NULL mechanism, DEALER) on the ipc socket path:
    what a hostile client can send that libzmq itself never would, such as
    frames of a message whose last frame never comes."""
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.connect(path)
    s.sendall(b"\xff" + b"\x00" * 8 + b"\x7f" + b"\x03\x00" + b"NULL" + b"\x00" * 16 + b"\x00" + b"\x00" * 31)
    body = b"\x05READY" + b"\x0bSocket-Type" + struct.pack(">I", 6) + b"DEALER"
    s.sendall(bytes([0x04, len(body)]) + body)
    return s


def rss(pid):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    return 0


IDLE_CTX = zmq.Context()
IDLE_CTX.set(zmq.MAX_SOCKETS, 4096)


def idle_socket(d):
    s = IDLE_CTX.socket(zmq.DEALER)
    s.setsockopt(zmq.LINGER, 0)
    s.connect(d.endpoint)
    return s


def stop_checked(test, d):
    """Stops d and checks that it stopped cleanly, without a sanitizer's
    report (the ASan build runs these tests too)."""
    if d.proc.poll() is None:
        d.proc.send_signal(signal.SIGTERM)
        try:
            d.proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            pass
    logs, code = d.logs(), d.proc.poll()
    d.stop()
    test.assertNotRegex(logs, r"Sanitizer|runtime error:")
    test.assertEqual(code, 0, logs[-2000:])


def wait_for(cond, timeout=30.0, step=0.05):
    """Polls cond() until it is true; its last value."""
    deadline = time.time() + timeout
    while True:
        v = cond()
        if v or time.time() >= deadline:
            return v
        time.sleep(step)


class ClientLimitTests(unittest.TestCase):
    """Row 2: 1,100 idle connections, soft NOFILE 1024."""

    def test_thousand_idle_connections(self):
        d = start_with_nofile([model_yaml("m", MODEL)], 1024, limits="  max_clients: 2000\n")
        idle = []
        try:
            d.wait_ready()
            for _ in range(1100):
                idle.append(idle_socket(d))
            # Every one of them is accepted (limits.max_clients 2000 fits, the
            # daemon raised its soft limit), and a normal client is served.
            wait_for(lambda: d.proc.poll() is not None or len(os.listdir(f"/proc/{d.proc.pid}/fd")) > 1100)
            self.assertIsNone(d.proc.poll(), "lmpoold is alive: " + d.logs()[-300:])
            self.assertEqual(d.request(generate("m", max_tokens=3))[-1]["event"], "done")
            self.assertTrue(wait_for(lambda: d.stats()["clients"]["connected"] > 1100), "all counted")
            with open(f"/proc/{d.proc.pid}/limits") as f:
                line = [l for l in f if l.startswith("Max open files")][0]
            self.assertGreater(int(line.split()[3]), 1024, line)
        finally:
            for s in idle:
                s.close()
            stop_checked(self, d)

    def test_connections_past_the_limit_are_refused(self):
        d = start_with_nofile([model_yaml("m", MODEL)], 1024, limits="  max_clients: 100\n")
        idle = []
        try:
            d.wait_ready()
            for _ in range(300):
                idle.append(idle_socket(d))
            self.assertTrue(wait_for(lambda: d.events("clients_refused")), "refusals logged")
            self.assertIsNone(d.proc.poll(), "lmpoold is alive")
            refused = d.events("clients_refused")[0]
            self.assertEqual(refused["clients_limit"], "100")
            for s in idle:
                s.close()
            idle = []
            # Once they are gone, a normal client is served, and stats
            # counted the refusals.
            evs = wait_for(lambda: self._try(d, generate("m", max_tokens=3)))
            self.assertEqual(evs[-1]["event"], "done")
            st = d.stats()
            self.assertEqual(st["clients"]["limit"], 100)
            self.assertGreater(st["clients"]["refused"], 0)
            self.assertLessEqual(st["clients"]["connected"], 100)
        finally:
            for s in idle:
                s.close()
            stop_checked(self, d)

    def test_tcp_connections_count_too(self):
        with test_daemon.socket_free_port() as port:
            pass
        tcp = f"tcp://127.0.0.1:{port}"
        d = daemon([model_yaml("m", MODEL)], limits="  max_clients: 40\n", router_extra=f"  tcp: {tcp}\n" + LIVE)
        idle = []
        try:
            d.wait_ready()
            for _ in range(120):
                s = IDLE_CTX.socket(zmq.DEALER)
                s.setsockopt(zmq.LINGER, 0)
                s.connect(tcp)
                idle.append(s)
            self.assertTrue(wait_for(lambda: d.events("clients_refused")), "refusals logged")
            for s in idle:
                s.close()
            idle = []
            evs = wait_for(lambda: self._try(d, generate("m", max_tokens=3)))
            self.assertEqual(evs[-1]["event"], "done")
            st = d.stats()
            self.assertGreater(st["clients"]["refused"], 0)
            self.assertLessEqual(st["clients"]["connected"], 40)
        finally:
            for s in idle:
                s.close()
            stop_checked(self, d)

    @staticmethod
    def _try(d, req):
        try:
            return d.request(req, timeout=2.0)
        except TimeoutError:
            return None

    def test_limit_that_cannot_fit_is_refused_at_start(self):
        d = start_with_nofile([model_yaml("m", MODEL)], 1024, 4096, limits="  max_clients: 100000\n")
        try:
            self.assertNotEqual(d.proc.wait(timeout=30), 0)
            self.assertRegex(d.logs(), r"limits.max_clients 100000 .* needs \d+ file descriptors, but the hard "
                                       r"RLIMIT_NOFILE is 4096: raise LimitNOFILE=")
        finally:
            d.stop()


class EndlessMessageTests(unittest.TestCase):
    """Row 3: 1 MiB frames with MORE set, and no last frame."""

    def test_memory_stays_bounded(self):
        d = daemon([model_yaml("m", MODEL)], limits="  receive_memory: 64M\n")
        try:
            d.wait_ready()
            base = rss(d.proc.pid)
            sent = [0]

            def attacker():
                s = zmtp_dealer(d.endpoint[len("ipc://"):])
                s.settimeout(10)
                frame = b"\x03" + struct.pack(">Q", 1 << 20) + b"x" * (1 << 20)  # MORE, long
                try:
                    for _ in range(1536):  # 1.5 GiB
                        s.sendall(frame)
                        sent[0] += 1
                except OSError:
                    pass  # closed by the daemon
                s.close()

            t = threading.Thread(target=attacker)
            t.start()
            peak = base
            while t.is_alive():
                peak = max(peak, rss(d.proc.pid))
                time.sleep(0.01)
            t.join()
            peak = max(peak, rss(d.proc.pid))
            grown = (peak - base) / 2**20
            print(f"endless message: {sent[0]} MiB sent, supervisor RSS {base / 2**20:.0f} MiB -> "
                  f"peak {peak / 2**20:.0f} MiB", file=sys.stderr)
            self.assertLess(grown, 64 + 256, f"RSS grew by {grown:.0f} MiB")
            st = d.stats()
            self.assertGreaterEqual(st["clients"]["overlong_closed"], 1)
            self.assertTrue(d.events("clients_overlong"))
            # On a loaded machine the flood can delay a worker's heartbeats
            # past its liveness: serve once the pool is whole again.
            wait_for(lambda: d.request({"v": 1, "id": "h", "type": "health"})[-1]["status"] == "ok")
            ev = d.request(generate("m", max_tokens=3))[-1]
            self.assertEqual(ev["event"], "done", f"{ev}; worker_exited: {d.events('worker_exited')}")
        finally:
            stop_checked(self, d)


class SlowConsumerTests(unittest.TestCase):
    """Row 4: a client that reads slowly, 4 long streams (and a short request)."""

    def test_each_request_ends_once(self):
        d = daemon([model_yaml("m", DEEP, workers=1, slots=4, ctx=4096)],
                   limits="  client_events: 16\n  client_requests: 5\n")
        try:
            d.wait_ready()
            s = d.ctx.socket(zmq.DEALER)
            s.setsockopt(zmq.LINGER, 0)
            s.setsockopt(zmq.RCVHWM, 1)
            s.setsockopt(zmq.RCVBUF, 4096)
            s.connect(d.endpoint)
            ids = [f"slow{i}" for i in range(4)]
            for rid in ids:
                s.send(json.dumps(generate("m", id=rid, max_tokens=3500, ignore_eos=True)).encode())
            # And a short one without tokens, which waits for a slot: its
            # done is its only event, queued behind the others' whenever
            # it comes.
            s.send(json.dumps(generate("m", id="short", max_tokens=8, ignore_eos=True, stream=False)).encode())
            ids.append("short")
            # Not reading: wait until the worker has nothing left of them.
            self.assertTrue(wait_for(lambda: d.stats()["requests"]["total"] == 5 and
                                     all(w["active"] == 0 for w in d.stats()["workers"]), timeout=300, step=0.5))
            terminal = {rid: [] for rid in ids}
            after_terminal = []
            while any(len(v) == 0 for v in terminal.values()):
                self.assertTrue(s.poll(30000), f"every request ends: {terminal}")
                ev = json.loads(s.recv())
                if ev["event"] == "token":
                    if terminal[ev["id"]]:
                        after_terminal.append(ev)
                    continue
                terminal[ev["id"]].append(ev)
            # Nothing more comes: exactly one terminal event each.
            while s.poll(1000):
                ev = json.loads(s.recv())
                (after_terminal if ev["event"] == "token" else terminal[ev["id"]]).append(ev)
            self.assertEqual(after_terminal, [])
            codes = []
            for rid, evs in terminal.items():
                self.assertEqual(len(evs), 1, f"{rid}: {evs}")
                ev = evs[0]
                self.assertIn((ev["event"], ev.get("code")), [("done", None), ("error", "slow_consumer")], ev)
                codes.append(ev.get("code", "done"))
            self.assertEqual(terminal["short"][0]["event"], "done")
            self.assertEqual(terminal["short"][0]["usage"]["generated_tokens"], 8)
            st = d.stats()
            print(f"slow consumer: {codes}, stats {st['requests']}, events_dropped {st['events_dropped']}",
                  file=sys.stderr)
            self.assertGreaterEqual(codes.count("slow_consumer"), 1, "the client was slow")
            self.assertEqual(st["requests"]["slow_consumer"], codes.count("slow_consumer"))
            self.assertEqual(st["requests"]["ok"], codes.count("done"))
            self.assertGreaterEqual(st["events_dropped"], codes.count("slow_consumer"))
            self.assertEqual(st["requests"]["dropped"], 0)
            s.close()
        finally:
            stop_checked(self, d)


class GoneClientTests(unittest.TestCase):
    """Row 6: 3 connections x 4 requests, then gone."""

    def test_orphans_cancelled_and_identity_limited(self):
        d = daemon([model_yaml("m", DEEP, workers=1, slots=1, ctx=32768)],
                   limits="  client_requests: 4\n  queue_length: 16\n  max_tokens: 30000\n")
        try:
            d.wait_ready()
            socks = [d.socket() for _ in range(3)]
            for s in socks:
                for i in range(4):
                    s.send(json.dumps(generate("m", id=f"o{i}", max_tokens=30000, ignore_eos=True,
                                               stream=False)).encode())
            # 4 of the 12 are in, over the three connections; the other 8 are
            # over the limit of the same user (uid), whatever the connection.
            poller = zmq.Poller()
            for s in socks:
                poller.register(s, zmq.POLLIN)
            busy = []
            while len(busy) < 8:
                ready = poller.poll(30000)
                self.assertTrue(ready, f"answers so far {busy}")
                for s, _ in ready:
                    ev = json.loads(s.recv())
                    self.assertEqual((ev["event"], ev.get("code")), ("error", "busy"), ev)
                    self.assertIn("over all its connections", ev["message"])
                    busy.append(ev)
            self.assertEqual(d.stats()["queue"]["length"], 3, "one running, three queued")
            for s in socks:
                s.close()
            # Gone: their 4 requests are cancelled, none counted ok, and a
            # real client is served.
            st = wait_for(lambda: (lambda s: s if s["requests"]["client_gone"] >= 4 else None)(d.stats()))
            self.assertIsNotNone(st, "orphans cancelled")
            self.assertEqual(st["requests"]["client_gone"], 4)
            self.assertEqual(st["queue"]["length"], 0)
            self.assertEqual(d.request(generate("m", max_tokens=3), timeout=30)[-1]["event"], "done")
            st = d.stats()
            self.assertEqual(st["requests"]["ok"], 1)  # the real request alone
            self.assertEqual(st["requests"]["busy"], 8)
        finally:
            stop_checked(self, d)


class EscapedPromptTests(unittest.TestCase):
    """Row 11: a 200 KB prompt of control characters."""

    def test_control_characters(self):
        d = daemon([model_yaml("m", MODEL)], limits="  max_prompt_tokens: 1048576\n")
        try:
            d.wait_ready()
            raw = bytes((1 + i % 31) for i in range(200 * 1024)).replace(b"\x22", b"\x01").replace(b"\x5c", b"\x01")
            frame = (b'{"v":1,"id":"cc","type":"generate","model":"m","max_tokens":2,"prompt":"' + raw + b'"}')
            self.assertLess(len(frame), 1 << 20)
            ev = d.request(frame, timeout=60)[-1]
            self.assertEqual((ev["event"], ev.get("code")), ("error", "too_long"), ev)
            short = bytes((1 + i % 31) for i in range(100))
            ev = d.request(b'{"v":1,"id":"cs","type":"generate","model":"m","max_tokens":2,"prompt":"' + short
                           + b'"}')[-1]
            self.assertEqual(ev["event"], "done", ev)
        finally:
            stop_checked(self, d)


if __name__ == "__main__":
    if not os.path.exists(MODEL) or not os.path.exists(DEEP):
        print("fixtures not found: skipped")
        sys.exit(77)
    unittest.main(verbosity=2)
