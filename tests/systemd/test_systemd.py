#!/usr/bin/env python3
"""The systemd suite: lmpool installed from its Debian package and run by a
real systemd, booted in a systemd-nspawn container.

Steps: build the .deb from this tree (dpkg-buildpackage, then lintian);
build the Debian 12 root filesystem once (mkrootfs.sh; cached in
$LMPOOL_TEST_CACHE, default /var/cache/lmpool-tests, rebuilt when missing);
lay a throw-away overlay over it; boot it with an init wrapper that makes
the cgroup v1 controllers writable (so that MemoryMax= and the delegated
memory controller work); `apt install` the .deb inside; then check, each as
its own case, what issue 13 asks of the unit: readiness, STATUS=, reload,
stop, the watchdog, the journal's events and MESSAGE_IDs and the recipes of
docs/operations.md, MemoryMax= and the fit check, per-worker memory limits,
the socket's group, and the unit's `systemd-analyze security` score.

Commands run inside with `nsenter -t LEADER -a`. Needs root. A case is
skipped only when the kernel lacks what it tests (named in the message).

Environment: LMPOOL_SRCDIR, LMPOOL_FIXTURES (set by meson);
LMPOOL_TEST_ONLY=case,case runs only those cases; LMPOOL_TEST_DEBS=DIR
installs the .debs of DIR instead of building them; LMPOOL_TEST_KEEP=1
leaves the container running and prints how to enter it;
LMPOOL_TEST_EXTRA_DROPIN="Type=simple\nWatchdogSec=0" adds unit settings to
every case (to see a case fail when its feature is taken away).
"""
import datetime
import glob
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import traceback

SRCDIR = os.environ.get("LMPOOL_SRCDIR") or os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
FIXTURES = os.environ.get("LMPOOL_FIXTURES") or os.path.join(SRCDIR, "..", "shared", "fixtures")
CACHE = os.environ.get("LMPOOL_TEST_CACHE", "/var/cache/lmpool-tests")
ROOTFS = os.path.join(CACHE, "rootfs-bookworm")
MODEL = os.path.join(FIXTURES, "models", "llama-q4_k_m.gguf")
DEEP = os.path.join(FIXTURES, "models", "llama-deep-f32.gguf")
ENDPOINT = "ipc:///run/lmpool/lmpool.sock"
SECURITY_TARGET = 2.0


class Skip(Exception):
    pass


def log(msg):
    print(msg, flush=True)


def run(cmd, check=True, **kw):
    r = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, **kw)
    if check and r.returncode != 0:
        raise AssertionError("%s: exit %d\n%s" % (" ".join(cmd), r.returncode, r.stdout[-4000:]))
    return r


def wait_for(what, pred, timeout=60, step=0.2):
    """Polls pred() until it returns a true value; a bound on a wait, not
    a timed assertion: slow machines only make it wait longer."""
    deadline = time.monotonic() + timeout
    while True:
        v = pred()
        if v:
            return v
        if time.monotonic() > deadline:
            raise AssertionError("timed out after %ds waiting for %s" % (timeout, what))
        time.sleep(step)


# --- the package ----------------------------------------------------------


def build_debs(work):
    """Copies the tree (tracked and new files) and builds the packages."""
    src = os.path.join(work, "lmpool-src")
    os.makedirs(src)
    files = run(["git", "-C", SRCDIR, "ls-files", "-co", "--exclude-standard", "-z"]).stdout.split("\0")
    for f in files:
        if not f or not os.path.exists(os.path.join(SRCDIR, f)):
            continue
        os.makedirs(os.path.join(src, os.path.dirname(f)), exist_ok=True)
        shutil.copy2(os.path.join(SRCDIR, f), os.path.join(src, f), follow_symlinks=False)
    env = dict(os.environ, DEB_BUILD_OPTIONS="nocheck parallel=%d" % os.cpu_count())
    for k in ("LMPOOL_FIXTURES", "LMPOOL_BIN", "LMPOOLD_BIN", "MESON_TEST_ITERATION", "ASAN_OPTIONS", "UBSAN_OPTIONS"):
        env.pop(k, None)
    t0 = time.monotonic()
    r = run(["nice", "dpkg-buildpackage", "-b", "-us", "-uc"], check=False, cwd=src, env=env)
    if r.returncode != 0:
        raise AssertionError("dpkg-buildpackage failed:\n" + r.stdout[-6000:])
    log("# dpkg-buildpackage: %.0f s" % (time.monotonic() - t0))
    return work


def debs_in(d):
    debs = sorted(glob.glob(os.path.join(d, "*.deb")))
    names = {os.path.basename(p).split("_")[0]: p for p in debs}
    for want in ("lmpool", "liblmpool0", "liblmpool-dev"):
        assert want in names, "no %s_*.deb in %s" % (want, d)
    return names


def case_package(c):
    """lintian finds no error; the packages hold what they should."""
    changes = glob.glob(os.path.join(c.debdir, "*.changes"))
    if changes:
        r = run(["lintian", "--tag-display-limit", "0", changes[0]], check=False)
        log("\n".join("#   " + l for l in r.stdout.splitlines()))
        errors = [l for l in r.stdout.splitlines() if l.startswith("E:")]
        assert not errors, "lintian errors:\n" + "\n".join(errors)
    else:
        for p in c.debs.values():
            r = run(["lintian", p], check=False)
            assert not [l for l in r.stdout.splitlines() if l.startswith("E:")], r.stdout
    contents = {}
    for name, p in c.debs.items():
        contents[name] = run(["dpkg-deb", "-c", p]).stdout
    for f in ("./usr/bin/lmpoold", "./usr/bin/lmpool", "./usr/bin/lmpool-http", "lmpool-http.service",
              "./usr/share/man/man8/lmpool-http.8.gz", "./etc/lmpool/lmpool.yaml", "lmpoold.service",
              "./usr/lib/sysusers.d/lmpool.conf", "./usr/lib/tmpfiles.d/lmpool.conf",
              "./usr/share/man/man8/lmpoold.8.gz", "./usr/share/man/man1/lmpool.1.gz",
              "./usr/share/man/man5/lmpool.yaml.5.gz"):
        assert f in contents["lmpool"], "lmpool lacks %s" % f
    assert re.search(r"liblmpool\.so\.0\b", contents["liblmpool0"]), contents["liblmpool0"]
    for f in ("./usr/include/lmpool/client.h", "liblmpool.so ->", "pkgconfig/lmpool.pc"):
        assert f in contents["liblmpool-dev"], "liblmpool-dev lacks %s" % f
    # installed state, in the container
    conf = c.sh("dpkg-query -W -f='${Conffiles}' lmpool").stdout
    assert "/etc/lmpool/lmpool.yaml" in conf, "not a conffile: " + conf
    ent = c.sh("getent passwd lmpool; getent group lmpool").stdout.splitlines()
    assert len(ent) == 2 and ent[0].split(":")[2] and int(ent[0].split(":")[2]) < 1000, ent
    st = c.sh("stat -c '%U:%G %a' /var/lib/lmpool").stdout.strip()
    assert st == "lmpool:lmpool 750", st
    assert c.sh("systemctl is-enabled lmpoold", check=False).stdout.strip() == "enabled"
    assert c.sh("systemctl is-enabled lmpool-http", check=False).stdout.strip() == "disabled"


# --- the container --------------------------------------------------------

INIT_WRAPPER = """#!/bin/sh
# tests/systemd: makes the cgroup v1 controllers writable (nspawn mounts
# them read-only), so that MemoryMax= and Delegate= work, then boots.
for c in memory cpu cpuacct pids; do
        [ -d /sys/fs/cgroup/$c ] && mount -o remount,bind,rw /sys/fs/cgroup/$c
done
exec /lib/systemd/systemd "$@"
"""


class Container:
    def __init__(self, work):
        self.work = work
        self.merged = os.path.join(work, "merged")
        self.proc = None
        self.leader = None
        self.cgroups = []
        self.mounted = False

    def sh(self, script, check=True, timeout=300, user=None):
        cmd = ["nsenter", "-t", str(self.leader), "-a", "--", "/usr/bin/env", "-i",
               "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin", "LANG=C.UTF-8",
               "SYSTEMD_PAGER=", "SYSTEMD_COLORS=0"]
        if user:
            cmd += ["setpriv", "--reuid=" + user, "--regid=" + user, "--init-groups", "--"]
        cmd += ["/bin/sh", "-c", script]
        r = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, timeout=timeout)
        if check and r.returncode != 0:
            raise AssertionError("in the container: %s: exit %d\n%s" % (script, r.returncode, r.stdout[-4000:]))
        return r

    def popen(self, script):
        cmd = ["nsenter", "-t", str(self.leader), "-a", "--", "/usr/bin/env", "-i",
               "PATH=/usr/sbin:/usr/bin:/sbin:/bin", "LANG=C.UTF-8", "/bin/sh", "-c", script]
        return subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)

    def write(self, path, text, mode=0o644):
        p = self.merged + path
        os.makedirs(os.path.dirname(p), exist_ok=True)
        with open(p, "w") as f:
            f.write(text)
        os.chmod(p, mode)

    def own_cgroups(self):
        """A child cgroup of ours in each v1 hierarchy but cpuset, for nspawn,
        so that the container does not write at our hierarchies' roots."""
        with open("/proc/self/cgroup") as f:
            for line in f:
                _, ctrls, path = line.rstrip("\n").split(":", 2)
                if not ctrls or "cpuset" in ctrls.split(","):
                    continue
                name = ctrls.replace("name=", "")
                base = os.path.join("/sys/fs/cgroup", name)
                if not os.path.isdir(base):
                    continue
                d = os.path.join(base + path, "lmpool-test-%d" % os.getpid())
                try:
                    os.makedirs(d, exist_ok=True)
                    self.cgroups.append(d)
                except OSError:
                    pass

    def boot(self):
        for d in ("lower-unused", "upper", "ovlwork", "merged"):
            os.makedirs(os.path.join(self.work, d), exist_ok=True)
        r = run(["mount", "-t", "overlay", "overlay", "-o",
                 "lowerdir=%s,upperdir=%s,workdir=%s" % (ROOTFS, os.path.join(self.work, "upper"),
                                                         os.path.join(self.work, "ovlwork")), self.merged],
                check=False)
        if r.returncode == 0:
            self.mounted = True
        else:
            log("# overlayfs unavailable (%s): copying the root filesystem" % r.stdout.strip())
            os.rmdir(self.merged)
            run(["cp", "-a", "--reflink=auto", ROOTFS, self.merged])
        self.write("/usr/local/sbin/lmpool-test-init", INIT_WRAPPER, 0o755)
        self.own_cgroups()
        cgroups = self.cgroups

        def enter_cgroups():
            for d in cgroups:
                try:
                    with open(os.path.join(d, "cgroup.procs"), "w") as f:
                        f.write(str(os.getpid()))
                except OSError:
                    pass
        self.console = open(os.path.join(self.work, "console.log"), "w")
        self.proc = subprocess.Popen(
            ["systemd-nspawn", "-q", "-D", self.merged, "--register=no", "--keep-unit", "--console=pipe",
             "--private-network", "--machine=lmpooltest", "--kill-signal=SIGRTMIN+3",
             "/usr/local/sbin/lmpool-test-init"],
            stdin=subprocess.DEVNULL, stdout=self.console, stderr=subprocess.STDOUT, preexec_fn=enter_cgroups)
        self.leader = wait_for("the container's init", self.find_leader, timeout=60)
        # Until systemd has its bus up, systemctl cannot ask it anything; and
        # until it has made /run/systemd/system (just after its exec),
        # systemctl says "offline" without waiting: both mean "not yet".
        def answer():
            r = self.sh("systemctl is-system-running --wait", check=False, timeout=180)
            last = r.stdout.strip().splitlines()[-1] if r.stdout.strip() else ""
            if "Failed to connect" in r.stdout or last in ("", "offline"):
                return None
            return last
        t0 = time.monotonic()
        try:
            state = wait_for("the container's systemd to answer", answer, timeout=120)
        except AssertionError as e:
            raise AssertionError("%s\nprocesses: %s\nconsole:\n%s" % (
                e, self.sh("ps -eo pid,stat,etime,args", check=False, timeout=30).stdout,
                open(os.path.join(self.work, "console.log")).read()[-3000:]))
        log("# container booted: %s in %.1f s" % (state, time.monotonic() - t0))
        if state not in ("running", "degraded"):
            raise AssertionError("container did not boot: %s\n%s" % (state, open(os.path.join(self.work, "console.log")).read()[-3000:]))
        if state == "degraded":
            log("# container degraded: " + self.sh("systemctl --failed --no-legend", check=False).stdout.strip())

    def find_leader(self):
        if self.proc.poll() is not None:
            raise AssertionError("systemd-nspawn exited with %d:\n%s" % (
                self.proc.returncode, open(os.path.join(self.work, "console.log")).read()[-3000:]))
        children, nspid = {}, {}
        for p in os.listdir("/proc"):
            if not p.isdigit():
                continue
            try:
                with open("/proc/%s/status" % p) as f:
                    st = f.read()
            except OSError:
                continue
            ppid = int(re.search(r"^PPid:\s+(\d+)", st, re.M).group(1))
            children.setdefault(ppid, []).append(int(p))
            m = re.search(r"^NSpid:\s+(.*)$", st, re.M)
            nspid[int(p)] = m.group(1).split() if m else []
        todo = [self.proc.pid]
        while todo:
            p = todo.pop()
            for ch in children.get(p, []):
                if len(nspid.get(ch, [])) > 1 and nspid[ch][-1] == "1":
                    with open("/proc/%d/comm" % ch) as f:
                        if f.read().strip() == "systemd":
                            return ch
                    return None
                todo.append(ch)
        return None

    def shutdown(self):
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=60)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        if self.mounted:
            run(["umount", self.merged], check=False)
        for d in reversed(self.cgroups):
            # children systemd left behind first
            for sub, _, _ in sorted(os.walk(d), key=lambda t: -len(t[0])):
                try:
                    os.rmdir(sub)
                except OSError:
                    pass


# --- lmpoold inside -------------------------------------------------------

BASE_CONFIG = """log:
  level: info
  memory_interval_s: 1
limits:
  drain_timeout_ms: 20000
workers:
  respawn_min_ms: 100
  respawn_max_ms: 2000
models:
"""


def model_yaml(name, path, workers=2, ctx=2048, extra=""):
    return ("  - name: %s\n    path: %s\n    workers: %d\n    threads: 1\n    ctx: %d\n%s"
            % (name, path, workers, ctx, extra))


class Case:
    def __init__(self, c, debs, debdir):
        self.c = c
        self.debs = debs
        self.debdir = debdir

    def __getattr__(self, k):
        return getattr(self.c, k)

    def configure(self, models, dropin="", base=BASE_CONFIG):
        """Stops lmpoold, writes its configuration and a drop-in, resets its
        journal cursor and failure state."""
        self.sh("systemctl stop lmpoold; systemctl reset-failed lmpoold 2>/dev/null; true")
        self.write("/etc/lmpool/lmpool.yaml", base + models)
        # LMPOOL_TEST_EXTRA_DROPIN: lines added to every case's drop-in, to
        # check that a case fails when the feature it tests is taken away
        # (e.g. "Type=simple", "WatchdogSec=0").
        extra = os.environ.get("LMPOOL_TEST_EXTRA_DROPIN", "").replace("\\n", "\n")
        self.write("/etc/systemd/system/lmpoold.service.d/test.conf", "[Service]\n" + dropin + extra + "\n")
        self.sh("systemctl daemon-reload")
        self.cursor = self.sh("journalctl -n 0 --show-cursor -q | sed -n 's/^-- cursor: //p'", check=False).stdout.strip()

    def show(self, *props):
        out = self.sh("systemctl show lmpoold -p " + ",".join(props)).stdout
        return dict(l.split("=", 1) for l in out.splitlines() if "=" in l)

    def journal(self, *matches, unit=True, since_cursor=True):
        """Journal entries (of lmpoold's unit) since configure(), as dicts,
        that have every FIELD=VALUE of matches. The matches are applied
        here: journalctl 252 with --after-cursor and a match returns
        nothing."""
        q = "journalctl -o json --no-pager"
        if unit:
            q += " -u lmpoold"
        if since_cursor and getattr(self, "cursor", ""):
            q += " --after-cursor='%s'" % self.cursor
        elif matches:
            q += "".join(" '%s'" % m for m in matches)
        out = self.sh(q, check=False).stdout
        recs = [json.loads(l) for l in out.splitlines() if l.startswith("{")]
        for m in matches:
            k, v = m.split("=", 1)
            recs = [r for r in recs if r.get(k) == v]
        return recs

    def generate(self, model, n=8, extra="", user=None, check=True):
        return self.sh("lmpool generate --endpoint %s --model %s --prompt 'Hello there' -n %d --timeout-ms 60000 %s"
                       % (ENDPOINT, model, n, extra), check=check, user=user)

    def worker_pids(self):
        """name -> pid of lmpoold's workers (lmpoold --worker --name NAME)."""
        out = self.sh("for p in $(systemctl show -p ControlGroup --value lmpoold | xargs -I{} cat /sys/fs/cgroup/unified{}/cgroup.procs 2>/dev/null || true); do "
                      "tr '\\0' ' ' < /proc/$p/cmdline 2>/dev/null; echo \" pid=$p\"; done", check=False).stdout
        if "pid=" not in out:
            out = self.sh("for p in $(pgrep -f 'lmpoold --worker'); do tr '\\0' ' ' < /proc/$p/cmdline; echo \" pid=$p\"; done",
                          check=False).stdout
        pids = {}
        for line in out.splitlines():
            m = re.search(r"--worker .*--name (\S+).* pid=(\d+)", line)
            if m:
                pids[m.group(1)] = int(m.group(2))
        return pids

    def running(self):
        """Requests running in workers now (lmpool stats)."""
        r = self.sh("lmpool stats --endpoint %s --json --timeout-ms 5000" % ENDPOINT, check=False)
        try:
            return sum(w.get("active", 0) for w in json.loads(r.stdout)["workers"])
        except (ValueError, KeyError):
            return 0

    def pid_alive(self, pid):
        r = self.sh("test -d /proc/%d && ! grep -q '^State:.*Z' /proc/%d/status" % (pid, pid), check=False)
        return r.returncode == 0


def memory_cgroup(case):
    cg = case.show("ControlGroup")["ControlGroup"]
    p = "/sys/fs/cgroup/memory" + cg
    if case.sh("test -d %s" % p, check=False).returncode != 0:
        raise Skip("the kernel offers no cgroup v1 memory controller here (no %s)" % p)
    return p


# --- the cases ------------------------------------------------------------


def case_start_ready(c):
    """`systemctl start` returns after READY=1: right after it, health is ok
    and a request is served; `systemctl status` shows the STATUS= line."""
    # Two models, two workers each, one of them the deep f32 model: start-up
    # takes long enough that a unit which did not wait for READY=1 would be
    # seen as active before the workers are.
    c.configure(model_yaml("m", "/var/lib/lmpool/models/llama-q4_k_m.gguf") +
                model_yaml("deep", "/var/lib/lmpool/models/llama-deep-f32.gguf"))
    c.sh("systemctl start lmpoold")
    r = c.sh("lmpool health --endpoint %s --json --timeout-ms 2000" % ENDPOINT, check=False)
    assert r.returncode == 0 and '"ok"' in r.stdout, "not healthy right after start returned:\n" + r.stdout
    c.generate("m")
    st = c.sh("systemctl status lmpoold --no-pager", check=False).stdout
    assert re.search(r'Status: "\d+/4 workers ready, \d+ running, \d+ queued, \d+ served', st), st
    # systemd saw the service become active after every worker was ready:
    # each worker_started event was sent before READY=1.
    out = c.sh("systemctl show lmpoold -p ActiveEnterTimestamp --timestamp=us+utc").stdout.strip()
    active = datetime.datetime.strptime(out.split("=", 1)[1], "%a %Y-%m-%d %H:%M:%S.%f UTC").replace(
        tzinfo=datetime.timezone.utc).timestamp() * 1e6
    started = [int(e["_SOURCE_REALTIME_TIMESTAMP"]) for e in c.journal("LMPOOL_EVENT=worker_started")]
    assert len(started) == 4, "%d worker_started events" % len(started)
    assert max(started) <= active, "systemd took the service as started %.0f us before its last worker was ready" % (
        max(started) - active)
    # logged just after READY=1
    wait_for("the ready event", lambda: c.journal("LMPOOL_EVENT=ready"), timeout=30)


def case_reload(c):
    """`systemctl reload` re-reads the configuration; a request running
    across it completes."""
    c.configure(model_yaml("deep", "/var/lib/lmpool/models/llama-deep-f32.gguf", workers=1, ctx=4096))
    c.sh("systemctl start lmpoold")
    pid = c.show("MainPID")["MainPID"]
    gen = c.popen("lmpool generate --endpoint %s --model deep --prompt 'Once upon a time' -n 4000 --ignore-eos "
                  "--temp 0 --timeout-ms 120000" % ENDPOINT)
    wait_for("the request to run", c.running, timeout=60, step=0.05)
    text = open(c.merged + "/etc/lmpool/lmpool.yaml").read().replace("drain_timeout_ms: 20000", "drain_timeout_ms: 15000")
    c.write("/etc/lmpool/lmpool.yaml", text)
    c.sh("systemctl reload lmpoold")
    rel = wait_for("the reloaded event", lambda: c.journal("LMPOOL_EVENT=reloaded"), timeout=30)
    out, err = gen.communicate(timeout=300)
    assert gen.returncode == 0, "the running request failed across the reload: %s %s" % (out[-500:], err[-2000:])
    done = c.journal("LMPOOL_EVENT=request_done")
    assert done, "no request_done"
    assert int(rel[0]["__MONOTONIC_TIMESTAMP"]) < int(done[-1]["__MONOTONIC_TIMESTAMP"]), \
        "the request ended before the reload: make it longer"
    assert "limits.drain_timeout_ms" in rel[0].get("APPLIED", ""), rel[0]
    assert c.show("MainPID")["MainPID"] == pid, "the daemon was restarted, not reloaded"


def case_stop_drains(c):
    """`systemctl stop` lets a running request finish and exits cleanly,
    within TimeoutStopSec."""
    c.configure(model_yaml("deep", "/var/lib/lmpool/models/llama-deep-f32.gguf", workers=1, ctx=4096))
    c.sh("systemctl start lmpoold")
    gen = c.popen("lmpool generate --endpoint %s --model deep --prompt 'Once upon a time' -n 1500 --ignore-eos "
                  "--temp 0 --timeout-ms 120000" % ENDPOINT)
    wait_for("the request to run", c.running, timeout=60, step=0.05)
    c.sh("systemctl stop lmpoold")
    out, err = gen.communicate(timeout=300)
    show = c.show("Result", "ExecMainCode", "ExecMainStatus", "ActiveState")
    assert show["ActiveState"] == "inactive", show
    assert show["Result"] == "success", "stop did not end cleanly (Result=%s): not drained within TimeoutStopSec" % show
    assert show["ExecMainCode"] == "1" and show["ExecMainStatus"] == "0", "lmpoold did not exit 0: %s" % show
    assert gen.returncode == 0, "the running request was cut by stop: %s" % err[-2000:]
    assert c.journal("LMPOOL_EVENT=stopped"), "no stopped event"


def case_watchdog(c):
    """A supervisor that hangs is killed by the watchdog and restarted; its
    workers go with it."""
    c.configure(model_yaml("m", "/var/lib/lmpool/models/llama-q4_k_m.gguf"),
                "WatchdogSec=3s\nEnvironment=LMPOOL_TEST_HANG_ON_SIGUSR2=1\n")
    c.sh("systemctl start lmpoold")
    pid = int(c.show("MainPID")["MainPID"])
    workers = c.worker_pids()
    assert len(workers) == 2, workers
    restarts = int(c.show("NRestarts")["NRestarts"])
    c.sh("systemctl kill -s SIGUSR2 --kill-who=main lmpoold")
    wait_for("a new lmpoold", lambda: int(c.show("MainPID")["MainPID"]) not in (0, pid)
             and c.show("ActiveState")["ActiveState"] == "active", timeout=120)
    assert int(c.show("NRestarts")["NRestarts"]) == restarts + 1
    msgs = [e.get("MESSAGE", "") for e in c.journal(unit=False)]
    assert any("Watchdog timeout" in m for m in msgs), "systemd logged no watchdog timeout"
    for name, wp in workers.items():
        assert not c.pid_alive(wp), "worker %s (pid %d) outlived its supervisor" % (name, wp)
    c.generate("m")


def expected_ids():
    """MESSAGE_IDs from the table of docs/operations.md."""
    text = open(os.path.join(SRCDIR, "docs", "operations.md")).read()
    return dict(re.findall(r"^\| `([a-z_]+)` \| `([0-9a-f]{32})` \|", text, re.M))


def recipes():
    """The journalctl command lines of docs/operations.md (indented code;
    a command goes on while it ends with a backslash or a pipe, or has an
    open quote, parenthesis or brace)."""
    text = open(os.path.join(SRCDIR, "docs", "operations.md")).read()

    def complete(cmd):
        code = re.sub(r"\s+#[^'\n]*$", "", cmd)
        return not code.rstrip().endswith(("\\", "|")) and code.count("'") % 2 == 0 \
            and code.count("(") == code.count(")") and code.count("{") == code.count("}")

    out, cur = [], None
    for line in text.splitlines():
        if cur is None:
            if line.startswith("    journalctl "):
                cur = line[4:]
            else:
                continue
        elif line.startswith("    "):
            cur += "\n" + line[4:]
        else:
            out.append(cur)
            cur = None
            continue
        if complete(cur):
            out.append(cur)
            cur = None
    if cur is not None:
        out.append(cur)
    return out


def case_journal(c):
    """The journal holds model_loaded (RSS/PSS), request_done (latencies),
    worker_exited (after a kill), each with its MESSAGE_ID; the recipes of
    docs/operations.md run and return them."""
    ids = expected_ids()
    for ev in ("model_loaded", "request_done", "worker_exited"):
        assert re.fullmatch(r"[0-9a-f]{32}", ids.get(ev, "")), "docs/operations.md has no MESSAGE_ID for " + ev
    c.configure(model_yaml("m", "/var/lib/lmpool/models/llama-q4_k_m.gguf"))
    c.sh("systemctl start lmpoold")
    c.generate("m")
    victim = c.worker_pids()["m/0"]
    c.sh("kill -9 %d" % victim)
    wait_for("worker_exited", lambda: c.journal("LMPOOL_EVENT=worker_exited"), timeout=30)
    wait_for("a memory event", lambda: c.journal("LMPOOL_EVENT=memory"), timeout=30)
    for ev, fields in (("model_loaded", ("RSS_BYTES", "PSS_BYTES", "LMPOOL_MODEL")),
                       ("request_done", ("TTFT_MS", "TOTAL_MS", "TOKENS_PER_S", "LMPOOL_WORKER")),
                       ("worker_exited", ("LMPOOL_WORKER",))):
        recs = c.journal("LMPOOL_EVENT=" + ev)
        assert recs, "no %s in the journal" % ev
        for f in fields:
            assert f in recs[0], "%s lacks %s: %s" % (ev, f, sorted(recs[0]))
        assert recs[0].get("MESSAGE_ID") == ids[ev], "%s: MESSAGE_ID %s, documented %s" % (
            ev, recs[0].get("MESSAGE_ID"), ids[ev])
        by_id = c.journal("MESSAGE_ID=" + ids[ev], since_cursor=False)
        assert by_id, "journalctl MESSAGE_ID=%s finds nothing" % ids[ev]
    ex = c.journal("LMPOOL_EVENT=worker_exited")[0]
    assert ex.get("EXIT_SIGNAL") == "9", ex
    rec = recipes()
    assert len(rec) >= 8, rec
    produced = ("model_loaded", "request_done", "worker_exited", "LMPOOL_EVENT=memory")
    for cmd in rec:
        r = c.sh(cmd, check=False)
        assert r.returncode == 0, "recipe failed: %s\n%s" % (cmd, r.stdout[-2000:])
        if any(p in cmd for p in produced):
            # a recipe that selects (slow requests) may rightly print
            # nothing: then its journalctl part must find the records
            probe = cmd.split("|")[0].rstrip(" \\\n") if "select(" in cmd else cmd
            r = c.sh(probe, check=False)
            body = [l for l in r.stdout.splitlines() if l.strip() and not l.startswith("-- ")]
            assert body, "recipe returned nothing: " + probe
    log("#   %d recipes of docs/operations.md ran" % len(rec))


def case_memory_fit(c):
    """MemoryMax= bounds the service: a model that does not fit is refused by
    the fit check with a clear message, and nothing is OOM-killed."""
    # KV cache: 2 layers x 2 x 128 floats x 4 bytes = 2 KiB a token;
    # ctx 262144 x 2 workers = 1 GiB, far past MemoryMax=256M.
    c.configure(model_yaml("m", "/var/lib/lmpool/models/llama-q4_k_m.gguf", workers=1) +
                model_yaml("big", "/var/lib/lmpool/models/llama-q4_k_m.gguf", workers=2, ctx=262144),
                "MemoryMax=256M\n")
    c.sh("systemctl start lmpoold")
    cg = memory_cgroup(c)
    limit = int(c.sh("cat %s/memory.limit_in_bytes" % cg).stdout)
    assert limit == 256 << 20, "MemoryMax= not applied: memory.limit_in_bytes = %d" % limit
    refused = c.journal("LMPOOL_EVENT=model_refused")
    assert refused, "the model that does not fit was not refused"
    msg = refused[0]["MESSAGE"]
    assert "big" in msg and "needs" in msg and "cgroup limit 256.0 MiB" in msg, msg
    assert refused[0].get("MESSAGE_ID") == expected_ids().get("model_refused"), refused[0].get("MESSAGE_ID")
    c.generate("m")
    show = c.show("NRestarts", "ActiveState", "Result")
    assert show["ActiveState"] == "active" and show["NRestarts"] == "0", show
    oom = c.sh("cat %s/memory.oom_control" % cg).stdout
    m = re.search(r"oom_kill (\d+)", oom)
    assert m and m.group(1) == "0", "OOM kills in the service: " + oom


def case_worker_memory_max(c):
    """A worker over its own memory_max (its own cgroup under Delegate=) is
    killed alone: the supervisor and the other model's workers go on."""
    def config(limit):
        c.configure(model_yaml("m", "/var/lib/lmpool/models/llama-q4_k_m.gguf", workers=1) +
                    model_yaml("capped", "/var/lib/lmpool/models/llama-deep-f32.gguf", workers=1, ctx=8192,
                               extra="    memory_max: %d\n" % limit),
                    "MemoryMax=2G\n")
        c.sh("systemctl start lmpoold")
        cg = memory_cgroup(c)
        wcg = cg + "/worker-capped-0"
        assert c.sh("test -d %s" % wcg, check=False).returncode == 0, "no per-worker cgroup %s:\n%s" % (
            wcg, "\n".join(e.get("MESSAGE", "") for e in c.journal()))
        assert int(c.sh("cat %s/memory.limit_in_bytes" % wcg).stdout) == limit
        return cg, wcg

    # First with room: what does the worker use once loaded, idle?
    cg, wcg = config(1 << 30)
    idle = int(c.sh("cat %s/memory.max_usage_in_bytes" % wcg).stdout)
    # Then with a limit it fits in idle, but not while it runs a long
    # prompt (KV cache and attention scratch over 6000 tokens).
    limit = (idle + (4 << 20)) & ~4095
    cg, wcg = config(limit)
    main = c.show("MainPID")["MainPID"]
    m_pid = c.worker_pids().get("m/0")
    assert m_pid, c.worker_pids()
    r = c.sh("lmpool generate --endpoint %s --model capped -n 4 --timeout-ms 60000 --prompt \"$(yes 'the cat sat' | "
             "head -n 1200 | tr '\\n' ' ')\"" % ENDPOINT, check=False)
    assert r.returncode != 0, "the request over memory_max was served: idle %d, limit %d" % (idle, limit)
    ex = wait_for("the capped worker's death",
                  lambda: c.journal("LMPOOL_EVENT=worker_exited", "LMPOOL_WORKER=capped/0"), timeout=60)
    assert ex[0].get("EXIT_SIGNAL") == "9", "capped/0 did not die of SIGKILL: %s" % ex[0]
    oom = c.sh("cat %s/memory.oom_control" % wcg).stdout
    assert int(re.search(r"oom_kill (\d+)", oom).group(1)) >= 1, "not killed by its cgroup's OOM: " + oom
    log("#   capped/0: idle %.1f MiB, memory_max %.1f MiB, killed by its cgroup's OOM killer" % (
        idle / 2**20, limit / 2**20))
    c.generate("m")
    assert c.worker_pids().get("m/0") == m_pid, "the other model's worker was hit"
    assert not c.journal("LMPOOL_EVENT=worker_exited", "LMPOOL_WORKER=m/0"), "m/0 exited"
    show = c.show("MainPID", "ActiveState", "NRestarts")
    assert show["MainPID"] == main and show["ActiveState"] == "active" and show["NRestarts"] == "0", show
    m = re.search(r"oom_kill (\d+)", c.sh("cat %s/memory.oom_control" % cg).stdout)
    assert m and m.group(1) == "0", "the service itself had OOM kills"
    # and the capped worker is respawned and serves short prompts again
    wait_for("capped/0 back", lambda: c.generate("capped", check=False).returncode == 0, timeout=60, step=1)


def case_socket_group(c):
    """A user outside group lmpool cannot connect to the socket; a member can."""
    c.configure(model_yaml("m", "/var/lib/lmpool/models/llama-q4_k_m.gguf", workers=1))
    c.sh("id alice >/dev/null 2>&1 || useradd -m alice; id bob >/dev/null 2>&1 || useradd -m -G lmpool bob")
    c.sh("systemctl start lmpoold")
    st = c.sh("stat -c '%a %U %G' /run/lmpool/lmpool.sock /run/lmpool").stdout.split("\n")
    assert st[0] == "660 lmpool lmpool", st
    assert st[1] == "750 lmpool lmpool", st
    r = c.sh("lmpool health --endpoint %s --timeout-ms 3000" % ENDPOINT, user="alice", check=False)
    assert r.returncode != 0, "alice, not in group lmpool, got an answer:\n" + r.stdout
    r = c.generate("m", user="alice", extra="--timeout-ms 3000", check=False)
    assert r.returncode != 0, "alice, not in group lmpool, was served:\n" + r.stdout
    c.generate("m", user="bob")
    r = c.sh("lmpool health --endpoint %s --timeout-ms 10000" % ENDPOINT, user="bob", check=False)
    assert r.returncode == 0, r.stdout


def case_security(c):
    """`systemd-analyze security lmpoold` scores the unit at most 2.0."""
    out = c.sh("systemd-analyze security lmpoold --no-pager", check=False).stdout
    m = re.search(r"Overall exposure level for lmpoold\.service: (\d+\.\d+)", out)
    assert m, out[-3000:]
    score = float(m.group(1))
    log("#   systemd-analyze security: " + m.group(0))
    for line in out.splitlines():
        if line.startswith("✗"):
            log("#     " + line.strip())
    assert score <= SECURITY_TARGET, "exposure %.1f > %.1f" % (score, SECURITY_TARGET)


CASES = [
    ("package", case_package),
    ("start_ready", case_start_ready),
    ("reload", case_reload),
    ("stop_drains", case_stop_drains),
    ("watchdog", case_watchdog),
    ("journal", case_journal),
    ("memory_fit", case_memory_fit),
    ("worker_memory_max", case_worker_memory_max),
    ("socket_group", case_socket_group),
    ("security", case_security),
]


def main():
    if os.geteuid() != 0:
        print("skipped: the systemd suite needs root (systemd-nspawn, overlayfs, cgroups)")
        return 77
    for tool in ("systemd-nspawn", "debootstrap", "dpkg-buildpackage", "lintian", "nsenter", "dh"):
        if not shutil.which(tool):
            print("%s not found: run scripts/install-deps" % tool)
            return 1
    for f in (MODEL, DEEP):
        if not os.path.exists(f):
            print("fixture %s not found: skipped" % f)
            return 77
    # meson's timeout sends SIGTERM: stop the container and unmount on the way out
    signal.signal(signal.SIGTERM, lambda *_: sys.exit("terminated"))
    only = [s for s in os.environ.get("LMPOOL_TEST_ONLY", "").split(",") if s]
    t_start = time.monotonic()
    os.makedirs(CACHE, exist_ok=True)
    work = tempfile.mkdtemp(prefix="run-", dir=CACHE)
    c = Container(work)
    failed, passed, skipped = [], [], []
    keep = os.environ.get("LMPOOL_TEST_KEEP") == "1"
    try:
        t0 = time.monotonic()
        r = run([os.path.join(SRCDIR, "tests", "systemd", "mkrootfs.sh"), ROOTFS], check=False)
        if r.returncode != 0:
            raise AssertionError("building the root filesystem failed:\n" + r.stdout[-3000:])
        log("# root filesystem %s: %.0f s" % (ROOTFS, time.monotonic() - t0))
        debdir = os.environ.get("LMPOOL_TEST_DEBS") or build_debs(os.path.join(work, "pkg"))
        debs = debs_in(debdir)
        t0 = time.monotonic()
        c.boot()
        log("# container booted: %.1f s (leader pid %d)" % (time.monotonic() - t0, c.leader))
        os.makedirs(c.merged + "/root/debs", exist_ok=True)
        for name in ("lmpool", "liblmpool0", "liblmpool-dev"):
            shutil.copy(debs[name], c.merged + "/root/debs/")
        c.sh("DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends /root/debs/*.deb")
        for f in (MODEL, DEEP):
            shutil.copy(f, c.merged + "/var/lib/lmpool/models/")
            os.chmod(c.merged + "/var/lib/lmpool/models/" + os.path.basename(f), 0o644)
        case = Case(c, debs, debdir)
        for name, fn in CASES:
            if only and name not in only:
                continue
            t0 = time.monotonic()
            try:
                fn(case)
                passed.append(name)
                log("ok %s (%.1f s)" % (name, time.monotonic() - t0))
            except Skip as e:
                skipped.append(name)
                log("skip %s: %s" % (name, e))
            except Exception as e:
                failed.append(name)
                log("FAIL %s: %s" % (name, e))
                if not isinstance(e, AssertionError):
                    traceback.print_exc()
                r = c.sh("journalctl -u lmpoold -n 30 --no-pager", check=False)
                log("\n".join("#   " + l for l in r.stdout.splitlines()))
    except Exception as e:
        failed.append("setup")
        log("FAIL setup: %s" % e)
        if not isinstance(e, AssertionError):
            traceback.print_exc()
    finally:
        if keep and c.leader:
            log("# kept: nsenter -t %d -a bash; journal: journalctl -D %s/var/log/journal/*" % (c.leader, c.merged))
        else:
            c.shutdown()
            shutil.rmtree(work, ignore_errors=True)
    log("# systemd suite: %d passed, %d failed, %d skipped in %.0f s" % (len(passed), len(failed), len(skipped),
                                                                       time.monotonic() - t_start))
    if failed:
        return 1
    if skipped and not passed:
        return 77
    return 0


if __name__ == "__main__":
    sys.exit(main())
