#!/usr/bin/env python3
"""Integration tests of lmpoold's access control (docs/security.md), each
an attack of issue 9's table run for real: another local user (`nobody`,
through setpriv) at the workers' socket and in the runtime directory, a
process of our own user that is not one of our workers, and clients of a
TCP endpoint with and without an allowed CURVE key.

The daemons here are started as the shipped unit used to start them where
that mattered: umask 0000 and a runtime directory of mode 0755, so that the
old code's world-writable sockets would show."""

import json
import os
import shutil
import signal
import stat
import subprocess
import sys
import tempfile
import time
import unittest

import zmq

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from test_daemon import BIN, DAEMON, MODEL, PROMPT, generate, model_yaml, socket_free_port  # noqa: E402

NOBODY = ["setpriv", "--reuid=nobody", "--regid=nogroup", "--clear-groups"]
PY = "/usr/bin/python3"

# A process that claims to be worker m/0 on the workers' socket: it
# announces itself, forges a `done` for the first request ids, and reports
# every message the router sends it (a job would carry a client's prompt).
IMPOSTOR = r"""
import json, sys, time, zmq
endpoint, seconds = sys.argv[1], float(sys.argv[2])
ctx = zmq.Context()
s = ctx.socket(zmq.DEALER)
s.setsockopt(zmq.LINGER, 0)
s.setsockopt(zmq.ROUTING_ID, b"m/0")
s.setsockopt(zmq.RECONNECT_IVL, 50)
s.connect(endpoint)
got = []
end = time.time() + seconds
def send(frames):
    try:
        s.send_multipart(frames, zmq.NOBLOCK)
    except zmq.Again:
        pass  # not connected (the normal case)
while time.time() < end:
    send([b"ready", b"1 1 2048"])
    send([b"hb", b"0 0 0 0"])
    for rid in range(1, 20):
        done = {"v": 1, "id": "x", "event": "done", "finish": "stop", "text": "FORGED",
                "usage": {"prompt_tokens": 1, "generated_tokens": 1}}
        send([b"ev", f"{rid} t".encode(), json.dumps({"v": 1, "id": "x", "event": "token", "text": "FORGED"}).encode()])
        send([b"ev", f"{rid} d 1 1 0 0 0 0 0 stop".encode(), json.dumps(done).encode()])
    while s.poll(100):
        got.append([f.decode(errors="replace") for f in s.recv_multipart()])
print(json.dumps({"received": got}))
"""


def child_pids(pid):
    out = []
    for tid in os.listdir(f"/proc/{pid}/task"):
        with open(f"/proc/{pid}/task/{tid}/children") as f:
            out += [int(x) for x in f.read().split()]
    return out


def backend_of(worker_pid):
    with open(f"/proc/{worker_pid}/cmdline", "rb") as f:
        args = f.read().split(b"\0")
    return args[args.index(b"--backend") + 1].decode()


class Daemon:
    """One lmpoold with a configuration written here, its runtime directory
    given as systemd gives it (RUNTIME_DIRECTORY, mode 0755) and the umask
    the shipped unit used to set (0000)."""

    def __init__(self, router="", models=None, env=None, umask=0o000):
        self.dir = tempfile.mkdtemp(prefix="lmpool-sec-")
        os.chmod(self.dir, 0o755)
        self.rundir = os.path.join(self.dir, "run")
        os.mkdir(self.rundir, 0o755)
        os.chmod(self.rundir, 0o755)
        self.config = os.path.join(self.dir, "lmpool.yaml")
        with open(self.config, "w") as f:
            f.write("router:\n  heartbeat_ms: 200\n" + router)
            f.write("log:\n  target: stderr\n")
            f.write("models:\n" + "".join(models or [model_yaml("m", MODEL)]))
        self.log_path = os.path.join(self.dir, "lmpoold.log")
        self.log = open(self.log_path, "w")
        e = {k: v for k, v in os.environ.items() if not k.startswith("LMPOOL_") or k == "LMPOOL_FIXTURES"}
        e.pop("XDG_RUNTIME_DIR", None)
        e["RUNTIME_DIRECTORY"] = self.rundir
        e.update(env or {})
        self.endpoint = f"ipc://{self.rundir}/lmpool.sock"
        old = os.umask(umask)
        try:
            self.proc = subprocess.Popen([DAEMON, "--config", self.config], stdout=self.log, stderr=self.log, env=e)
        finally:
            os.umask(old)
        self.ctx = zmq.Context()

    def request(self, req, timeout=30.0, endpoint=None):
        s = self.ctx.socket(zmq.DEALER)
        s.setsockopt(zmq.LINGER, 0)
        s.connect(endpoint or self.endpoint)
        try:
            s.send(json.dumps(req).encode())
            events = []
            deadline = time.time() + timeout
            while True:
                left = deadline - time.time()
                if left <= 0 or not s.poll(int(left * 1000)):
                    raise TimeoutError(f"no answer to {req!r}; events so far {events}")
                ev = json.loads(s.recv())
                events.append(ev)
                if ev["event"] != "token":
                    return events
        finally:
            s.close()

    def wait_ready(self, timeout=60.0):
        deadline = time.time() + timeout
        while time.time() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError("lmpoold exited: " + self.logs())
            try:
                if self.request({"v": 1, "id": "h", "type": "health"}, timeout=1.0)[-1].get("status") == "ok":
                    return
            except TimeoutError:
                pass
            time.sleep(0.1)
        raise TimeoutError("lmpoold not ready: " + self.logs())

    def logs(self):
        self.log.flush()
        with open(self.log_path) as f:
            return f.read()

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


def run_refused(args, env=None, timeout=60):
    """Runs an lmpoold that must refuse to start: its exit code and output.
    One that starts anyway is stopped after `timeout` and fails the test."""
    try:
        out = subprocess.run(args, capture_output=True, text=True, env=env, timeout=timeout)
    except subprocess.TimeoutExpired as e:
        raise AssertionError(f"lmpoold started instead of refusing: {e.stderr!r}")
    return out.returncode, out.stdout + out.stderr


class WorkerSocketTests(unittest.TestCase):
    """Row 1: a process that is not our worker, on the workers' socket."""

    @classmethod
    def setUpClass(cls):
        cls.d = Daemon()
        cls.d.wait_ready()
        cls.worker = [p for p in child_pids(cls.d.proc.pid)][0]
        cls.backend = backend_of(cls.worker)

    @classmethod
    def tearDownClass(cls):
        cls.d.stop()

    def attack(self, prefix, seconds=4.0):
        """Runs the impostor as `prefix` while a client keeps generating;
        returns what the impostor received and the client's events."""
        imp = subprocess.Popen(prefix + [PY, "-c", IMPOSTOR, self.backend, str(seconds)], stdout=subprocess.PIPE,
                               stderr=subprocess.PIPE, text=True)
        results = []
        end = time.time() + seconds
        i = 0
        while time.time() < end or i < 3:
            results.append(self.d.request(generate("m", id=f"r{i}", max_tokens=6, ignore_eos=True), timeout=30))
            i += 1
        out, err = imp.communicate(timeout=60)
        self.assertEqual(imp.returncode, 0, err)
        return json.loads(out)["received"], results, imp.pid

    def check_clients(self, results):
        for evs in results:
            self.assertEqual(evs[-1]["event"], "done", evs)
            self.assertEqual(evs[-1]["worker"], "m/0")
            self.assertEqual(evs[-1]["usage"]["generated_tokens"], 6)
            for ev in evs:
                self.assertNotIn("FORGED", json.dumps(ev))

    def check_worker_kept(self):
        st = self.d.request({"v": 1, "id": "s", "type": "stats"})[-1]
        w = st["workers"][0]
        self.assertEqual((w["pid"], w["state"], w["restarts"]), (self.worker, "ready", 0), st)

    def test_other_user_gets_nothing(self):
        received, results, _ = self.attack(NOBODY)
        self.assertEqual(received, [], "another user received the router's messages")
        self.check_clients(results)
        self.check_worker_kept()

    def test_same_user_not_a_worker_is_refused(self):
        # Our own uid passes the directory's permissions: the ZAP handler
        # must refuse the process, since it is not one of our workers.
        before = self.d.request({"v": 1, "id": "s0", "type": "stats"})[-1]["refused"]["connections"]
        received, results, pid = self.attack([])
        self.assertEqual(received, [], "a process that is not a worker received the router's messages")
        self.check_clients(results)
        self.check_worker_kept()
        self.assertIn(f"refused a connection from pid {pid}: not one of our live workers", self.d.logs())
        after = self.d.request({"v": 1, "id": "s1", "type": "stats"})[-1]["refused"]["connections"]
        self.assertGreater(after, before, "the refusal is counted in stats")

    def test_socket_modes(self):
        path = self.backend[len("ipc://"):]
        wdir = os.path.dirname(path)
        self.assertEqual(stat.S_IMODE(os.lstat(wdir).st_mode), 0o700, "the workers' directory is private")
        self.assertEqual(os.lstat(wdir).st_uid, os.geteuid())
        self.assertEqual(os.path.dirname(wdir), self.d.rundir)
        self.assertEqual(stat.S_IMODE(os.lstat(self.d.rundir).st_mode), 0o750)
        self.assertEqual(stat.S_IMODE(os.lstat(os.path.join(self.d.rundir, "lmpool.sock")).st_mode), 0o660)
        # nobody cannot even look at the workers' socket
        out = subprocess.run(NOBODY + ["stat", path], capture_output=True, text=True)
        self.assertNotEqual(out.returncode, 0)
        self.assertIn("Permission denied", out.stderr)


class ClientAccessTests(unittest.TestCase):
    """router.group: its members may connect to the ipc socket, no one else."""

    def test_group_members_only(self):
        d = Daemon(router="  group: nogroup\n")
        try:
            d.wait_ready()
            sock = os.path.join(d.rundir, "lmpool.sock")
            self.assertEqual(os.lstat(sock).st_gid, 65534)
            self.assertEqual(os.lstat(d.rundir).st_gid, 65534)
            health = [BIN, "health", "--endpoint", d.endpoint, "--timeout-ms", "3000"]
            member = subprocess.run(NOBODY + health, capture_output=True, text=True)
            self.assertEqual(member.returncode, 0, member.stderr)
            other = subprocess.run(["setpriv", "--reuid=nobody", "--regid=daemon", "--clear-groups"] + health,
                                   capture_output=True, text=True)
            self.assertNotEqual(other.returncode, 0, "a user outside router.group got an answer")
        finally:
            d.stop()


class RuntimeDirectoryTests(unittest.TestCase):
    """Row 5: a runtime directory that another user prepared is refused."""

    def setUp(self):
        self.dir = tempfile.mkdtemp(prefix="lmpool-sec-")
        os.chmod(self.dir, 0o755)
        self.config = os.path.join(self.dir, "lmpool.yaml")
        with open(self.config, "w") as f:
            f.write("log:\n  target: stderr\nmodels:\n" + model_yaml("m", MODEL))

    def tearDown(self):
        shutil.rmtree(self.dir, ignore_errors=True)

    def env(self, **kw):
        e = {k: v for k, v in os.environ.items() if not k.startswith("LMPOOL_") and k not in
             ("RUNTIME_DIRECTORY", "XDG_RUNTIME_DIR")}
        e.update(kw)
        return e

    def test_directory_of_another_user(self):
        os.chmod(self.dir, 0o1777)  # as /tmp is
        rd = os.path.join(self.dir, "run")
        subprocess.run(NOBODY + ["mkdir", "-m", "0777", rd], check=True)
        code, out = run_refused([DAEMON, "--config", self.config], env=self.env(RUNTIME_DIRECTORY=rd))
        self.assertEqual(code, 1, out)
        self.assertIn(f"runtime directory {rd} belongs to uid 65534, not to us", out)
        self.assertEqual(os.listdir(rd), [], "nothing was bound in it")

    def test_world_writable_directory_of_ours(self):
        rd = os.path.join(self.dir, "run")
        os.mkdir(rd)
        os.chmod(rd, 0o777)
        code, out = run_refused([DAEMON, "--config", self.config], env=self.env(RUNTIME_DIRECTORY=rd))
        self.assertEqual(code, 1, out)
        self.assertIn("has mode 0777: group or others may write in it", out)

    def test_symlink(self):
        real = os.path.join(self.dir, "real")
        os.mkdir(real, 0o700)
        rd = os.path.join(self.dir, "run")
        os.symlink(real, rd)
        code, out = run_refused([DAEMON, "--config", self.config], env=self.env(RUNTIME_DIRECTORY=rd))
        self.assertEqual(code, 1, out)
        self.assertIn(f"{rd} is a symlink", out)

    def test_tmp_fallback_planted_by_nobody(self):
        # The /tmp fallback for real, in a mount namespace of our own whose
        # /tmp is a fresh tmpfs: nobody plants /tmp/lmpool-$UID first. The
        # configuration must live outside /tmp then.
        uid = os.geteuid()
        outside = tempfile.mkdtemp(prefix="lmpool-sec-", dir="/dev/shm" if os.path.isdir("/dev/shm") else None)
        self.addCleanup(shutil.rmtree, outside, ignore_errors=True)
        config = shutil.copy(self.config, outside)
        script = (f"mount -t tmpfs -o mode=1777 none /tmp && "
                  f"{' '.join(NOBODY)} mkdir -m 0777 /tmp/lmpool-{uid} && "
                  f"exec {DAEMON} --config {config}")
        code, out = run_refused(["unshare", "--mount", "--propagation", "private", "sh", "-c", script],
                                env=self.env())
        self.assertEqual(code, 1, out)
        self.assertIn(f"runtime directory /tmp/lmpool-{uid} belongs to uid 65534, not to us", out)


def keygen(path):
    out = subprocess.run([BIN, "keygen", "-o", path], capture_output=True, text=True)
    if out.returncode != 0:
        raise AssertionError(out.stderr)
    return out.stdout.strip()


class TcpTests(unittest.TestCase):
    """Row 9: a TCP endpoint that the network can reach needs CURVE."""

    def setUp(self):
        self.dir = tempfile.mkdtemp(prefix="lmpool-sec-")

    def tearDown(self):
        shutil.rmtree(self.dir, ignore_errors=True)

    def config(self, router):
        path = os.path.join(self.dir, "lmpool.yaml")
        with open(path, "w") as f:
            f.write(f"router:\n{router}log:\n  target: stderr\nmodels:\n" + model_yaml("m", MODEL))
        return path

    def test_network_without_curve_refused(self):
        with socket_free_port() as port:
            pass
        for host in ("0.0.0.0", "*", "192.0.2.1"):
            cfg = self.config(f"  tcp: tcp://{host}:{port}\n")
            out = subprocess.run([DAEMON, "--check-config", cfg], capture_output=True, text=True)
            self.assertEqual(out.returncode, 1, out.stdout)
            self.assertIn(f"key 'router.tcp': tcp://{host}:{port} is not a loopback address", out.stderr)
        e = dict(os.environ, RUNTIME_DIRECTORY=self.dir)
        code, log = run_refused([DAEMON, "--config", cfg], env=e)
        self.assertEqual(code, 1, log)
        self.assertIn("is not a loopback address", log)
        # loopback stays allowed without CURVE
        cfg = self.config(f"  tcp: tcp://127.0.0.1:{port}\n")
        out = subprocess.run([DAEMON, "--check-config", cfg], capture_output=True, text=True)
        self.assertEqual(out.returncode, 0, out.stderr)

    def test_loopback_without_curve_warns(self):
        with socket_free_port() as port:
            pass
        d = Daemon(router=f"  tcp: tcp://127.0.0.1:{port}\n")
        try:
            d.wait_ready()
            ev = d.request({"v": 1, "id": "h", "type": "health"}, endpoint=f"tcp://127.0.0.1:{port}")[-1]
            self.assertEqual(ev["status"], "ok")
            self.assertIn(f"tcp://127.0.0.1:{port} takes clients without authentication", d.logs())
        finally:
            d.stop()

    def test_curve_allow_list(self):
        server_pub = keygen(os.path.join(self.dir, "server.key"))
        keygen(os.path.join(self.dir, "client.key"))
        stranger_pub = keygen(os.path.join(self.dir, "stranger.key"))
        self.assertEqual(stat.S_IMODE(os.stat(os.path.join(self.dir, "server.key")).st_mode), 0o600)
        allowed = os.path.join(self.dir, "clients")
        shutil.copy(os.path.join(self.dir, "client.key.pub"), allowed)
        with socket_free_port() as port:
            pass
        router = (f"  tcp: tcp://0.0.0.0:{port}\n  curve_key: {self.dir}/server.key\n"
                  f"  curve_clients: {allowed}\n")
        out = subprocess.run([DAEMON, "--check-config", self.config(router)], capture_output=True, text=True)
        self.assertEqual(out.returncode, 0, out.stderr)
        d = Daemon(router=router)
        try:
            d.wait_ready()
            tcp = f"tcp://127.0.0.1:{port}"
            # the allowed key works, through the CLI (liblmpool)
            gen = subprocess.run([BIN, "generate", "--endpoint", tcp, "--server-key", f"{self.dir}/server.key.pub",
                                  "--key", f"{self.dir}/client.key", "-m", "m", "--prompt", PROMPT, "-n", "4",
                                  "--temp", "0", "--timeout-ms", "30000"], capture_output=True, text=True)
            self.assertEqual(gen.returncode, 0, gen.stderr)
            self.assertTrue(gen.stdout)
            health = subprocess.run([BIN, "health", "--endpoint", tcp, "--timeout-ms", "10000"], capture_output=True,
                                    text=True, env=dict(os.environ, LMPOOL_SERVER_KEY=server_pub,
                                                        LMPOOL_KEY=f"{self.dir}/client.key"))
            self.assertEqual(health.returncode, 0, health.stderr)
            # a key that is not on the list, and no CURVE at all: nothing
            for name, curve in (("stranger", True), ("plain", False)):
                s = d.ctx.socket(zmq.DEALER)
                s.setsockopt(zmq.LINGER, 0)
                if curve:
                    with open(f"{self.dir}/stranger.key") as f:
                        keys = dict(line.split(": ") for line in f.read().splitlines() if ": " in line)
                    s.setsockopt(zmq.CURVE_SERVERKEY, server_pub.encode())
                    s.setsockopt(zmq.CURVE_PUBLICKEY, keys["public-key"].encode())
                    s.setsockopt(zmq.CURVE_SECRETKEY, keys["secret-key"].encode())
                s.connect(tcp)
                s.send(json.dumps({"v": 1, "id": "h", "type": "health"}).encode())
                self.assertEqual(s.poll(3000), 0, f"the {name} client got an answer")
                s.close()
            self.assertIn(f"key {stranger_pub} is not in router.curve_clients", d.logs())
        finally:
            d.stop()

    def test_secret_key_file_must_be_private(self):
        keygen(os.path.join(self.dir, "server.key"))
        keygen(os.path.join(self.dir, "client.key"))
        os.chmod(os.path.join(self.dir, "server.key"), 0o644)
        cfg = self.config(f"  tcp: tcp://0.0.0.0:5555\n  curve_key: {self.dir}/server.key\n"
                          f"  curve_clients: {self.dir}/client.key.pub\n")
        out = subprocess.run([DAEMON, "--check-config", cfg], capture_output=True, text=True)
        self.assertEqual(out.returncode, 1)
        self.assertIn("must not be accessible by group or others", out.stderr)


if __name__ == "__main__":
    if not os.path.exists(MODEL):
        print("fixtures not found: skipped")
        sys.exit(77)
    if os.geteuid() != 0 or not shutil.which("setpriv"):
        # The attacks need a second user: root to become nobody.
        print("not root, or no setpriv: skipped")
        sys.exit(77)
    unittest.main(verbosity=2)
