#!/usr/bin/python3
"""imgate-logic end to end: a real redis-server and imgate-logic on
127.0.0.1, the rpc spoken by python3-msgpack as the msgpack-rpc spec says,
the HTTP API driven with urllib, envelopes read back by SUBSCRIBE.

Run from the build directory (make check does), or set IMGATE_LOGIC.
"""
import base64
import hashlib
import hmac
from http.client import HTTPConnection
from http.server import BaseHTTPRequestHandler, HTTPServer
import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
import unittest

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "lib"))
import harness  # noqa: E402
from harness import Daemon, Redis, RpcClient, http, http_json, wait_for  # noqa: E402

import msgpack  # noqa: E402

BIN = harness.find_binary("imgate-logic")
PREFIX = "t"


def start_logic(redis, **over):
    return harness.Logic(redis, prefix=PREFIX, binary=BIN, **over)


def b64url(data):
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def make_jwt(claims, secret, alg="HS256"):
    head = b64url(json.dumps({"alg": alg, "typ": "JWT"}).encode())
    body = b64url(json.dumps(claims).encode())
    if alg == "none":
        return "%s.%s." % (head, body)
    sig = hmac.new(secret.encode(), ("%s.%s" % (head, body)).encode(),
                   hashlib.sha256).digest()
    return "%s.%s.%s" % (head, body, b64url(sig))


def token(mid, key="", room="live://1000", accepts=(1000, 1001)):
    return json.dumps({"mid": mid, "key": key, "room_id": room,
                       "platform": "web", "accepts": list(accepts)})


def envelope(data):
    return msgpack.unpackb(data, raw=False)


class LogicTest(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.redis = Redis()
        cls.logic = start_logic(cls.redis)
        cls.r = cls.redis.client()

    @classmethod
    def tearDownClass(cls):
        if os.environ.get("IMGATE_TEST_VERBOSE"):
            sys.stderr.write(cls.logic.log())
        cls.r.close()
        # Exit status 0: a clean stop (and no leak report under ASan).
        rc = cls.logic.stop()
        cls.redis.stop()
        assert rc == 0, "imgate-logic exited with %s" % rc

    def setUp(self):
        self.rpc = RpcClient(self.logic.rpc_port)

    def tearDown(self):
        self.rpc.close()

    def connect(self, server, mid, key="", room="live://1000"):
        err, res = self.rpc.call("Connect", {"server": server, "cookie": "",
                                             "token": token(mid, key, room)})
        self.assertIsNone(err)
        return res

    def subscriber(self, *channels):
        s = self.redis.client()
        s.subscribe(*channels)
        self.addCleanup(s.close)
        return s

    def push(self, route, query, body=b"payload", headers=None):
        return http_json("POST", "%s/goim/push/%s?%s" % (self.logic.url, route, query),
                         body, headers)

    # ---- rpc ------------------------------------------------------------------

    def test_connect_goim_token(self):
        res = self.connect("node-a", 123, "k-connect")
        self.assertEqual(res["mid"], 123)
        self.assertEqual(res["key"], "k-connect")
        self.assertEqual(res["room_id"], "live://1000")
        self.assertEqual(res["accepts"], [1000, 1001])
        self.assertEqual(res["heartbeat"], 2)
        self.assertEqual(self.r.command("GET", PREFIX + ":key:k-connect"), b"node-a")
        self.assertEqual(self.r.command("HGET", PREFIX + ":mid:123", "k-connect"), b"node-a")
        ttl = self.r.command("TTL", PREFIX + ":key:k-connect")
        self.assertTrue(0 < ttl <= 5, ttl)

    def test_connect_fresh_key_and_bin_token(self):
        # The token may arrive as bin (goim's bytes) as well as str.
        err, res = self.rpc.call("Connect", {"server": "node-a",
                                             "token": token(7).encode()})
        self.assertIsNone(err)
        self.assertEqual(len(res["key"]), 36)
        self.assertEqual(self.r.command("GET", PREFIX + ":key:" + res["key"]), b"node-a")
        # mid 0 is anonymous: no mid hash.
        err, res = self.rpc.call("Connect", {"server": "node-a", "token": token(0)})
        self.assertIsNone(err)
        self.assertEqual(self.r.command("EXISTS", PREFIX + ":mid:0"), 0)

    def test_connect_refused(self):
        for params in ({"server": "node-a", "token": "not json"},
                       {"server": "node-a", "token": json.dumps({"key": "x"})},
                       {"server": "", "token": token(1)},
                       {"token": token(1)},
                       {"server": "node-a"}):
            err, res = self.rpc.call("Connect", params)
            self.assertIsInstance(err, str, params)
            self.assertIsNone(res)

    def test_disconnect_compare_and_delete(self):
        self.connect("node-a", 55, "roam")
        # The same key reconnects on node-b before node-a's Disconnect.
        self.connect("node-b", 55, "roam")
        err, res = self.rpc.call("Disconnect", {"mid": 55, "key": "roam", "server": "node-a"})
        self.assertIsNone(err)
        self.assertEqual(res, {"has": False})
        self.assertEqual(self.r.command("GET", PREFIX + ":key:roam"), b"node-b")
        self.assertEqual(self.r.command("HGET", PREFIX + ":mid:55", "roam"), b"node-b")
        err, res = self.rpc.call("Disconnect", {"mid": 55, "key": "roam", "server": "node-b"})
        self.assertEqual(res, {"has": True})
        self.assertIsNone(self.r.command("GET", PREFIX + ":key:roam"))
        self.assertIsNone(self.r.command("HGET", PREFIX + ":mid:55", "roam"))
        err, res = self.rpc.call("Disconnect", {"mid": 55, "key": "roam", "server": "node-b"})
        self.assertEqual(res, {"has": False})

    def test_disconnect_race_pipelined(self):
        # Connect(b) and a late Disconnect(a) in flight together, many
        # times: the key must always end on node-b.
        for i in range(20):
            key = "race-%d" % i
            self.connect("node-a", 900 + i, key)
            a = self.rpc.request("Connect", {"server": "node-b", "token": token(900 + i, key)})
            b = self.rpc.request("Disconnect", {"mid": 900 + i, "key": key, "server": "node-a"})
            got = {m[1]: m for m in (self.rpc.recv(), self.rpc.recv())}
            self.assertEqual(set(got), {a, b})
            self.assertIsNone(got[a][2])
            self.assertEqual(self.r.command("GET", PREFIX + ":key:" + key), b"node-b")

    def test_heartbeat_renews_and_restores(self):
        self.connect("node-a", 77, "hb")
        time.sleep(1.2)
        self.assertLessEqual(self.r.command("PTTL", PREFIX + ":key:hb"), 3900)
        err, res = self.rpc.call("Heartbeat", {"mid": 77, "key": "hb", "server": "node-a"})
        self.assertIsNone(err)
        self.assertEqual(res, {"has": True})
        self.assertGreater(self.r.command("PTTL", PREFIX + ":key:hb"), 4000)
        self.assertGreater(self.r.command("PTTL", PREFIX + ":mid:77"), 4000)
        # Expired mapping: a heartbeat brings it back.
        self.r.command("DEL", PREFIX + ":key:hb", PREFIX + ":mid:77")
        err, res = self.rpc.call("Heartbeat", {"mid": 77, "key": "hb", "server": "node-a"})
        self.assertEqual(res, {"has": True})
        self.assertEqual(self.r.command("GET", PREFIX + ":key:hb"), b"node-a")
        self.assertEqual(self.r.command("HGET", PREFIX + ":mid:77", "hb"), b"node-a")
        # A heartbeat from a node the key left does not steal it back.
        self.connect("node-b", 77, "hb")
        err, res = self.rpc.call("Heartbeat", {"mid": 77, "key": "hb", "server": "node-a"})
        self.assertEqual(res, {"has": False})
        self.assertEqual(self.r.command("GET", PREFIX + ":key:hb"), b"node-b")

    def test_sessions_expire_without_heartbeat(self):
        self.connect("node-a", 78, "gone")
        wait_for(lambda: self.r.command("EXISTS", PREFIX + ":key:gone") == 0, 8, "expiry")

    def test_renew_online_and_nodes(self):
        err, res = self.rpc.call("RenewOnline", {
            "server": "node-r1", "room_count": {"live://1": 3, "live://2": 1},
            "addrs": ["10.0.0.1"], "tcp_port": 3101, "ws_port": 3102,
            "wss_port": 3103, "conn_count": 4})
        self.assertIsNone(err)
        self.assertEqual(res["all_room_count"].get("live://1"), 3)
        err, res = self.rpc.call("RenewOnline", {
            "server": "node-r2", "room_count": {"live://1": 2, "live://3": 0},
            "addrs": ["10.0.0.2"], "conn_count": 2})
        counts = res["all_room_count"]
        self.assertEqual(counts["live://1"], 5)
        self.assertEqual(counts["live://2"], 1)
        self.assertNotIn("live://3", counts)  # empty rooms vanish
        self.assertEqual(self.r.command("HGET", PREFIX + ":online:node-r2", "live://1"), b"2")

        st, j = http_json("GET", self.logic.url + "/goim/online/top?type=live&limit=2")
        self.assertEqual(j["code"], 0)
        self.assertEqual(j["data"][0], {"room_id": "1", "count": 5})
        self.assertEqual(len(j["data"]), 2)
        st, j = http_json("GET", self.logic.url + "/goim/online/room?type=live&rooms=1&rooms=2&rooms=9")
        self.assertEqual(j["data"], {"1": 5, "2": 1, "9": 0})
        st, j = http_json("GET", self.logic.url + "/goim/online/total")
        self.assertEqual(j["data"]["conn_count"], 6)

        # Least loaded first; the rpc gives the same answer.
        st, j = http_json("GET", self.logic.url + "/goim/nodes/weighted?platform=web")
        self.assertEqual(j["data"]["nodes"], ["10.0.0.2", "10.0.0.1"])
        for k in ("domain", "tcp_port", "ws_port", "wss_port", "heartbeat", "heartbeat_max"):
            self.assertIn(k, j["data"])
        self.assertEqual(set(j["data"]["backoff"]), {"max_delay", "base_delay", "factor", "jitter"})
        err, res = self.rpc.call("Nodes", {"platform": "android", "client_ip": "1.2.3.4"})
        self.assertIsNone(err)
        self.assertEqual(res["nodes"], ["10.0.0.2", "10.0.0.1"])
        st, j = http_json("GET", self.logic.url + "/goim/nodes/instances")
        self.assertEqual(sorted(n["server"] for n in j["data"]), ["node-r1", "node-r2"])

        # A server that stops renewing drops out (online_ttl 2s).
        def gone():
            err, res = self.rpc.call("RenewOnline", {"server": "node-r2",
                                                     "room_count": {"live://1": 2}})
            return res["all_room_count"] == {"live://1": 2}
        wait_for(gone, 5, "node-r1 to expire")
        # Then node-r2 stops too: the domain is the fallback.
        self.rpc.call("RenewOnline", {"server": "node-r2", "room_count": {}})
        wait_for(lambda: self.rpc.call("Nodes", {})[1]["nodes"] == ["127.0.0.1"], 5,
                 "nodes to expire")

    def test_renew_online_bad_params(self):
        for params in ({"room_count": {}},
                       {"server": "s", "room_count": {"r": -1}},
                       {"server": "s", "room_count": {"r": "1"}},
                       {"server": "s", "room_count": [1]},
                       {"server": "s", "addrs": "x"},
                       {"server": "s", "addrs": [1]},
                       {"server": "s", "tcp_port": -1}):
            err, res = self.rpc.call("RenewOnline", params)
            self.assertIsInstance(err, str, params)

    def test_rpc_protocol_edges(self):
        err, res = self.rpc.call("NoSuchMethod", {})
        self.assertEqual(err, "unknown method")
        err, res = self.rpc.call("Ping", {})
        self.assertIsNone(err)
        # params that are not [map]
        self.rpc.msgid += 1
        self.rpc.send_raw(msgpack.packb([0, self.rpc.msgid, "Connect", [1, 2]]))
        msg = self.rpc.recv()
        self.assertEqual(msg[1], self.rpc.msgid)
        self.assertIsInstance(msg[2], str)
        # A notification gets no answer; the next call still works.
        self.rpc.notify("Heartbeat", {"mid": 1, "key": "x", "server": "s"})
        err, res = self.rpc.call("Ping", {})
        self.assertIsNone(err)
        # Pipelining: 200 requests, answers matched by msgid.
        ids = [self.rpc.request("Connect", {"server": "node-p", "token": token(5000 + i, "p%d" % i)})
               for i in range(200)]
        got = {}
        for _ in ids:
            m = self.rpc.recv()
            got[m[1]] = m
        self.assertEqual(sorted(got), sorted(ids))
        for i, mid in enumerate(ids):
            self.assertEqual(got[mid][3]["key"], "p%d" % i)

    def test_rpc_malformed_closes_connection(self):
        other = RpcClient(self.logic.rpc_port)
        other.send_raw(b"\xc1garbage")
        with self.assertRaises((ConnectionError, ConnectionResetError)):
            other.recv(timeout=3)
        other.close()
        # An oversized message (4-byte bin header claiming 64 MiB).
        other = RpcClient(self.logic.rpc_port)
        other.send_raw(b"\x94\x00\x01\xa4Ping\x91\xc6\x04\x00\x00\x00")
        with self.assertRaises((ConnectionError, ConnectionResetError)):
            other.recv(timeout=3)
        other.close()
        # The daemon is fine.
        self.assertEqual(self.rpc.call("Ping", {})[0], None)

    def test_receive_without_webhook_is_logged(self):
        err, res = self.rpc.call("Receive", {"mid": 9, "key": "k9", "op": 4000, "body": b"up"})
        self.assertIsNone(err)
        self.assertEqual(res, {})
        self.logic.wait_log("receive mid=9 key=k9 op=4000")
        err, res = self.rpc.call("Receive", {"mid": 9, "key": "k9"})
        self.assertIsInstance(err, str)

    # ---- HTTP push ------------------------------------------------------------

    def test_push_keys(self):
        self.connect("node-k1", 301, "pk1")
        self.connect("node-k1", 302, "pk2")
        self.connect("node-k2", 303, "pk3")
        sub = self.subscriber(PREFIX + ":node:node-k1", PREFIX + ":node:node-k2")
        st, j = self.push("keys", "operation=1000&keys=pk1&keys=pk2,pk3&keys=nobody", b"hi\x00there")
        self.assertEqual(st, 200)
        self.assertEqual(j["code"], 0, j)
        self.assertEqual(j["data"], {"published": 2, "keys": 3})
        msgs = dict(sub.message() for _ in range(2))
        e1 = envelope(msgs[PREFIX + ":node:node-k1"])
        self.assertEqual(e1["type"], 0)
        self.assertEqual(e1["operation"], 1000)
        self.assertEqual(e1["server"], "node-k1")
        self.assertEqual(sorted(e1["keys"]), ["pk1", "pk2"])
        self.assertEqual(e1["msg"], b"hi\x00there")
        self.assertIsInstance(e1["id"], int)
        self.assertLess(abs(e1["ts"] - time.time() * 1000), 5000)
        e2 = envelope(msgs[PREFIX + ":node:node-k2"])
        self.assertEqual(e2["keys"], ["pk3"])
        self.assertNotEqual(e1["id"], e2["id"])
        self.assertIsNone(sub.message(0.3))
        # Only unknown keys: nothing published, still code 0.
        st, j = self.push("keys", "operation=1&keys=nobody")
        self.assertEqual(j["data"], {"published": 0, "keys": 0})

    def test_push_mids(self):
        self.connect("node-m1", 401, "m-a")
        self.connect("node-m2", 401, "m-b")
        self.connect("node-m1", 402, "m-c")
        # A stale hash entry whose key moved is not used.
        self.r.command("HSET", PREFIX + ":mid:402", "m-stale", "node-m9")
        sub = self.subscriber(PREFIX + ":node:node-m1", PREFIX + ":node:node-m2",
                              PREFIX + ":node:node-m9")
        st, j = self.push("mids", "operation=7&mids=401,402&mids=999")
        self.assertEqual(j["code"], 0, j)
        self.assertEqual(j["data"]["published"], 2)
        msgs = dict(sub.message() for _ in range(2))
        self.assertEqual(sorted(envelope(msgs[PREFIX + ":node:node-m1"])["keys"]), ["m-a", "m-c"])
        self.assertEqual(envelope(msgs[PREFIX + ":node:node-m2"])["keys"], ["m-b"])
        self.assertIsNone(sub.message(0.3))
        self.assertIsNone(self.r.command("HGET", PREFIX + ":mid:402", "m-stale"))

    def test_push_room_and_all(self):
        sub = self.subscriber(PREFIX + ":room:live://1000", PREFIX + ":all")
        st, j = self.push("room", "operation=5&type=live&room=1000", b"to room")
        self.assertEqual(j["code"], 0, j)
        ch, data = sub.message()
        self.assertEqual(ch, PREFIX + ":room:live://1000")
        e = envelope(data)
        self.assertEqual((e["type"], e["operation"], e["room"], e["msg"]),
                         (1, 5, "live://1000", b"to room"))
        self.assertNotIn("keys", e)
        st, j = self.push("all", "operation=6&speed=20", b"everyone")
        self.assertEqual(j["code"], 0, j)
        ch, data = sub.message()
        self.assertEqual(ch, PREFIX + ":all")
        e = envelope(data)
        self.assertEqual((e["type"], e["operation"], e["speed"], e["msg"]),
                         (2, 6, 20, b"everyone"))

    def test_bad_requests(self):
        cases = [
            ("keys", "keys=a"),                       # no operation
            ("keys", "operation=x&keys=a"),           # non-numeric
            ("keys", "operation=1.5&keys=a"),
            ("keys", "operation=99999999999&keys=a"),  # over int32
            ("keys", "operation=1"),                  # no keys
            ("keys", "operation=1&keys="),            # empty list
            ("keys", "operation=1&keys=,,"),
            ("keys", "operation=1&" + "&".join("keys=k%d" % i for i in range(51))),
            ("keys", "operation=1&keys=" + "k" * 256),
            ("mids", "operation=1&mids=abc"),
            ("mids", "operation=1"),
            ("room", "operation=1&type=live"),        # no room
            ("room", "room=1"),
            ("room", "operation=1&type=live&room=" + "r" * 80),
            ("all", "speed=1"),
            ("all", "operation=1&speed=-1"),
        ]
        for route, q in cases:
            st, j = self.push(route, q)
            self.assertEqual((st, j["code"]), (200, -400), (route, q, j))
        for path in ("/goim/online/top?type=live", "/goim/online/top?limit=3",
                     "/goim/online/top?type=live&limit=0", "/goim/online/room?type=live",
                     "/goim/online/room?rooms=1"):
            st, j = http_json("GET", self.logic.url + path)
            self.assertEqual(j["code"], -400, path)
        st, j = http_json("GET", self.logic.url + "/goim/push/keys?operation=1&keys=a")
        self.assertEqual(j["code"], -400)  # push needs POST
        st, j = http_json("GET", self.logic.url + "/nope")
        self.assertEqual((st, j["code"]), (404, -404))

    def test_body_limit(self):
        st, _, _ = http("POST", self.logic.url + "/goim/push/all?operation=1", b"x" * 5000)
        self.assertEqual(st, 413)
        st, j = self.push("all", "operation=1", b"x" * 4096)
        self.assertEqual(j["code"], 0)

    def test_nul_and_long_names_refused(self):
        """A NUL byte would cut a token, key or room short in C: refused
        everywhere, like names longer than the comet's shm entries."""
        for tok in (b'{"mid":1\x00}', b'{"mid":7}\x00{"mid":8}', b'\x00'):
            err, res = self.rpc.call("Connect", {"server": "n", "cookie": "", "token": tok})
            self.assertIsInstance(err, str, (tok, res))
            self.assertTrue(err.startswith("auth: bad token"), err)
        for name, val in (("key", "k" * 64), ("room_id", "r" * 64), ("platform", "p" * 32),
                          ("key", "a\u0000b"), ("room_id", "live://\u0000"),
                          ("platform", "\u0000")):
            tok = json.dumps({"mid": 1, name: val}).encode()
            err, res = self.rpc.call("Connect", {"server": "n", "token": tok})
            self.assertIsInstance(err, str, (name, val, res))
            self.assertTrue(err.startswith("auth: "), err)
        res = self.connect("nul-node", 31, key="k" * 63, room="r" * 63)
        self.assertEqual((res["key"], res["room_id"]), ("k" * 63, "r" * 63))
        for method in ("Heartbeat", "Disconnect"):
            for key in ("k" * 64, "a\x00b", "\x00", ""):
                err, _ = self.rpc.call(method, {"mid": 31, "key": key, "server": "nul-node"})
                self.assertIsInstance(err, str, (method, key))
                self.assertTrue(err.startswith("bad params"), err)
            err, res = self.rpc.call(method, {"mid": 31, "key": "k" * 63, "server": "nul-node"})
            self.assertIsNone(err, method)
        err, _ = self.rpc.call("Receive", {"mid": 1, "key": "a\x00b", "op": 4000})
        self.assertTrue(err.startswith("bad params"), err)
        for room in ("r" * 64, "live://\x00x", "live://a\x00"):
            err, _ = self.rpc.call("RenewOnline", {"server": "nul-node",
                                                   "room_count": {room: 1}})
            self.assertIsInstance(err, str, room)
            self.assertTrue(err.startswith("bad params"), err)
        err, res = self.rpc.call("RenewOnline", {"server": "nul-node",
                                                 "room_count": {"r" * 63: 1}})
        self.assertIsNone(err)
        self.assertEqual(res["all_room_count"].get("r" * 63), 1)
        # Not a node the nodes tests should see.
        self.r.command("HDEL", PREFIX + ":nodes", "nul-node")
        self.r.command("ZREM", PREFIX + ":nodes:seen", "nul-node")
        self.r.command("DEL", PREFIX + ":online:nul-node")
        # %00 in the push API: "a%00b" would have pushed to key "a".
        for route, q in (("keys", "operation=1&keys=a%00b"), ("keys", "operation=1&keys=%00"),
                         ("room", "operation=1&type=live&room=a%00b"),
                         ("all", "operation=1%00")):
            st, j = self.push(route, q)
            self.assertEqual((st, j["code"]), (200, -400), (route, q, j))
        st, j = self.push("keys", "operation=1&keys=" + "k" * 64)
        self.assertEqual(j["code"], -400)
        self.connect("nul-node", 31, key="k" * 63)
        st, j = self.push("keys", "operation=1&keys=" + "k" * 63)
        self.assertEqual((j["code"], j["data"]["keys"]), (0, 1))

    def test_envelope_src_and_seq(self):
        """Every envelope carries this process's src and a seq that counts
        the PUBLISHes on its channel from 1."""
        a, b = PREFIX + ":room:live://seq-a", PREFIX + ":room:live://seq-b"
        sub = self.subscriber(a, b, PREFIX + ":all")
        got = []
        for room in ("seq-a", "seq-a", "seq-b", "seq-a"):
            st, j = self.push("room", "operation=5&type=live&room=" + room)
            self.assertEqual(j["code"], 0)
            ch, data = sub.message()
            got.append((ch if isinstance(ch, str) else ch.decode(), envelope(data)))
        srcs = {e["src"] for _, e in got}
        self.assertEqual(len(srcs), 1, got)
        src = srcs.pop()
        self.assertTrue(0 < src < 1 << 64)
        self.assertEqual([(ch, e["seq"]) for ch, e in got],
                         [(a, 1), (a, 2), (b, 1), (a, 3)])
        # The broadcast channel has its own count, one per PUBLISH.
        seqs = []
        for _ in range(2):
            self.assertEqual(self.push("all", "operation=5")[1]["code"], 0)
            e = envelope(sub.message()[1])
            self.assertEqual(e["src"], src)
            seqs.append(e["seq"])
        self.assertEqual(seqs[1], seqs[0] + 1)
        # Key pushes: one channel per comet node.
        self.connect("seq-node", 41, key="seq-k1")
        self.connect("seq-node", 42, key="seq-k2")
        sub2 = self.subscriber(PREFIX + ":node:seq-node")
        for i in range(3):
            self.assertEqual(self.push("keys", "operation=5&keys=seq-k1,seq-k2")[1]["code"], 0)
            e = envelope(sub2.message()[1])
            self.assertEqual((e["src"], e["seq"]), (src, i + 1))
        # Another logic process has another src.
        other = start_logic(self.redis)
        self.addCleanup(other.stop)
        st, j = http_json("POST", other.url + "/goim/push/room?operation=5&type=live&room=seq-b",
                          b"x")
        self.assertEqual(j["code"], 0)
        e = envelope(sub.message()[1])
        self.assertNotEqual(e["src"], src)
        self.assertEqual(e["seq"], 1)

    def no_subscriber(self):
        text = http("GET", self.logic.url + "/metrics")[2].decode()
        out = {}
        for line in text.splitlines():
            if line.startswith("imgate_logic_publish_no_subscriber_total{"):
                k, v = line.split(" ")
                out[k.split('"')[1]] = int(v)
        return out

    def test_no_subscriber_metric(self):
        """A push accepted but heard by nobody is counted, by push type."""
        m0 = self.no_subscriber()
        self.assertEqual(set(m0), {"keys", "mids", "room", "all"})
        self.assertEqual(self.push("room", "operation=1&type=live&room=nobody")[1]["code"], 0)
        self.connect("deaf-node", 51, key="deaf-1")
        self.assertEqual(self.push("keys", "operation=1&keys=deaf-1")[1]["code"], 0)
        self.assertEqual(self.push("mids", "operation=1&mids=51")[1]["code"], 0)
        m1 = self.no_subscriber()
        self.assertEqual({k: m1[k] - m0[k] for k in m1},
                         {"keys": 1, "mids": 1, "room": 1, "all": 0})
        # Heard by someone: not counted.
        self.subscriber(PREFIX + ":room:live://somebody", PREFIX + ":all")
        self.assertEqual(self.push("room", "operation=1&type=live&room=somebody")[1]["code"], 0)
        self.assertEqual(self.push("all", "operation=1")[1]["code"], 0)
        self.assertEqual(self.no_subscriber(), m1)
        # Unknown keys are not publishes: another counter.
        self.assertEqual(self.push("keys", "operation=1&keys=nobody-key")[1]["code"], 0)
        self.assertEqual(self.no_subscriber(), m1)

    def test_metrics_and_health(self):
        self.push("all", "operation=1")
        self.rpc.call("Ping", {})
        st, _, body = http("GET", self.logic.url + "/metrics")
        self.assertEqual(st, 200)
        text = body.decode()
        self.assertIn('imgate_logic_http_requests_total{route="/goim/push/all",code="0"}', text)
        self.assertIn('imgate_logic_pushes_total{type="broadcast"}', text)
        self.assertIn('imgate_logic_rpc_calls_total{method="Ping"}', text)
        self.assertIn("imgate_logic_publish_failures_total", text)
        self.assertIn("imgate_logic_redis_reconnects_total", text)
        self.assertIn("imgate_logic_redis_up 1", text)
        st, _, body = http("GET", self.logic.url + "/healthz")
        self.assertEqual((st, body), (200, b"ok\n"))


def raw_get(port, path, method="GET", headers=None):
    """(status, headers, body) for path sent exactly as given (urllib
    would quote or normalize it)."""
    c = HTTPConnection("127.0.0.1", port, timeout=5)
    try:
        c.request(method, path, headers=headers or {})
        r = c.getresponse()
        return r.status, {k.lower(): v for k, v in r.getheaders()}, r.read()
    finally:
        c.close()


class LogicDemoTest(unittest.TestCase):
    """Static files of the browser demo at /demo/, and CORS on /goim/."""

    @classmethod
    def setUpClass(cls):
        cls.redis = Redis()
        top = harness.tempdir("imgate-demo-")
        cls.site = os.path.join(top, "site")
        os.makedirs(os.path.join(cls.site, "sub"))
        os.makedirs(os.path.join(cls.site, "empty"))
        files = {"index.html": b"<!doctype html><p>demo</p>\n",
                 "demo.js": b"export const x = 1;\n", "demo.css": b"p{}\n",
                 "data.json": b"{}\n", "pic.png": b"\x89PNG\r\n\x1a\n",
                 "blob.bin": b"\x00\x01", "sub/index.html": b"sub\n",
                 ".hidden": b"dot file\n", "max.txt": b"m" * 4096,
                 "big.txt": b"b" * 4097}
        for name, data in files.items():
            with open(os.path.join(cls.site, name), "wb") as f:
                f.write(data)
        with open(os.path.join(top, "secret.txt"), "wb") as f:
            f.write(b"SECRET outside the demo dir\n")
        os.symlink(os.path.join(top, "secret.txt"), os.path.join(cls.site, "out.txt"))
        os.symlink(top, os.path.join(cls.site, "outdir"))
        os.symlink("index.html", os.path.join(cls.site, "alias.html"))
        os.symlink("sub", os.path.join(cls.site, "subalias"))
        os.mkfifo(os.path.join(cls.site, "fifo.txt"))
        cls.demo = {"dir": cls.site, "max_file": "4096"}
        cls.logic = start_logic(cls.redis, demo=cls.demo)
        cls.port = cls.logic.http_port

    @classmethod
    def tearDownClass(cls):
        rc = cls.logic.stop()
        cls.redis.stop()
        assert rc == 0, "imgate-logic exited with %s" % rc

    def get(self, path, **kw):
        return raw_get(self.port, path, **kw)

    def reconfigure(self, **over):
        self.logic.rewrite(self.logic.conf_for(**over))
        n = self.logic.log().count("reloaded")
        self.logic.reload()
        wait_for(lambda: self.logic.log().count("reloaded") > n, 5, "reload")

    def test_files_and_content_types(self):
        for path, ctype, body in (
                ("/demo/", "text/html; charset=utf-8", b"<!doctype html><p>demo</p>\n"),
                ("/demo/index.html", "text/html; charset=utf-8", None),
                ("/demo/demo.js", "text/javascript; charset=utf-8", b"export const x = 1;\n"),
                ("/demo/demo.css", "text/css; charset=utf-8", b"p{}\n"),
                ("/demo/data.json", "application/json", b"{}\n"),
                ("/demo/pic.png", "image/png", b"\x89PNG\r\n\x1a\n"),
                ("/demo/blob.bin", "application/octet-stream", b"\x00\x01"),
                ("/demo/sub/", "text/html; charset=utf-8", b"sub\n"),
                ("/demo/%73ub/index.html", "text/html; charset=utf-8", b"sub\n"),
                ("/demo/alias.html", "text/html; charset=utf-8", None),
                ("/demo/subalias/index.html", "text/html; charset=utf-8", b"sub\n"),
                ("/demo/max.txt", "text/plain; charset=utf-8", b"m" * 4096),
                ("/demo/index.html?v=2", "text/html; charset=utf-8", None)):
            st, h, data = self.get(path)
            self.assertEqual(st, 200, path)
            self.assertEqual(h["content-type"], ctype, path)
            self.assertEqual(h["x-content-type-options"], "nosniff", path)
            self.assertEqual(int(h["content-length"]), len(data), path)
            if body is not None:
                self.assertEqual(data, body, path)
        st, h, data = self.get("/demo/index.html", method="HEAD")
        self.assertEqual((st, data), (200, b""))
        self.assertEqual(h["content-length"], "27")
        st, h, _ = self.get("/demo")
        self.assertEqual((st, h["location"]), (301, "/demo/"))
        st, h, _ = self.get("/demo/index.html", method="POST")
        self.assertEqual((st, h["allow"]), (405, "GET, HEAD"))
        # The page learns the comet's address from config.json.
        st, h, data = self.get("/demo/config.json")
        self.assertEqual((st, h["content-type"]), (200, "application/json"))
        self.assertEqual(json.loads(data), {"ws_url": ""})

    def test_traversal_refused(self):
        for path in ("/demo/../secret.txt", "/demo/sub/../../secret.txt",
                     "/demo/%2e%2e/secret.txt", "/demo/%2E%2E%2Fsecret.txt",
                     "/demo/sub/..%2f..%2fsecret.txt", "/demo/./index.html",
                     "/demo/sub/.", "/demo//index.html", "/demo/index.html%00.png",
                     "/demo/.."):
            st, _, data = self.get(path)
            self.assertEqual(st, 400, path)
            self.assertNotIn(b"SECRET", data, path)

    def test_not_found_and_refused(self):
        for path in ("/demo/nope.html", "/demo/out.txt", "/demo/outdir/secret.txt",
                     "/demo/.hidden", "/demo/sub/.hidden", "/demo/%2ehidden",
                     "/demo/fifo.txt", "/demo/sub", "/demo/empty/",
                     "/demo/index.html/", "/demo/" + "a" * 5000):
            st, _, data = self.get(path)
            self.assertEqual(st, 404, path)
            self.assertNotIn(b"SECRET", data, path)
        # Over [demo] max_file: refused, the operator told in the log.
        st, _, data = self.get("/demo/big.txt")
        self.assertEqual(st, 500)
        self.assertNotIn(b"bbbb", data)
        self.logic.wait_log("larger than [demo] max_file")
        st, _, body = http("GET", self.logic.url + "/metrics")
        self.assertIn('imgate_logic_http_requests_total{route="/demo/",code="-404"}',
                      body.decode())

    def test_demo_off_and_ws_url(self):
        try:
            self.reconfigure(demo={"dir": ""})
            st, j = http_json("GET", self.logic.url + "/demo/")
            self.assertEqual((st, j["code"]), (404, -404))
            self.reconfigure(demo=dict(self.demo, ws_url="wss://chat.example.com/sub"))
            st, _, data = self.get("/demo/config.json")
            self.assertEqual(json.loads(data), {"ws_url": "wss://chat.example.com/sub"})
            # A directory that is gone: not found, and the reason logged.
            self.reconfigure(demo={"dir": self.site + "-gone"})
            self.assertEqual(self.get("/demo/index.html")[0], 404)
            self.logic.wait_log("demo: dir %s-gone" % self.site)
        finally:
            self.reconfigure(demo=self.demo)
        self.assertEqual(self.get("/demo/")[0], 200)

    def test_cors(self):
        url = self.logic.url
        push = "/goim/push/room?operation=1000&type=live&room=1"
        # Off by default: no header, and OPTIONS is not a push.
        st, h, _ = self.get("/goim/online/total")
        self.assertEqual(st, 200)
        self.assertNotIn("access-control-allow-origin", h)
        st, j = http_json("OPTIONS", url + push)
        self.assertEqual(j["code"], -400)
        try:
            self.reconfigure(http={"cors_origin": "*"})
            st, h, _ = self.get(push, method="OPTIONS", headers={
                "Origin": "http://elsewhere.test",
                "Access-Control-Request-Method": "POST",
                "Access-Control-Request-Headers": "content-type"})
            self.assertEqual(st, 204)
            self.assertEqual(h["access-control-allow-origin"], "*")
            self.assertEqual(h["access-control-allow-methods"], "POST, OPTIONS")
            self.assertIn("Content-Type", h["access-control-allow-headers"])
            self.assertIn("Authorization", h["access-control-allow-headers"])
            self.assertEqual(h["access-control-max-age"], "600")
            st, h, _ = self.get("/goim/online/total", method="OPTIONS")
            self.assertEqual((st, h["access-control-allow-methods"]),
                             (204, "GET, HEAD, OPTIONS"))
            status, headers, body = http("POST", url + push, b"hi",
                                         {"Origin": "http://elsewhere.test"})
            self.assertEqual(json.loads(body)["code"], 0)
            self.assertEqual(headers.get("Access-Control-Allow-Origin"), "*")
            # Errors carry it too, so a page can read why.
            status, headers, body = http("POST", url + "/goim/push/room", b"x")
            self.assertEqual(json.loads(body)["code"], -400)
            self.assertEqual(headers.get("Access-Control-Allow-Origin"), "*")
            # One origin: named, and caches told that it depends on it.
            self.reconfigure(http={"cors_origin": "https://chat.example.com"})
            st, h, _ = self.get("/goim/nodes/weighted")
            self.assertEqual(h["access-control-allow-origin"], "https://chat.example.com")
            self.assertEqual(h["vary"], "Origin")
            # Not on the demo's files or /metrics: those are not the API.
            self.assertNotIn("access-control-allow-origin", self.get("/demo/")[1])
            self.assertNotIn("access-control-allow-origin", self.get("/metrics")[1])
        finally:
            self.reconfigure()
        self.assertNotIn("access-control-allow-origin", self.get("/goim/online/total")[1])

    def test_settings_checked(self):
        d = harness.tempdir()
        path = os.path.join(d, "l.conf")
        for section, name, value in (("http", "cors_origin", "ftp://x"),
                                     ("http", "cors_origin", "http://a\tb"),
                                     ("http", "cors_origin", "example.com"),
                                     ("demo", "ws_url", "http://x/sub"),
                                     ("demo", "max_file", "0")):
            with open(path, "w") as f:
                f.write("[%s]\n%s = %s\n" % (section, name, value))
            r = subprocess.run([BIN, "-t", "-c", path], capture_output=True, timeout=10)
            self.assertEqual(r.returncode, 1, value)
            self.assertIn(("[%s] %s" % (section, name)).encode(), r.stderr)
        with open(path, "w") as f:
            f.write("[http]\ncors_origin = http://127.0.0.1:8080\n"
                    "[demo]\ndir = /nonexistent\nws_url = ws://h:1/sub\nmax_file = 64k\n")
        r = subprocess.run([BIN, "-t", "-c", path], capture_output=True, timeout=10)
        self.assertEqual(r.returncode, 0, r.stderr)


class LogicLifecycleTest(unittest.TestCase):
    """Tests that own their daemon: JWT, reload, Redis restarts, signals."""

    def setUp(self):
        self.redis = Redis()

    def tearDown(self):
        self.redis.stop()

    def test_jwt(self):
        d = start_logic(self.redis, auth={"jwt_secret": "k3y", "jwt_leeway": "0"})
        rpc = RpcClient(d.rpc_port)
        now = int(time.time())
        claims = {"mid": 8, "key": "jwt-key", "room_id": "live://8", "accepts": [1]}
        ok = make_jwt(dict(claims, exp=now + 60), "k3y")
        err, res = rpc.call("Connect", {"server": "n", "token": ok})
        self.assertIsNone(err)
        self.assertEqual((res["mid"], res["key"], res["room_id"]), (8, "jwt-key", "live://8"))
        for bad in (make_jwt(dict(claims, exp=now - 5), "k3y"),     # expired
                    make_jwt(dict(claims, exp=now + 60), "other"),  # wrong secret
                    make_jwt(dict(claims, exp=now + 60), "", "none"),
                    ok[:-2] + ("AA" if not ok.endswith("AA") else "BB"),  # tampered
                    token(8)):                                       # goim token
            err, res = rpc.call("Connect", {"server": "n", "token": bad})
            self.assertIsInstance(err, str, bad)
            self.assertTrue(err.startswith("auth: "), err)
        st, _, body = http("GET", d.url + "/metrics")
        self.assertIn("imgate_logic_auth_failures_total 5", body.decode())
        rpc.close()
        self.assertEqual(d.stop(), 0)

    def test_reload_and_push_token(self):
        d = start_logic(self.redis)
        url = d.url + "/goim/push/all?operation=1"
        self.assertEqual(http_json("POST", url, b"x")[1]["code"], 0)
        d.rewrite(d.conf_for(http={"push_token": "sesame"}))
        d.reload()
        d.wait_log("reloaded")
        st, j = http_json("POST", url, b"x")
        self.assertEqual((st, j["code"]), (401, -401))
        st, j = http_json("POST", url, b"x", {"Authorization": "Bearer wrong"})
        self.assertEqual(j["code"], -401)
        st, j = http_json("POST", url, b"x", {"Authorization": "Bearer sesame"})
        self.assertEqual(j["code"], 0)
        # Online and nodes routes stay open.
        self.assertEqual(http_json("GET", d.url + "/goim/online/total")[1]["code"], 0)
        # A broken file is refused; the old config stays.
        d.rewrite(text="[http]\nmax_body = lots\n")
        d.reload()
        d.wait_log("reload refused")
        self.assertTrue(d.alive())
        st, j = http_json("POST", url, b"x")
        self.assertEqual(j["code"], -401)
        self.assertEqual(d.stop(), 0)

    def test_redis_killed_and_restarted(self):
        d = start_logic(self.redis)
        rpc = RpcClient(d.rpc_port)
        self.assertIsNone(rpc.call("Connect", {"server": "n", "token": token(1, "kr")})[0])
        self.redis.kill()
        # Pushes fail fast with -500, rpc calls answer errors.
        t0 = time.monotonic()
        wait_for(lambda: http("GET", d.url + "/healthz")[0] == 503, 5, "healthz 503")
        for route, q in (("keys", "operation=1&keys=kr"), ("mids", "operation=1&mids=1"),
                         ("room", "operation=1&room=r"), ("all", "operation=1")):
            st, j = http_json("POST", "%s/goim/push/%s?%s" % (d.url, route, q), b"x")
            self.assertEqual(j["code"], -500, route)
        self.assertLess(time.monotonic() - t0, 3)
        st, j = http_json("GET", d.url + "/goim/online/total")
        self.assertEqual(j["code"], -500)
        err, res = rpc.call("Connect", {"server": "n", "token": token(1, "kr")})
        self.assertEqual(err, "redis unavailable")
        err, res = rpc.call("Heartbeat", {"mid": 1, "key": "kr", "server": "n"})
        self.assertEqual(err, "redis unavailable")
        # Nodes still answers, with the configured domain.
        err, res = rpc.call("Nodes", {})
        self.assertEqual(res["nodes"], ["127.0.0.1"])
        # Redis comes back on the same port: logic recovers by itself.
        self.redis.start()
        wait_for(lambda: http("GET", d.url + "/healthz")[0] == 200, 5, "healthz 200")
        sub = self.redis.client()
        sub.subscribe(PREFIX + ":all")
        st, j = http_json("POST", d.url + "/goim/push/all?operation=3", b"back")
        self.assertEqual(j["code"], 0)
        self.assertEqual(envelope(sub.message()[1])["msg"], b"back")
        sub.close()
        self.assertIsNone(rpc.call("Connect", {"server": "n", "token": token(1, "kr")})[0])
        st, _, body = http("GET", d.url + "/metrics")
        self.assertIn("imgate_logic_redis_reconnects_total 1", body.decode())
        rpc.close()
        self.assertEqual(d.stop(), 0)

    def test_redis_password_and_moving_redis(self):
        other = Redis(args=("--requirepass", "pw1"))
        try:
            d = start_logic(self.redis)
            # Reload onto another Redis that needs a password: a wrong one
            # keeps logic unhealthy, the right one brings it back there.
            d.rewrite(d.conf_for(redis={"address": "127.0.0.1:%d" % other.port,
                                        "password": "wrong"}))
            d.reload()
            d.wait_log("connection setup failed")
            self.assertEqual(http("GET", d.url + "/healthz")[0], 503)
            d.rewrite(d.conf_for(redis={"address": "127.0.0.1:%d" % other.port,
                                        "password": "pw1", "db": "2"}))
            d.reload()
            wait_for(lambda: http("GET", d.url + "/healthz")[0] == 200, 5, "healthz")
            rpc = RpcClient(d.rpc_port)
            self.assertIsNone(rpc.call("Connect", {"server": "n", "token": token(3, "moved")})[0])
            rpc.close()
            r = other.client()
            r.command("SELECT", 2)
            self.assertEqual(r.command("GET", PREFIX + ":key:moved"), b"n")
            r.close()
            self.assertEqual(d.stop(), 0)
        finally:
            other.stop()

    def test_online_cache(self):
        d = start_logic(self.redis, session={"online_cache": "10s"})
        rpc = RpcClient(d.rpc_port)
        err, res = rpc.call("RenewOnline", {"server": "c1", "room_count": {"live://a": 1}})
        self.assertEqual(res["all_room_count"], {"live://a": 1})
        # Within the period the sum is reused, though Redis has the update.
        err, res = rpc.call("RenewOnline", {"server": "c1", "room_count": {"live://a": 5}})
        self.assertEqual(res["all_room_count"], {"live://a": 1})
        self.assertEqual(self.redis.client().command("HGET", PREFIX + ":online:c1", "live://a"), b"5")
        st, j = http_json("GET", d.url + "/goim/online/room?type=live&rooms=a")
        self.assertEqual(j["data"], {"a": 1})
        # Many concurrent requests while a fetch is in flight share it.
        d2 = start_logic(self.redis, session={"online_cache": "10s"})
        rpc2 = RpcClient(d2.rpc_port)
        ids = [rpc2.request("RenewOnline", {"server": "c%d" % i, "room_count": {"live://a": 1}})
               for i in range(2, 12)]
        got = {}
        for _ in ids:
            m = rpc2.recv()
            self.assertIsNone(m[2])
            got[m[1]] = m[3]["all_room_count"]["live://a"]
        self.assertEqual(sorted(got), sorted(ids))
        self.assertTrue(all(v == got[ids[0]] for v in got.values()), got)
        rpc.close()
        rpc2.close()
        self.assertEqual(d.stop(), 0)
        self.assertEqual(d2.stop(), 0)

    def test_redis_hung_is_detected(self):
        d = start_logic(self.redis)
        os.kill(self.redis.proc.pid, signal.SIGSTOP)
        try:
            t0 = time.monotonic()
            st, j = http_json("POST", d.url + "/goim/push/keys?operation=1&keys=a", b"x")
            self.assertEqual(j["code"], -500)
            self.assertLess(time.monotonic() - t0, 3)  # timeout is 1s
        finally:
            os.kill(self.redis.proc.pid, signal.SIGCONT)
        wait_for(lambda: http("GET", d.url + "/healthz")[0] == 200, 5, "recovery")
        self.assertEqual(d.stop(), 0)

    def test_publish_timeout_is_504(self):
        """A PUBLISH written to a stalled Redis and never answered may
        still be run when Redis wakes up: the answer says so (-504), so a
        sender does not take it for a failure and send it twice."""
        d = start_logic(self.redis)
        sub = self.redis.client()
        sub.subscribe(PREFIX + ":room:live://stall")
        os.kill(self.redis.proc.pid, signal.SIGSTOP)
        try:
            t0 = time.monotonic()
            st, j = http_json("POST", d.url + "/goim/push/room?operation=1&type=live&room=stall",
                              b"maybe")
            self.assertEqual((st, j["code"]), (200, -504), j)
            self.assertEqual(j["message"], "publish timed out: it may have been delivered")
            self.assertLess(time.monotonic() - t0, 3)  # timeout is 1s
            # Now logic knows Redis is away: certain failures are -500.
            st, j = http_json("POST", d.url + "/goim/push/all?operation=1", b"no")
            self.assertEqual(j["code"], -500, j)
        finally:
            os.kill(self.redis.proc.pid, signal.SIGCONT)
        # ... and indeed Redis ran it when it woke up.
        e = envelope(sub.message(timeout=5)[1])
        self.assertEqual((e["msg"], e["seq"]), (b"maybe", 1))
        sub.close()
        wait_for(lambda: http("GET", d.url + "/healthz")[0] == 200, 5, "recovery")
        text = http("GET", d.url + "/metrics")[2].decode()
        self.assertIn("imgate_logic_publish_unknown_total 1\n", text)
        self.assertIn("imgate_logic_publish_failures_total 0\n", text)
        self.assertIn('imgate_logic_http_requests_total{route="/goim/push/room",code="-504"} 1',
                      text)
        self.assertEqual(d.stop(), 0)

    def test_daemon_start_failures_are_exit_status(self):
        """Without -f, a port that cannot be bound is the exit status of
        the command, not a line in a log after a successful start."""
        d = harness.tempdir()
        path = os.path.join(d, "l.conf")
        pidfile = os.path.join(d, "l.pid")
        taken = socket.socket()
        taken.bind(("127.0.0.1", 0))
        taken.listen(1)
        self.addCleanup(taken.close)
        for which in ("rpc", "http"):
            ports = {"rpc": harness.free_port(), "http": harness.free_port()}
            ports[which] = taken.getsockname()[1]
            conf = harness.logic_conf(self.redis.port, ports["rpc"], ports["http"], PREFIX)
            conf["server"].update({"pid_file": pidfile, "log": os.path.join(d, "l.log")})
            harness.write_ini(path, conf)
            t0 = time.monotonic()
            r = subprocess.run([BIN, "-c", path], capture_output=True, timeout=10)
            self.assertEqual(r.returncode, 1, which)
            self.assertLess(time.monotonic() - t0, 5)
            self.assertFalse(os.path.exists(pidfile), which)
            with open(os.path.join(d, "l.log")) as f:
                self.assertIn("%s listen" % which, f.read())
        # A config error at start: 2 with or without -f.
        with open(path, "w") as f:
            f.write("[http]\nlisten = 127.0.0.1:1\nlisten = 127.0.0.1:2\n")
        for args in ([], ["-f"]):
            r = subprocess.run([BIN, "-c", path] + args, capture_output=True, timeout=10)
            self.assertEqual(r.returncode, 2, args)
            self.assertIn(b"l.conf:3: [http] listen: set twice", r.stderr)
        r = subprocess.run([BIN, "-t", "-c", path], capture_output=True, timeout=10)
        self.assertEqual(r.returncode, 1)

    def test_open_files_limit_raised(self):
        """The soft RLIMIT_NOFILE is raised to the hard one at start."""
        import resource
        soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
        if hard == resource.RLIM_INFINITY or hard > 1 << 20:
            hard = min(hard, 65536)
        if hard <= 256:
            self.skipTest("hard RLIMIT_NOFILE %d too low to lower" % hard)

        def lower():
            resource.setrlimit(resource.RLIMIT_NOFILE, (256, hard))
        rpc_port, http_port = harness.free_port(), harness.free_port()
        d = harness.tempdir()
        path = os.path.join(d, "l.conf")
        harness.write_ini(path, harness.logic_conf(self.redis.port, rpc_port, http_port,
                                                   PREFIX))
        p = harness.spawn([BIN, "-f", "-c", path], os.path.join(d, "l.log"),
                          preexec_fn=lower)
        harness.wait_port(http_port, p)
        with open("/proc/%d/limits" % p.pid) as f:
            line = [x for x in f if x.startswith("Max open files")][0]
        self.assertEqual(line.split()[3:5], [str(hard), str(hard)], line)
        self.assertEqual(harness.stop_proc(p), 0)

    def test_webhook(self):
        got = []

        class Hook(BaseHTTPRequestHandler):
            def do_POST(self):
                n = int(self.headers["Content-Length"])
                got.append((self.path, self.rfile.read(n)))
                self.send_response(204)
                self.end_headers()

            def log_message(self, *a):
                pass

        srv = HTTPServer(("127.0.0.1", 0), Hook)
        th = threading.Thread(target=srv.serve_forever, daemon=True)
        th.start()
        try:
            d = start_logic(self.redis, webhook={
                "receive_url": "http://127.0.0.1:%d/up?app=1" % srv.server_port})
            rpc = RpcClient(d.rpc_port)
            err, res = rpc.call("Receive", {"mid": 12, "key": "a b", "op": 4000,
                                            "body": b"\x00bytes"})
            self.assertIsNone(err)
            wait_for(lambda: got, 5, "webhook call")
            self.assertEqual(got[0], ("/up?app=1&mid=12&key=a%20b&op=4000", b"\x00bytes"))
            wait_for(lambda: "imgate_logic_webhook_ok_total 1" in
                     http("GET", d.url + "/metrics")[2].decode(), 5, "webhook metric")
            rpc.close()
            self.assertEqual(d.stop(), 0)
        finally:
            srv.shutdown()
            srv.server_close()

    def test_options_and_exit_codes(self):
        d = harness.tempdir()
        good = os.path.join(d, "good.conf")
        bad = os.path.join(d, "bad.conf")
        harness.write_ini(good, harness.logic_conf(self.redis.port, harness.free_port(),
                                                   harness.free_port(), PREFIX))
        with open(bad, "w") as f:
            f.write("[rpc]\nlisten = nowhere\n")
        r = subprocess.run([BIN, "-t", "-c", good], capture_output=True, timeout=10)
        self.assertEqual(r.returncode, 0, r.stderr)
        r = subprocess.run([BIN, "-t", "-c", bad], capture_output=True, timeout=10)
        self.assertEqual(r.returncode, 1)
        self.assertIn(b"bad.conf:2: [rpc] listen", r.stderr)
        r = subprocess.run([BIN, "-f", "-c", bad], capture_output=True, timeout=10)
        self.assertEqual(r.returncode, 2)
        r = subprocess.run([BIN, "-v"], capture_output=True, timeout=10)
        self.assertEqual(r.returncode, 0)
        self.assertIn(b"imgate-logic", r.stdout)
        # Daemon mode with a pid file; SIGTERM stops it and removes the file.
        pidfile = os.path.join(d, "logic.pid")
        rpc_port, http_port = harness.free_port(), harness.free_port()
        conf = harness.logic_conf(self.redis.port, rpc_port, http_port, PREFIX)
        conf["server"].update({"pid_file": pidfile, "log": os.path.join(d, "logic.log")})
        harness.write_ini(good, conf)
        r = subprocess.run([BIN, "-c", good], capture_output=True, timeout=10)
        self.assertEqual(r.returncode, 0)
        pid = int(wait_for(lambda: os.path.exists(pidfile) and open(pidfile).read().strip(),
                           5, "pid file"))
        try:
            harness.wait_port(http_port)
            # A second instance with the same pid file refuses to start.
            r = subprocess.run([BIN, "-f", "-c", good], capture_output=True, timeout=10)
            self.assertEqual(r.returncode, 1)
            # SIGUSR1 reopens the log file after a rotation.
            os.rename(os.path.join(d, "logic.log"), os.path.join(d, "logic.log.1"))
            os.kill(pid, signal.SIGUSR1)
            wait_for(lambda: os.path.exists(os.path.join(d, "logic.log")), 5, "log reopened")
        finally:
            os.kill(pid, signal.SIGTERM)
        wait_for(lambda: not os.path.exists(pidfile), 5, "pid file removed")

        def dead():
            try:
                os.kill(pid, 0)
                return False
            except ProcessLookupError:
                return True
        wait_for(dead, 5, "daemon exit")


if __name__ == "__main__":
    harness.hard_timeout(240)
    unittest.main(verbosity=2)
