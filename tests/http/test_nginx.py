#!/usr/bin/env python3
"""docs/examples/nginx-lmpool.conf, run: nginx in front of two lmpool-http
hosts (two gateways and two daemons on this machine), the upstream
addresses and the listen line swapped for local ones, TLS left out. Each
session id keeps its host, sessions spread over both, streams pass through
event by event, and when one host stops only its sessions move. Skipped
(77) when nginx is not installed."""

import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness  # noqa: E402
from harness import KEY, Daemon, Gateway, sse_events  # noqa: E402

SRCDIR = os.environ.get("LMPOOL_SRCDIR", os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", ".."))


def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


def request(port, session, stream=False):
    import http.client
    c = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
    body = {"model": "tiny", "prompt": "Once upon a time", "max_tokens": 4, "temperature": 0, "stream": stream}
    c.request("POST", "/v1/completions", body=json.dumps(body),
              headers={"Authorization": f"Bearer {KEY}", "X-Session-Id": session, "Content-Type": "application/json"})
    r = c.getresponse()
    data = r.read()
    c.close()
    return r.status, r.getheader("X-Lmpool-Upstream"), data


def main():
    harness.skip_unless_ready()
    nginx = shutil.which("nginx") or ("/usr/sbin/nginx" if os.path.exists("/usr/sbin/nginx") else None)
    if not nginx:
        print("nginx is not installed: skipped")
        return 77
    with open(os.path.join(SRCDIR, "docs", "examples", "nginx-lmpool.conf")) as f:
        snippet = f.read()
    daemons = [Daemon(), Daemon()]
    gws = []
    tmp = tempfile.mkdtemp(prefix="lmpool-nginx-")
    proc = None
    try:
        gws = [Gateway(d, http="  key_rate: 1000\n  key_burst: 1000\n") for d in daemons]
        for g in gws:
            g.wait_healthy()
        addrs = [f"127.0.0.1:{g.port}" for g in gws]
        port = free_port()
        conf = snippet.replace("10.0.0.11:8080", addrs[0]).replace("10.0.0.12:8080", addrs[1])
        conf = conf.replace("listen 443 ssl;", f"listen 127.0.0.1:{port};")
        conf = re.sub(r"\n\s*ssl_certificate\S*\s+[^;]+;", "", conf)
        assert addrs[0] in conf and addrs[1] in conf and "ssl" not in conf.replace("ssl_", "")
        os.chmod(tmp, 0o755)
        with open(os.path.join(tmp, "nginx.conf"), "w") as f:
            f.write(f"daemon off;\nworker_processes 1;\nerror_log {tmp}/error.log;\npid {tmp}/nginx.pid;\n"
                    f"user root;\nevents {{ worker_connections 256; }}\n"
                    f"http {{\n  access_log {tmp}/access.log;\n  client_body_temp_path {tmp}/body;\n"
                    f"  proxy_temp_path {tmp}/proxy;\n  fastcgi_temp_path {tmp}/fcgi;\n"
                    f"  uwsgi_temp_path {tmp}/uwsgi;\n  scgi_temp_path {tmp}/scgi;\n{conf}\n}}\n")
        check = subprocess.run([nginx, "-t", "-p", tmp, "-c", f"{tmp}/nginx.conf"], capture_output=True, text=True)
        if check.returncode != 0:
            print("nginx -t:", check.stderr)
            return 1
        proc = subprocess.Popen([nginx, "-p", tmp, "-c", f"{tmp}/nginx.conf"], stderr=subprocess.PIPE)
        deadline = time.time() + 20
        while time.time() < deadline:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                break
            except OSError:
                time.sleep(0.05)
        failures = []

        sessions = [f"conversation-{i}" for i in range(24)]
        where = {}
        for s in sessions:
            seen = set()
            for _ in range(3):
                st, up, data = request(port, s)
                if st != 200:
                    failures.append(f"{s}: {st} {data[:200]}")
                seen.add(up)
            if len(seen) != 1:
                failures.append(f"{s} went to {seen}")
            where[s] = seen.pop()
        if set(where.values()) != set(addrs):
            failures.append(f"sessions did not spread over both hosts: {where}")

        st, up, data = request(port, sessions[0], stream=True)
        evs = sse_events(data)
        if st != 200 or evs[-1] != "[DONE]" or len(evs) < 3:
            failures.append(f"stream through nginx: {st} {data[:300]}")

        # one host stops: its sessions move, the others stay where they were
        gone = addrs[1]
        gws[1].stop()
        gws[1] = None
        for s in sessions:
            st, up, data = request(port, s)
            if st != 200:
                failures.append(f"after a host stopped, {s}: {st} {data[:200]}")
            elif where[s] != gone and up != where[s]:
                failures.append(f"{s} moved from {where[s]} to {up} though its host is up")
            elif where[s] == gone and up.split(",")[-1].strip() != addrs[0]:
                failures.append(f"{s} answered by {up}")
        for f in failures:
            print("FAIL:", f)
        print(f"{len(sessions)} sessions, {sum(1 for v in where.values() if v == addrs[0])} on the first host")
        return 1 if failures else 0
    finally:
        if proc:
            proc.send_signal(signal.SIGQUIT)
            try:
                proc.wait(10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        for g in gws:
            if g:
                g.stop()
        for d in daemons:
            d.stop()
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
