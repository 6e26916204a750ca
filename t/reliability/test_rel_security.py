#!/usr/bin/python3
"""Security properties of a running node on 127.0.0.1: unauthenticated
connections get no pushes and reach logic with nothing but Connect;
oversized and deeply nested msgpack is refused on the rpc port; the push
API's bearer token is enforced when configured; TLS clients with a wrong
or missing certificate, or no TLS at all, are handled cleanly.
"""
import os
import socket
import ssl
import subprocess
import sys
import time
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import rel  # noqa: E402
from rel import H, wait_for  # noqa: E402
from goim_client import GoimClient, AuthRefused, encode  # noqa: E402

import msgpack  # noqa: E402

TOKEN = "s3cret-push-token"


def token(mid, room="live://sec", key=None):
    return {"mid": mid, "key": key or "sec-%d" % mid, "room_id": room,
            "platform": "rel", "accepts": [1000, 1001]}


def make_cert(d, cn):
    cert, key = os.path.join(d, cn + ".pem"), os.path.join(d, cn + ".key")
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes",
                    "-keyout", key, "-out", cert, "-days", "1", "-subj", "/CN=" + cn,
                    "-addext", "subjectAltName=IP:127.0.0.1"],
                   check=True, capture_output=True)
    return cert, key


class SecurityTest(unittest.TestCase):
    tried = 0

    @classmethod
    def setUpClass(cls):
        cls.dir = H.tempdir("imgate-rel-tls-")
        cls.cert, cls.key = make_cert(cls.dir, "imgate-node")
        cls.other, _ = make_cert(cls.dir, "someone-else")
        cls.redis = H.Redis()
        cls.logic = rel.Logic(cls.redis, http={"push_token": TOKEN})
        cls.wss = H.free_port()
        cls.comet = rel.Comet(cls.redis, cls.logic, workers=2, **{
            "listen__wss": "127.0.0.1:%d" % cls.wss,
            "listen__tls_cert": cls.cert, "listen__tls_key": cls.key,
            "protocol__handshake_timeout": "2s"})

    def push(self, kind, body, auth=True, **q):
        import urllib.parse
        qs = urllib.parse.urlencode(dict(operation=1000, **q), doseq=True)
        hdrs = {"Authorization": "Bearer " + TOKEN} if auth is True else (
            {"Authorization": auth} if auth else {})
        return H.http("POST", "%s/goim/push/%s?%s" % (self.logic.url, kind, qs),
                      body, headers=hdrs)

    def test_unauthenticated_gets_nothing(self):
        good = GoimClient.tcp(self.comet.tcp)
        good.auth(token(1))
        anon = [GoimClient.tcp(self.comet.tcp), GoimClient.ws(self.comet.ws)]
        # An anonymous client tries every op but auth: heartbeats, room
        # changes, subs, upstream messages.
        for c in anon:
            for op, body in ((2, b""), (12, b"live://sec"), (14, b"1000"),
                             (4000, b"to logic"), (9, encode(2))):
                c.send(op, body)
                type(self).tried += 1
        time.sleep(0.3)
        calls0 = self.logic.metrics()
        st, _, _ = self.push("room", b"secret", type="live", room="sec")
        self.assertEqual(st, 200)
        st, _, _ = self.push("all", b"secret-all")
        # A room push and a broadcast travel on different channels: no
        # order between them.
        got = {good.expect(1000).body, good.expect(1000).body}
        self.assertEqual(got, {b"secret", b"secret-all"})
        for c in anon:
            # Nothing but the op 6 of the handshake timeout, then close.
            f = c.recv(3)
            self.assertIsNotNone(f, "anonymous client neither closed nor told")
            self.assertEqual(f.op, 6, "anonymous client got %r" % (f,))
            self.assertTrue(c.closed(3))
            c.close()
        # Logic saw no Receive, Heartbeat or other call from them.
        calls1 = self.logic.metrics()
        for m in ("Receive", "Heartbeat", "Disconnect"):
            k = 'imgate_logic_rpc_calls_total{method="%s"}' % m
            self.assertEqual(calls1.get(k, 0), calls0.get(k, 0), m)
        good.close()

    def test_token_with_nul_refused(self):
        """A Connect token that is not JSON is refused, also when a NUL
        byte hides the rest of it from a C-string parser."""
        rpc = H.RpcClient(self.logic.rpc_port)
        for tok in (b'{"mid":1\x00}', b'{"mid":7}\x00{"mid":8}', b'\x00'):
            type(self).tried += 1
            err, res = rpc.call("Connect", {"server": "s", "cookie": "", "token": tok})
            self.assertIsNotNone(err, "token %r accepted: %r" % (tok, res))
        rpc.close()

    def test_msgpack_oversized_and_nested(self):
        port = self.logic.rpc_port
        cases = [
            ("nested 100000", b"\x94\x00\x01\xa7Connect\x91" + b"\x91" * 100000),
            ("nested maps 1000", b"\x94\x00\x01\xa7Connect\x91" + b"\x81\xa1a" * 1000
             + b"\xc0"),
            ("2 MB message", msgpack.packb([0, 1, "Connect", [{"token": b"x" * (2 << 20)}]],
                                           use_bin_type=True)),
            ("str32 4 GB header", b"\x94\x00\x01\xa7Connect\x91\xdb\xff\xff\xff\xff"),
            ("array32 4G", b"\x94\x00\x01\xa7Connect\xdd\xff\xff\xff\xff"),
        ]
        for name, data in cases:
            type(self).tried += 1
            s = socket.create_connection(("127.0.0.1", port), timeout=5)
            try:
                s.sendall(data)
            except OSError:
                pass
            s.settimeout(5)
            got = b""
            try:
                while True:
                    d = s.recv(65536)
                    if not d:
                        break
                    got += d
            except socket.timeout:
                self.fail("%s: the rpc connection stays open" % name)
            except OSError:
                pass
            s.close()
            # Either an error response or nothing, never a result.
            if got:
                msg = msgpack.unpackb(got[:65536], raw=False, strict_map_key=False) \
                    if len(got) < 65536 else None
                if isinstance(msg, list) and len(msg) == 4:
                    self.assertIsNotNone(msg[2], "%s answered %r" % (name, msg))
        c = H.RpcClient(port)
        err, res = c.call("Connect", {"server": "s", "cookie": "",
                                      "token": b'{"mid":3}'})
        self.assertIsNone(err)
        c.close()

    def test_push_token(self):
        for auth in (False, "Bearer wrong", "Basic " + TOKEN, "Bearer",
                     "Bearer " + TOKEN + "x", "bearer " + TOKEN[:-1]):
            type(self).tried += 1
            st, _, body = self.push("all", b"x", auth=auth)
            self.assertEqual(st, 401, "%r -> %d %r" % (auth, st, body))
        for kind, q in (("keys", {"keys": "k"}), ("mids", {"mids": 1}),
                        ("room", {"type": "live", "room": "sec"})):
            st, _, _ = self.push(kind, b"x", auth=False, **q)
            self.assertEqual(st, 401, kind)
            st, _, _ = self.push(kind, b"x", **q)
            self.assertEqual(st, 200, kind)

    def test_tls(self):
        c = GoimClient.wss(self.wss, cafile=self.cert)
        c.auth(token(50, key="sec-tls"))
        cases = 0
        # A client that trusts another CA refuses the handshake; the
        # server just drops that connection.
        ctx = ssl.create_default_context(cafile=self.other)
        raw = socket.create_connection(("127.0.0.1", self.wss), timeout=5)
        with self.assertRaises(ssl.SSLError):
            ctx.wrap_socket(raw, server_hostname="127.0.0.1")
        raw.close()
        cases += 1
        # Plain TCP, a goim frame, garbage and a truncated ClientHello.
        for data in (b"GET /sub HTTP/1.1\r\nHost: x\r\n\r\n", encode(7, b"{}"),
                     os.urandom(500), bytes.fromhex("16030100c8010000c40303")):
            cases += 1
            s = socket.create_connection(("127.0.0.1", self.wss), timeout=5)
            s.sendall(data)
            s.settimeout(5)
            try:
                while s.recv(65536):
                    pass
            except socket.timeout:
                self.fail("non-TLS input %r kept open" % data[:20])
            except OSError:
                pass
            s.close()
        # A client certificate nobody asked for, TLS 1.0 only.
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
        ctx.check_hostname = False
        ctx.verify_mode = ssl.CERT_NONE
        ctx.maximum_version = ssl.TLSVersion.TLSv1
        raw = socket.create_connection(("127.0.0.1", self.wss), timeout=5)
        with self.assertRaises((ssl.SSLError, OSError)):
            ctx.wrap_socket(raw, server_hostname="127.0.0.1")
        raw.close()
        cases += 1
        # A TLS client that never finishes the handshake is dropped at the
        # handshake timeout.
        raw = socket.create_connection(("127.0.0.1", self.wss), timeout=6)
        raw.sendall(bytes.fromhex("1603010200"))
        t0 = time.monotonic()
        try:
            while raw.recv(4096):
                pass
        except socket.timeout:
            self.fail("stalled TLS handshake kept open")
        except OSError:
            pass
        self.assertLess(time.monotonic() - t0, 4.5)
        raw.close()
        cases += 1
        type(self).tried += cases
        # The good client never noticed.
        self.assertGreaterEqual(c.heartbeat(), 1)
        st, _, _ = self.push("keys", b"after-tls", keys="sec-tls")
        self.assertEqual(c.expect(1000).body, b"after-tls")
        c.close()
        wait_for(lambda: self.comet.metric("imgate_comet_conn_current") == 0, 5,
                 "no connection left")

    def ping_flood(self, auth, limit_mb=64):
        """A WebSocket client sends pings as fast as it can and never reads
        the pongs: like any output to a client that does not read, they are
        bounded by output_limit (256k here). Returns (MB sent, worker RSS
        growth in kB, closed)."""
        from test_rel_badinput import wsf
        rss0 = {p: rel.rss_kb(p) for p in self.comet.workers()}
        c = GoimClient.ws(self.comet.ws)
        c.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        if auth:
            c.auth(token(60, key="sec-ping"))
        blob = wsf(b"p" * 125, opcode=0x9) * 500
        sent = 0
        closed = False
        c.sock.settimeout(2)
        t0 = time.monotonic()
        try:
            while sent < limit_mb << 20 and time.monotonic() - t0 < 10:
                c.sock.sendall(blob)
                sent += len(blob)
        except OSError:
            closed = True
        grew = max(rel.rss_kb(p) - rss0[p] for p in rss0 if rel.alive(p))
        c.close()
        type(self).tried += 1
        return sent / 1048576.0, grew, closed

    def test_ws_ping_flood(self):
        for auth in (False, True):
            with self.subTest(auth=auth):
                self._ping_flood_case(auth)

    def _ping_flood_case(self, auth):
        if True:
            mb, grew, closed = self.ping_flood(auth)
            what = "authenticated" if auth else "anonymous"
            sys.stderr.write("ping flood (%s): %.0f MB of pings sent, worker RSS +%d kB, "
                             "closed: %s\n" % (what, mb, grew, closed))
            self.assertLess(grew, 16384, "%s WebSocket ping flood (%.0f MB, pongs never "
                            "read) grew a worker by %d kB: pongs escape output_limit"
                            % (what, mb, grew))
            self.assertTrue(closed, "%s ping flood not disconnected" % what)

    @classmethod
    def tearDownClass(cls):
        rel.figure("security", "bad inputs tried", cls.tried)
        cls.comet.stop()
        cls.logic.stop()
        cls.redis.stop()


if __name__ == "__main__":
    H.hard_timeout(180)
    rel.main()
