#!/usr/bin/python3
"""Soak: an hour of churn compressed into a few minutes. Clients connect,
authenticate, join a room, receive room pushes and leave, at a steady rate,
with the same keys coming back (reconnects race their own Disconnects).
At the end: the RSS of the comet master, its workers and imgate-logic is
flat (after a warm-up), fds return to their baseline, imgate-shm's counts
are exact, no session is left in Redis, and no connected client missed a
push (holes in the per-room sequence, over every incarnation).

REL_SOAK_SECONDS (default 150), REL_CONNS (1500), REL_CHURN (connections
closed and reopened per second, default 60).
"""
import os
import sys
import threading
import time
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import rel  # noqa: E402
from rel import H, wait_for  # noqa: E402

SECONDS = float(os.environ.get("REL_SOAK_SECONDS", "150"))
CONNS = int(os.environ.get("REL_CONNS", "1500"))
CHURN = float(os.environ.get("REL_CHURN", "60"))
ROOMS = 8
RSS_SLACK_KB = int(os.environ.get("REL_RSS_SLACK_KB", "3072"))


class PushLoop(threading.Thread):
    def __init__(self, pusher, rate):
        threading.Thread.__init__(self, daemon=True)
        self.p, self.rate = pusher, rate
        self.stop_ev = threading.Event()
        self.start()

    def run(self):
        while not self.stop_ev.is_set():
            t0 = time.monotonic()
            self.p.round()
            self.stop_ev.wait(max(0, 1.0 / self.rate - (time.monotonic() - t0)))

    def stop(self):
        self.stop_ev.set()
        self.join(10)


def snapshot(comet, logic):
    pids = {"master": comet.pid, "logic": logic.pid}
    for i, w in enumerate(comet.workers()):
        pids["worker%d" % i] = w
    return {k: (rel.rss_kb(p), rel.nfds(p)) for k, p in pids.items()}


class SoakTest(unittest.TestCase):
    def test_soak(self):
        name = "soak %ds churn %g/s" % (SECONDS, CHURN)
        redis, logic, comet = rel.node(workers=2)
        fd_base = snapshot(comet, logic)
        g = rel.LoadGroup(comet, CONNS, rooms=ROOMS, reconnect=True, per_proc=1500)
        try:
            g.wait_up(timeout=120)
            time.sleep(1.0)
            p = rel.Pusher(logic, ROOMS)
            loop = PushLoop(p, 5)
            g.ask("churn %g" % (CHURN / len(g.procs)))
            warm = min(30.0, SECONDS / 4)
            time.sleep(warm)
            rss0 = snapshot(comet, logic)
            samples = [rss0]
            t_end = time.monotonic() + SECONDS - warm
            while time.monotonic() < t_end:
                time.sleep(min(15.0, max(0.1, t_end - time.monotonic())))
                samples.append(snapshot(comet, logic))
                st = g.status()
                sys.stderr.write("soak: up %d churned %d reconnects %d rss %s\n" % (
                    st["up"], st["churned"], st["reconnects"],
                    {k: v[0] for k, v in samples[-1].items()}))
            g.ask("churn 0")
            # Everyone back up, then the last pushes.
            g.wait_up(timeout=30)
            time.sleep(1.0)
            loop.stop()
            for _ in range(5):
                p.round()
            rep = rel.settle(g, p, timeout=20)
            st = g.status()
            rss1 = snapshot(comet, logic)
            holes = sum(r["holes_all"] for r in rep.values())
            dups = sum(r["dups"] for r in rep.values())
            seen = sum(r["seen"] + r["kept"] + r["seen_other"] for r in rep.values())
            # Exact counts while everyone is up.
            wait_for(lambda: comet.metric("imgate_comet_conn_current") == CONNS, 10,
                     "conn_current == %d" % CONNS)
            shm_n = comet.shm("channels")["count"]
            rel.figure(name, "connections held", CONNS)
            rel.figure(name, "connect/leave cycles", st["churned"])
            rel.figure(name, "pushes sent", p.sent)
            rel.figure(name, "pushes delivered", seen)
            rel.figure(name, "pushes lost", holes)
            rel.figure(name, "pushes duplicated", dups)
            rel.figure(name, "pushes refused (HTTP)", p.failed)
            if p.errors:
                sys.stderr.write("push failures: %s\n" % "\n  ".join(p.errors[:20]))
            for k in sorted(rss1):
                rel.figure(name, "RSS kB %s start/end" % k, "%d/%d" % (rss0[k][0], rss1[k][0]))
            self.assertEqual(shm_n, CONNS, "shm channels")
            self.assertEqual(st["closed"], 0, "server-side closes: %r" % st["reasons"])
            self.assertEqual((holes, dups), (0, 0))
            self.assertEqual(p.failed, 0)
            for k in rss1:
                if rel.sanitized():
                    break  # LeakSanitizer judges leaks in that build
                self.assertLess(rss1[k][0] - rss0[k][0], RSS_SLACK_KB,
                                "%s RSS grew %d -> %d kB over the soak"
                                % (k, rss0[k][0], rss1[k][0]))
        finally:
            g.quit()
        # Everyone gone: counts to zero, fds to their baseline, sessions
        # removed from Redis.
        wait_for(lambda: comet.metric("imgate_comet_conn_current") == 0, 20, "all closed")
        self.assertEqual(comet.shm("channels")["count"], 0)
        self.assertEqual(comet.shm("rooms")["count"], 0)
        fd_end = wait_for(lambda: (lambda s: s if all(s[k][1] <= fd_base[k][1] for k in
                                                      fd_base) else None)(
            snapshot(comet, logic)), 15, "fds back to %r" % fd_base)
        rel.figure(name, "fds start/end", "%d/%d" % (
            sum(v[1] for v in fd_base.values()), sum(v[1] for v in fd_end.values())))
        r = redis.client()
        try:
            wait_for(lambda: not r.command("KEYS", rel.PREFIX + ":key:*"), 10,
                     "sessions removed")
        except AssertionError:
            left = r.command("KEYS", rel.PREFIX + ":key:*")
            self.fail("%d sessions left in Redis after every client left, e.g. %r"
                      % (len(left), left[:5]))
        self.assertEqual(r.command("KEYS", rel.PREFIX + ":mid:*"), [])
        r.close()


if __name__ == "__main__":
    H.hard_timeout(int(SECONDS) + 600)
    rel.main()
