#!/usr/bin/python3
"""The demo page in a real browser: redis-server, imgate-logic (serving
/demo/) and imgate-comet on 127.0.0.1, Debian's chromium driven headless
by playwright-core (npm, installed under the build tree) running
demo_browser.mjs. Two pages join one room and a third another room; a
message sent from one page reaches both pages of its room and not the
third; the online count reaches 2; imgate-comet is restarted and the pages
reconnect by themselves and receive again. Screenshots go to
t/web/screenshots/ in the build tree.

Skipped (exit 77) only when /usr/bin/chromium is missing.
Run from the build directory (make check does).
"""
import os
import shutil
import subprocess
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "lib"))

import harness as H  # noqa: E402

CHROMIUM = "/usr/bin/chromium"
PREFIX = "webt"
TOP = os.path.normpath(os.path.join(HERE, "..", ".."))
BUILD = os.path.join(os.getcwd(), "t", "web")


def log(msg):
    sys.stdout.write("# %s\n" % msg)
    sys.stdout.flush()


def install_playwright():
    """npm ci of t/web/package-lock.json into the build tree, once."""
    d = os.path.join(BUILD, "npm")
    os.makedirs(d, exist_ok=True)
    lock = os.path.join(HERE, "package-lock.json")
    stamp = os.path.join(d, "node_modules", ".imgate-lock")
    want = open(lock).read()
    if os.path.isfile(stamp) and open(stamp).read() == want:
        return d
    for f in ("package.json", "package-lock.json"):
        shutil.copyfile(os.path.join(HERE, f), os.path.join(d, f))
    log("installing playwright-core into %s" % d)
    subprocess.run(["npm", "ci", "--no-audit", "--no-fund", "--prefer-offline",
                    "--loglevel=error"], cwd=d, check=True, timeout=240,
                   stdin=subprocess.DEVNULL)
    with open(stamp, "w") as f:
        f.write(want)
    return d


def demo_site():
    """The demo as installed: the page's files and imgate.js side by side."""
    d = H.tempdir("imgate-demo-site-")
    for f in ("index.html", "demo.js", "demo.css"):
        shutil.copy(os.path.join(TOP, "src", "web", "demo", f), d)
    shutil.copy(os.path.join(TOP, "src", "web", "imgate.js"), d)
    return d


class Comet:
    """imgate-comet with fixed ports, so a restart lands where pages
    reconnect."""

    def __init__(self, redis, logic, ws_port):
        self.ws, self.tcp, self.admin = ws_port, H.free_port(), H.free_port()
        pid = os.path.join(H.tempdir("imgate-web-comet-"), "comet.pid")
        self.conf = {
            "server": {"id": "web-1", "workers": "1", "pid_file": pid,
                       "log_level": "info", "drain_timeout": "2s"},
            "listen": {"tcp": "127.0.0.1:%d" % self.tcp,
                       "ws": "127.0.0.1:%d" % self.ws, "wss": "off",
                       "admin": "127.0.0.1:%d" % self.admin},
            "protocol": {"handshake_timeout": "5s"},
            "shm": {"name": "/imgate-web-%d" % os.getpid(), "buckets": "16",
                    "channels_per_bucket": "16", "rooms_per_bucket": "8",
                    "max_workers": "2"},
            "logic": {"addr": "127.0.0.1:%d" % logic.rpc_port,
                      "rpc_timeout": "2s", "renew_interval": "1s"},
            "redis": {"addr": "127.0.0.1:%d" % redis.port,
                      "channel_prefix": PREFIX},
        }
        self.d = None
        self.start()

    def start(self):
        self.d = H.Daemon(H.find_binary("imgate-comet"), self.conf,
                          args=("-f",), ports=(self.ws, self.admin),
                          name="comet")
        H.wait_for(lambda: "push: connected to redis" in self.d.log(), 5,
                   "comet worker subscribed")

    def restart(self):
        rc = self.d.stop()
        assert rc == 0, "imgate-comet exited with %s:\n%s" % (rc, self.d.log())
        self.start()


def main():
    if not os.access(CHROMIUM, os.X_OK):
        print("SKIP: %s is missing: install Debian's chromium package "
              "(apt-get install chromium) to run the browser test" % CHROMIUM)
        return 77
    ver = subprocess.run(["node", "--version"], capture_output=True,
                         text=True).stdout.strip()
    if int(ver.lstrip("v").split(".")[0] or 0) < 20:
        print("SKIP: playwright-core needs Node 20 or later, this is %s"
              % ver)
        return 77
    H.hard_timeout(150)
    pw = install_playwright()
    redis = H.Redis()
    ws_port = H.free_port()
    # The page finds the comet on its own host at the advertised ws_port;
    # heartbeats every second keep the online count fresh.
    logic = H.Logic(redis, prefix=PREFIX,
                    demo={"dir": demo_site()},
                    session={"heartbeat_timeout": "10s", "session_ttl": "30s"},
                    node={"ws_port": str(ws_port), "heartbeat": "1s",
                          "backoff_base_delay": "1", "backoff_max_delay": "2"})
    comet = Comet(redis, logic, ws_port)

    shots = os.path.join(BUILD, "screenshots")
    os.makedirs(shots, exist_ok=True)
    env = dict(os.environ, DEMO_URL=logic.url + "/demo/", PW_DIR=pw,
               SHOT_DIR=shots, CHROMIUM=CHROMIUM)
    node = subprocess.Popen(["node", os.path.join(HERE, "demo_browser.mjs")],
                            stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                            env=env, text=True, bufsize=1)
    H._procs.append(node)
    for line in node.stdout:
        sys.stdout.write(line)
        sys.stdout.flush()
        if line.strip() == "RESTART-COMET":
            comet.restart()
            log("imgate-comet restarted")
            node.stdin.write("RESTARTED\n")
            node.stdin.flush()
    rc = node.wait(timeout=30)
    if rc != 0 or os.environ.get("IMGATE_TEST_VERBOSE"):
        sys.stdout.write("---- logic\n%s---- comet\n%s" % (logic.log(), comet.d.log()))
    assert rc == 0, "demo_browser.mjs failed with %s" % rc
    assert logic.stop() == 0
    comet.d.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
