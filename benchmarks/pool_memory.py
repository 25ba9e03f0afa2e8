#!/usr/bin/env python3
"""Memory of a worker pool: starts lmpoold with N workers of one model,
lets each worker serve a request, then sums RSS and PSS over the supervisor
and the workers (from /proc/PID/smaps_rollup) and reports what each worker
holds of the weight store privately (from /proc/PID/smaps).

    benchmarks/pool_memory.py MODEL.gguf [--workers 4] [--ctx 2048] [--slots 1]

Prints one JSON line and a table. Compare with ../shared/PEERS.md, "four
parallel conversations": llama-server -np 4 -c 8192 uses 1289 MiB PSS, four
llama-server processes 2864 MiB."""

import argparse
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time

import zmq

HERE = os.path.dirname(os.path.abspath(__file__))
DAEMON = os.environ.get("LMPOOLD_BIN", os.path.join(HERE, "..", "build", "src", "supervisor", "lmpoold"))


def rollup(pid):
    out = {}
    with open(f"/proc/{pid}/smaps_rollup") as f:
        for line in f:
            m = re.match(r"(\w+):\s+(\d+) kB", line)
            if m:
                out[m.group(1)] = int(m.group(2)) * 1024
    return out


def region_private(pid, name):
    private, inside = 0, False
    with open(f"/proc/{pid}/smaps") as f:
        for line in f:
            if re.match(r"^[0-9a-f]+-[0-9a-f]+ ", line):
                inside = name in line
            elif inside and line.startswith(("Private_Clean:", "Private_Dirty:")):
                private += int(line.split()[1]) * 1024
    return private


def request(sock, req, timeout=300):
    sock.send_json(req)
    while True:
        if not sock.poll(timeout * 1000):
            raise TimeoutError(req)
        ev = json.loads(sock.recv())
        if ev["event"] != "token":
            return ev


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("model")
    ap.add_argument("--workers", type=int, default=4)
    ap.add_argument("--slots", type=int, default=1)
    ap.add_argument("--ctx", type=int, default=2048)
    ap.add_argument("--tokens", type=int, default=16)
    args = ap.parse_args()

    tmp = tempfile.mkdtemp(prefix="lmpool-bench-")
    endpoint = f"ipc://{tmp}/lmpool.sock"
    with open(f"{tmp}/lmpool.yaml", "w") as f:
        f.write(f"router:\n  endpoint: {endpoint}\nlog:\n  target: stderr\nmodels:\n"
                f"  - name: m\n    path: {os.path.abspath(args.model)}\n    workers: {args.workers}\n"
                f"    slots: {args.slots}\n    ctx: {args.ctx}\n    threads: 1\n")
    log = open(f"{tmp}/log", "w")
    env = dict(os.environ, RUNTIME_DIRECTORY=tmp)
    t0 = time.time()
    proc = subprocess.Popen([DAEMON, "--config", f"{tmp}/lmpool.yaml"], stderr=log, env=env)
    ctx = zmq.Context()
    sock = ctx.socket(zmq.DEALER)
    sock.setsockopt(zmq.LINGER, 0)
    sock.connect(endpoint)
    try:
        while True:
            ev = request(sock, {"v": 1, "id": "h", "type": "health"})
            if ev.get("status") == "ok":
                break
            time.sleep(0.2)
        ready_s = time.time() - t0
        # One request in flight per worker at once, so every worker serves one.
        for i in range(args.workers):
            sock.send_json({"v": 1, "id": f"r{i}", "type": "generate", "model": "m", "prompt": "Hello there",
                            "max_tokens": args.tokens, "ignore_eos": True, "stream": False})
        for i in range(args.workers):
            json.loads(sock.recv())
        stats = request(sock, {"v": 1, "id": "s", "type": "stats"})
        pids = [w["pid"] for w in stats["workers"]]
        served = [w["served"] for w in stats["workers"]]
        sup = rollup(proc.pid)
        workers = [rollup(p) for p in pids]
        store_private = [region_private(p, "lmpool-store:m") for p in pids]
        store_bytes = os.path.getsize(args.model)
        mib = 1 / 2**20
        result = {
            "model": os.path.basename(args.model), "file_mib": round(store_bytes * mib, 1),
            "workers": args.workers, "slots": args.slots, "ctx": args.ctx, "served_per_worker": served,
            "ready_s": round(ready_s, 2),
            "rss_sum_mib": round((sup["Rss"] + sum(w["Rss"] for w in workers)) * mib, 1),
            "pss_sum_mib": round((sup["Pss"] + sum(w["Pss"] for w in workers)) * mib, 1),
            "supervisor_pss_mib": round(sup["Pss"] * mib, 1),
            "worker_pss_mib": [round(w["Pss"] * mib, 1) for w in workers],
            "worker_private_mib": [round((w["Private_Clean"] + w["Private_Dirty"]) * mib, 1) for w in workers],
            "store_private_kib": [round(p / 1024) for p in store_private],
        }
        print(json.dumps(result))
        print(f"\n{'figure':<28}{'value':>16}")
        for k in ("file_mib", "workers", "ready_s", "rss_sum_mib", "pss_sum_mib", "supervisor_pss_mib"):
            print(f"{k:<28}{result[k]:>16}")
        print(f"{'worker PSS MiB':<28}{str(result['worker_pss_mib']):>16}")
        print(f"{'worker private MiB':<28}{str(result['worker_private_mib']):>16}")
        print(f"{'store private KiB':<28}{str(result['store_private_kib']):>16}")
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=30)
        ctx.destroy(linger=0)
        log.close()
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
