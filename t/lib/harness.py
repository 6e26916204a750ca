"""Shared harness for imgate's integration tests (Debian's /usr/bin/python3).

What it gives a test:
  free_port()                  a free TCP port on 127.0.0.1
  wait_for(cond, timeout)      poll until cond() is truthy
  wait_port(port, proc=None)   until 127.0.0.1:port accepts
  hard_timeout(seconds)        SIGALRM kills everything started and exits 1
  find_binary(name)            a daemon in the build tree (or $IMGATE_<NAME>)
  Redis(dir)                   redis-server on a free port, no persistence;
                               .client(), .stop(), .kill(), .start()
  Resp(port)                   a raw RESP client: command(), subscribe(),
                               message(timeout)
  Daemon(binary, conf, args)   a daemon started with a generated INI config
                               (dict of sections) in a temp dir; .reload(),
                               .rewrite(conf), .stop(), .log()
  http(method, url, ...)       (status, headers, body) via urllib
  http_json(method, url, ...)  (status, parsed JSON)
  RpcClient(port)              msgpack-rpc by the spec: call(), request(),
                               notify(), recv()
  logic_conf(redis_port, ...)  an imgate-logic config (dict) for a test
  Logic(redis, **over)         imgate-logic on free ports against redis,
                               ready (Redis connected); .rpc_port,
                               .http_port, .url, .conf_for(**over)
Every process started is stopped by pid at exit, also on failure.
"""
import atexit
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request

import msgpack

STEP = 0.02
_procs = []
_dirs = []
_shm_names = []  # POSIX shm segments to remove at exit


def children(pid):
    """The pids of pid's children, sorted."""
    r = subprocess.run(["pgrep", "-P", str(pid)], capture_output=True, text=True)
    return sorted(int(x) for x in r.stdout.split())


def read(path):
    """A text file's contents, "" when it does not exist."""
    try:
        with open(path, errors="replace") as f:
            return f.read()
    except FileNotFoundError:
        return ""


def alive(pid):
    """Whether process pid exists (a zombie counts)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_for(cond, timeout=5.0, what="condition"):
    end = time.monotonic() + timeout
    while True:
        v = cond()
        if v:
            return v
        if time.monotonic() > end:
            raise AssertionError("timed out after %.1fs waiting for %s" % (timeout, what))
        time.sleep(STEP)


def port_open(port, host="127.0.0.1"):
    try:
        with socket.create_connection((host, port), timeout=0.5):
            return True
    except OSError:
        return False


def wait_port(port, proc=None, timeout=5.0, host="127.0.0.1"):
    def ready():
        if proc is not None and proc.poll() is not None:
            raise AssertionError("process %d exited with %s before port %d opened"
                                 % (proc.pid, proc.returncode, port))
        return port_open(port, host)
    wait_for(ready, timeout, "port %d" % port)


def _cleanup():
    for p in reversed(_procs):
        if p.poll() is None:
            try:
                p.kill()
                p.wait(timeout=5)
            except (OSError, subprocess.TimeoutExpired):
                pass
    del _procs[:]
    for d in _dirs:
        shutil.rmtree(d, ignore_errors=True)
    del _dirs[:]
    for name in _shm_names:
        try:
            os.unlink("/dev/shm" + name)
        except OSError:
            pass
    del _shm_names[:]


atexit.register(_cleanup)


def hard_timeout(seconds):
    """Whatever happens, stop everything and fail after seconds."""
    def expire(signum, frame):
        sys.stderr.write("hard timeout of %ds reached\n" % seconds)
        _cleanup()
        os._exit(1)
    signal.signal(signal.SIGALRM, expire)
    signal.alarm(seconds)


def shm_at_exit(name):
    """Remove the shm segment name at exit: a comet master killed with -9
    (on purpose, or by the test's end) cannot remove it itself."""
    _shm_names.append(name)
    return name


def tempdir(prefix="imgate-test-"):
    d = tempfile.mkdtemp(prefix=prefix)
    _dirs.append(d)
    return d


def spawn(argv, log_path, **kw):
    """Start argv with stdout+stderr to log_path; registered for cleanup."""
    log = open(log_path, "ab")
    p = subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT,
                         stdin=subprocess.DEVNULL, **kw)
    log.close()
    _procs.append(p)
    return p


def stop_proc(p, sig=signal.SIGTERM, timeout=10.0):
    """Signal p by pid, wait; SIGKILL when it does not exit in time."""
    if p.poll() is None:
        os.kill(p.pid, sig)
        try:
            p.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            p.kill()
            p.wait(timeout=5)
            raise AssertionError("pid %d ignored signal %d for %.1fs" % (p.pid, sig, timeout))
    if p in _procs:
        _procs.remove(p)
    return p.returncode


def find_binary(name):
    """$IMGATE_<NAME> or the binary in the build tree (make check's cwd)."""
    env = os.environ.get("IMGATE_" + name.upper().replace("IMGATE-", "").replace("-", "_"))
    if env:
        return os.path.abspath(env)
    sub = name.replace("imgate-", "")
    for cand in (os.path.join("src", sub, name), name,
                 os.path.join("..", "src", sub, name)):
        if os.path.isfile(cand) and os.access(cand, os.X_OK):
            return os.path.abspath(cand)
    raise AssertionError("%s not found (run from the build directory or set IMGATE_%s)"
                         % (name, sub.upper()))


# ---- Redis ------------------------------------------------------------------

class Resp:
    """A minimal RESP2 client over one socket."""

    def __init__(self, port, host="127.0.0.1", timeout=5.0):
        self.sock = socket.create_connection((host, port), timeout=timeout)
        self.buf = b""

    def close(self):
        self.sock.close()

    def _fill(self, timeout=None):
        if timeout is not None:
            self.sock.settimeout(timeout)
        data = self.sock.recv(65536)
        if not data:
            raise ConnectionError("redis closed the connection")
        self.buf += data

    def _line(self):
        while b"\r\n" not in self.buf:
            self._fill()
        line, self.buf = self.buf.split(b"\r\n", 1)
        return line

    def _read(self):
        line = self._line()
        t, rest = line[:1], line[1:]
        if t == b"+":
            return rest.decode()
        if t == b"-":
            return RespError(rest.decode())
        if t == b":":
            return int(rest)
        if t == b"$":
            n = int(rest)
            if n < 0:
                return None
            while len(self.buf) < n + 2:
                self._fill()
            data, self.buf = self.buf[:n], self.buf[n + 2:]
            return data
        if t == b"*":
            n = int(rest)
            return None if n < 0 else [self._read() for _ in range(n)]
        raise ValueError("bad RESP: %r" % line)

    def send(self, *args):
        out = [b"*%d\r\n" % len(args)]
        for a in args:
            if isinstance(a, str):
                a = a.encode()
            elif isinstance(a, int):
                a = str(a).encode()
            out.append(b"$%d\r\n%s\r\n" % (len(a), a))
        self.sock.sendall(b"".join(out))

    def command(self, *args):
        self.send(*args)
        self.sock.settimeout(5.0)
        r = self._read()
        if isinstance(r, RespError):
            raise r
        return r

    def subscribe(self, *channels):
        for c in channels:
            self.send("SUBSCRIBE", c)
            self.sock.settimeout(5.0)
            r = self._read()
            assert r[0] == b"subscribe", r

    def psubscribe(self, *patterns):
        for c in patterns:
            self.send("PSUBSCRIBE", c)
            self.sock.settimeout(5.0)
            r = self._read()
            assert r[0] == b"psubscribe", r

    def message(self, timeout=2.0):
        """The next published message as (channel str, data bytes), or None."""
        end = time.monotonic() + timeout
        while True:
            try:
                if b"\r\n" in self.buf:
                    r = self._read()
                else:
                    left = end - time.monotonic()
                    if left <= 0:
                        return None
                    self._fill(left)
                    continue
            except socket.timeout:
                return None
            if r[0] == b"message":
                return r[1].decode(), r[2]
            if r[0] == b"pmessage":
                return r[2].decode(), r[3]


class RespError(Exception):
    pass


class Redis:
    """redis-server on a free port in its own temp dir, no persistence."""

    def __init__(self, port=None, args=()):
        self.dir = tempdir("imgate-redis-")
        self.port = port or free_port()
        self.args = list(args)
        self.password = None
        if "--requirepass" in self.args:
            self.password = self.args[self.args.index("--requirepass") + 1]
        self.proc = None
        self.start()

    def start(self):
        argv = [shutil.which("redis-server") or "/usr/bin/redis-server",
                "--port", str(self.port), "--bind", "127.0.0.1",
                "--save", "", "--appendonly", "no", "--dir", self.dir,
                "--daemonize", "no", "--protected-mode", "no",
                "--loglevel", "warning"] + self.args
        self.proc = spawn(argv, os.path.join(self.dir, "redis.log"))
        wait_port(self.port, self.proc)
        wait_for(lambda: self._pong(), 5, "redis PING")

    def _pong(self):
        try:
            c = self.client()
            ok = c.command("PING") == "PONG"
            c.close()
            return ok
        except (OSError, ConnectionError, RespError):
            return False

    def client(self):
        c = Resp(self.port)
        if self.password is not None:
            c.command("AUTH", self.password)
        return c

    def stop(self):
        stop_proc(self.proc)

    def kill(self):
        stop_proc(self.proc, signal.SIGKILL)


# ---- daemons ----------------------------------------------------------------

def write_ini(path, conf):
    with open(path, "w") as f:
        for section, values in conf.items():
            f.write("[%s]\n" % section)
            for k, v in values.items():
                f.write("%s = %s\n" % (k, v))
            f.write("\n")


class Daemon:
    """A daemon in the foreground with a generated config."""

    def __init__(self, binary, conf, args=("-f",), ports=(), name=None):
        self.binary = binary
        self.dir = tempdir("imgate-%s-" % (name or os.path.basename(binary)))
        self.conf_path = os.path.join(self.dir, "daemon.conf")
        self.log_path = os.path.join(self.dir, "daemon.log")
        self.conf = conf
        write_ini(self.conf_path, conf)
        self.proc = spawn([binary, "-c", self.conf_path] + list(args), self.log_path)
        for p in ports:
            wait_port(p, self.proc)

    @property
    def pid(self):
        return self.proc.pid

    def rewrite(self, conf=None, text=None):
        if text is not None:
            with open(self.conf_path, "w") as f:
                f.write(text)
        else:
            self.conf = conf
            write_ini(self.conf_path, conf)

    def reload(self):
        os.kill(self.proc.pid, signal.SIGHUP)

    def send_signal(self, sig):
        os.kill(self.proc.pid, sig)

    def stop(self, sig=signal.SIGTERM, timeout=10.0):
        return stop_proc(self.proc, sig, timeout)

    def alive(self):
        return self.proc.poll() is None

    def log(self):
        with open(self.log_path, errors="replace") as f:
            return f.read()

    def wait_log(self, text, timeout=5.0):
        wait_for(lambda: text in self.log(), timeout, "log line %r" % text)


# ---- HTTP ---------------------------------------------------------------------

def http(method, url, body=None, headers=None, timeout=5.0):
    req = urllib.request.Request(url, data=body, method=method, headers=headers or {})
    try:
        with urllib.request.urlopen(req, timeout=timeout) as r:
            return r.status, dict(r.headers), r.read()
    except urllib.error.HTTPError as e:
        return e.code, dict(e.headers), e.read()


def http_json(method, url, body=None, headers=None, timeout=5.0):
    status, _, data = http(method, url, body, headers, timeout)
    return status, json.loads(data)


# ---- msgpack-rpc ----------------------------------------------------------------

class RpcClient:
    """msgpack-rpc over TCP as the public spec describes it."""

    def __init__(self, port, host="127.0.0.1", timeout=5.0):
        self.sock = socket.create_connection((host, port), timeout=timeout)
        self.unpacker = msgpack.Unpacker(raw=False)
        self.msgid = 0

    def close(self):
        self.sock.close()

    def send_raw(self, data):
        self.sock.sendall(data)

    def request(self, method, params):
        """Send [0, msgid, method, [params]]; returns msgid."""
        self.msgid += 1
        self.sock.sendall(msgpack.packb([0, self.msgid, method, [params]],
                                        use_bin_type=True))
        return self.msgid

    def notify(self, method, params):
        self.sock.sendall(msgpack.packb([2, method, [params]], use_bin_type=True))

    def recv(self, timeout=5.0):
        """The next message off the wire, or raise on timeout / close."""
        end = time.monotonic() + timeout
        while True:
            for msg in self.unpacker:
                return msg
            left = end - time.monotonic()
            if left <= 0:
                raise TimeoutError("no rpc message within %.1fs" % timeout)
            self.sock.settimeout(left)
            data = self.sock.recv(65536)
            if not data:
                raise ConnectionError("rpc peer closed the connection")
            self.unpacker.feed(data)

    def call(self, method, params, timeout=5.0):
        """(error, result) of one call."""
        mid = self.request(method, params)
        msg = self.recv(timeout)
        assert msg[0] == 1 and msg[1] == mid, msg
        return msg[2], msg[3]


# ---- imgate-logic ---------------------------------------------------------------

def logic_conf(redis_port, rpc_port, http_port, prefix="imgate", **over):
    """A config for a test: short TTLs and timeouts, debug log on stderr.
    over: {section: {setting: value}} merged over it."""
    conf = {
        "server": {"pid_file": "", "log": "stderr", "log_level": "debug"},
        "rpc": {"listen": "127.0.0.1:%d" % rpc_port},
        "http": {"listen": "127.0.0.1:%d" % http_port, "max_body": "4k",
                 "max_targets": "50"},
        "redis": {"address": "127.0.0.1:%d" % redis_port, "prefix": prefix,
                  "timeout": "1s", "backoff_min": "50ms", "backoff_max": "300ms"},
        "session": {"heartbeat_timeout": "2s", "session_ttl": "5s",
                    "online_ttl": "2s", "online_cache": "0"},
    }
    for section, values in over.items():
        conf.setdefault(section, {}).update(values)
    return conf


class Logic(Daemon):
    """imgate-logic in the foreground on free ports, connected to redis."""

    def __init__(self, redis, prefix="imgate", binary=None, **over):
        self.redis = redis
        self.prefix = prefix
        self.rpc_port, self.http_port = free_port(), free_port()
        self.url = "http://127.0.0.1:%d" % self.http_port
        Daemon.__init__(self, binary or find_binary("imgate-logic"),
                        self.conf_for(**over),
                        ports=(self.rpc_port, self.http_port), name="logic")
        # Its scripts are loaded once Redis is connected.
        wait_for(lambda: http("GET", self.url + "/healthz")[0] == 200, 5,
                 "imgate-logic healthz")

    def conf_for(self, **over):
        """This daemon's config with over merged (for rewrite + reload)."""
        return logic_conf(self.redis.port, self.rpc_port, self.http_port,
                          self.prefix, **over)
