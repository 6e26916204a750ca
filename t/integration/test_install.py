#!/usr/bin/python3
"""make install, then both daemons run through the installed init scripts.

The build tree (make check's working directory, or $IMGATE_BUILDDIR) is
installed with `make install DESTDIR=<tmp>`. The installed init scripts
are run with a defaults file ($IMGATE_DEFAULT) that points them at the
installed programs and at configs on free ports with a temporary Redis.
Checked: the installed layout, sample configs kept on a second install,
status codes (0 running, 1 dead with a pid file, 3 stopped), start, a
client served end to end, reload with a good and a bad config, restart,
try-restart, log lines, SIGUSR1 log reopening through the installed
logrotate snippet, the RLIMIT_NOFILE message, stop; the systemd units
with systemd-analyze verify; as root, the privilege drop.
KEEP_LOGS=1 keeps the temporary directory.
"""
import os
import pwd
import re
import shutil
import signal
import stat
import subprocess
import sys
import tempfile
import time
import unittest

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)),
                                "..", "lib"))
import harness  # noqa: E402
from harness import alive, children, free_port, read, wait_for  # noqa: E402
import goim_client  # noqa: E402

BUILDDIR = os.environ.get("IMGATE_BUILDDIR") or os.getcwd()
LINE = re.compile(r"^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d\.\d{3} "
                  r"(imgate-comet|imgate-logic)\[(\d+)\] (-|w\d+) "
                  r"(error|warn|notice|info|debug): ")


def make_env():
    """The environment without make's jobserver, for a nested make."""
    env = dict(os.environ)
    for k in ("MAKEFLAGS", "MFLAGS", "MAKELEVEL", "MAKEOVERRIDES"):
        env.pop(k, None)
    env["LC_ALL"] = "C"
    return env


def install(destdir):
    r = subprocess.run(["make", "-s", "-C", BUILDDIR, "install",
                        "DESTDIR=" + destdir],
                       env=make_env(), capture_output=True, text=True,
                       timeout=300)
    if r.returncode != 0:
        raise AssertionError("make install failed (%d):\n%s\n%s"
                             % (r.returncode, r.stdout[-3000:], r.stderr[-3000:]))
    return r.stdout + r.stderr


def find_installed(destdir):
    """basename -> [paths] of every file installed."""
    found = {}
    for root, _, files in os.walk(destdir):
        for f in files:
            found.setdefault(f, []).append(os.path.join(root, f))
    return found


def one(found, name):
    paths = found.get(name, [])
    if len(paths) != 1:
        raise AssertionError("%s installed %d times: %r" % (name, len(paths), paths))
    return paths[0]


def uid_of(pid):
    for line in read("/proc/%d/status" % pid).splitlines():
        if line.startswith("Uid:"):
            return int(line.split()[1])
    return None


class Service:
    """One daemon driven through its installed init script."""

    def __init__(self, t, name, settings, health_url):
        self.t = t
        self.name = name
        self.dir = os.path.join(t.tmp, t._testMethodName, name)
        os.makedirs(os.path.join(self.dir, "run"))
        os.makedirs(os.path.join(self.dir, "log"))
        self.conf = os.path.join(self.dir, name + ".conf")
        self.pidfile = os.path.join(self.dir, "run", name + ".pid")
        self.logfile = os.path.join(self.dir, "log", name + ".log")
        self.defaults = os.path.join(self.dir, "default")
        self.script = [p for p in t.found[name] if "/init.d/" in p][0]
        self.settings = settings
        self.settings["server"]["pid_file"] = self.pidfile
        self.settings["server"]["log"] = self.logfile
        self.health_url = health_url
        self.write_conf()
        self.write_defaults()

    def write_conf(self, extra=""):
        harness.write_ini(self.conf, self.settings)
        with open(self.conf, "a") as f:
            f.write(extra)

    def write_defaults(self, extra=""):
        with open(self.defaults, "w") as f:
            f.write("DAEMON=%s\nCONF=%s\nSTOP_TIMEOUT=10\n%s"
                    % (self.t.daemon[self.name], self.conf, extra))

    def run(self, action, timeout=30):
        env = dict(os.environ, IMGATE_DEFAULT=self.defaults)
        # Detached daemons have no stderr: sanitizer reports go to files
        # the test checks (no effect on a normal build).
        for var in ("ASAN_OPTIONS", "UBSAN_OPTIONS"):
            opts = [o for o in env.get(var, "").split(":") if o]
            env[var] = ":".join(opts + ["log_path=" + os.path.join(self.t.tmp, "san")])
        env.pop("IMGATE_CONF", None)
        r = subprocess.run([self.script, action], env=env, capture_output=True,
                           text=True, timeout=timeout)
        return r.returncode, r.stdout + r.stderr

    def expect(self, action, code):
        rc, out = self.run(action)
        self.t.assertEqual(rc, code, "%s %s: exit %d, expected %d: %s\nlog:\n%s"
                           % (self.name, action, rc, code, out,
                              read(self.logfile)[-3000:]))
        return out

    def pid(self):
        return int(read(self.pidfile).strip())

    def healthy(self):
        return harness.http("GET", self.health_url)[0] == 200

    def wait_healthy(self):
        wait_for(self.healthy, 10, "%s healthz" % self.name)

    def wait_log(self, text, timeout=5.0, path=None):
        wait_for(lambda: text in read(path or self.logfile), timeout,
                 "%s log line %r" % (self.name, text))


class InstallTest(unittest.TestCase):

    @classmethod
    def setUpClass(cls):
        cls.tmp = tempfile.mkdtemp(prefix="imgate-install-test.")
        # Daemons started as root may switch users: they must reach it.
        os.chmod(cls.tmp, 0o755)
        cls.destdir = os.path.join(cls.tmp, "dest")
        try:
            cls.install_log = install(cls.destdir)
        except BaseException:
            # tearDownClass does not run when setUpClass fails.
            shutil.rmtree(cls.tmp, ignore_errors=True)
            raise
        cls.found = find_installed(cls.destdir)
        cls.daemon = {n: [p for p in cls.found.get(n, []) if "/sbin/" in p][0]
                      for n in ("imgate-comet", "imgate-logic")}

    @classmethod
    def tearDownClass(cls):
        if os.environ.get("KEEP_LOGS"):
            sys.stderr.write("test files in %s\n" % cls.tmp)
        else:
            shutil.rmtree(cls.tmp, ignore_errors=True)

    def setUp(self):
        self.redis = None
        self.services = []
        self.shm_name = "/imgate-test-install-%d-%s" % (os.getpid(), self._testMethodName[-8:])

    def tearDown(self):
        for s in self.services:
            try:
                pid = s.pid()
            except (ValueError, OSError):
                continue
            kids = children(pid)
            if alive(pid):
                os.kill(pid, signal.SIGKILL)
            for k in kids:
                if alive(k):
                    os.kill(k, signal.SIGKILL)
        try:
            os.unlink("/dev/shm" + self.shm_name)
        except FileNotFoundError:
            pass
        if self.redis is not None:
            self.redis.stop()
        reports = [f for f in os.listdir(self.tmp) if f.startswith("san.")]
        for f in reports:
            sys.stderr.write(read(os.path.join(self.tmp, f)))
            os.unlink(os.path.join(self.tmp, f))
        self.assertEqual(reports, [], "sanitizer reports")

    # ---- fixtures -------------------------------------------------------

    def start_redis(self):
        self.redis = harness.Redis()

    def logic(self, **over):
        rpc, http = free_port(), free_port()
        conf = harness.logic_conf(self.redis.port, rpc, http)
        conf["server"]["log_level"] = "info"
        for section, values in over.items():
            conf.setdefault(section, {}).update(values)
        s = Service(self, "imgate-logic", conf,
                    "http://127.0.0.1:%d/healthz" % http)
        s.rpc, s.http = rpc, http
        s.url = "http://127.0.0.1:%d" % http
        self.services.append(s)
        return s

    def comet(self, logic, **over):
        tcp, admin = free_port(), free_port()
        conf = {
            "server": {"workers": "1", "drain_timeout": "2s",
                       "log_level": "info"},
            "listen": {"tcp": "127.0.0.1:%d" % tcp, "ws": "off",
                       "admin": "127.0.0.1:%d" % admin},
            "shm": {"name": self.shm_name, "buckets": "16",
                    "channels_per_bucket": "16", "rooms_per_bucket": "4",
                    "max_workers": "4"},
            "logic": {"addr": "127.0.0.1:%d" % logic.rpc},
            "redis": {"addr": "127.0.0.1:%d" % self.redis.port},
        }
        for section, values in over.items():
            conf.setdefault(section, {}).update(values)
        s = Service(self, "imgate-comet", conf,
                    "http://127.0.0.1:%d/healthz" % admin)
        s.tcp, s.admin = tcp, admin
        self.services.append(s)
        return s

    def metric(self, comet, name):
        _, _, body = harness.http("GET", "http://127.0.0.1:%d/metrics" % comet.admin)
        for line in body.decode().splitlines():
            if line.startswith(name + " "):
                return float(line.split()[1])
        return None

    # ---- the installed files ----------------------------------------------

    def test_layout(self):
        f = self.found
        for prog in ("imgate-comet", "imgate-logic"):
            p = self.daemon[prog]
            self.assertTrue(os.access(p, os.X_OK), p)
            r = subprocess.run([p, "-v"], capture_output=True, text=True)
            self.assertEqual(r.returncode, 0)
            self.assertIn(prog, r.stdout)
        shm = [p for p in f.get("imgate-shm", []) if "/bin/" in p]
        self.assertEqual(len(shm), 1, f.get("imgate-shm"))
        for page, sect in (("imgate-comet.8", "man8"), ("imgate-logic.8", "man8"),
                           ("imgate-shm.8", "man8"), ("imgate.conf.5", "man5"),
                           ("imgate-protocol.7", "man7")):
            self.assertTrue(one(f, page).endswith("/man/%s/%s" % (sect, page)),
                            f.get(page))
            self.assertNotRegex(read(one(f, page)), r"@[a-z]+@", page)
        for conf in ("imgate-comet.conf", "imgate-logic.conf"):
            self.assertTrue(one(f, conf).endswith("/imgate/" + conf))
        rot = one(f, "imgate")
        self.assertTrue(rot.endswith("/logrotate.d/imgate"), rot)
        self.assertNotIn("@", read(rot), "unsubstituted variable in " + rot)
        for name in ("imgate-comet", "imgate-logic"):
            init = [p for p in f[name] if "/init.d/" in p]
            self.assertEqual(len(init), 1, f[name])
            self.assertTrue(os.stat(init[0]).st_mode & stat.S_IXUSR)
            text = read(init[0])
            self.assertNotIn("@NAME@", text)
            self.assertIn("DAEMON=", text)
            unit = one(f, name + ".service")
            self.assertIn("/systemd/system/", unit)
            text = read(unit)
            self.assertNotRegex(text, r"@[a-z]+@")
            self.assertIn("ExecReload=", text)
            # Programs named by the scripts are where make install put them.
            sbin = os.path.dirname(self.daemon[name])[len(self.destdir):]
            self.assertIn("%s/%s -t -c" % (sbin, name), text)

    def test_reinstall_keeps_configs(self):
        conf = one(self.found, "imgate-logic.conf")
        rot = one(self.found, "imgate")
        with open(conf, "a") as f:
            f.write("; edited by the operator\n")
        with open(rot, "a") as f:
            f.write("# edited\n")
        out = install(self.destdir)
        self.assertIn("; edited by the operator", read(conf))
        self.assertIn("# edited", read(rot))
        self.assertIn("keeping existing", out)
        # The sample config, as installed, is accepted by the daemon.
        sample = one(self.found, "imgate-comet.conf")
        r = subprocess.run([self.daemon["imgate-comet"], "-t", "-c", sample],
                           capture_output=True, text=True)
        self.assertEqual(r.returncode, 0, r.stderr)
        r = subprocess.run([self.daemon["imgate-logic"], "-t", "-c", conf],
                           capture_output=True, text=True)
        self.assertEqual(r.returncode, 0, r.stderr)

    # ---- init scripts ---------------------------------------------------------

    def test_init_scripts(self):
        self.start_redis()
        logic = self.logic()
        comet = self.comet(logic)
        for s in (logic, comet):
            s.expect("status", 3)
            s.expect("reload", 7)
            s.expect("configtest", 0)
            s.expect("try-restart", 0)
            s.expect("status", 3)
            self.assertIn("started", s.expect("start", 0))
            s.expect("status", 0)
            s.wait_healthy()
            pid = s.pid()
            self.assertIn("already running", s.expect("start", 0))
            self.assertEqual(s.pid(), pid)

        # Installed programs together: a client authenticates and gets a push.
        c = goim_client.GoimClient.tcp(comet.tcp)
        c.auth({"mid": 7, "key": "k7", "room_id": "live://1", "accepts": [1000]})
        status, body = harness.http_json(
            "POST", logic.url + "/goim/push/keys?operation=1000&keys=k7", b"hi")
        self.assertEqual((status, body["code"]), (200, 0), body)
        f = c.expect(1000, 5)
        self.assertEqual(f.body, b"hi")
        c.close()

        # Good reload: a visible effect on each daemon.
        logic.settings["http"]["max_targets"] = "2"
        logic.write_conf()
        logic_pid = logic.pid()
        logic.expect("reload", 0)
        logic.wait_log("reloaded")
        status, body = harness.http_json(
            "POST", logic.url + "/goim/push/keys?operation=1000&keys=a,b,c", b"x")
        self.assertEqual(body["code"], -400, body)
        comet.settings["server"]["log_level"] = "debug"
        comet.write_conf()
        comet_pid = comet.pid()
        comet.expect("reload", 0)
        wait_for(lambda: self.metric(comet, "imgate_comet_config_generation") == 1,
                 5, "comet generation 1")

        # Bad reload through the script: refused before any signal.
        for s in (logic, comet):
            s.write_conf("[server]\nno_such_setting = 1\n")
            out = s.expect("reload", 6)
            self.assertIn("no_such_setting", out)
            self.assertIn("refused", out)
            s.expect("restart", 6)
            s.expect("status", 0)
        self.assertEqual((logic.pid(), comet.pid()), (logic_pid, comet_pid))
        self.assertEqual(self.metric(comet, "imgate_comet_config_generation"), 1)

        # A SIGHUP with the bad file (behind the script's back) is refused by
        # the daemons themselves; they keep running with the old config.
        os.kill(logic_pid, signal.SIGHUP)
        os.kill(comet_pid, signal.SIGHUP)
        logic.wait_log("reload refused")
        comet.wait_log("reload refused")
        wait_for(lambda: self.metric(comet, "imgate_comet_reload_failures_total") == 1,
                 5, "comet reload failure counted")
        self.assertEqual(self.metric(comet, "imgate_comet_config_generation"), 1)
        status, body = harness.http_json(
            "POST", logic.url + "/goim/push/keys?operation=1000&keys=a,b,c", b"x")
        self.assertEqual(body["code"], -400, "logic lost its reloaded config")
        for s in (logic, comet):
            s.expect("status", 0)
            self.assertTrue(s.healthy())

        # Restart with the good config: a new process.
        for s in (logic, comet):
            s.write_conf()
            old = s.pid()
            s.expect("restart", 0)
            s.expect("status", 0)
            self.assertNotEqual(s.pid(), old)
            self.assertFalse(alive(old))
            s.wait_healthy()
            old = s.pid()
            s.expect("try-restart", 0)
            self.assertNotEqual(s.pid(), old)
            s.wait_healthy()

        # Every line has a timestamp, the program, its pid, the worker.
        for s in (logic, comet):
            lines = read(s.logfile).splitlines()
            self.assertGreater(len(lines), 3)
            for line in lines:
                self.assertRegex(line, LINE)
        workers = {LINE.match(l).group(3) for l in read(comet.logfile).splitlines()}
        self.assertIn("-", workers)
        self.assertIn("w0", workers)

        # A killed daemon leaves its pid file: status 1; start recovers.
        for s in (logic, comet):
            pid = s.pid()
            kids = children(pid)
            os.kill(pid, signal.SIGKILL)
            wait_for(lambda: not alive(pid), 5, "pid %d gone" % pid)
            for k in kids:
                wait_for(lambda: not alive(k), 10, "worker %d follows its master" % k)
            s.expect("status", 1)
            s.expect("reload", 7)
        for s in (logic, comet):
            s.expect("start", 0)
            s.expect("status", 0)
            s.wait_healthy()

        # Stop: status 3 and no pid file; stopping again is fine.
        for s in (comet, logic):
            pid = s.pid()
            self.assertIn("stopped", s.expect("stop", 0))
            self.assertFalse(alive(pid))
            self.assertFalse(os.path.exists(s.pidfile))
            s.expect("status", 3)
            s.expect("stop", 0)
        self.assertFalse(os.path.exists("/dev/shm" + self.shm_name),
                         "a clean stop removes the segment")

    def test_logrotate_reopens(self):
        lr = shutil.which("logrotate") or "/usr/sbin/logrotate"
        self.start_redis()
        logic = self.logic()
        comet = self.comet(logic)
        for s in (logic, comet):
            s.expect("start", 0)
            s.wait_healthy()
        # The installed snippet, pointed at this test's files and user.
        user = pwd.getpwuid(os.getuid()).pw_name
        group = subprocess.run(["id", "-gn"], capture_output=True,
                               text=True).stdout.strip()
        text = read(one(self.found, "imgate"))
        m = re.search(r"^(\S+)/log/imgate/\*\.log \{", text, re.M)
        self.assertIsNotNone(m, text)
        state = os.path.join(self.tmp, "logrotate.state")
        conf = os.path.join(self.tmp, "logrotate.conf")
        self.assertRegex(text, r"create 0640 imgate adm")
        text = text.replace("create 0640 imgate adm", "create 0640 %s %s" % (user, group))
        text = text.replace(m.group(1) + "/log/imgate/*.log",
                            " ".join((logic.logfile, comet.logfile)))
        run = re.search(r"for p in (\S+)/imgate/imgate-comet.pid", text)
        self.assertIsNotNone(run, text)
        text = text.replace(run.group(1) + "/imgate/imgate-comet.pid", comet.pidfile)
        text = text.replace(run.group(1) + "/imgate/imgate-logic.pid", logic.pidfile)
        with open(conf, "w") as f:
            f.write(text)
        os.chmod(conf, 0o644)
        if not os.access(lr, os.X_OK):
            # The rotation by hand, as the snippet's postrotate does it.
            sys.stderr.write("logrotate not installed: rotating by hand\n")
            for s in (logic, comet):
                os.rename(s.logfile, s.logfile + ".1")
                os.kill(s.pid(), signal.SIGUSR1)
        else:
            r = subprocess.run([lr, "-f", "-s", state, conf],
                               capture_output=True, text=True, timeout=30)
            self.assertEqual(r.returncode, 0, r.stdout + r.stderr)
        for s in (logic, comet):
            self.assertTrue(os.path.exists(s.logfile + ".1"), s.name)
        comet.wait_log("SIGUSR1: reopening logs", path=comet.logfile + ".1")
        # New lines reach the new files: the master, the logic, a worker.
        time.sleep(0.2)
        for s in (logic, comet):
            s.expect("reload", 0)
        logic.wait_log("reloaded")
        comet.wait_log("reload applied")
        c = goim_client.GoimClient.tcp(comet.tcp)
        c.send(goim_client.OP_AUTH, b"not json")
        self.assertTrue(c.closed(5))
        c.close()
        comet.wait_log("w0 ")
        for s in (logic, comet):
            s.expect("stop", 0)

    def test_nofile_message(self):
        self.start_redis()
        logic = self.logic()
        comet = self.comet(logic, server={"worker_connections": "100000"})
        # The defaults file is sourced by the script: a low hard limit.
        comet.write_defaults("ulimit -n 2048 2>/dev/null; ulimit -Hn 2048\n")
        comet.expect("start", 0)
        comet.wait_healthy()
        comet.wait_log("exceeds what RLIMIT_NOFILE (2048) allows")
        limit = self.metric(comet, "imgate_comet_worker_connection_limit")
        self.assertIsNotNone(limit)
        self.assertLess(limit, 2048)
        self.assertGreater(limit, 1000)
        comet.expect("stop", 0)

    def test_start_failures(self):
        import socket
        self.start_redis()
        logic = self.logic()
        comet = self.comet(logic)
        # A taken client port: the comet's start fails with status 1.
        with socket.socket() as taken:
            taken.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            taken.bind(("127.0.0.1", comet.tcp))
            taken.listen(1)
            out = comet.expect("start", 1)
            self.assertIn("failed to start", out)
            comet.expect("status", 3)
            # logic binds before it detaches: the start command itself
            # fails, and nothing is left running.
            with socket.socket() as taken2:
                taken2.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
                taken2.bind(("127.0.0.1", logic.http))
                taken2.listen(1)
                rc, out = logic.run("start")
                self.assertEqual(rc, 1, out)
                wait_for(lambda: logic.run("status")[0] == 3, 5,
                         "imgate-logic gone after failing to bind")
                logic.wait_log("http")
        # A missing program or config: LSB 5 and 6.
        logic.write_defaults("DAEMON=/nonexistent/imgate-logic\n")
        logic.expect("start", 5)
        logic.write_defaults()
        os.rename(logic.conf, logic.conf + ".away")
        logic.expect("start", 6)
        os.rename(logic.conf + ".away", logic.conf)
        # No pid file, no way to track the daemon: refused.
        logic.settings["server"]["pid_file"] = ""
        logic.write_conf()
        self.assertIn("no pid_file", logic.expect("start", 6))
        logic.settings["server"]["pid_file"] = logic.pidfile
        logic.write_conf()
        rc, out = logic.run("bogus")
        self.assertEqual(rc, 2, out)
        self.assertIn("usage", out)

    # ---- as root: privileges ---------------------------------------------------

    @unittest.skipUnless(os.geteuid() == 0, "not root: no privilege drop to test")
    def test_privilege_drop(self):
        try:
            nobody = pwd.getpwnam("nobody")
        except KeyError:
            self.skipTest("no user nobody")
        self.start_redis()
        logic = self.logic()
        comet = self.comet(logic, server={"user": "nobody"})
        for d in ("run", "log"):
            os.chown(os.path.join(logic.dir, d), nobody.pw_uid, nobody.pw_gid)
        logic.write_defaults("RUN_AS=nobody\n")
        for s in (logic, comet):
            s.expect("start", 0)
            s.wait_healthy()
        self.assertEqual(uid_of(logic.pid()), nobody.pw_uid)
        self.assertEqual(uid_of(comet.pid()), 0, "the comet master stays root")
        kids = children(comet.pid())
        self.assertEqual(len(kids), 1)
        self.assertEqual(uid_of(kids[0]), nobody.pw_uid)
        self.assertEqual(os.stat("/dev/shm" + self.shm_name).st_uid, nobody.pw_uid)
        # imgate-shm as that user reads the segment.
        shm = [p for p in self.found.get("imgate-shm", []) if "/bin/" in p][0]
        r = subprocess.run(["setpriv", "--reuid=nobody", "--regid=%d" % nobody.pw_gid,
                            "--clear-groups", shm, "-n", self.shm_name, "workers"],
                           capture_output=True, text=True, timeout=10)
        self.assertEqual(r.returncode, 0, r.stderr)
        # Rotation as the logrotate snippet does it (create for the user the
        # workers run as, then SIGUSR1): the workers reopen the new file.
        os.rename(comet.logfile, comet.logfile + ".1")
        fd = os.open(comet.logfile, os.O_CREAT | os.O_WRONLY, 0o640)
        os.fchown(fd, nobody.pw_uid, 0)
        os.close(fd)
        os.kill(comet.pid(), signal.SIGUSR1)
        comet.wait_log("SIGUSR1: reopening logs", path=comet.logfile + ".1")
        time.sleep(0.2)
        c = goim_client.GoimClient.tcp(comet.tcp)
        c.send(goim_client.OP_AUTH, b"not json")
        self.assertTrue(c.closed(5))
        c.close()
        comet.wait_log(" w0 ")
        self.assertNotIn("log reopen", read(comet.logfile + ".1"))
        for s in (logic, comet):
            s.expect("reload", 0)
            s.expect("status", 0)
            s.expect("stop", 0)
            s.expect("status", 3)

    # ---- systemd ------------------------------------------------------------------

    def test_systemd_units(self):
        sa = shutil.which("systemd-analyze")
        if sa is None:
            self.skipTest("systemd-analyze not installed: units not verified")
        unitdir = os.path.join(self.tmp, "units")
        os.makedirs(unitdir, exist_ok=True)
        for name in ("imgate-comet", "imgate-logic"):
            text = read(one(self.found, name + ".service"))
            sbin = os.path.dirname(self.daemon[name])[len(self.destdir):]
            # The unit names the installed program; verify finds it in DESTDIR.
            text = text.replace(sbin + "/", os.path.dirname(self.daemon[name]) + "/")
            path = os.path.join(unitdir, name + ".service")
            with open(path, "w") as f:
                f.write(text)
            man = os.path.dirname(os.path.dirname(one(self.found, "imgate.conf.5")))
            env = dict(os.environ, MANPATH=man, SYSTEMD_LOG_LEVEL="notice")
            r = subprocess.run([sa, "verify", path], capture_output=True,
                               text=True, env=env, timeout=60)
            self.assertEqual(r.returncode, 0, r.stdout + r.stderr)
            self.assertEqual((r.stdout + r.stderr).strip(), "", name)
            for key in ("ExecReload=", "KillMode=mixed", "LimitNOFILE=",
                        "-t -c", "NoNewPrivileges=yes"):
                self.assertIn(key, text, name)


if __name__ == "__main__":
    harness.hard_timeout(int(os.environ.get("IMGATE_TEST_TIMEOUT", "240")))
    unittest.main(verbosity=2)
