#!/usr/bin/python3
"""imgate-comet sessions and push delivery, end to end on 127.0.0.1:
redis-server, imgate-logic and imgate-comet as real processes, goim clients
over TCP, WebSocket and WSS, pushes through logic's HTTP API (and raw
envelopes PUBLISHed to Redis where a test needs exact timing).

Run from the build directory (make check does) or set IMGATE_COMET and
IMGATE_LOGIC.
"""
import json
import os
import signal
import subprocess
import sys
import time
import unittest
import urllib.parse

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "lib"))

import msgpack  # noqa: E402

import harness as H  # noqa: E402
from goim_client import (GoimClient, AuthRefused, OP_CHANGE_ROOM,  # noqa: E402
                         OP_CHANGE_ROOM_REPLY, OP_SUB, OP_SUB_REPLY,
                         OP_UNSUB, OP_UNSUB_REPLY)

PREFIX = "imgtest"


def comet_bin():
    return os.environ.get("IMGATE_COMET") or H.find_binary("imgate-comet")


def logic_bin():
    return os.environ.get("IMGATE_LOGIC") or H.find_binary("imgate-logic")


class Logic:
    def __init__(self, redis, heartbeat="30s"):
        self.rpc = H.free_port()
        self.http = H.free_port()
        self.d = H.Daemon(logic_bin(), {
            "server": {"log_level": "info", "pid_file": ""},
            "rpc": {"listen": "127.0.0.1:%d" % self.rpc},
            "http": {"listen": "127.0.0.1:%d" % self.http},
            "redis": {"address": "127.0.0.1:%d" % redis.port, "prefix": PREFIX},
            "session": {"heartbeat_timeout": heartbeat, "session_ttl": "10m"},
        }, ports=(self.rpc, self.http), name="logic")

    def push(self, kind, op, body, **query):
        q = [("operation", str(op))]
        for k, v in query.items():
            for item in (v if isinstance(v, list) else [v]):
                q.append((k, str(item)))
        url = "http://127.0.0.1:%d/goim/push/%s?%s" % (
            self.http, kind, urllib.parse.urlencode(q))
        status, res = H.http_json("POST", url, body if isinstance(body, bytes) else body.encode())
        assert status == 200 and res["code"] == 0, (status, res)
        return res


class Comet:
    seq = 0

    def __init__(self, redis, logic, server_id, workers=2, wss=None, **over):
        Comet.seq += 1
        self.tcp, self.ws, self.admin = H.free_port(), H.free_port(), H.free_port()
        self.wss = H.free_port() if wss else None
        self.dir = H.tempdir("imgate-sess-")
        self.conf = {
            "server": {"id": server_id, "workers": str(workers),
                       "pid_file": os.path.join(self.dir, "comet.pid"),
                       "log_level": "info", "drain_timeout": "3s"},
            "listen": {"tcp": "127.0.0.1:%d" % self.tcp,
                       "ws": "127.0.0.1:%d" % self.ws,
                       "wss": "127.0.0.1:%d" % self.wss if wss else "off",
                       "admin": "127.0.0.1:%d" % self.admin},
            "protocol": {"handshake_timeout": "1s", "output_limit": "64k"},
            "shm": {"name": "/imgate-sess-%d-%d" % (os.getpid(), Comet.seq),
                    "buckets": "64", "channels_per_bucket": "64",
                    "rooms_per_bucket": "16", "max_workers": "4"},
            "logic": {"addr": "127.0.0.1:%d" % logic.rpc, "rpc_timeout": "2s",
                      "renew_interval": "1s"},
            "redis": {"addr": "127.0.0.1:%d" % redis.port,
                      "channel_prefix": PREFIX},
        }
        if wss:
            self.conf["listen"]["tls_cert"], self.conf["listen"]["tls_key"] = wss
        for key, value in over.items():
            section, name = key.split("__")
            self.conf.setdefault(section, {})[name] = value
        ports = [self.tcp, self.ws, self.admin] + ([self.wss] if wss else [])
        self.d = H.Daemon(comet_bin(), self.conf, args=("-f",), ports=ports,
                          name="comet")
        # Every worker subscribed: a key push reaches whichever holds it.
        H.wait_for(lambda: self.log().count("push: connected to redis") >= workers,
                   5, "workers subscribed")

    def log(self):
        return self.d.log()

    def metric(self, name):
        st, _, body = H.http("GET", "http://127.0.0.1:%d/metrics" % self.admin)
        for line in body.decode().splitlines():
            if line.startswith(name + " "):
                return int(line.split()[1])
        return None

    def client(self, kind="tcp", **kw):
        if kind == "tcp":
            return GoimClient.tcp(self.tcp, **kw)
        if kind == "ws":
            return GoimClient.ws(self.ws, **kw)
        return GoimClient.wss(self.wss, **kw)


def token(mid, room="", accepts=(1000,), key=""):
    return {"mid": mid, "key": key, "room_id": room, "platform": "web",
            "accepts": list(accepts)}


def publish_pipelined(redis, envelopes):
    """PUBLISH several envelopes in one write, so they arrive together."""
    r = redis.client()
    out = []
    for ch, env in envelopes:
        data = msgpack.packb(env, use_bin_type=True)
        args = [b"PUBLISH", ch.encode(), data]
        out.append(b"*3\r\n" + b"".join(b"$%d\r\n%s\r\n" % (len(a), a) for a in args))
    r.sock.sendall(b"".join(out))
    for _ in envelopes:
        r._read()
    r.close()


def numsub(redis, channel):
    r = redis.client()
    try:
        return int(r.command("PUBSUB", "NUMSUB", channel)[1])
    finally:
        r.close()


class SessionTest(unittest.TestCase):
    """One Redis, one logic and one comet (2 workers) for the whole class."""

    @classmethod
    def setUpClass(cls):
        cls.redis = H.Redis()
        cls.logic = Logic(cls.redis)
        cls.comet = Comet(cls.redis, cls.logic, "node-a", trace__mids="23, 99")

    @classmethod
    def tearDownClass(cls):
        cls.comet.d.stop()
        cls.logic.d.stop()
        cls.redis.stop()

    def setUp(self):
        self.clients = []

    def tearDown(self):
        for c in self.clients:
            c.close()

    def connect(self, kind="tcp", tok=None, **kw):
        """A client of the class's comet, authenticated when tok is given."""
        c = self.comet.client(kind, **kw)
        self.clients.append(c)
        if tok is not None:
            c.auth(tok)
        return c

    def test_auth_ok_and_refused(self):
        for kind in ("tcp", "ws"):
            c = self.connect(kind, token(1, "live://a"))
            self.assertGreaterEqual(c.heartbeat(), 1)
            bad = self.connect(kind)
            with self.assertRaises(AuthRefused) as e:
                bad.auth(b"not json")
            self.assertEqual(str(e.exception), "auth failed")
            self.assertTrue(bad.closed())

    def test_heartbeat_count_cluster(self):
        a = self.connect("tcp", token(11, "live://hb"))
        b = self.connect("ws", token(12, "live://hb"))
        self.assertGreaterEqual(a.heartbeat(), 2)
        # After a RenewOnline round (1 s) the count is logic's cluster count.
        H.wait_for(lambda: b.heartbeat() == 2, 5, "cluster count 2")
        b.close()
        H.wait_for(lambda: a.heartbeat() == 1, 5, "cluster count 1")

    def test_handshake_timeout(self):
        for kind in ("tcp", "ws"):
            c = self.connect(kind)
            t0 = time.monotonic()
            self.assertEqual(c.disconnect_reason(3), "handshake timeout")
            self.assertTrue(c.closed())
            self.assertGreater(time.monotonic() - t0, 0.8)

    def test_push_key_mid_room_all(self):
        a = self.connect("tcp", token(21, "live://p", (1000, 1001)))
        b1 = self.connect("ws", token(22, "live://p"))
        b2 = self.connect("tcp", token(22, "live://q"))
        # by key (the token names its key)
        k = self.connect("tcp", token(23, "", (1000,), key="key-23"))
        self.logic.push("keys", 1000, "to-key", keys="key-23")
        f = k.expect(1000)
        self.assertEqual((f.body, f.ver, f.seq), (b"to-key", 1, 0))
        # mid 23 is traced: its steps are in the log.
        H.wait_for(lambda: "trace mid=23 key=key-23" in self.comet.log()
                   and "key push op 1000" in self.comet.log(), 3, "trace lines")
        # by mid: both connections of mid 22
        self.logic.push("mids", 1000, "to-mid", mids=22)
        self.assertEqual(b1.expect(1000).body, b"to-mid")
        self.assertEqual(b2.expect(1000).body, b"to-mid")
        # by room
        self.logic.push("room", 1000, "to-room", type="live", room="p")
        self.assertEqual(a.expect(1000).body, b"to-room")
        self.assertEqual(b1.expect(1000).body, b"to-room")
        self.assertIsNone(b2.recv(0.3))
        # to all watchers of the op
        self.logic.push("all", 1001, "to-all")
        self.assertEqual(a.expect(1001).body, b"to-all")
        self.assertIsNone(b1.recv(0.3))

    def test_accepts_and_sub_unsub(self):
        c = self.connect("ws", token(31, "", (1000,), key="key-31"))
        self.logic.push("keys", 2001, "nope", keys="key-31")
        self.assertIsNone(c.recv(0.4))
        c.request(OP_SUB, OP_SUB_REPLY, "2001,2002")
        self.logic.push("keys", 2001, "yes", keys="key-31")
        self.assertEqual(c.expect(2001).body, b"yes")
        c.request(OP_UNSUB, OP_UNSUB_REPLY, "2001")
        self.logic.push("keys", 2001, "nope2", keys="key-31")
        self.logic.push("keys", 2002, "still", keys="key-31")
        f = c.recv(2)
        self.assertEqual((f.op, f.body), (2002, b"still"))

    def test_change_room(self):
        c = self.connect("tcp", token(41, "live://r1"))
        c.request(OP_CHANGE_ROOM, OP_CHANGE_ROOM_REPLY, "live://r2")
        time.sleep(0.1)
        self.logic.push("room", 1000, "old", type="live", room="r1")
        self.logic.push("room", 1000, "new", type="live", room="r2")
        f = c.recv(2)
        self.assertEqual(f.body, b"new")
        self.assertIsNone(c.recv(0.3))
        # Leaving and rejoining at once (UNSUBSCRIBE then SUBSCRIBE in
        # flight): the room's pushes still arrive.
        c.request(OP_CHANGE_ROOM, OP_CHANGE_ROOM_REPLY, "live://r3")
        c.request(OP_CHANGE_ROOM, OP_CHANGE_ROOM_REPLY, "live://r2")
        time.sleep(0.2)
        self.logic.push("room", 1000, "back", type="live", room="r2")
        self.assertEqual(c.expect(1000).body, b"back")
        c.request(OP_CHANGE_ROOM, OP_CHANGE_ROOM_REPLY, "")
        time.sleep(0.1)
        self.logic.push("room", 1000, "gone", type="live", room="r2")
        self.assertIsNone(c.recv(0.4))

    def test_room_batches(self):
        w = self.connect("ws", token(51, "live://b"))
        t = self.connect("tcp", token(52, "live://b"))
        time.sleep(0.2)
        ch = "%s:room:live://b" % PREFIX
        envs = [(ch, {"type": 1, "operation": 3000 + i, "room": "live://b",
                      "msg": b"m%d" % i, "id": i, "ts": 0}) for i in range(5)]
        publish_pipelined(self.redis, envs)
        got_w = [w.recv(2) for _ in range(5)]
        got_t = [t.recv(2) for _ in range(5)]
        for got in (got_w, got_t):
            self.assertEqual([f.op for f in got], [3000 + i for i in range(5)])
            self.assertEqual([f.body for f in got], [b"m%d" % i for i in range(5)])
            self.assertTrue(all(f.ver == 1 and f.seq == 0 for f in got))
        # WebSocket: fewer messages than pushes, i.e. op-9 batches.
        self.assertIsNotNone(got_w[-1].batch)
        self.assertLess(w.messages, 5)

    def test_same_key_replaces(self):
        a = self.connect("tcp", token(61, "live://k", key="dup-61"))
        # Several tries: the new connection may land on either worker.
        b = self.connect("ws", token(61, "live://k", key="dup-61"))
        self.assertEqual(a.disconnect_reason(), "kicked")
        self.assertTrue(a.closed())
        self.logic.push("keys", 1000, "to-new", keys="dup-61")
        self.assertEqual(b.expect(1000).body, b"to-new")
        c = self.connect("tcp", token(61, "live://k", key="dup-61"))
        self.assertEqual(b.disconnect_reason(), "kicked")
        self.logic.push("mids", 1000, "mid-61", mids=61)
        self.assertEqual(c.expect(1000).body, b"mid-61")
        self.assertEqual(c.heartbeat(), 1)

    def test_slow_client(self):
        before = self.comet.metric("imgate_comet_slow_disconnect_total") or 0
        slow = self.connect("tcp", token(71, "", key="slow-71"), rcvbuf=4096)
        good = self.connect("ws", token(72, "", key="good-72"))
        body = "x" * 60000
        # More than the kernel's socket buffers can hide, then the 64k bound.
        for i in range(120):
            self.logic.push("keys", 1000, body, keys=["slow-71", "good-72"])
            self.assertEqual(len(good.expect(1000).body), 60000)
            if (self.comet.metric("imgate_comet_slow_disconnect_total") or 0) > before:
                break
        H.wait_for(lambda: (self.comet.metric("imgate_comet_slow_disconnect_total") or 0) > before,
                   5, "slow disconnect counted")
        self.assertTrue(slow.closed(5))
        self.logic.push("keys", 1000, "after", keys="good-72")
        self.assertEqual(good.expect(1000).body, b"after")

    def test_drops_counted(self):
        m = self.comet.metric
        no_key = m("imgate_comet_drop_no_key_total")
        bad = m("imgate_comet_drop_bad_envelope_total")
        not_watch = m("imgate_comet_drop_not_watch_total")
        c = self.connect("tcp", token(95, "", (1000,), key="key-95"))
        node = "%s:node:node-a" % PREFIX
        publish_pipelined(self.redis, [
            (node, {"type": 0, "operation": 1000, "server": "node-a",
                    "keys": ["nobody-here"], "msg": b"x"}),
            (node, {"type": 0, "operation": 1001, "server": "node-a",
                    "keys": ["key-95"], "msg": b"x"}),
            (node, {"type": "not an int"}),
        ])
        # Every worker sees a key push: an unknown key counts once per
        # node; a bad envelope once per worker that received it (2).
        H.wait_for(lambda: m("imgate_comet_drop_bad_envelope_total") == bad + 2,
                   3, "bad envelopes counted")
        H.wait_for(lambda: m("imgate_comet_drop_not_watch_total") == not_watch + 1,
                   3, "not watched counted")
        self.assertEqual(m("imgate_comet_drop_no_key_total"), no_key + 1)
        self.assertIsNone(c.recv(0.2))

    def test_gap_counted(self):
        """Envelopes carry the publisher's src and a seq per channel: a
        jump is counted as pushes that never reached the worker."""
        m = lambda: self.comet.metric("imgate_comet_drop_gap_total")  # noqa: E731
        gap = m()
        src = 0x5EED00000000 + os.getpid()
        node = "%s:node:node-a" % PREFIX

        def key_env(seq, s=src):
            return (node, {"type": 0, "operation": 1000, "server": "node-a",
                           "keys": ["nobody-gap"], "msg": b"g", "src": s,
                           "seq": seq})

        # Both workers subscribe to the node channel: each missed 3 and 4.
        publish_pipelined(self.redis, [key_env(1), key_env(2), key_env(5)])
        H.wait_for(lambda: m() == gap + 4, 3, "gap on the node channel")
        # Lower seq: that publisher restarted; no count, and it goes on
        # from there. Another publisher on the channel is tracked apart;
        # envelopes without src or seq are not accounted.
        no_seq = (node, {"type": 0, "operation": 1000, "server": "node-a",
                         "keys": ["nobody-gap"], "msg": b"g"})
        publish_pipelined(self.redis, [key_env(1), key_env(7, src + 1),
                                       no_seq, key_env(2), key_env(9, src + 1),
                                       key_env(3)])
        H.wait_for(lambda: m() == gap + 6, 3, "second publisher's gap")
        time.sleep(0.3)
        self.assertEqual(m(), gap + 6)

        # A room channel: only the worker holding the member subscribes.
        room = "%s:room:live://gap" % PREFIX

        def room_env(seq):
            return (room, {"type": 1, "operation": 1000, "room": "live://gap",
                           "msg": b"r%d" % seq, "src": src, "seq": seq})

        c = self.connect("tcp", token(97, "live://gap"))
        H.wait_for(lambda: numsub(self.redis, room) == 1, 3, "room subscribed")
        publish_pipelined(self.redis, [room_env(1), room_env(3)])
        self.assertEqual([c.expect(1000).body for _ in range(2)], [b"r1", b"r3"])
        H.wait_for(lambda: m() == gap + 7, 3, "gap on the room channel")
        # The last member left: the worker unsubscribed and forgot the
        # channel, so what was published meanwhile is not its loss.
        c.close()
        H.wait_for(lambda: numsub(self.redis, room) == 0, 3, "room unsubscribed")
        publish_pipelined(self.redis, [room_env(4), room_env(5)])
        d = self.connect("ws", token(98, "live://gap"))
        H.wait_for(lambda: numsub(self.redis, room) == 1, 3, "room subscribed again")
        publish_pipelined(self.redis, [room_env(9), room_env(10)])
        self.assertEqual([d.expect(1000).body for _ in range(2)], [b"r9", b"r10"])
        time.sleep(0.3)
        self.assertEqual(m(), gap + 7)
        # imgate-shm reports the same figure.
        r = subprocess.run([H.find_binary("imgate-shm"), "-n",
                            self.comet.conf["shm"]["name"], "--json"],
                           capture_output=True, text=True, timeout=10)
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertEqual(json.loads(r.stdout)["counters"]["drop_gap"], gap + 7)

    def test_ws_path_and_ping(self):
        with self.assertRaises(Exception):
            GoimClient.ws(self.comet.ws, path="/nope")
        # (the refused client's socket is closed by the error path)
        c = self.connect("ws", token(81))
        c.ping(b"hi")
        f = c.recv(2)
        self.assertEqual((f.op, f.body), (-0xA, b"hi"))

    def test_receive_other_op(self):
        c = self.connect("tcp", token(91))
        f = c.request(4000, 4000, "hello")
        self.assertEqual(f.body, b"")


class RestartTest(unittest.TestCase):
    """Redis restarted, logic down; WSS; heartbeat timeout; two nodes."""

    def test_redis_restart_and_logic_down(self):
        redis = H.Redis()
        logic = Logic(redis)
        comet = Comet(redis, logic, "node-r")
        c = comet.client("tcp")
        c.auth(token(101, "live://rr", key="rr-101"))
        logic.push("keys", 1000, "before", keys="rr-101")
        self.assertEqual(c.expect(1000).body, b"before")
        redis.kill()
        time.sleep(0.5)
        redis.start()
        H.wait_for(lambda: comet.log().count("push: connected to redis") >= 4, 10,
                   "subscribers reconnected")
        self.assertGreaterEqual(c.heartbeat(), 1)  # the connection stayed
        # Redis lost the session; the comet renews it with logic.
        H.wait_for(lambda: self._push_ok(logic, c), 10, "key push after restart")
        logic.push("room", 1000, "room-after", type="live", room="rr")
        self.assertEqual(c.expect(1000).body, b"room-after")
        # logic down: new clients are refused cleanly, old ones stay.
        logic.d.stop()
        n = comet.client("ws")
        with self.assertRaises(AuthRefused) as e:
            n.auth(token(102))
        self.assertEqual(str(e.exception), "logic unavailable")
        self.assertGreaterEqual(c.heartbeat(), 1)
        c.close()
        n.close()
        comet.d.stop()
        redis.stop()

    def _push_ok(self, logic, c):
        try:
            logic.push("keys", 1000, "after", keys="rr-101")
        except (AssertionError, OSError):
            return False
        f = c.recv(0.3)
        return f is not None and f.body == b"after"

    def test_gap_across_redis_restart(self):
        """What is published while a worker's subscriber is away is lost by
        Redis; the seq it missed shows up after the reconnect."""
        redis = H.Redis()
        logic = Logic(redis)
        comet = Comet(redis, logic, "node-g", workers=1)
        node = "%s:node:node-g" % PREFIX
        src = 0x6A9000000000 + os.getpid()

        def env(seq):
            return (node, {"type": 0, "operation": 1000, "server": "node-g",
                           "keys": ["nobody"], "msg": b"x", "src": src,
                           "seq": seq})

        publish_pipelined(redis, [env(1), env(2)])
        H.wait_for(lambda: comet.metric("imgate_comet_drop_no_key_total") == 2,
                   3, "envelopes received")
        redis.kill()
        time.sleep(0.3)
        redis.start()
        H.wait_for(lambda: numsub(redis, node) == 1, 10, "subscriber back")
        # 3 and 4 were published (and lost) while it was away.
        publish_pipelined(redis, [env(5)])
        H.wait_for(lambda: comet.metric("imgate_comet_drop_gap_total") == 2,
                   3, "gap counted after the reconnect")
        self.assertIn("2 message(s) on %s never reached this worker" % node,
                      comet.log())
        comet.d.stop()
        logic.d.stop()
        redis.stop()

    def test_sigterm_drains(self):
        redis = H.Redis()
        logic = Logic(redis)
        comet = Comet(redis, logic, "node-d")
        a = comet.client("tcp")
        a.auth(token(301, "live://d", key="d-301"))
        b = comet.client("ws")
        b.auth(token(302, "live://d", key="d-302"))
        r = redis.client()
        self.assertIsNotNone(r.command("GET", "%s:key:d-301" % PREFIX))
        os.kill(comet.d.pid, signal.SIGTERM)
        self.assertEqual(a.disconnect_reason(), "server shutting down")
        self.assertEqual(b.disconnect_reason(), "server shutting down")
        self.assertTrue(a.closed() and b.closed())
        self.assertEqual(comet.d.proc.wait(timeout=10), 0)
        # Each session was handed back to logic (Disconnect) on the way.
        H.wait_for(lambda: r.command("GET", "%s:key:d-301" % PREFIX) is None,
                   3, "session removed")
        self.assertIsNone(r.command("GET", "%s:key:d-302" % PREFIX))
        a.close()
        b.close()
        r.close()
        redis.stop()

    def test_wss(self):
        d = H.tempdir("imgate-tls-")
        cert, key = os.path.join(d, "cert.pem"), os.path.join(d, "key.pem")
        subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes",
                        "-keyout", key, "-out", cert, "-days", "1",
                        "-subj", "/CN=127.0.0.1",
                        "-addext", "subjectAltName=IP:127.0.0.1"],
                       check=True, capture_output=True)
        redis = H.Redis()
        logic = Logic(redis)
        comet = Comet(redis, logic, "node-tls", wss=(cert, key))
        c = comet.client("wss", cafile=cert)
        c.auth(token(111, "live://tls", key="tls-111"))
        self.assertEqual(c.heartbeat(), 1)
        logic.push("keys", 1000, "secure", keys="tls-111")
        self.assertEqual(c.expect(1000).body, b"secure")
        # A new certificate on SIGHUP serves new connections.
        subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes",
                        "-keyout", key, "-out", cert, "-days", "2",
                        "-subj", "/CN=127.0.0.1",
                        "-addext", "subjectAltName=IP:127.0.0.1"],
                       check=True, capture_output=True)
        comet.d.reload()
        comet.d.wait_log("reload applied")
        time.sleep(0.3)
        c2 = comet.client("wss", cafile=cert)
        c2.auth(token(112, "live://tls"))
        self.assertEqual(c.heartbeat(), 2)
        c.close()
        c2.close()
        comet.d.stop()
        redis.stop()

    def test_two_nodes_two_logics_and_heartbeat_timeout(self):
        redis = H.Redis()
        la, lb = Logic(redis), Logic(redis, heartbeat="2s")
        ca = Comet(redis, la, "node-1")
        cb = Comet(redis, lb, "node-2")
        a = ca.client("tcp")
        a.auth(token(201, "live://x", key="k-201"))
        b = cb.client("ws")
        b.auth(token(202, "live://x", key="k-202"))
        t_auth = time.monotonic()
        # Either logic routes a key push to the node that holds the key.
        lb.push("keys", 1000, "to-a", keys="k-201")
        la.push("keys", 1000, "to-b", keys="k-202")
        self.assertEqual(a.expect(1000).body, b"to-a")
        self.assertEqual(b.expect(1000).body, b"to-b")
        self.assertIsNone(a.recv(0.3))
        self.assertIsNone(b.recv(0.3))
        la.push("room", 1000, "room-x", type="live", room="x")
        self.assertEqual(a.expect(1000).body, b"room-x")
        self.assertEqual(b.expect(1000).body, b"room-x")
        # Cluster-wide room count from RenewOnline: 2 across the nodes.
        H.wait_for(lambda: a.heartbeat() == 2, 5, "cluster count 2")
        # Node 2's logic hands out a 2 s heartbeat timeout; b's heartbeats
        # were all sent by then (the count checks were a's).
        self.assertEqual(b.disconnect_reason(5), "heartbeat timeout")
        self.assertGreater(time.monotonic() - t_auth, 1.8)
        self.assertTrue(b.closed())
        a.close()
        b.close()
        ca.d.stop()
        cb.d.stop()
        redis.stop()


if __name__ == "__main__":
    H.hard_timeout(240)
    unittest.main(verbosity=2)
