#!/usr/bin/env python3
"""What lmpool-http adds: the same streamed load sent to one lmpoold
directly over ZeroMQ (a DEALER socket per client, the wire protocol) and
through the gateway (an HTTP/1.1 connection per request, OpenAI's
/v1/completions with SSE), in alternating rounds so that both see the same
machine. Per request: time to first token and generation rate after it,
measured by the client, and the gateway's own CPU time per token streamed
(from /proc, free of scheduling noise). Prints one JSON line per mode and a
table with the differences.

    benchmarks/http_overhead.py [MODEL.gguf] [--clients 2] [--requests 20]
                                [--max-tokens 64] [--rounds 3]

Requests are sampled (temperature 0.8, no seed), so that lmpoold's response
cache, which answers repeated deterministic requests without a worker,
does not serve them. Default model: the deep q8_0 fixture (../shared/fixtures), slow enough for
per-token work to dominate. Run it on an idle machine; `nice` it on a
shared one and expect noise."""

import argparse
import json
import os
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time

import zmq

HERE = os.path.dirname(os.path.abspath(__file__))
BUILD = os.path.join(HERE, "..", "build")
DAEMON = os.environ.get("LMPOOLD_BIN", os.path.join(BUILD, "src", "supervisor", "lmpoold"))
GATEWAY = os.environ.get("LMPOOL_GATEWAY_BIN", os.path.join(BUILD, "src", "http", "lmpool-http"))
FIXTURES = os.environ.get("LMPOOL_FIXTURES", os.path.join(HERE, "..", "..", "shared", "fixtures"))
KEY = "sk-bench-0123456789abcdef"
PROMPT = "The quick brown fox jumps over the lazy dog. Once upon a time"


def zmq_socket(endpoint):
    s = zmq.Context.instance().socket(zmq.DEALER)
    s.setsockopt(zmq.LINGER, 0)
    s.connect(endpoint)
    return s


def zmq_request(s, max_tokens, seq):
    """One request on a client's connected socket (kept, as the gateway keeps its own)."""
    t0 = time.perf_counter()
    s.send_json({"v": 1, "id": f"b{seq}", "type": "generate", "model": "m", "prompt": PROMPT,
                 "max_tokens": max_tokens, "temperature": 0.8, "ignore_eos": True})
    first = None
    while True:
        ev = json.loads(s.recv())
        if ev["event"] == "token":
            if first is None:
                first = time.perf_counter()
            continue
        end = time.perf_counter()
        if ev["event"] != "done":
            raise RuntimeError(ev)
        return first - t0, ev["usage"]["generated_tokens"], end - first


def http_request(port, max_tokens, seq):
    body = json.dumps({"model": "m", "prompt": PROMPT, "max_tokens": max_tokens, "temperature": 0.8,
                       "ignore_eos": True, "stream": True, "stream_options": {"include_usage": True}}).encode()
    s = socket.create_connection(("127.0.0.1", port))
    s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    t0 = time.perf_counter()
    s.sendall(b"POST /v1/completions HTTP/1.1\r\nHost: b\r\nAuthorization: Bearer " + KEY.encode() +
              b"\r\nContent-Type: application/json\r\nConnection: close\r\nContent-Length: " +
              str(len(body)).encode() + b"\r\n\r\n" + body)
    buf = b""
    first = None
    while True:
        b = s.recv(65536)
        if not b:
            break
        buf += b
        if first is None and b"\"text\":" in buf:
            first = time.perf_counter()
        if b"data: [DONE]" in buf[-64:]:
            break
    end = time.perf_counter()
    s.close()
    if b" 200 " not in buf[:20]:
        raise RuntimeError(buf[:300])
    usage = json.loads(buf[buf.rindex(b"\"usage\":{") + 8:].split(b"}}", 1)[0] + b"}}")
    return first - t0, usage["completion_tokens"], end - first


def cpu_s(pid):
    """utime + stime of a process, in seconds."""
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def run(mode, target, clients, requests, max_tokens):
    results, errors = [], []
    lock = threading.Lock()

    def client(c):
        sock = zmq_socket(target) if mode == "zmq" else None
        for i in range(requests):
            try:
                r = zmq_request(sock, max_tokens, c * 100000 + i) if sock else \
                    http_request(target, max_tokens, c * 100000 + i)
                with lock:
                    results.append(r)
            except Exception as e:  # a benchmark reports, it does not stop
                with lock:
                    errors.append(repr(e))
        if sock:
            sock.close()

    threads = [threading.Thread(target=client, args=(c,)) for c in range(clients)]
    t0 = time.perf_counter()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    wall = time.perf_counter() - t0
    return results, errors, wall


def summary(mode, runs):
    res = [r for rs, _, _ in runs for r in rs]
    errs = sum(len(e) for _, e, _ in runs)
    ttft = sorted(r[0] * 1e3 for r in res)
    tps = sorted((r[1] - 1) / r[2] for r in res if r[2] > 0 and r[1] > 1)
    total_tokens = sum(r[1] for r in res)
    wall = sum(w for _, _, w in runs)
    q = lambda v, p: v[min(len(v) - 1, int(p * len(v)))] if v else float("nan")  # noqa: E731
    return {"mode": mode, "requests": len(res), "errors": errs,
            "ttft_ms_p50": round(q(ttft, 0.5), 3), "ttft_ms_p90": round(q(ttft, 0.9), 3),
            "ttft_ms_mean": round(statistics.mean(ttft), 3) if ttft else None,
            "tokens_per_s_p50": round(q(tps, 0.5), 1), "tokens_per_s_mean": round(statistics.mean(tps), 1) if tps else None,
            "aggregate_tokens_per_s": round(total_tokens / wall, 1) if wall else None}


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("model", nargs="?", default=os.path.join(FIXTURES, "models", "llama-deep-q8_0.gguf"))
    ap.add_argument("--clients", type=int, default=2)
    ap.add_argument("--requests", type=int, default=20, help="per client and round")
    ap.add_argument("--max-tokens", type=int, default=64)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--slots", type=int, default=2)
    ap.add_argument("--threads", type=int, default=1)
    a = ap.parse_args()

    tmp = tempfile.mkdtemp(prefix="lmpool-bench-http-")
    endpoint = f"ipc://{tmp}/lmpool.sock"
    cfg = os.path.join(tmp, "lmpool.yaml")
    with open(os.path.join(tmp, "keys"), "w") as f:
        f.write(f"{KEY} bench\n")
    with open(cfg, "w") as f:
        f.write(f"router:\n  endpoint: {endpoint}\nlog:\n  target: stderr\n  requests: false\n"
                f"limits:\n  client_requests: 256\n"
                f"http:\n  listen: 127.0.0.1:0\n  api_keys: {tmp}/keys\n  key_rate: 100000\n"
                f"  key_burst: 1000000\n  key_requests: 1024\n"
                f"models:\n  - name: m\n    path: {os.path.abspath(a.model)}\n    ctx: 1024\n"
                f"    slots: {a.slots}\n    threads: {a.threads}\n")
    env = dict(os.environ, RUNTIME_DIRECTORY=tmp)
    dlog, glog = open(os.path.join(tmp, "d.log"), "w"), open(os.path.join(tmp, "g.log"), "w")
    d = subprocess.Popen([DAEMON, "--config", cfg], stdout=dlog, stderr=dlog, env=env)
    g = None
    try:
        # wait for the daemon, then the gateway's port
        deadline = time.time() + 60
        probe = zmq_socket(endpoint)
        while time.time() < deadline:
            try:
                probe.send_json({"v": 1, "id": "h", "type": "health"})
                if probe.poll(1000) and json.loads(probe.recv()).get("status") == "ok":
                    break
            except Exception:
                pass
            time.sleep(0.2)
        probe.close()
        g = subprocess.Popen([GATEWAY, "--config", cfg], stdout=glog, stderr=glog, env=env)
        port = None
        while time.time() < deadline and port is None:
            with open(os.path.join(tmp, "g.log")) as f:
                for line in f:
                    if "http_port=" in line:
                        port = int(line.split("http_port=")[1].split()[0])
            time.sleep(0.05)
        if port is None:
            raise SystemExit("lmpool-http did not start")
        http_request(port, 2, 0)  # warm both paths
        runs = {"zmq": [], "http": []}
        gw_cpu = 0.0
        for rnd in range(a.rounds):
            for mode in ("zmq", "http") if rnd % 2 == 0 else ("http", "zmq"):
                c0 = cpu_s(g.pid)
                runs[mode].append(run(mode, endpoint if mode == "zmq" else port, a.clients, a.requests, a.max_tokens))
                if mode == "http":
                    gw_cpu += cpu_s(g.pid) - c0
        out = {m: summary(m, runs[m]) for m in runs}
        # what the gateway itself spends, free of the scheduling noise above
        http_tokens = sum(r[1] for rs, _, _ in runs["http"] for r in rs)
        out["http"]["gateway_cpu_us_per_token"] = round(gw_cpu * 1e6 / http_tokens, 1) if http_tokens else None
        for m in out:
            print(json.dumps(dict(out[m], model=os.path.basename(a.model), clients=a.clients,
                                  max_tokens=a.max_tokens)))
        z, h = out["zmq"], out["http"]
        print(f"\n{'':24}{'zmq':>12}{'http':>12}{'delta':>12}")
        for k in ("ttft_ms_p50", "ttft_ms_p90", "ttft_ms_mean", "tokens_per_s_p50", "tokens_per_s_mean",
                  "aggregate_tokens_per_s"):
            zd, hd = z[k], h[k]
            delta = (f"{hd - zd:+.3f} ms" if k.startswith("ttft") else f"{(hd / zd - 1) * 100:+.1f} %") \
                if zd and hd else ""
            print(f"{k:24}{zd:>12}{hd:>12}{delta:>12}")
        print(f"{'requests/errors':24}{z['requests']}/{z['errors']:<9}{h['requests']}/{h['errors']}")
        print(f"{'gateway CPU per token':24}{'':>12}{h['gateway_cpu_us_per_token']:>9} us")
    finally:
        for p in (g, d):
            if p and p.poll() is None:
                p.send_signal(signal.SIGTERM)
                try:
                    p.wait(20)
                except subprocess.TimeoutExpired:
                    p.kill()
        dlog.close()
        glog.close()
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
