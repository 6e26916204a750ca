#!/usr/bin/python3
"""imgate-comet master and workers, as real processes on 127.0.0.1.

Each test starts its own master (-f) with a generated config on free ports
and a unique shm name, and cleans up by pid. Run from the build directory
(make check does), or set IMGATE_COMET to the binary. KEEP_LOGS=1 keeps
each test's directory (config, log) and prints where it is.
"""
import http.client
import json
import os
import shutil
import signal
import socket
import socketserver
import struct
import subprocess
import sys
import tempfile
import threading
import time
import unittest

import msgpack

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)),
                                "..", "lib"))
import harness  # noqa: E402
from harness import alive, children, free_port, read, wait_for  # noqa: E402

BIN = None  # set in main: harness.find_binary("imgate-comet")
SHM_BIN = None


class Comet:
    """One imgate-comet master with its config, log and cleanup."""

    seq = 0

    def __init__(self, workers=2, **over):
        Comet.seq += 1
        self.dir = tempfile.mkdtemp(prefix="imgate-comet-test.")
        self.conf_path = os.path.join(self.dir, "comet.conf")
        self.log_path = os.path.join(self.dir, "comet.log")
        self.pid_path = os.path.join(self.dir, "comet.pid")
        self.shm_name = "/imgate-test-%d-%d" % (os.getpid(), Comet.seq)
        self.tcp = free_port()
        self.admin = free_port()
        self.settings = {
            "server": {
                "workers": str(workers),
                "pid_file": self.pid_path,
                "drain_timeout": "2s",
                "log_level": "info",
            },
            "listen": {
                "tcp": "127.0.0.1:%d" % self.tcp,
                "ws": "off",
                "admin": "127.0.0.1:%d" % self.admin,
            },
            "shm": {
                "name": self.shm_name,
                "buckets": "16",
                "channels_per_bucket": "16",
                "rooms_per_bucket": "4",
                "max_workers": "8",
            },
        }
        for key, value in over.items():
            section, name = key.split("__")
            self.settings.setdefault(section, {})[name] = value
        self.write_conf()
        self.proc = None
        self.pid = None

    def write_conf(self, extra=""):
        harness.write_ini(self.conf_path, self.settings)
        with open(self.conf_path, "a") as f:
            f.write(extra)

    def start(self, foreground=True):
        args = [BIN, "-c", self.conf_path] + (["-f"] if foreground else [])
        self.proc = harness.spawn(args, self.log_path)
        self.pid = self.proc.pid
        wait_for(lambda: self.http("/healthz")[0] == 200, what="healthz 200")
        return self

    def log(self):
        with open(self.log_path, errors="replace") as f:
            return f.read()

    def wait_log(self, text, timeout=5.0):
        wait_for(lambda: text in self.log(), timeout, "log line %r" % text)

    def http(self, path):
        try:
            c = http.client.HTTPConnection("127.0.0.1", self.admin, timeout=2)
            c.request("GET", path)
            r = c.getresponse()
            body = r.read().decode()
            c.close()
            return r.status, body
        except OSError:
            return None, ""

    def metric(self, name):
        status, body = self.http("/metrics")
        for line in body.splitlines():
            if line.startswith(name + " "):
                return float(line.split()[1])
        return None

    def workers(self):
        return children(self.pid)

    def wait_workers(self, n, timeout=5.0):
        """The worker pids once there are n of them."""
        return wait_for(lambda: (lambda w: w if len(w) == n else None)(
            self.workers()), timeout, "%d workers" % n)

    def signal(self, sig):
        os.kill(self.pid, sig)

    def cleanup(self):
        if self.pid is not None:
            kids = self.workers()
            if self.proc.poll() is None:
                self.proc.send_signal(signal.SIGTERM)
                try:
                    self.proc.wait(timeout=5)
                except subprocess.TimeoutExpired:
                    self.proc.kill()
                    self.proc.wait()
            for k in kids:
                if alive(k):
                    os.kill(k, signal.SIGKILL)
        try:
            os.unlink("/dev/shm" + self.shm_name)
        except FileNotFoundError:
            pass
        if os.environ.get("KEEP_LOGS"):
            sys.stderr.write("logs in %s\n" % self.dir)
        else:
            shutil.rmtree(self.dir, ignore_errors=True)


def run_comet(*args):
    """imgate-comet run to its end: (exit status, stdout, stderr)."""
    r = subprocess.run([BIN] + list(args), capture_output=True, text=True,
                       timeout=10)
    return r.returncode, r.stdout, r.stderr


def connect_accepted(port, comet, timeout=3.0):
    """Connect and wait until a worker has accepted the connection."""
    before = comet.metric("imgate_comet_conn_accepted_total") or 0
    s = socket.create_connection(("127.0.0.1", port), timeout=2)
    try:
        wait_for(lambda: (comet.metric("imgate_comet_conn_accepted_total") or 0)
                 > before, timeout, "an accepted connection on %d" % port)
    finally:
        s.close()


class FakeLogic(socketserver.ThreadingTCPServer):
    """A msgpack-rpc peer that authenticates every client (Connect) and
    answers every other call with an empty map."""

    daemon_threads = True
    allow_reuse_address = True

    def __init__(self, fixed_key=None):
        self.keys = 0
        self.fixed_key = fixed_key
        super().__init__(("127.0.0.1", 0), FakeLogicHandler)
        self.port = self.server_address[1]
        threading.Thread(target=self.serve_forever, daemon=True).start()

    def stop(self):
        self.shutdown()
        self.server_close()


class FakeLogicHandler(socketserver.BaseRequestHandler):
    def handle(self):
        unpacker = msgpack.Unpacker(raw=False)
        while True:
            data = self.request.recv(65536)
            if not data:
                return
            unpacker.feed(data)
            for msg in unpacker:
                if msg[0] != 0:
                    continue
                _, msgid, method, params = msg
                result = {}
                if method == "Connect":
                    self.server.keys += 1
                    key = self.server.fixed_key or "key-%d" % self.server.keys
                    result = {"mid": 7, "key": key,
                              "room_id": "live://1", "accepts": [1000],
                              "heartbeat": 240}
                self.request.sendall(msgpack.packb([1, msgid, None, result]))


def imgate_shm(comet, view):
    """imgate-shm's JSON view of the comet's segment."""
    r = subprocess.run([SHM_BIN, "-c", comet.conf_path, view, "--json"],
                       capture_output=True, text=True, timeout=10)
    if r.returncode != 0:
        raise AssertionError("imgate-shm %s: %s" % (view, r.stderr))
    return json.loads(r.stdout)


def goim_frame(op, body=b"", seq=1):
    return struct.pack(">ihhii", 16 + len(body), 16, 1, op, seq) + body


def read_frame(sock):
    head = b""
    while len(head) < 16:
        chunk = sock.recv(16 - len(head))
        if not chunk:
            raise EOFError("connection closed")
        head += chunk
    plen, hlen, ver, op, seq = struct.unpack(">ihhii", head)
    body = b""
    while len(body) < plen - hlen:
        chunk = sock.recv(plen - hlen - len(body))
        if not chunk:
            raise EOFError("connection closed")
        body += chunk
    return op, body


class CometMasterTest(unittest.TestCase):
    def comet(self, **kw):
        c = Comet(**kw)
        self.addCleanup(c.cleanup)
        return c

    def comet_with_logic(self, fixed_key=None, **kw):
        """A started master whose workers authenticate against a
        FakeLogic; Redis is a port nobody listens on."""
        logic = FakeLogic(fixed_key=fixed_key)
        self.addCleanup(logic.stop)
        return self.comet(logic__addr="127.0.0.1:%d" % logic.port,
                          redis__addr="127.0.0.1:%d" % free_port(),
                          **kw).start()

    def auth_clients(self, c, n, token=b'{"mid":7}'):
        """n TCP clients authenticated (op 7 answered by op 8)."""
        out = []
        for _ in range(n):
            s = socket.create_connection(("127.0.0.1", c.tcp), timeout=3)
            self.addCleanup(s.close)
            s.sendall(goim_frame(7, token))
            self.assertEqual(read_frame(s)[0], 8)
            out.append(s)
        return out

    def test_check_config(self):
        c = self.comet()
        rc, out, err = run_comet("-t", "-c", c.conf_path)
        self.assertEqual(rc, 0, err)
        self.assertEqual(out.strip(), "ok")
        c.settings["server"]["workerz"] = "3"
        c.write_conf()
        rc, out, err = run_comet("-t", "-c", c.conf_path)
        self.assertEqual(rc, 1)
        self.assertIn(c.conf_path + ":", err)
        self.assertIn("[server] workerz: unknown setting", err)
        rc, out, err = run_comet("-t", "-c", c.dir + "/missing.conf")
        self.assertEqual(rc, 1)
        self.assertIn("missing.conf", err)

    def test_start_health_metrics(self):
        c = self.comet(workers=3).start()
        c.wait_workers(3)
        status, body = c.http("/healthz")
        self.assertEqual(status, 200)
        self.assertIn("3/3", body)
        self.assertEqual(c.metric("imgate_comet_workers"), 3)
        self.assertEqual(c.metric("imgate_comet_workers_alive"), 3)
        self.assertEqual(c.metric('imgate_comet_worker_running{worker="2"}'), 1)
        per = c.metric("imgate_comet_worker_connection_limit")
        self.assertGreater(per, 0)
        self.assertEqual(c.metric("imgate_comet_capacity_connections"), 3 * per)
        self.assertEqual(c.metric("imgate_comet_channels"), 0)
        self.assertIsNotNone(c.metric("imgate_comet_conn_current"))
        self.assertIn('imgate_comet_worker_conn_current{worker="2"} 0',
                      c.http("/metrics")[1])
        self.assertEqual(c.http("/nope")[0], 404)
        self.assertTrue(os.path.exists("/dev/shm" + c.shm_name))
        with open(c.pid_path) as f:
            self.assertEqual(int(f.read()), c.pid)
        self.assertIn("node capacity: 3 workers x", c.log())
        connect_accepted(c.tcp, c)

    def test_second_master_refused(self):
        c = self.comet().start()
        rc, _, err = run_comet("-f", "-c", c.conf_path)
        self.assertEqual(rc, 1)
        self.assertIn("already running (pid %d" % c.pid, err)
        # The running master lost nothing.
        self.assertEqual(c.http("/healthz")[0], 200)
        self.assertTrue(os.path.exists("/dev/shm" + c.shm_name))

    def test_kill9_worker_respawns(self):
        c = self.comet(workers=2).start()
        before = c.wait_workers(2)
        victim = before[0]
        # A scrape connection kept alive across the fork of the new worker.
        keep = http.client.HTTPConnection("127.0.0.1", c.admin, timeout=2)
        self.addCleanup(keep.close)
        keep.request("GET", "/healthz")
        self.assertEqual(keep.getresponse().read(), b"ok: 2/2 workers\n")
        os.kill(victim, signal.SIGKILL)
        after = wait_for(
            lambda: (lambda w: w if len(w) == 2 and victim not in w else None)(
                c.workers()), what="a respawned worker")
        self.assertNotIn(victim, after)
        self.assertIn(before[1], after)
        c.wait_log("(pid %d) killed by signal 9" % victim)
        wait_for(lambda: c.http("/healthz")[0] == 200, what="healthy again")
        self.assertEqual(c.metric("imgate_comet_worker_respawns_total"), 1)
        keep.request("GET", "/healthz")
        r = keep.getresponse()
        self.assertEqual((r.status, r.read()), (200, b"ok: 2/2 workers\n"))
        connect_accepted(c.tcp, c)

    def test_kill9_reclaims_shm_entries(self):
        c = self.comet_with_logic(workers=1)
        clients = self.auth_clients(c, 3, b'{"mid":7,"room_id":"live://1"}')
        wait_for(lambda: c.metric("imgate_comet_channels") == 3,
                 what="3 channels in shm")
        self.assertEqual(c.metric("imgate_comet_rooms"), 1)
        victim = c.workers()[0]
        chans = imgate_shm(c, "channels")
        self.assertEqual(chans["count"], 3)
        self.assertEqual({ch["worker"] for ch in chans["channels"]}, {0})
        os.kill(victim, signal.SIGKILL)
        c.wait_log("worker 0: reclaimed 3 channels")
        self.assertEqual(c.metric("imgate_comet_channels"), 0)
        self.assertEqual(c.metric("imgate_comet_rooms"), 0)
        self.assertEqual(c.metric("imgate_comet_conn_current"), 0)
        self.assertEqual(imgate_shm(c, "channels")["count"], 0)
        self.assertEqual(imgate_shm(c, "rooms")["count"], 0)
        wait_for(lambda: c.workers() and c.workers()[0] != victim,
                 what="respawned worker")
        w0 = wait_for(lambda: (lambda w: w if w["state"] == "running" else None)(
            imgate_shm(c, "workers")["workers"][0]), what="slot 0 running")
        self.assertEqual(w0["pid"], c.workers()[0])
        for s in clients:
            s.settimeout(3)
            try:
                self.assertEqual(s.recv(1), b"")
            except ConnectionResetError:
                pass
        wait_for(lambda: c.http("/healthz")[0] == 200, what="respawned")

    def test_kick_wakes_the_other_worker(self):
        # Every client gets the same key: each one replaces the one before,
        # which its worker must close at once (eventfd wake-up), not at its
        # next once-a-second housekeeping.
        c = self.comet_with_logic(fixed_key="same-key", workers=2,
                                  server__reuseport="yes")
        prev, prev_worker, cross = None, None, 0
        for i in range(16):
            s = socket.create_connection(("127.0.0.1", c.tcp), timeout=3)
            self.addCleanup(s.close)
            s.sendall(goim_frame(7, b'{"mid":7}'))
            self.assertEqual(read_frame(s)[0], 8)
            t0 = time.monotonic()
            if prev is not None:
                op, body = read_frame(prev)
                self.assertEqual(op, 6)
                self.assertIn(b"kicked", body)
                took = time.monotonic() - t0
                prev.close()
            chans = imgate_shm(c, "channels")["channels"]
            self.assertEqual(len(chans), 1)
            worker = chans[0]["worker"]
            if prev_worker is not None and worker != prev_worker:
                cross += 1
                self.assertLess(took, 0.5, "kick %d took %.2fs" % (i, took))
            prev, prev_worker = s, worker
        self.assertGreater(cross, 0, "every client landed on one worker")

    def test_crash_loop_backs_off(self):
        c = self.comet(workers=1).start()
        pids = set()
        t0 = time.monotonic()
        for i in range(4):
            w = wait_for(lambda: [p for p in c.workers() if p not in pids],
                         timeout=10, what="worker %d" % i)
            pids.add(w[0])
            os.kill(w[0], signal.SIGKILL)
        # 200 + 400 + 800 ms of backoff at least before the fourth kill.
        self.assertGreater(time.monotonic() - t0, 1.3)
        c.wait_log("respawning in 800 ms")

    def test_capacity_logged_and_warned(self):
        c = self.comet(workers=2, server__worker_connections="10",
                       server__max_connections="100").start()
        c.wait_log("node capacity: 2 workers x 10 connections = 20")
        self.assertIn("max_connections = 100 exceeds the node capacity 20",
                      c.log())
        self.assertEqual(c.metric("imgate_comet_capacity_connections"), 20)

    def test_accept_backpressure(self):
        # The session layer holds an unauthenticated client until the
        # handshake timeout: long enough to fill the worker.
        c = self.comet(workers=1, server__worker_connections="2",
                       protocol__handshake_timeout="20s").start()
        accepted = lambda: c.metric("imgate_comet_conn_accepted_total")
        s1 = socket.create_connection(("127.0.0.1", c.tcp), timeout=2)
        s2 = socket.create_connection(("127.0.0.1", c.tcp), timeout=2)
        self.addCleanup(s1.close)
        self.addCleanup(s2.close)
        wait_for(lambda: accepted() == 2, what="2 accepted")
        wait_for(lambda: c.metric("imgate_comet_accept_paused_total") >= 1,
                 what="accept paused")
        # The kernel completes the handshake; the worker leaves it queued.
        s3 = socket.create_connection(("127.0.0.1", c.tcp), timeout=2)
        self.addCleanup(s3.close)
        time.sleep(0.5)
        self.assertEqual(accepted(), 2)
        self.assertEqual(c.metric("imgate_comet_conn_refused_limit_total"), 0)
        s1.close()
        wait_for(lambda: accepted() == 3, what="the queued client accepted")
        c.wait_log("accept resumed")

    def test_reload_bad_config_keeps_running(self):
        c = self.comet(workers=2).start()
        before = c.workers()
        c.write_conf(extra="[server]\nworkers = 5\n")  # set twice
        c.signal(signal.SIGHUP)
        c.wait_log("reload refused")
        self.assertIn("%s:" % c.conf_path, c.log())
        self.assertIn("workers set twice", c.log())
        self.assertIsNone(c.proc.poll())
        self.assertEqual(c.workers(), before)
        self.assertEqual(c.http("/healthz")[0], 200)
        self.assertEqual(c.metric("imgate_comet_reload_failures_total"), 1)
        self.assertEqual(c.metric("imgate_comet_reloads_total"), 0)

    def test_reload_worker_count(self):
        c = self.comet(workers=2).start()
        first = c.wait_workers(2)
        c.settings["server"]["workers"] = "4"
        c.write_conf()
        c.signal(signal.SIGHUP)
        grown = c.wait_workers(4)
        # Established workers stay: nothing they hold is dropped.
        self.assertTrue(set(first) <= set(grown))
        wait_for(lambda: c.http("/healthz")[0] == 200, what="4/4 healthy")
        self.assertEqual(c.metric("imgate_comet_workers"), 4)
        c.settings["server"]["workers"] = "1"
        c.write_conf()
        c.signal(signal.SIGHUP)
        c.wait_workers(1)
        self.assertEqual(c.workers(), [first[0]])
        wait_for(lambda: c.http("/healthz")[0] == 200, what="1/1 healthy")
        self.assertEqual(c.metric("imgate_comet_reloads_total"), 2)
        self.assertEqual(c.metric("imgate_comet_worker_respawns_total"), 0)

    def test_reload_keeps_established_clients(self):
        c = self.comet_with_logic(workers=2)
        clients = self.auth_clients(c, 4)
        ws = free_port()
        c.settings["server"]["workers"] = "3"
        c.settings["server"]["log_level"] = "debug"
        c.settings["listen"]["ws"] = "127.0.0.1:%d" % ws
        c.settings["protocol"] = {"heartbeat_timeout": "5m"}
        c.write_conf()
        c.signal(signal.SIGHUP)
        c.wait_log("reload applied: generation 1")
        c.wait_workers(3)
        for i, s in enumerate(clients):
            s.sendall(goim_frame(2, seq=100 + i))
            op, _ = read_frame(s)
            self.assertEqual(op, 3)
        self.assertEqual(c.metric("imgate_comet_channels"), 4)
        self.assertEqual(c.metric("imgate_comet_worker_respawns_total"), 0)

    def test_reload_adds_and_removes_listener(self):
        c = self.comet(workers=2).start()
        ws = free_port()
        with self.assertRaises(ConnectionRefusedError):
            socket.create_connection(("127.0.0.1", ws), timeout=2)
        c.settings["listen"]["ws"] = "127.0.0.1:%d" % ws
        c.write_conf()
        c.signal(signal.SIGHUP)
        c.wait_log("reload applied: generation 1")
        connect_accepted(ws, c)
        connect_accepted(c.tcp, c)
        c.settings["listen"]["ws"] = "off"
        c.write_conf()
        c.signal(signal.SIGHUP)
        c.wait_log("reload applied: generation 2")
        wait_for(lambda: "stop accepting on listener" in c.log(),
                 what="workers dropping the listener")

        def refused():
            try:
                socket.create_connection(("127.0.0.1", ws), timeout=1).close()
            except ConnectionRefusedError:
                return True
            except OSError:  # reset while the last copy closes: look again
                pass
            return False

        wait_for(refused, what="ws port closed")

    def test_reload_restart_only_settings(self):
        c = self.comet(workers=1).start()
        c.settings["shm"]["buckets"] = "32"
        c.write_conf()
        c.signal(signal.SIGHUP)
        c.wait_log("reload applied")
        self.assertIn("[shm] settings changed: they need a restart", c.log())
        self.assertEqual(c.http("/healthz")[0], 200)
        self.assertEqual(imgate_shm(c, "summary")["segment"]["geometry"]
                         ["buckets"], 16)

    def test_reload_moves_admin(self):
        c = self.comet(workers=1).start()
        old, new = c.admin, free_port()
        c.settings["listen"]["admin"] = "127.0.0.1:%d" % new
        c.write_conf()
        c.signal(signal.SIGHUP)
        c.wait_log("reload applied")
        c.admin = new
        self.assertEqual(c.http("/healthz")[0], 200)
        c.admin = old
        wait_for(lambda: c.http("/healthz")[0] is None, what="old port closed")

    def test_reuseport(self):
        c = self.comet(workers=2, server__reuseport="yes").start()
        for _ in range(6):
            connect_accepted(c.tcp, c)
        w = c.workers()
        os.kill(w[0], signal.SIGKILL)
        wait_for(lambda: len(c.workers()) == 2 and w[0] not in c.workers(),
                 what="respawn")
        wait_for(lambda: c.http("/healthz")[0] == 200, what="healthy")
        for _ in range(6):
            connect_accepted(c.tcp, c)

    def test_reuseport_queue_survives_respawn(self):
        c = self.comet(workers=1, server__reuseport="yes").start()
        victim = c.workers()[0]
        os.kill(victim, signal.SIGKILL)
        c.wait_log("(pid %d) killed by signal 9" % victim)
        # No worker runs now; the master's socket queues the client.
        before = c.metric("imgate_comet_conn_accepted_total")
        s = socket.create_connection(("127.0.0.1", c.tcp), timeout=2)
        self.addCleanup(s.close)
        wait_for(lambda: c.metric("imgate_comet_conn_accepted_total") > before,
                 what="the queued client accepted by the new worker")
        self.assertNotIn(victim, c.workers())

    def test_sigusr1_reopens_log(self):
        c = self.comet(workers=1)
        logfile = os.path.join(c.dir, "file.log")
        c.settings["server"]["log"] = logfile
        c.write_conf()
        c.start()
        wait_for(lambda: "worker running" in read(logfile),
                 what="worker line in the log file")
        os.rename(logfile, logfile + ".1")
        c.signal(signal.SIGUSR1)
        wait_for(lambda: os.path.exists(logfile), what="reopened log")
        c.signal(signal.SIGHUP)
        wait_for(lambda: "config generation 1 applied" in read(logfile),
                 what="worker writing to the new file")
        self.assertIn("reload applied", read(logfile))  # the master too

    @unittest.skipUnless(os.geteuid() == 0, "needs root")
    def test_sigusr1_reopens_log_as_user(self):
        """Workers running as [server] user reopen a log file the master
        (root) creates: it is theirs before they are told to."""
        import pwd
        nobody = pwd.getpwnam("nobody")
        c = self.comet(workers=2, server__user="nobody")
        os.chmod(c.dir, 0o755)  # workers open the file by its path
        logfile = os.path.join(c.dir, "file.log")
        c.settings["server"]["log"] = logfile
        c.write_conf()
        c.start()
        kids = c.wait_workers(2)

        def from_each_worker(path, text):
            lines = [l for l in read(path).splitlines() if text in l]
            return all(any("imgate-comet[%d] w" % k in l for l in lines)
                       for k in kids)

        wait_for(lambda: from_each_worker(logfile, "worker running"),
                 what="worker lines in the log file")
        self.assertEqual(os.stat(logfile).st_uid, nobody.pw_uid)
        os.rename(logfile, logfile + ".1")
        c.signal(signal.SIGUSR1)
        wait_for(lambda: from_each_worker(logfile, "log file reopened"),
                 what="every worker writing to the new file")
        st = os.stat(logfile)
        self.assertEqual((st.st_uid, st.st_gid), (nobody.pw_uid, nobody.pw_gid))
        self.assertIn("log file reopened", read(logfile))  # the master too
        self.assertNotIn("log reopen:", read(logfile + ".1"))
        # A reload that moves the log: the workers follow.
        logfile2 = os.path.join(c.dir, "file2.log")
        c.settings["server"]["log"] = logfile2
        c.write_conf()
        c.signal(signal.SIGHUP)
        wait_for(lambda: from_each_worker(logfile2, "config generation 1 applied"),
                 what="every worker writing to the reloaded log")
        self.assertEqual(os.stat(logfile2).st_uid, nobody.pw_uid)
        self.assertNotIn("reload: log", read(logfile))
        # A symlink in its place is not followed (nor chowned) by root.
        target = os.path.join(c.dir, "elsewhere")
        with open(target, "w"):
            pass
        os.rename(logfile2, logfile2 + ".1")
        os.symlink(target, logfile2)
        c.signal(signal.SIGUSR1)
        wait_for(lambda: "SIGUSR1: reopening logs" in read(logfile2 + ".1"),
                 what="SIGUSR1 handled")
        time.sleep(0.3)
        self.assertEqual(os.lstat(target).st_uid, 0)

    def test_exit_status(self):
        """2 for a bad config or command line at start (as imgate-logic),
        1 for other start failures and for -t on an invalid config."""
        c = self.comet()

        def run(*args):
            rc, _, err = run_comet(*args)
            return rc, err

        rc, err = run("-x")
        self.assertEqual(rc, 2)
        self.assertIn("exit status: 0 stopped cleanly, 1 failed to start or "
                      "run, 2 bad config or usage", err)
        self.assertIn("-t       check the config and exit (0 valid, 1 invalid)",
                      err)
        self.assertEqual(run("-f", "-c", c.conf_path, "extra")[0], 2)
        missing = os.path.join(c.dir, "missing.conf")
        self.assertEqual(run("-f", "-c", missing)[0], 2)
        self.assertEqual(run("-t", "-c", missing)[0], 1)
        c.settings["server"]["workerz"] = "3"
        c.write_conf()
        for args in (("-f",), ()):  # in the foreground or as a daemon
            rc, err = run(*(args + ("-c", c.conf_path)))
            self.assertEqual(rc, 2, err)
            self.assertIn("[server] workerz: unknown setting", err)
        self.assertEqual(run("-t", "-c", c.conf_path)[0], 1)
        del c.settings["server"]["workerz"]
        c.settings["server"]["log"] = "/nonexistent-imgate-dir/comet.log"
        c.write_conf()
        self.assertEqual(run("-f", "-c", c.conf_path)[0], 2)
        del c.settings["server"]["log"]
        if os.geteuid() == 0:
            c.settings["server"]["user"] = "no-such-imgate-user"
            c.settings["server"]["log"] = c.log_path
            c.write_conf()
            for args in (("-f",), ()):
                rc, err = run(*(args + ("-c", c.conf_path)))
                self.assertEqual(rc, 2, err + read(c.log_path))
            self.assertIn("user no-such-imgate-user: no such user",
                          read(c.log_path))
        self.assertFalse(os.path.exists("/dev/shm" + c.shm_name))
        self.assertFalse(os.path.exists(c.pid_path))

    def test_sigterm_drains_and_cleans_up(self):
        c = self.comet(workers=3).start()
        kids = c.wait_workers(3)
        t0 = time.monotonic()
        c.signal(signal.SIGTERM)
        rc = c.proc.wait(timeout=5)
        self.assertEqual(rc, 0)
        self.assertLess(time.monotonic() - t0, 2.0 + 1.0)
        self.assertFalse(os.path.exists("/dev/shm" + c.shm_name))
        self.assertFalse(os.path.exists(c.pid_path))
        for k in kids:
            wait_for(lambda: not alive(k), timeout=2, what="worker %d gone" % k)
        self.assertIn("stopped", c.log())

    def test_sigterm_drains_clients(self):
        c = self.comet_with_logic(workers=2)
        clients = self.auth_clients(c, 4)
        wait_for(lambda: c.metric("imgate_comet_channels") == 4,
                 what="4 channels")
        t0 = time.monotonic()
        c.signal(signal.SIGTERM)
        for s in clients:
            # Told why (op 6), then closed.
            self.assertEqual(read_frame(s)[0], 6)
            with self.assertRaises(EOFError):
                read_frame(s)
            s.close()
        self.assertEqual(c.proc.wait(timeout=5), 0)
        self.assertLess(time.monotonic() - t0, 3.0)
        self.assertNotIn("SIGKILL", c.log())
        self.assertFalse(os.path.exists("/dev/shm" + c.shm_name))

    @unittest.skipUnless(os.geteuid() == 0, "needs root")
    def test_workers_drop_privileges(self):
        import pwd
        nobody = pwd.getpwnam("nobody")
        c = self.comet(workers=2, server__user="nobody").start()
        kids = c.wait_workers(2)
        for k in kids:
            uids = [l for l in read("/proc/%d/status" % k).splitlines()
                    if l.startswith("Uid:")][0].split()[1:]
            self.assertEqual(set(int(u) for u in uids), {nobody.pw_uid})
        self.assertEqual(os.stat("/proc/%d" % c.pid).st_uid, 0)
        self.assertEqual(os.stat("/dev/shm" + c.shm_name).st_uid,
                         nobody.pw_uid)
        connect_accepted(c.tcp, c)

    def test_sigterm_kills_stragglers(self):
        c = self.comet(workers=2).start()
        kids = c.wait_workers(2)
        os.kill(kids[0], signal.SIGSTOP)  # cannot drain
        t0 = time.monotonic()
        c.signal(signal.SIGTERM)
        self.assertEqual(c.proc.wait(timeout=6), 0)
        took = time.monotonic() - t0
        self.assertGreater(took, 1.9)
        self.assertLess(took, 3.0)
        self.assertRegex(c.log(), r"worker \d \(pid %d\) did not drain "
                         r"within 2000 ms: SIGKILL" % kids[0])
        self.assertRegex(c.log(), r"worker \d \(pid %d\) exited with status 0"
                         % kids[1])
        self.assertFalse(alive(kids[0]))
        self.assertFalse(os.path.exists("/dev/shm" + c.shm_name))
        self.assertFalse(os.path.exists(c.pid_path))

    def test_master_death_stops_workers(self):
        c = self.comet(workers=2).start()
        kids = c.wait_workers(2)
        c.proc.kill()
        c.proc.wait()
        for k in kids:
            wait_for(lambda: not alive(k) or read("/proc/%d/stat" % k)
                     .split(")")[-1].split()[:1] == ["Z"], timeout=3,
                     what="orphan worker %d exiting" % k)

    def test_daemon_mode(self):
        c = self.comet(workers=1)
        # A daemon logging to stderr would keep the caller's pipe open.
        c.settings["server"]["log"] = c.log_path
        c.write_conf()

        def kill_daemon():
            pid = read(c.pid_path).strip()
            if pid and alive(int(pid)):
                os.kill(int(pid), signal.SIGKILL)

        self.addCleanup(kill_daemon)
        rc, _, err = run_comet("-c", c.conf_path)
        self.assertEqual(rc, 0, err)
        with open(c.pid_path) as f:
            pid = int(f.read())
        try:
            wait_for(lambda: len(children(pid)) == 1, what="daemon's worker")
            # The worker process exists before it reports for duty.
            wait_for(lambda: c.http("/healthz")[0] == 200, timeout=5,
                     what="daemon healthy")
        finally:
            os.kill(pid, signal.SIGTERM)
        wait_for(lambda: not alive(pid), timeout=5, what="daemon exit")
        self.assertFalse(os.path.exists("/dev/shm" + c.shm_name))

    def test_daemon_mode_failed_start(self):
        """A daemon that cannot bind fails the start command itself."""
        c = self.comet(workers=1)
        taken = socket.socket()
        taken.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        taken.bind(("127.0.0.1", 0))
        taken.listen(1)
        self.addCleanup(taken.close)
        c.settings["listen"]["tcp"] = "127.0.0.1:%d" % taken.getsockname()[1]
        c.settings["server"]["log"] = c.log_path
        c.write_conf()
        rc, _, err = run_comet("-c", c.conf_path)
        self.assertEqual(rc, 1, err + read(c.log_path))
        self.assertIn("Address already in use", read(c.log_path))
        self.assertFalse(os.path.exists("/dev/shm" + c.shm_name))

    def authed_clients(self, c, n):
        """n authenticated clients, each with the worker that holds it."""
        out = self.auth_clients(c, n)
        wait_for(lambda: c.metric("imgate_comet_channels") == n,
                 what="%d channels in shm" % n)
        # FakeLogic hands out key-1, key-2... in the order clients came.
        keys = sorted(imgate_shm(c, "channels")["channels"],
                      key=lambda ch: int(ch["key"].split("-")[1]))
        return [(s, ch["worker"]) for s, ch in zip(out, keys)]

    def stop_worker(self, pid):
        os.kill(pid, signal.SIGSTOP)
        # A failed test must not leave it stopped (cleanup kills it).
        self.addCleanup(lambda: alive(pid) and os.kill(pid, signal.SIGKILL))

    def test_watchdog_kills_hung_worker(self):
        c = self.comet_with_logic(workers=2, server__worker_timeout="2s")
        c.wait_workers(2)
        clients = self.authed_clients(c, 8)
        pids = {w["id"]: w["pid"] for w in imgate_shm(c, "workers")["workers"]
                if w["state"] == "running"}
        self.assertEqual(set(pids), {0, 1})
        # The worker with fewer clients: the other keeps at least four.
        held = [sum(1 for _, w in clients if w == i) for i in (0, 1)]
        vid = 0 if held[0] <= held[1] else 1
        victim = pids[vid]
        t0 = time.monotonic()
        self.stop_worker(victim)
        # Polled finely: the 503 lasts from the 2s mark to the respawn.
        statuses = set()
        while True:
            status = c.http("/healthz")[0]
            statuses.add(status)
            w = c.workers()
            if status == 200 and len(w) == 2 and victim not in w:
                break
            self.assertLess(time.monotonic() - t0, 10,
                            "the stopped worker was not replaced")
            time.sleep(0.01)
        took = time.monotonic() - t0
        # 2s of silence, then the next once-a-second check.
        self.assertGreater(took, 1.9)
        self.assertLess(took, 6)
        self.assertIn(503, statuses)
        self.assertFalse(alive(victim))
        log = c.log()
        self.assertIn("worker %d pid %d unresponsive for " % (vid, victim),
                      log)
        self.assertIn("(pid %d) killed by signal 9" % victim, log)
        self.assertEqual(c.metric("imgate_comet_worker_watchdog_kills_total"),
                         1)
        self.assertEqual(c.metric("imgate_comet_worker_respawns_total"), 1)
        self.assertEqual(c.metric("imgate_comet_workers_alive"), 2)
        # The other worker's clients noticed nothing; the victim's are cut.
        for i, (s, w) in enumerate(clients):
            if w == vid:
                s.settimeout(3)
                try:
                    self.assertEqual(s.recv(1), b"")
                except ConnectionResetError:
                    pass
                continue
            s.sendall(goim_frame(2, seq=200 + i))
            op, body = read_frame(s)
            self.assertEqual(op, 3)
        wait_for(lambda: c.metric("imgate_comet_channels") == 8 - held[vid],
                 what="the victim's channels reclaimed")
        # A healthy worker is never taken for a hung one.
        time.sleep(2.5)
        self.assertEqual(c.metric("imgate_comet_worker_watchdog_kills_total"),
                         1)

    def test_watchdog_off_and_reload(self):
        c = self.comet(workers=2, server__worker_timeout="0").start()
        w = c.wait_workers(2)
        victim = w[1]
        self.stop_worker(victim)
        # Off: nobody judges the loop; /healthz sees a live pid.
        time.sleep(3)
        self.assertEqual(c.workers(), w)
        self.assertEqual(c.http("/healthz")[0], 200)
        self.assertNotIn("unresponsive", c.log())
        c.settings["server"]["worker_timeout"] = "2s"
        c.write_conf()
        c.signal(signal.SIGHUP)
        c.wait_log("reload applied: generation 1")
        self.assertIn("worker_timeout: 0 ms -> 2000 ms", c.log())
        # Silent for 3s already: the first check after the reload kills it.
        wait_for(lambda: victim not in c.workers() and len(c.workers()) == 2,
                 timeout=4, what="the stopped worker replaced")
        c.wait_log("pid %d unresponsive for " % victim)
        wait_for(lambda: c.http("/healthz")[0] == 200, what="healthy again")
        self.assertIn(w[0], c.workers())
        # Back off: a stopped worker stays, /healthz still answers.
        c.settings["server"]["worker_timeout"] = "0"
        c.write_conf()
        c.signal(signal.SIGHUP)
        c.wait_log("reload applied: generation 2")
        self.assertIn("2000 ms -> 0 ms (watchdog off)", c.log())
        w2 = c.workers()
        self.stop_worker(w2[0])
        time.sleep(3)
        self.assertEqual(c.workers(), w2)
        self.assertEqual(
            c.metric("imgate_comet_worker_watchdog_kills_total"), 1)

    def test_bad_input_log_is_rate_limited(self):
        # One line a second per kind, whatever the flood; counters exact.
        ws = free_port()
        c = self.comet(workers=1, listen__ws="127.0.0.1:%d" % ws).start()
        bad = struct.pack(">ihhii", 5, 16, 1, 7, 1)  # packLen < headerLen
        n = 30

        def flood(port, payload, count):
            for _ in range(count):
                s = socket.create_connection(("127.0.0.1", port), timeout=3)
                s.sendall(payload)
                s.settimeout(3)
                try:
                    while s.recv(4096):
                        pass
                except ConnectionResetError:
                    pass
                s.close()
        flood(c.tcp, bad, n)
        flood(ws, b"GET /nope HTTP/1.1\r\nHost: x\r\n\r\n", n)
        wait_for(lambda: c.metric("imgate_comet_bad_frame_total") == 2 * n,
                 what="every bad frame and refused upgrade counted")
        time.sleep(1.1)
        flood(c.tcp, bad, 1)
        flood(ws, b"GET /nope HTTP/1.1\r\nHost: x\r\n\r\n", 1)
        wait_for(lambda: c.metric("imgate_comet_bad_frame_total") ==
                 2 * n + 2, what="the last two counted")
        for kind in (": bad frame: ", ": upgrade refused ("):
            lines = [ln for ln in c.log().splitlines() if kind in ln]
            # The flood took a second or two: a handful of lines, not 31.
            self.assertLessEqual(len(lines), 4, lines)
            self.assertIn("more suppressed)", lines[-1])
            told = sum(int(ln.rsplit("(", 1)[1].split()[0])
                       for ln in lines if ln.endswith("more suppressed)"))
            self.assertEqual(len(lines) + told, n + 1, lines)

    def test_bad_listener_fails_start(self):
        busy = socket.socket()
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        self.addCleanup(busy.close)
        c = self.comet(listen__tcp="127.0.0.1:%d" % busy.getsockname()[1])
        rc, _, err = run_comet("-f", "-c", c.conf_path)
        self.assertEqual(rc, 1)
        self.assertIn("cannot listen on 127.0.0.1:%d" % busy.getsockname()[1],
                      err)
        self.assertFalse(os.path.exists("/dev/shm" + c.shm_name))
        self.assertFalse(os.path.exists(c.pid_path))


if __name__ == "__main__":
    BIN = harness.find_binary("imgate-comet")
    SHM_BIN = harness.find_binary("imgate-shm")
    harness.hard_timeout(240)
    unittest.main(verbosity=2)
