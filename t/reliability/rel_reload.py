#!/usr/bin/python3
"""Reload under load: thousands of clients (TCP and WebSocket) stay
connected while room pushes with per-room sequence numbers flow and the
comet master gets 50 SIGHUPs, most of them with a changed config (log
level, batch window, output limit, traced mids, renew interval), one with
an invalid file. Zero dropped connections, zero lost or duplicated pushes
among connected clients, every valid reload applied.

REL_CONNS (default 3000) sets the number of clients, REL_RELOADS (50) the
number of SIGHUPs.
"""
import os
import sys
import threading
import time
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import rel  # noqa: E402
from rel import H, wait_for  # noqa: E402

CONNS = int(os.environ.get("REL_CONNS", "3000"))
RELOADS = int(os.environ.get("REL_RELOADS", "50"))
ROOMS = 8


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


class ReloadTest(unittest.TestCase):
    def test_reload_under_load(self):
        name = "50 SIGHUP under load"
        redis, logic, comet = rel.node(workers=2)
        g = rel.LoadGroup(comet, CONNS, rooms=ROOMS, per_proc=2000)
        try:
            g.wait_up(timeout=120)
            time.sleep(1.0)
            p = rel.Pusher(logic, ROOMS)
            loop = PushLoop(p, 10)
            time.sleep(1.0)
            base = dict(comet.conf)
            variants = [
                {"server": {"log_level": "debug"}},
                {"server": {"log_level": "info"}},
                {"push": {"batch_window": "5ms"}},
                {"push": {"batch_window": "0"}},
                {"protocol": {"output_limit": "512k"}},
                {"protocol": {"output_limit": "256k"}},
                {"trace": {"mids": "100001, 100002"}},
                {"trace": {"mids": ""}},
                {"logic": {"renew_interval": "2s"}},
                {"logic": {"renew_interval": "1s"}},
            ]
            applied0 = comet.metric("imgate_comet_reloads_total")
            failed0 = comet.metric("imgate_comet_reload_failures_total")
            valid = 0
            invalid = 0
            for i in range(RELOADS):
                if i == RELOADS // 2:
                    with open(comet.conf_path, "a") as f:
                        f.write("\n[server]\nno_such_setting = 1\n")
                    invalid += 1
                else:
                    conf = {s: dict(v) for s, v in base.items()}
                    for s, v in variants[i % len(variants)].items():
                        conf.setdefault(s, {}).update(v)
                    H.write_ini(comet.conf_path, conf)
                    valid += 1
                comet.reload()
                # Let the master take it (a SIGHUP while one is being
                # applied may be folded into it, which is fine).
                want_a, want_f = applied0 + valid, failed0 + invalid
                wait_for(lambda: comet.metric("imgate_comet_reloads_total") >= want_a
                         and comet.metric("imgate_comet_reload_failures_total") >= want_f,
                         10, "reload %d applied" % (i + 1))
                time.sleep(0.1)
            H.write_ini(comet.conf_path, base)
            time.sleep(2.0)
            loop.stop()
            rep = rel.settle(g, p, timeout=20)
            st = g.status()
            exp, seen, lost, dups = rel.losses(rep, p)
            rel.figure(name, "faults injected", RELOADS)
            rel.figure(name, "connections held", CONNS)
            rel.figure(name, "pushes sent", p.sent)
            rel.figure(name, "pushes delivered", seen)
            rel.figure(name, "pushes lost", lost)
            rel.figure(name, "connections dropped", st["closed"])
            sys.stderr.write("reload: %r\n" % (st,))
            self.assertEqual(st["closed"], 0, st)
            self.assertEqual(st["up"], CONNS)
            self.assertEqual(p.failed, 0)
            self.assertEqual((lost, dups), (0, 0), rep)
            self.assertEqual(comet.metric("imgate_comet_reloads_total") - applied0, valid)
            self.assertEqual(comet.metric("imgate_comet_reload_failures_total") - failed0,
                             invalid)
            self.assertEqual(comet.metric("imgate_comet_worker_respawns_total"), 0)
            self.assertEqual(comet.shm("channels")["count"], CONNS)
        finally:
            g.quit()
        wait_for(lambda: comet.metric("imgate_comet_conn_current") == 0, 20, "all gone")
        self.assertEqual(comet.shm("channels")["count"], 0)


if __name__ == "__main__":
    H.hard_timeout(900)
    rel.main()
