"""Real processes for the HTTP gateway's tests: one lmpoold with the tiny
fixture model on a private ipc endpoint, and lmpool-http processes in
front of it (or in front of an endpoint where nothing listens), each on a
port the kernel picks. Clients are the standard library's http.client and
raw sockets, curl, and the npm packages in test_npm.py."""

import http.client
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import tempfile
import time

DAEMON = os.environ.get("LMPOOLD_BIN")
GATEWAY = os.environ.get("LMPOOL_GATEWAY_BIN")
FIXTURES = os.environ.get("LMPOOL_FIXTURES", "")
MODEL = os.path.join(FIXTURES, "models", "llama-q4_k_m.gguf")
DEEP = os.path.join(FIXTURES, "models", "llama-deep-q8_0.gguf")  # slower: for requests that must still run

KEY = "sk-lmpool-test-0123456789abcdef"
KEY2 = "sk-lmpool-other-zyxwvutsrqponml"


def skip_unless_ready():
    if not DAEMON or not GATEWAY:
        print("LMPOOLD_BIN and LMPOOL_GATEWAY_BIN must be set")
        raise SystemExit(1)
    if not os.path.exists(MODEL):
        print(f"fixture {MODEL} missing: skipped")
        raise SystemExit(77)


class Daemon:
    def __init__(self, limits="", router_extra="", model_extra="", client_requests=64, deep=False):
        self.dir = tempfile.mkdtemp(prefix="lmpool-http-")
        self.endpoint = f"ipc://{self.dir}/lmpool.sock"
        self.config = os.path.join(self.dir, "lmpool.yaml")
        with open(self.config, "w") as f:
            f.write(f"router:\n  endpoint: {self.endpoint}\n{router_extra}")
            f.write("log:\n  target: stderr\n")
            f.write(f"limits:\n  client_requests: {client_requests}\n" + limits)
            f.write(f"models:\n  - name: tiny\n    path: {MODEL}\n    ctx: 512\n    chat_template: chatml\n"
                    f"{model_extra}")
            if deep:
                f.write(f"  - name: deep\n    path: {DEEP}\n    ctx: 2048\n")
        self.log_path = os.path.join(self.dir, "lmpoold.log")
        self.log = open(self.log_path, "w")
        env = dict(os.environ)
        env.pop("LMPOOL_PROFILE", None)
        env["RUNTIME_DIRECTORY"] = self.dir
        self.proc = subprocess.Popen([DAEMON, "--config", self.config], stdout=self.log, stderr=self.log, env=env)

    def logs(self):
        self.log.flush()
        with open(self.log_path) as f:
            return f.read()

    def stop(self):
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.log.close()
        shutil.rmtree(self.dir, ignore_errors=True)


class Gateway:
    """lmpool-http with its own config file (the daemon's, plus http:)."""

    def __init__(self, daemon, http="", endpoint=None, keys=None, loopback=False):
        self.dir = tempfile.mkdtemp(prefix="lmpool-gw-")
        self.daemon = daemon
        self.keys = os.path.join(self.dir, "keys")
        with open(self.keys, "w") as f:
            f.write("# test keys\n" + (keys if keys is not None else f"{KEY} alice\n{KEY2}\n"))
        self.config = os.path.join(self.dir, "lmpool.yaml")
        with open(daemon.config) as f:
            base = f.read()
        with open(self.config, "w") as f:
            f.write(base)
            f.write(f"http:\n  listen: 127.0.0.1:0\n  api_keys: {self.keys}\n"
                    f"  loopback_without_key: {'true' if loopback else 'false'}\n{http}")
        self.log_path = os.path.join(self.dir, "lmpool-http.log")
        self.log = open(self.log_path, "w")
        args = [GATEWAY, "--config", self.config]
        if endpoint:
            args += ["--endpoint", endpoint]
        self.proc = subprocess.Popen(args, stdout=self.log, stderr=self.log)
        self.port = None
        deadline = time.time() + 20
        while time.time() < deadline and self.port is None:
            m = re.search(r"http_port=(\d+)", self.logs())
            if m:
                self.port = int(m.group(1))
                break
            if self.proc.poll() is not None:
                text = self.logs()
                self.log.close()
                shutil.rmtree(self.dir, ignore_errors=True)
                raise RuntimeError("lmpool-http exited: " + text)
            time.sleep(0.05)
        if self.port is None:
            raise TimeoutError("lmpool-http did not listen: " + self.logs())

    def logs(self):
        self.log.flush()
        with open(self.log_path) as f:
            return f.read()

    def events(self, name):
        out = []
        for line in self.logs().splitlines():
            if f" event={name} " not in line:
                continue
            out.append(dict((k, v.strip('"')) for k, v in re.findall(r'(\w+)=("[^"]*"|\S+)', line)))
        return out

    def alive(self):
        return self.proc.poll() is None

    def conn(self, timeout=60):
        return http.client.HTTPConnection("127.0.0.1", self.port, timeout=timeout)

    def request(self, method, path, body=None, key=KEY, headers=None, timeout=60):
        """One request on a new connection: (status, headers, body bytes)."""
        c = self.conn(timeout)
        h = dict(headers or {})
        if key:
            h["Authorization"] = f"Bearer {key}"
        if body is not None and not isinstance(body, (bytes, str)):
            body = json.dumps(body)
            h.setdefault("Content-Type", "application/json")
        c.request(method, path, body=body, headers=h)
        r = c.getresponse()
        data = r.read()
        c.close()
        return r.status, {k.lower(): v for k, v in r.getheaders()}, data

    def json(self, method, path, body=None, **kw):
        status, headers, data = self.request(method, path, body, **kw)
        return status, headers, json.loads(data)

    def wait_healthy(self, timeout=120):
        deadline = time.time() + timeout
        last = "no answer"
        while time.time() < deadline:
            try:
                # the gateway itself answers within 5 s (503 while the
                # daemon does not): a client that gave up sooner would only
                # cancel its own question
                status, _, body = self.request("GET", "/health", key=None, timeout=30)
                if status == 200:
                    return json.loads(body)
                last = "%d %s" % (status, body[:500])
            except OSError as e:
                last = "error: %r" % (e,)
            time.sleep(0.1)
        raise TimeoutError("gateway not healthy (the last /health answer: " + last + "): " + self.logs() +
                           "\nthe daemon's log:\n" + self.daemon.logs()[-6000:])

    def raw(self, data, timeout=10, read=True):
        """Sends bytes on a new socket; returns what comes back until close."""
        s = socket.create_connection(("127.0.0.1", self.port), timeout=timeout)
        try:
            s.sendall(data)
        except OSError:
            pass
        out = b""
        if read:
            try:
                while True:
                    b = s.recv(65536)
                    if not b:
                        break
                    out += b
            except (socket.timeout, ConnectionResetError):
                pass
        s.close()
        return out

    def stop(self):
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.log.close()
        rc = self.proc.returncode
        shutil.rmtree(self.dir, ignore_errors=True)
        return rc


def sse_events(data):
    """The data: lines of an SSE body, JSON-decoded except [DONE]."""
    out = []
    for block in data.decode().split("\n\n"):
        block = block.strip()
        if not block:
            continue
        assert block.startswith("data: "), block
        payload = block[6:]
        out.append(payload if payload == "[DONE]" else json.loads(payload))
    return out


def metrics(text):
    """Prometheus text -> {(name, frozenset(labels)): value}."""
    out = {}
    for line in text.splitlines():
        if not line or line.startswith("#"):
            continue
        m = re.match(r'^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{(.*)\})? (\S+)$', line)
        assert m, f"not a Prometheus sample: {line!r}"
        labels = frozenset(re.findall(r'(\w+)="((?:[^"\\]|\\.)*)"', m.group(3) or ""))
        out[(m.group(1), labels)] = float(m.group(4))
    return out
