#!/usr/bin/env python3
"""Soak test of lmpoold: for LMPOOL_SOAK_SECONDS (default 60) a real daemon
serves clients with random parameters that also cancel, pipeline, read
slowly, disconnect in the middle of a stream and send hostile frames, while
its workers are killed at random with SIGKILL.

Checked at the end: every request of a client that stayed has exactly one
terminal event (`done` or `error`, any code; `cancelled` for a cancel) and
nothing after it; none is lost; the supervisor's descriptors did not grow
beyond a small bound and its RSS stayed bounded; `health` is ok again.
One summary line gives the figures (requests, kills, disconnects,
terminal events by code, lost, supervisor RSS and descriptors at start and
end)."""

import collections
import json
import os
import random
import signal
import sys
import threading
import time

import zmq

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from test_daemon import MODEL, Daemon, model_yaml  # noqa: E402

SECONDS = float(os.environ.get("LMPOOL_SOAK_SECONDS", "60"))
CLIENTS = int(os.environ.get("LMPOOL_SOAK_CLIENTS", "6"))
REQUEST_TIMEOUT_MS = 8000
# A request not ended by then is lost: its deadline plus a generous margin.
LOST_AFTER_S = REQUEST_TIMEOUT_MS / 1000 + 30
WORDS = ("the quick brown fox jumps over the lazy dog once upon a time there was a little "
         "model that served many clients at once and never lost a request").split()


def fd_count(pid):
    return len(os.listdir(f"/proc/{pid}/fd"))


def rss_bytes(pid):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    return 0


class Tally:
    """What every client saw, under one lock."""

    def __init__(self):
        self.lock = threading.Lock()
        self.requests = 0
        self.terminal = collections.Counter()
        self.lost = []
        self.duplicates = []
        self.after_terminal = []
        self.disconnects = 0
        self.hostile = collections.Counter()
        self.kills = 0
        self.errors = []

    def add(self, **kw):
        with self.lock:
            for k, v in kw.items():
                if isinstance(getattr(self, k), list):
                    getattr(self, k).append(v)
                elif isinstance(getattr(self, k), collections.Counter):
                    getattr(self, k)[v] += 1
                else:
                    setattr(self, k, getattr(self, k) + v)


def random_request(rng, rid, long=False):
    req = {"v": 1, "id": rid, "type": "generate", "model": "m",
           "prompt": " ".join(rng.choice(WORDS) for _ in range(rng.randint(1, 60))),
           "max_tokens": rng.randint(150, 400) if long else rng.randint(1, 48)}
    if rng.random() < 0.5:
        req["temperature"] = round(rng.uniform(0, 1.5), 2)
    if rng.random() < 0.3:
        req["top_k"] = rng.randint(0, 100)
    if rng.random() < 0.3:
        req["top_p"] = round(rng.uniform(0.05, 1.0), 2)
    if rng.random() < 0.2:
        req["stop"] = [rng.choice(WORDS)]
    if rng.random() < 0.2:
        req["stream"] = False
    if rng.random() < 0.3:
        req["ignore_eos"] = True
    if rng.random() < 0.2:
        req["seed"] = rng.randint(0, 2**31)
    if rng.random() < 0.1:
        req["timeout_ms"] = rng.randint(50, 3000)
    return req


class Client(threading.Thread):
    """One connection at a time; each round is one scenario."""

    def __init__(self, d, n, deadline, tally):
        super().__init__(daemon=True)
        self.d, self.n, self.deadline, self.tally = d, n, deadline, tally
        self.rng = random.Random(1000 + n)
        self.seq = 0

    def new_socket(self, slow=False):
        s = self.d.ctx.socket(zmq.DEALER)
        s.setsockopt(zmq.LINGER, 0)
        if slow:
            s.setsockopt(zmq.RCVHWM, 4)
            s.setsockopt(zmq.RCVBUF, 4096)
        s.connect(self.d.endpoint)
        return s

    def rid(self):
        self.seq += 1
        return f"c{self.n}-{self.seq}"

    def drain(self, s, pending, done, delay=0.0, stop_after=None):
        """Reads events until every id in pending has ended. pending maps id
        -> start time. Returns early (True) when stop_after(ev) says so."""
        while pending:
            oldest = min(pending.values())
            left = oldest + LOST_AFTER_S - time.time()
            if left <= 0 or not s.poll(int(min(left, 1.0) * 1000)):
                if left <= 0:
                    for rid in list(pending):
                        if pending[rid] <= time.time() - LOST_AFTER_S:
                            self.tally.add(lost=rid)
                            del pending[rid]
                continue
            ev = json.loads(s.recv())
            if delay:
                time.sleep(delay)
            rid = ev.get("id")
            terminal = ev["event"] != "token"
            if rid in done:
                self.tally.add(**{"duplicates" if terminal else "after_terminal": (rid, ev)})
                continue
            if rid not in pending:
                self.tally.add(errors=("event for an unknown id", ev))
                continue
            if terminal:
                code = "done" if ev["event"] == "done" else \
                    "cancel_ack" if ev["event"] == "cancelled" else ev.get("code", ev["event"])
                self.tally.add(terminal=code)
                del pending[rid]
                done.add(rid)
            if stop_after and stop_after(ev):
                return True
        return False

    def run(self):
        s = self.new_socket()
        done = set()
        try:
            while time.time() < self.deadline:
                kind = self.rng.choices(["plain", "pipeline", "cancel", "disconnect", "slow"],
                                        weights=[5, 2, 2, 2, 1])[0]
                if kind == "disconnect":
                    # Mid-stream (or before the first token): gone for good.
                    t = self.new_socket()
                    t.send(json.dumps(random_request(self.rng, self.rid(), long=True)).encode())
                    for _ in range(self.rng.randint(0, 3)):
                        if t.poll(2000):
                            t.recv()
                    t.close()
                    self.tally.add(requests=1, disconnects=1)
                    continue
                sock = self.new_socket(slow=True) if kind == "slow" else s
                pending = {}
                n = self.rng.randint(2, 4) if kind == "pipeline" else 1
                for _ in range(n):
                    rid = self.rid()
                    sock.send(json.dumps(random_request(self.rng, rid, long=kind in ("cancel", "slow"))).encode())
                    pending[rid] = time.time()
                    self.tally.add(requests=1)
                if kind == "cancel":
                    target = next(iter(pending))
                    want = self.rng.randint(0, 5)
                    seen = [0]

                    def enough(ev):
                        seen[0] += ev["event"] == "token"
                        return seen[0] >= want
                    if want == 0 or self.drain(sock, pending, done, stop_after=enough):
                        cid = self.rid()
                        sock.send(json.dumps({"v": 1, "id": cid, "type": "cancel", "target": target}).encode())
                        pending[cid] = time.time()
                self.drain(sock, pending, done, delay=self.rng.uniform(0.002, 0.02) if kind == "slow" else 0.0)
                if sock is not s:
                    sock.close()
        except Exception as e:  # noqa: BLE001 - reported in the summary
            self.tally.add(errors=("client crashed", repr(e)))
        finally:
            s.close()


class Hostile(threading.Thread):
    """Frames no client library would send."""

    def __init__(self, d, deadline, tally):
        super().__init__(daemon=True)
        self.d, self.deadline, self.tally = d, deadline, tally
        self.rng = random.Random(7)

    def run(self):
        frames = [
            [b"{not json"], [b""], [b"\x00\xff\xfe" * 100], [b"[]"], [b'{"v":1,"id":"x","type":"nope"}'],
            [b'{"v":1,"id":"x","type":"generate","model":"m","prompt":"a","top_p":7}'],
            [b'{"v":1,"id":"x","type":"generate","model":"m","prompt":"a","max_tokens":-1}'],
            [b"a", b"b", b"c", b"d", b"e", b"f"], [b'{"v":1,"id":"x"}', b"more"],
            [b'{"v":1,"id":"' + b"i" * 300 + b'","type":"health"}'],
            [b"{" * 5000], [b'{"v":1,"id":"x","type":"generate","model":"m","prompt":"' + b"a" * (2 << 20) + b'"}'],
            [b"x" * (5 << 20)],
        ]
        try:
            while time.time() < self.deadline:
                s = self.d.ctx.socket(zmq.DEALER)
                s.setsockopt(zmq.LINGER, 0)
                s.connect(self.d.endpoint)
                for _ in range(self.rng.randint(1, 5)):
                    msg = self.rng.choice(frames)
                    s.send_multipart(msg)
                    if s.poll(2000):
                        ev = json.loads(s.recv())
                        self.tally.add(hostile=ev.get("code", ev["event"]))
                    else:
                        self.tally.add(hostile="no answer")
                s.close()
                time.sleep(self.rng.uniform(0.05, 0.3))
        except Exception as e:  # noqa: BLE001
            self.tally.add(errors=("hostile crashed", repr(e)))


class Killer(threading.Thread):
    def __init__(self, d, deadline, tally):
        super().__init__(daemon=True)
        self.d, self.deadline, self.tally = d, deadline, tally
        self.rng = random.Random(11)

    def run(self):
        try:
            while time.time() < self.deadline:
                time.sleep(self.rng.uniform(0.5, 3.0))
                # Serving workers: workers.load_attempts of them killed
                # in a row before they are ready fail their model.
                ws = [w for w in self.d.stats()["workers"] if w["pid"] > 0 and w["state"] == "ready"]
                if ws:
                    try:
                        os.kill(self.rng.choice(ws)["pid"], signal.SIGKILL)
                        self.tally.add(kills=1)
                    except ProcessLookupError:
                        pass
        except Exception as e:  # noqa: BLE001
            self.tally.add(errors=("killer crashed", repr(e)))


def wait_health_ok(d, timeout=60):
    deadline = time.time() + timeout
    ev = None
    while time.time() < deadline:
        ev = d.request({"v": 1, "id": "h", "type": "health"})[-1]
        if ev["status"] == "ok":
            return ev
        time.sleep(0.2)
    return ev


def sanitized(pid):
    """ASan keeps freed memory in quarantine (up to 256 MiB): RSS says
    nothing about leaks there (LeakSanitizer does, at exit)."""
    with open(f"/proc/{pid}/maps") as f:
        return "libasan" in f.read()


def settled_fds(pid, timeout=10):
    """The descriptor count once closed connections are gone."""
    last, deadline = fd_count(pid), time.time() + timeout
    while time.time() < deadline:
        time.sleep(0.5)
        n = fd_count(pid)
        if n == last:
            return n
        last = n
    return last


def main():
    if not os.path.exists(MODEL):
        print("fixtures not found: skipped")
        return 77
    d = Daemon([model_yaml("m", MODEL, workers=3, slots=2)],
               limits=f"  queue_length: 16\n  client_requests: 4\n  request_timeout_ms: {REQUEST_TIMEOUT_MS}\n"
               # small, so that the slow readers overflow it now and then
               "  client_events: 64\n")
    try:
        d.wait_ready()
        # Warm the daemon up before the first figures.
        for i in range(6):
            try:
                d.request({"v": 1, "id": f"w{i}", "type": "generate", "model": "m", "prompt": "hello",
                           "max_tokens": 4})
            except TimeoutError:
                print(d.logs()[-6000:])
                raise
        pid = d.proc.pid
        fds0, rss0 = settled_fds(pid), rss_bytes(pid)
        tally = Tally()
        deadline = time.time() + SECONDS
        threads = [Client(d, i, deadline, tally) for i in range(CLIENTS)]
        threads += [Hostile(d, deadline, tally), Killer(d, deadline, tally)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(SECONDS + LOST_AFTER_S + 60)
        stuck = [t for t in threads if t.is_alive()]
        h = wait_health_ok(d)
        alive = d.proc.poll() is None
        fds1, rss1 = settled_fds(pid), rss_bytes(pid)
        st = d.stats()
        summary = {
            "seconds": SECONDS, "requests": tally.requests, "kills": tally.kills,
            "disconnects": tally.disconnects, "terminal": dict(sorted(tally.terminal.items())),
            "lost": len(tally.lost), "duplicates": len(tally.duplicates),
            "after_terminal": len(tally.after_terminal), "hostile": dict(sorted(tally.hostile.items())),
            "supervisor_fds": [fds0, fds1], "supervisor_rss_mib": [round(rss0 / 2**20, 1), round(rss1 / 2**20, 1)],
            "health": h and h["status"], "daemon_stats": st["requests"],
        }
        print("soak summary: " + json.dumps(summary))
        problems = []
        if not alive:
            problems.append("the daemon died")
        if stuck:
            problems.append(f"{len(stuck)} threads never finished")
        if tally.lost:
            problems.append(f"lost requests: {tally.lost[:10]}")
        if tally.duplicates or tally.after_terminal:
            problems.append(f"events after the terminal one: {(tally.duplicates + tally.after_terminal)[:10]}")
        if tally.errors:
            problems.append(f"client errors: {tally.errors[:10]}")
        if not h or h["status"] != "ok":
            problems.append(f"health at the end: {h}")
        if fds1 > fds0 + 8:
            problems.append(f"supervisor descriptors grew from {fds0} to {fds1}")
        if rss1 > rss0 + 64 * 2**20 and not sanitized(pid):
            problems.append(f"supervisor RSS grew from {rss0} to {rss1} bytes")
        if tally.kills == 0 and SECONDS >= 10:
            problems.append("no worker was killed")
        if sum(tally.terminal.values()) == 0:
            problems.append("no request ended")
        for p in problems:
            print("soak: FAIL: " + p)
        if problems:
            print(d.logs()[-4000:])
        return 1 if problems else 0
    finally:
        d.stop()


if __name__ == "__main__":
    sys.exit(main())
