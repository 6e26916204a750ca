"""What the reliability tests share: a whole node (Redis, imgate-logic,
imgate-comet) on free ports, groups of load clients in their own processes,
a room pusher whose payloads carry per-room sequence numbers, process
figures (RSS, open fds) and the table of figures printed at the end.

Run from the build directory (make check does) or set IMGATE_COMET,
IMGATE_LOGIC and IMGATE_SHM. Figures are also appended, one JSON object a
line, to $REL_FIGURES when set (make reliability sums them up).
"""
import http.client
import json
import os
import signal
import subprocess
import sys
import time
import urllib.parse
import warnings

warnings.simplefilter("ignore", ResourceWarning)

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "lib"))

import harness as H  # noqa: E402
# alive is also used by the tests as rel.alive.
from harness import alive, children, wait_for  # noqa: E402,F401

PREFIX = "imgrel"
PY = "/usr/bin/python3"
_seq = [0]


def comet_bin():
    return os.environ.get("IMGATE_COMET") or H.find_binary("imgate-comet")


def sanitized():
    """True when the comet is an ASan build: its RSS says nothing about
    leaks (the quarantine holds freed memory); LeakSanitizer does."""
    with open(comet_bin(), "rb") as f:
        return b"__asan_init" in f.read()


def shm_bin():
    return os.environ.get("IMGATE_SHM") or H.find_binary("imgate-shm")


# ---- figures -------------------------------------------------------------------

FIGURES = []
ORDER = ("faults injected", "bad inputs tried", "connections held",
         "pushes sent", "pushes delivered", "pushes lost", "pushes lost (reported)")


def figure(test, name, value):
    """One number for the table (summed per name across a run)."""
    FIGURES.append((test, name, value))
    path = os.environ.get("REL_FIGURES")
    if path:
        with open(path, "a") as f:
            f.write(json.dumps({"test": test, "name": name, "value": value}) + "\n")


def table(rows, title="reliability figures"):
    """rows: (test, name, value). A plain text table the README can quote."""
    if not rows:
        return ""
    w = max(len(r[0]) for r in rows)
    n = max(len(r[1]) for r in rows)
    out = ["%s" % title, "%-*s  %-*s  %s" % (w, "test", n, "figure", "value"),
           "-" * (w + n + 14)]
    for t, k, v in rows:
        out.append("%-*s  %-*s  %s" % (w, t, n, k, v))
    return "\n".join(out)


def print_table():
    sys.stdout.write("\n" + table(FIGURES) + "\n")
    sys.stdout.flush()


# ---- processes -------------------------------------------------------------------

def rss_kb(pid):
    try:
        with open("/proc/%d/status" % pid) as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1])
    except (FileNotFoundError, ProcessLookupError):
        return None
    return None


def nfds(pid):
    try:
        return len(os.listdir("/proc/%d/fd" % pid))
    except (FileNotFoundError, ProcessLookupError, PermissionError):
        return None


# ---- the node ----------------------------------------------------------------------

def logic_over(**over):
    base = {"server": {"log_level": "info"},
            "http": {"max_body": "64k", "max_targets": "10000", "timeout": "5s"},
            "session": {"heartbeat_timeout": "10m", "session_ttl": "30m",
                        "online_ttl": "10s", "online_cache": "1s"}}
    for s, v in over.items():
        base.setdefault(s, {}).update(v)
    return base


DAEMONS = []  # every Comet and Logic started, for the sanitizer check


class Logic(H.Logic):
    def __init__(self, redis, **over):
        H.Logic.__init__(self, redis, prefix=PREFIX, **logic_over(**over))
        self.over = over
        DAEMONS.append(self)

    def restart(self):
        """Start again on the same ports after a stop or a kill."""
        self.proc = H.spawn([self.binary, "-c", self.conf_path, "-f"], self.log_path)
        H.wait_port(self.rpc_port, self.proc)
        H.wait_port(self.http_port, self.proc)

    def metrics(self):
        return parse_metrics(H.http("GET", self.url + "/metrics")[2].decode())


def parse_metrics(text):
    out = {}
    for line in text.splitlines():
        if line and not line.startswith("#"):
            k, _, v = line.rpartition(" ")
            try:
                out[k] = float(v)
            except ValueError:
                pass
    return out


class Comet:
    """imgate-comet (-f) with a generated config on free ports and its own
    shm name; sized for thousands of connections."""

    def __init__(self, redis, logic, workers=2, server_id=None, start=True, **over):
        _seq[0] += 1
        self.tcp, self.ws, self.admin = H.free_port(), H.free_port(), H.free_port()
        self.dir = H.tempdir("imgate-rel-")
        self.shm_name = H.shm_at_exit("/imgate-rel-%d-%d" % (os.getpid(), _seq[0]))
        self.workers_n = workers
        self.conf = {
            "server": {"id": server_id or "rel-%d-%d" % (os.getpid(), _seq[0]),
                       "workers": str(workers),
                       "pid_file": os.path.join(self.dir, "comet.pid"),
                       "log_level": "info", "drain_timeout": "3s"},
            "listen": {"tcp": "127.0.0.1:%d" % self.tcp,
                       "ws": "127.0.0.1:%d" % self.ws,
                       "wss": "off",
                       "admin": "127.0.0.1:%d" % self.admin},
            "protocol": {"handshake_timeout": "3s", "output_limit": "256k"},
            "shm": {"name": self.shm_name, "buckets": "128",
                    "channels_per_bucket": "128", "rooms_per_bucket": "16",
                    "max_workers": "8"},
            "logic": {"addr": "127.0.0.1:%d" % logic.rpc_port, "rpc_timeout": "2s",
                      "renew_interval": "1s"},
            "redis": {"addr": "127.0.0.1:%d" % redis.port, "channel_prefix": PREFIX},
        }
        for key, value in over.items():
            section, name = key.split("__")
            if value is None:
                self.conf.get(section, {}).pop(name, None)
            else:
                self.conf.setdefault(section, {})[name] = value
        self.conf_path = os.path.join(self.dir, "comet.conf")
        self.log_path = os.path.join(self.dir, "comet.log")
        self.proc = None
        DAEMONS.append(self)
        if start:
            self.start()

    def ports(self):
        ps = [self.admin]
        for k in ("tcp", "ws", "wss"):
            v = self.conf["listen"].get(k, "off")
            if v != "off":
                ps.append(int(v.rsplit(":", 1)[1]))
        return ps

    def start(self, wait_workers=True):
        H.write_ini(self.conf_path, self.conf)
        self.log_mark = len(self.log()) if os.path.exists(self.log_path) else 0
        self.proc = H.spawn([comet_bin(), "-c", self.conf_path, "-f"], self.log_path)
        for p in self.ports():
            H.wait_port(p, self.proc, timeout=10)
        if wait_workers:
            wait_for(lambda: self.log()[self.log_mark:].count("push: connected to redis")
                     >= self.workers_n, 10, "workers subscribed")
        return self

    @property
    def pid(self):
        return self.proc.pid

    def log(self):
        try:
            with open(self.log_path, errors="replace") as f:
                return f.read()
        except FileNotFoundError:
            return ""

    def wait_log(self, text, timeout=5.0, since=0):
        wait_for(lambda: text in self.log()[since:], timeout, "comet log %r" % text)

    def metrics(self):
        try:
            st, _, body = H.http("GET", "http://127.0.0.1:%d/metrics" % self.admin,
                                 timeout=3)
        except OSError:
            return {}
        return parse_metrics(body.decode())

    def metric(self, name, default=0):
        return self.metrics().get(name, default)

    def workers(self):
        return children(self.pid)

    def shm(self, view="summary"):
        r = subprocess.run([shm_bin(), "-n", self.shm_name, view, "--json"],
                           capture_output=True, text=True, timeout=20)
        if r.returncode != 0:
            raise AssertionError("imgate-shm %s: %s" % (view, r.stderr.strip()))
        return json.loads(r.stdout)

    def reload(self):
        os.kill(self.pid, signal.SIGHUP)

    def stop(self, timeout=10):
        if self.proc is not None and self.proc.poll() is None:
            H.stop_proc(self.proc, signal.SIGTERM, timeout)

    def kill(self):
        if self.proc is not None and self.proc.poll() is None:
            H.stop_proc(self.proc, signal.SIGKILL)

    def pids(self):
        return [self.pid] + self.workers()

    def rss(self):
        """{pid: kB} of the master and every worker."""
        return {p: rss_kb(p) for p in self.pids()}

    def fds(self):
        return {p: nfds(p) for p in self.pids()}


def node(workers=2, comet_over=None, logic_over_=None):
    redis = H.Redis()
    logic = Logic(redis, **(logic_over_ or {}))
    comet = Comet(redis, logic, workers=workers, **(comet_over or {}))
    return redis, logic, comet


# ---- load ----------------------------------------------------------------------

class LoadGroup:
    """Connections spread over several loadclient.py processes (each at
    most per_proc connections, so no process nears the fd cap)."""

    def __init__(self, comet, n, mid_base=100000, rooms=4, ws=True, reconnect=False,
                 per_proc=2500, rate=1500):
        self.procs = []
        self.n = n
        self.rooms = rooms
        self.mid_base = mid_base
        nprocs = max(1, (n + per_proc - 1) // per_proc)
        left = n
        base = mid_base
        # Room of connection i is i % rooms in its process: keep each
        # process's room numbering aligned with the global one.
        for k in range(nprocs):
            cnt = min(per_proc - per_proc % rooms if per_proc % rooms else per_proc, left)
            if k == nprocs - 1:
                cnt = left
            argv = [PY, os.path.join(HERE, "loadclient.py"), "--tcp", str(comet.tcp),
                    "-n", str(cnt), "--mid-base", str(base), "--rooms", str(rooms),
                    "--rate", str(rate / nprocs)]
            if ws:
                argv += ["--ws", str(comet.ws)]
            if reconnect:
                argv.append("--reconnect")
            p = subprocess.Popen(argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                 text=True, bufsize=1)
            H._procs.append(p)
            self.procs.append(p)
            base += cnt
            left -= cnt
            if left <= 0:
                break

    def ask(self, cmd, timeout=30):
        outs = []
        for p in self.procs:
            p.stdin.write(cmd + "\n")
            p.stdin.flush()
        for p in self.procs:
            line = p.stdout.readline()
            if not line:
                raise AssertionError("loadclient %d died" % p.pid)
            outs.append(json.loads(line))
        return outs

    def status(self):
        tot = {"up": 0, "closed": 0, "reconnects": 0, "connect_fail": 0, "bad": 0,
               "received": 0, "pending": 0, "reasons": {}, "churned": 0}
        for s in self.ask("status"):
            for k in tot:
                if k == "reasons":
                    for r, v in s["reasons"].items():
                        tot["reasons"][r] = tot["reasons"].get(r, 0) + v
                else:
                    tot[k] += s[k]
        return tot

    def wait_up(self, n=None, timeout=60):
        n = self.n if n is None else n
        return wait_for(lambda: (lambda s: s if s["up"] >= n else None)(self.status()),
                        timeout, "%d connections up" % n)

    def report(self):
        """Per room: sums over every process."""
        rooms = {}
        for rep in self.ask("report"):
            for room, r in rep.items():
                t = rooms.setdefault(room, {"conns": 0, "stayed": 0, "seen": 0,
                                            "holes": 0, "dups": 0, "never": 0,
                                            "kept": 0, "seen_other": 0, "holes_all": 0,
                                            "first_min": None, "last_min": None,
                                            "last_max": None, "first_max": None})
                for k in ("conns", "stayed", "seen", "holes", "dups", "never", "kept",
                          "seen_other", "holes_all"):
                    t[k] += r.get(k, 0)
                for k, f in (("first_min", min), ("last_min", min), ("last_max", max),
                             ("first_max", max)):
                    if r[k] is not None:
                        t[k] = r[k] if t[k] is None else f(t[k], r[k])
        return rooms

    def keys(self):
        out = {}
        for k in self.ask("keys"):
            out.update(k)
        return out

    def short(self, pusher):
        """The connections up since before the first push that have not
        seen their room's last push: [{key, room, last, count, holes}]."""
        want = {room: pusher.pushed(room) for room in pusher.rooms}
        out = []
        for part in self.ask("short " + json.dumps(want)):
            out.extend(part)
        return out

    def quit(self):
        for p in self.procs:
            try:
                p.stdin.write("quit\n")
                p.stdin.flush()
            except (BrokenPipeError, OSError):
                pass
        for p in self.procs:
            try:
                p.wait(timeout=10)
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait()
            if p in H._procs:
                H._procs.remove(p)


class Pusher:
    """Room pushes through logic's HTTP API on one keep-alive connection;
    the body of push n to room r is "live://r:n"."""

    def __init__(self, logic, rooms, token=None):
        self.logic = logic
        self.rooms = ["live://rel%d" % i for i in range(rooms)]
        self.next = {r: 1 for r in self.rooms}
        self.sent = 0      # answered code 0
        self.failed = 0    # refused or no answer
        self.token = token
        self.conn = None
        self.errors = []  # why pushes failed, for the report
        self.unknown = {}  # room: answers "timed out, may have been delivered"
        self.used = 0.0

    def _conn(self):
        # Logic closes idle keep-alive connections (its [http] timeout);
        # a request racing that close would fail without reaching it.
        if self.conn is not None and time.monotonic() - self.used > 2.0:
            self.conn.close()
            self.conn = None
        self.used = time.monotonic()
        if self.conn is None:
            self.conn = http.client.HTTPConnection("127.0.0.1", self.logic.http_port,
                                                   timeout=5)
        return self.conn

    def push_room(self, room):
        """One push; True when logic answered code 0. A failed push keeps
        its number (the next try reuses it), so holes mean loss."""
        n = self.next[room]
        q = urllib.parse.urlencode({"operation": 1000, "type": "live",
                                    "room": room.split("://", 1)[1]})
        body = ("%s:%d" % (room, n)).encode()
        headers = {"Content-Type": "application/octet-stream"}
        if self.token:
            headers["Authorization"] = "Bearer " + self.token
        try:
            c = self._conn()
            c.request("POST", "/goim/push/room?" + q, body, headers)
            r = c.getresponse()
            data = r.read()
            code = json.loads(data)["code"] if r.status == 200 else -r.status
            ok = code == 0
            if code == -504:
                # "may have been delivered": the retry may duplicate it.
                self.unknown[room] = self.unknown.get(room, 0) + 1
            if not ok:
                self.errors.append("%s %s:%d: HTTP %d %r" % (
                    time.strftime("%H:%M:%S"), room, n, r.status, data[:200]))
        except (OSError, http.client.HTTPException, ValueError) as e:
            self.errors.append("%s %s:%d: %r" % (time.strftime("%H:%M:%S"), room, n, e))
            if self.conn is not None:
                self.conn.close()
            self.conn = None
            ok = False
        if ok:
            self.next[room] = n + 1
            self.sent += 1
        else:
            self.failed += 1
        return ok

    def round(self):
        """One push to every room; number answered code 0."""
        return sum(1 for r in self.rooms if self.push_room(r))

    def pushed(self, room):
        return self.next[room] - 1


def complete(rep, pusher):
    """Whether every connection that stayed up has seen its room's last
    push. One that has seen none has not: last_min is taken over the
    connections that saw something, so it alone would call a room done
    while a worker that fell behind is still writing the whole run out to
    some of its clients (one batch each, a few at a time)."""
    for room, r in rep.items():
        n = pusher.pushed(room)
        if r["stayed"] and n and (r["never"] or r["last_min"] != n):
            return False
    return True


def settle(group, pusher, timeout=10):
    """Wait until every stayed-up connection saw its room's last push; the
    report then, or at the timeout."""
    def done():
        rep = group.report()
        return rep if complete(rep, pusher) else None
    try:
        return wait_for(done, timeout, "every push delivered")
    except AssertionError:
        return group.report()


COMET_DROPS = ("drop_no_key", "drop_not_watch", "drop_slow", "drop_bad_envelope",
               "drop_gap", "slow_disconnect", "redis_reconnects")


def comet_counters(comet):
    """{worker id: shm counters} of the running workers."""
    return {w["id"]: w["counters"] for w in comet.shm("workers")["workers"]
            if w.get("alive")}


def where(group, pusher, comet, logic=None, redis=None, before=None, late=2.0):
    """Where the deliveries a settle found missing went, as text for an
    assertion message: per room, the connections short of the last push
    by comet worker and what they saw; whether they arrive within late
    seconds more (late, not lost); each worker's room envelopes received,
    frames queued and drops by reason (since before, comet_counters()
    taken ahead of the pushes); logic's publish counters; and how many
    subscribers each room channel has in Redis."""
    out = []
    short = group.short(pusher)
    try:
        worker = {c["key"]: c["worker"] for c in comet.shm("channels")["channels"]}
    except AssertionError as e:
        worker = {}
        out.append("imgate-shm channels: %s" % e)
    rooms = {}
    for c in short:
        r = rooms.setdefault(c["room"], {})
        w = r.setdefault(worker.get(c["key"], "?"), {})
        what = "none" if c["last"] is None else "last %d, %d holes" % (c["last"],
                                                                       c["holes"])
        w[what] = w.get(what, 0) + 1
    out.append("%d connections short of their room's last push" % len(short))
    for room in sorted(rooms):
        out.append("  %s (last push %d): %s" % (room, pusher.pushed(room), "; ".join(
            "worker %s: %s" % (w, ", ".join("%d saw %s" % (n, k) for k, n in sorted(v.items())))
            for w, v in sorted(rooms[room].items(), key=lambda x: str(x[0])))))
    if short and late:
        time.sleep(late)
        still = group.short(pusher)
        out.append("%.1f s later %d of them are still short (%s)" % (
            late, len(still), "lost" if still else "late, not lost"))
    try:
        now = comet_counters(comet)
        for wid, cnt in sorted(now.items()):
            b = (before or {}).get(wid, {})
            d = {k: v - b.get(k, 0) for k, v in cnt.items()}
            out.append("  comet worker %s: %d room envelopes received, %d frames "
                       "queued; %s" % (wid, d["push_room"], d["delivered"], ", ".join(
                           "%s %d" % (k, d[k]) for k in COMET_DROPS if d.get(k))
                           or "no drops"))
    except AssertionError as e:
        out.append("imgate-shm workers: %s" % e)
    if logic is not None:
        try:
            m = logic.metrics()
            out.append("  logic: " + ", ".join("%s %g" % (k.replace("imgate_logic_", ""), v)
                                               for k, v in sorted(m.items())
                                               if "publish" in k and v))
        except OSError as e:
            out.append("  logic metrics: %s" % e)
    if redis is not None:
        try:
            r = redis.client()
            ns = r.command("PUBSUB", "NUMSUB",
                           *["%s:room:%s" % (PREFIX, x) for x in pusher.rooms])
            r.close()
            out.append("  redis subscribers: " + ", ".join(
                "%s %d" % (ns[i].decode(), ns[i + 1]) for i in range(0, len(ns), 2)))
        except (OSError, ConnectionError, H.RespError) as e:
            out.append("  redis PUBSUB NUMSUB: %s" % e)
    return "\n".join(out)


def losses(rep, pusher, group_rooms_conns=None):
    """(expected, seen, lost, dups) over connections that stayed up."""
    exp = seen = dups = 0
    for room, r in rep.items():
        exp += r["stayed"] * pusher.pushed(room)
        seen += r["seen"]
        dups += r["dups"]
    return exp, seen, exp - seen, dups


SANITIZER_MARKS = ("ERROR: AddressSanitizer", "ERROR: LeakSanitizer",
                   "runtime error:", "SUMMARY: UndefinedBehaviorSanitizer",
                   "WARNING: AddressSanitizer")


def sanitizer_reports():
    """Stop every daemon still running with SIGTERM (so LeakSanitizer
    runs at exit), then the sanitizer lines of every daemon's log."""
    out = []
    for d in DAEMONS:
        p = d.proc
        if p is not None and p.poll() is None:
            try:
                H.stop_proc(p, signal.SIGTERM, 20)
            except AssertionError:
                pass
        path = getattr(d, "log_path", None)
        if not path or not os.path.exists(path):
            continue
        with open(path, errors="replace") as f:
            for line in f:
                if any(m in line for m in SANITIZER_MARKS):
                    out.append("%s: %s" % (path, line.rstrip()))
    return out


def main():
    """unittest's main, then the table and the daemons' sanitizer reports;
    the exit status is the tests' (1 also on any sanitizer report)."""
    import unittest
    prog = unittest.main(verbosity=2, exit=False, warnings="ignore")
    reports = sanitizer_reports()
    print_table()
    if reports:
        sys.stdout.write("\nsanitizer reports from the daemons:\n  %s\n"
                         % "\n  ".join(reports[:50]))
    sys.exit(0 if prog.result.wasSuccessful() and not reports else 1)
