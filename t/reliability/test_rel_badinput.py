#!/usr/bin/python3
"""Bad input against a running node (Redis, imgate-logic, imgate-comet on
127.0.0.1): malformed goim frames over TCP and WebSocket (every header
field out of range, truncated, oversized, garbage), the fuzz corpora sent
as they are, seeded random mutations, malformed WebSocket handshakes and
frames, slowloris partial sends, and the same for logic's HTTP API and its
msgpack-rpc port. While it goes on, bystander clients get room pushes with
sequence numbers: none may be closed or miss one, the comet's connection
count and fds return to the bystanders', and RSS returns near its
baseline.

REL_BAD_ROUNDS (default 2) repeats the randomized part; REL_CORPUS_MAX
(default 80, 0 = all) bounds the files taken from each fuzz corpus.
"""
import base64
import glob
import json
import os
import random
import selectors
import socket
import struct
import sys
import time
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import rel  # noqa: E402
from rel import H, wait_for  # noqa: E402
from goim_client import GoimClient, encode  # noqa: E402

TOP = os.path.join(rel.HERE, "..", "..")
ROUNDS = int(os.environ.get("REL_BAD_ROUNDS", "2"))
CORPUS_MAX = int(os.environ.get("REL_CORPUS_MAX", "80"))
HANDSHAKE = 3.0
PROMPT = 1.5  # a bad frame is answered well before the handshake timeout
BYSTANDERS = 200
ROOMS = 4


def hdr(plen, hlen=16, ver=1, op=7, seq=1):
    return struct.pack(">iHhii" if hlen >= 0 else ">ihhii", plen, hlen, ver, op, seq)


def raw_hdr(plen, hlen, ver, op, seq):
    return struct.pack(">IHHII", plen & 0xFFFFFFFF, hlen & 0xFFFF, ver & 0xFFFF,
                       op & 0xFFFFFFFF, seq & 0xFFFFFFFF)


def wsf(payload, opcode=0x2, fin=True, mask=True, rsv=0, length=None):
    """A client WebSocket frame with every field under control."""
    n = len(payload) if length is None else length
    b0 = (0x80 if fin else 0) | (rsv << 4) | opcode
    m = 0x80 if mask else 0
    if n < 126:
        head = bytes([b0, m | n])
    elif n < 65536:
        head = bytes([b0, m | 126]) + struct.pack(">H", n)
    else:
        head = bytes([b0, m | 127]) + struct.pack(">Q", n)
    if not mask:
        return head + payload
    key = os.urandom(4)
    return head + key + bytes(c ^ key[i % 4] for i, c in enumerate(payload))


AUTH = b'{"mid":5,"key":"","room_id":"live://bad","platform":"rel","accepts":[1000]}'


def upgrade_req(extra="", path="/sub", version="13", method="GET", proto="HTTP/1.1",
                key=None, upgrade="websocket", connection="Upgrade"):
    key = key if key is not None else base64.b64encode(os.urandom(16)).decode()
    lines = ["%s %s %s" % (method, path, proto), "Host: 127.0.0.1"]
    if upgrade is not None:
        lines.append("Upgrade: %s" % upgrade)
    if connection is not None:
        lines.append("Connection: %s" % connection)
    if key:
        lines.append("Sec-WebSocket-Key: %s" % key)
    if version is not None:
        lines.append("Sec-WebSocket-Version: %s" % version)
    return ("\r\n".join(lines) + "\r\n" + extra + "\r\n").encode()


class Attack:
    """One connection: an optional valid preamble (upgrade, auth), then
    the bad bytes; expect 'prompt' (closed well before the handshake
    timeout), 'close' (closed at some point, e.g. by the handshake
    timeout) or 'any' (the server may keep it; we close it)."""

    def __init__(self, name, data, kind="tcp", auth=False, expect="prompt",
                 chunks=None, gap=0.0):
        self.name, self.data, self.kind, self.auth = name, data, kind, auth
        self.expect, self.chunks, self.gap = expect, chunks, gap
        self.sock = None
        self.closed_after = None


class Runner:
    def __init__(self, comet):
        self.comet = comet
        self.tried = 0
        self.failures = []
        self.kept_open = 0

    def prepare(self, a):
        if a.kind == "tcp":
            c = GoimClient.tcp(self.comet.tcp)
        elif a.kind == "ws":
            c = GoimClient.ws(self.comet.ws)
        else:  # raw bytes to the WebSocket port (handshake attacks)
            c = GoimClient(socket.create_connection(("127.0.0.1", self.comet.ws),
                                                    timeout=5), True)
        if a.auth:
            c.auth(AUTH)
        return c.sock

    def run(self, attacks, batch=64):
        for i in range(0, len(attacks), batch):
            self._batch(attacks[i:i + batch])

    def _batch(self, attacks):
        sel = selectors.DefaultSelector()
        live = []
        for a in attacks:
            self.tried += 1
            try:
                a.sock = self.prepare(a)
            except Exception as e:  # noqa: BLE001 - a preamble failing is a finding
                self.failures.append("%s: preamble failed: %r" % (a.name, e))
                continue
            a.t0 = time.monotonic()
            chunks = a.chunks or [a.data]
            try:
                for k, ch in enumerate(chunks):
                    if k and a.gap:
                        time.sleep(a.gap)
                    a.sock.sendall(ch)
            except OSError:
                pass  # closed under us: what we wanted
            a.sock.setblocking(False)
            sel.register(a.sock, selectors.EVENT_READ, a)
            live.append(a)
        deadline = time.monotonic() + HANDSHAKE + 3.0
        open_ = set(live)
        while open_ and time.monotonic() < deadline:
            if all(x.expect == "any" for x in open_) and \
                    time.monotonic() > min(x.t0 for x in open_) + PROMPT:
                break
            for key, _ in sel.select(timeout=0.1):
                a = key.data
                try:
                    d = a.sock.recv(65536)
                except BlockingIOError:
                    continue
                except OSError:
                    d = b""
                if not d:
                    a.closed_after = time.monotonic() - a.t0
                    sel.unregister(a.sock)
                    open_.discard(a)
        for a in live:
            if a.closed_after is None:
                if a.expect != "any":
                    self.failures.append("%s: not closed within %.1fs"
                                         % (a.name, HANDSHAKE + 3.0))
                else:
                    self.kept_open += 1
            elif a.expect == "prompt" and a.closed_after > PROMPT:
                self.failures.append("%s: closed only after %.2fs (handshake "
                                     "timeout, not the bad input)"
                                     % (a.name, a.closed_after))
            try:
                sel.unregister(a.sock)
            except (KeyError, ValueError):
                pass
            a.sock.close()
        sel.close()


def goim_attacks():
    """Every header field out of range, truncated, oversized, garbage."""
    out = []
    body = AUTH
    for auth in (False, True):
        t = "post-auth " if auth else ""
        bad_len = [-1, 0, 1, 15, -2 ** 31, 2 ** 31 - 1, 16 + 4096 + 1, 10 ** 9]
        for plen in bad_len:
            out.append(Attack("%spackLen %d" % (t, plen),
                              raw_hdr(plen, 16, 1, 7, 1) + body, auth=auth))
        for hlen in (0, 1, 15, 17, 32, 0xFFFF):
            out.append(Attack("%sheaderLen %d" % (t, hlen),
                              raw_hdr(16 + len(body), hlen, 1, 7, 1) + body, auth=auth))
        # packLen below headerLen, and a body over max_body (4096).
        out.append(Attack("%sbody over max_body" % t,
                          encode(2 if auth else 7, b"x" * 4097), auth=auth))
        out.append(Attack("%sbody way over max_body" % t,
                          encode(2 if auth else 7, b"x" * 70000), auth=auth))
        out.append(Attack("%sgarbage" % t, os.urandom(64) + b"\xff" * 16, auth=auth))
        out.append(Attack("%sHTTP to the TCP port" % t,
                          b"GET / HTTP/1.1\r\nHost: x\r\n\r\n", auth=auth))
        out.append(Attack("%sTLS hello to the TCP port" % t,
                          bytes.fromhex("160301002e0100002a0303") + os.urandom(40),
                          auth=auth))
        # Truncated frames: a header cut short, a body cut short, then a
        # stall. Before auth the handshake timeout closes them.
        out.append(Attack("%struncated header" % t, encode(2)[:9], auth=auth,
                          expect="close" if not auth else "any"))
        out.append(Attack("%struncated body" % t, encode(7, body)[:30], auth=auth,
                          expect="close" if not auth else "any"))
        # Interleaved garbage after a valid frame.
        out.append(Attack("%sgood frame then garbage" % t,
                          encode(2) + b"\x00\x00\x00\x05garbage-garbage", auth=auth))
    # Ops and versions out of range are not errors in goim: the frame is
    # valid, the op ignored (before auth) or forwarded (after).
    for op in (-1, 0, 6, 8, 9, 2 ** 31 - 1):
        out.append(Attack("pre-auth op %d" % op, encode(op, b"x", seq=7), expect="close"))
        out.append(Attack("post-auth op %d" % op, encode(op, b"x", seq=7), auth=True,
                          expect="any"))
    for ver in (-1, 0, 2, 32767):
        out.append(Attack("ver %d" % ver, encode(7, body, ver=ver), expect="any"))
    # Bad auth bodies: refused with op 6 and closed at once.
    for name, tok in (("empty token", b""), ("not json", b"{{{"),
                      ("json array", b"[1,2]"), ("mid string", b'{"mid":"x"}'),
                      ("nested json", b"[" * 2000 + b"]" * 2000),
                      ("4096-byte token",
                                                        b'{"x":"' + b"a" * 4087 + b'"}')):
        out.append(Attack("auth " + name, encode(7, tok)))
    # A batch (op 9) from a client, with broken inner frames.
    out.append(Attack("client op 9 batch", encode(9, hdr(8) + b"\x00" * 4), auth=True,
                      expect="any"))
    # Change room and sub/unsub with bad bodies.
    out.append(Attack("change room to 300 bytes", encode(12, b"live://" + b"r" * 300),
                      auth=True, expect="any"))
    out.append(Attack("sub bad op list", encode(14, b"1,,x,99999999999"), auth=True,
                      expect="any"))
    out.append(Attack("sub 5000 ops", encode(14, ",".join(str(i) for i in range(800))
                                             .encode()), auth=True, expect="any"))
    return out


def ws_attacks():
    out = []
    good = encode(7, AUTH)
    for name, data in (
            ("unmasked frame", wsf(good, mask=False)),
            ("rsv bits", wsf(good, rsv=7)),
            ("reserved opcode 3", wsf(good, opcode=3)),
            ("reserved opcode 0xB", wsf(good, opcode=0xB)),
            ("continuation first", wsf(good, opcode=0)),
            ("ping of 126 bytes", wsf(b"p" * 126, opcode=0x9)),
            ("fragmented ping", wsf(b"p", opcode=0x9, fin=False)),
            ("64-bit length 2^63", wsf(b"", length=2 ** 63)[:10] + os.urandom(4)),
            ("length over max_ws_message", wsf(b"x" * 17000)),
            ("two goim frames in one message", wsf(good + encode(2))),
            ("short goim frame in a message", wsf(good[:10])),
            ("goim packLen beyond message", wsf(raw_hdr(500, 16, 1, 7, 1) + AUTH)),
            ("text message", wsf(good, opcode=0x1)),
            ("close with 1-byte payload", wsf(b"\x03", opcode=0x8)),
            ("close with bad utf-8", wsf(b"\x03\xe8\xff\xfe", opcode=0x8)),
            ("fragments never finished", wsf(good[:8], fin=False) +
             wsf(good[8:], opcode=0, fin=False) + wsf(b"", opcode=0, fin=False)),
            ("fragments over max_ws_message", b"".join(
                wsf(b"x" * 4000, opcode=0x2 if i == 0 else 0, fin=False)
                for i in range(6)))):
        for auth in (False, True):
            expect = "prompt"
            # A text message is read as a binary one (as goim does): the
            # auth inside it is valid.
            if name == "text message":
                expect = "any"
            if name in ("fragments never finished", "close with 1-byte payload",
                        "close with bad utf-8"):
                expect = "any" if auth else "close"
            out.append(Attack(("post-auth ws " if auth else "ws ") + name, data,
                              kind="ws", auth=auth, expect=expect))
    return out


def upgrade_attacks():
    out = []
    for name, req in (
            ("no Upgrade header", upgrade_req(upgrade=None)),
            ("Upgrade: h2c", upgrade_req(upgrade="h2c")),
            ("no Connection header", upgrade_req(connection=None)),
            ("version 8", upgrade_req(version="8")),
            ("no version", upgrade_req(version=None)),
            ("no key", upgrade_req(key="")),
            ("short key", upgrade_req(key="abc")),
            ("POST", upgrade_req(method="POST")),
            ("HTTP/1.0", upgrade_req(proto="HTTP/1.0")),
            ("HTTP/0.9 line", b"GET /sub\r\n\r\n"),
            ("wrong path", upgrade_req(path="/nope")),
            ("path with NUL", upgrade_req(path="/sub\x00x")),
            ("header over max_http_header", upgrade_req(extra="X-Big: %s\r\n" % ("a" * 9000))),
            ("10000 tiny headers", upgrade_req(extra="a:b\r\n" * 10000)),
            ("header without colon", upgrade_req(extra="nocolon\r\n")),
            ("obs-fold", upgrade_req(extra="X-A: a\r\n b\r\n")),
            ("binary request line", os.urandom(200) + b"\r\n\r\n"),
            ("goim frame instead of upgrade", encode(7, AUTH))):
        out.append(Attack("upgrade " + name, req, kind="raw"))
    # Lines ended by a bare LF are not a request end (RFC 9112 allows either):
    # waiting for the handshake timeout is fine.
    out.append(Attack("upgrade bare LF lines", upgrade_req().replace(b"\r\n", b"\n"),
                      kind="raw", expect="close"))
    # Slowloris on the upgrade: a request that never finishes, one byte at
    # a time; the handshake timeout must still close it.
    req = upgrade_req()
    out.append(Attack("upgrade slowloris", b"", kind="raw", expect="close",
                      chunks=[req[i:i + 1] for i in range(40)], gap=0.0))
    return out


def corpus_files(target, rng):
    """A target's corpus files; at most REL_CORPUS_MAX of them (default
    80, 0 = all), picked by the seeded rng."""
    files = sorted(glob.glob(os.path.join(TOP, "t", "fuzz", "corpus", target, "*")))
    if CORPUS_MAX and len(files) > CORPUS_MAX:
        files = sorted(rng.sample(files, CORPUS_MAX))
    return files


def corpus_attacks(rng):
    """The fuzz corpora as client input: raw, and after a valid auth."""
    out = []
    files = corpus_files("fuzz_proto", rng)
    for f in files:
        with open(f, "rb") as fh:
            data = fh.read()[:20000]
        out.append(Attack("corpus proto %s" % os.path.basename(f)[:10], data,
                          auth=rng.random() < 0.5, expect="any"))
    for target in ("fuzz_ws_frame", "fuzz_ws_upgrade"):
        for f in corpus_files(target, rng):
            with open(f, "rb") as fh:
                data = fh.read()[:20000]
            out.append(Attack("corpus %s %s" % (target, os.path.basename(f)[:10]), data,
                              kind="raw" if target == "fuzz_ws_upgrade" else "ws",
                              expect="any"))
    return out


def mutate(rng, data):
    b = bytearray(data)
    for _ in range(rng.randint(1, 6)):
        r = rng.random()
        if r < 0.4 and b:
            b[rng.randrange(len(b))] = rng.randrange(256)
        elif r < 0.6 and b:
            del b[rng.randrange(len(b)):]
        elif r < 0.8:
            pos = rng.randrange(len(b) + 1)
            b[pos:pos] = bytes(rng.randrange(256) for _ in range(rng.randint(1, 32)))
        else:
            pos = rng.randrange(max(1, len(b) - 3))
            b[pos:pos + 4] = struct.pack(">I", rng.choice(
                [0, 1, 15, 16, 17, 4096, 4112, 65535, 2 ** 31 - 1, 2 ** 32 - 1]))
    return bytes(b)


def random_attacks(rng, n):
    out = []
    seeds = [encode(2) + encode(12, b"live://r") + encode(14, b"1000,1001"),
             encode(7, AUTH), encode(4000, b"hello") * 3]
    for i in range(n):
        ws = rng.random() < 0.4
        data = mutate(rng, rng.choice(seeds))
        if ws:
            data = wsf(data) if rng.random() < 0.7 else mutate(rng, wsf(data))
        out.append(Attack("random #%d" % i, data, kind="ws" if ws else "tcp",
                          auth=rng.random() < 0.6, expect="any"))
    return out


class BadInputTest(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.redis, cls.logic, cls.comet = rel.node(workers=2, comet_over={
            "protocol__handshake_timeout": "%ds" % HANDSHAKE})
        cls.group = rel.LoadGroup(cls.comet, BYSTANDERS, rooms=ROOMS)
        cls.group.wait_up()
        time.sleep(0.5)
        cls.pusher = rel.Pusher(cls.logic, ROOMS)
        cls.pusher.round()
        cls.runner = Runner(cls.comet)
        cls.fd0 = cls.comet.fds()
        cls.rss0 = None

    @classmethod
    def tearDownClass(cls):
        cls.group.quit()

    def check_bystanders(self, what):
        for _ in range(3):
            self.pusher.round()
        rep = rel.settle(self.group, self.pusher)
        st = self.group.status()
        exp, seen, lost, dups = rel.losses(rep, self.pusher)
        self.assertEqual(st["closed"], 0, "%s: bystanders closed: %r" % (what, st))
        self.assertEqual((lost, dups), (0, 0), "%s: bystanders lost pushes" % what)
        self.assertTrue(self.comet.proc.poll() is None, "comet master died")
        self.assertEqual(len(self.comet.workers()), 2)
        self.assertEqual(self.comet.metric("imgate_comet_worker_respawns_total"), 0,
                         "%s: a worker died" % what)
        return seen

    def attack(self, what, attacks):
        r = self.runner
        before = len(r.failures)
        r.run(attacks)
        self.check_bystanders(what)
        wait_for(lambda: self.comet.metric("imgate_comet_conn_current") == BYSTANDERS,
                 10, "%s: connections back to the bystanders" % what)
        new = r.failures[before:]
        self.assertEqual(new, [], "%s:\n  %s" % (what, "\n  ".join(new)))

    def test_1_goim(self):
        self.attack("goim frames", goim_attacks())

    def test_2_websocket_frames(self):
        self.attack("websocket frames", ws_attacks())

    def test_3_upgrade(self):
        self.attack("websocket upgrade", upgrade_attacks())

    def test_4_corpus_and_random(self):
        rng = random.Random(int(os.environ.get("REL_SEED", "7")))
        # A first pass warms the allocators and free lists up; RSS after it
        # is the baseline.
        self.attack("corpus", corpus_attacks(rng))
        self.attack("random warm-up", random_attacks(rng, 300))
        rss0 = self.comet.rss()
        for k in range(ROUNDS):
            self.attack("random round %d" % k, random_attacks(rng, 300))
        self.attack("corpus again", corpus_attacks(rng))
        rss1 = self.comet.rss()
        sys.stderr.write("comet RSS kB before %r after %r\n" % (rss0, rss1))
        # Allocator slack, not a leak: a leak grows with the rounds (the
        # sanitizer build's LeakSanitizer says which).
        for pid, kb in rss0.items():
            if rel.sanitized():
                break
            self.assertLess(rss1[pid] - kb, 1024 + 512 * ROUNDS,
                            "RSS of %d grew by %d kB" % (pid, rss1[pid] - kb))

    def test_5_slowloris(self):
        """50 goim clients trickling their auth a byte every 300 ms, never
        finishing it: each gets op 6 at the handshake timeout, and the
        server lets go of the connection (its fd) within the 2 s linger
        even though the client keeps trickling."""
        fd0 = sum(self.comet.fds().values())
        data = encode(7, AUTH)
        socks = [socket.create_connection(("127.0.0.1", self.comet.tcp))
                 for _ in range(50)]
        for s in socks:
            s.setblocking(False)
        t0 = time.monotonic()
        told = {}
        i = 0
        peak = 0
        fds = None
        while time.monotonic() - t0 < HANDSHAKE + 6:
            for k, s in enumerate(socks):
                try:
                    s.send(data[i:i + 1])
                except OSError:
                    told.setdefault(k, time.monotonic() - t0)
                try:
                    if s.recv(4096) == b"":
                        told.setdefault(k, time.monotonic() - t0)
                    else:
                        told.setdefault(k, time.monotonic() - t0)
                except BlockingIOError:
                    pass
                except OSError:
                    told.setdefault(k, time.monotonic() - t0)
            i = min(i + 1, len(data) - 2)  # never completes the frame
            fds = sum(self.comet.fds().values())
            peak = max(peak, fds)
            time.sleep(0.3)
        for s in socks:
            s.close()
        self.runner.tried += len(socks)
        self.assertEqual(len(told), len(socks), "slowloris clients not told to go")
        self.assertLess(max(told.values()), HANDSHAKE + 1.5)
        self.assertGreaterEqual(peak, fd0 + 50)
        # 3 s handshake + 2 s linger + 1 s spare, while the trickle went on.
        self.assertLess(fds - fd0, 5, "the comet still holds %d fds of closed "
                        "slowloris connections %.1fs after accepting them"
                        % (fds - fd0, HANDSHAKE + 6))
        self.check_bystanders("slowloris")

    def test_6_http_api(self):
        url = self.logic.url
        tried = 0
        cases = [
            ("POST", "/goim/push/room?operation=1000&type=live&room=x", b"x" * 70000, 413),
            ("POST", "/goim/push/room?operation=abc&type=live&room=x", b"m", 400),
            ("POST", "/goim/push/room?operation=1000&type=live", b"m", 400),
            ("POST", "/goim/push/room?operation=-5&type=live&room=x", b"m", None),
            ("POST", "/goim/push/room?operation=99999999999999&type=live&room=x", b"m", 400),
            ("POST", "/goim/push/keys?operation=1000", b"m", 400),
            ("POST", "/goim/push/mids?operation=1000&mids=abc", b"m", 400),
            ("POST", "/goim/push/mids?operation=1000&mids=-1", b"m", None),
            ("POST", "/goim/push/keys?operation=1000&" + "&".join(
                "keys=k%d" % i for i in range(10001)), b"m", 400),
            ("POST", "/goim/push/all?operation=1000&speed=abc", b"m", None),
            ("GET", "/goim/push/all?operation=1000", None, 400),
            ("POST", "/goim/push/nope", b"m", 404),
            ("GET", "/goim/online/room?type=live&rooms=" + "r" * 5000, None, None),
            ("GET", "/goim/online/top?type=live&limit=-1", None, None),
            ("GET", "/goim/online/top?type=live&limit=99999999999999999999", None, None),
            ("GET", "/%zz%00", None, 404),
            ("GET", "/goim/online/total?" + "a=" * 3000, None, None),
        ]
        for method, path, body, want in cases:
            tried += 1
            try:
                st, _, data = H.http(method, url + path, body, timeout=5)
            except OSError as e:
                # A request line over the server's header limit may be cut
                # off while it is still being sent: refused, not served.
                if len(path) > 8000:
                    continue
                self.fail("%s %s: %r" % (method, path[:60], e))
            if want in (413, 405, 404):
                self.assertEqual(st, want, "%s %s -> %d %r" % (method, path[:80], st, data[:200]))
            elif want is not None:
                # goim answers a bad request as HTTP 200 with code -400.
                code = json.loads(data)["code"] if st == 200 else -st
                self.assertEqual(code, -want, "%s %s -> %d %r"
                                 % (method, path[:80], st, data[:200]))
            else:
                self.assertLess(st, 500, "%s %s -> %d" % (method, path[:80], st))
        # Raw requests: a lying Content-Length, chunked bodies without
        # end, a header block that never ends, garbage.
        raws = [
            b"POST /goim/push/all?operation=1000 HTTP/1.1\r\nHost: x\r\n"
            b"Content-Length: 99999999999\r\n\r\nabc",
            b"POST /goim/push/all?operation=1000 HTTP/1.1\r\nHost: x\r\n"
            b"Transfer-Encoding: chunked\r\n\r\nFFFFFFFF\r\n" + b"a" * 1000,
            b"POST /goim/push/all?operation=1000 HTTP/1.1\r\nHost: x\r\n"
            b"Content-Length: -1\r\n\r\n",
            b"GET /healthz HTTP/1.1\r\n" + b"X-A: " + b"b" * 100000 + b"\r\n\r\n",
            b"GET /healthz HTTP/1.1\r\n" + b"a: b\r\n" * 20000 + b"\r\n",
            os.urandom(3000),
            b"GET /healthz HTTP/9.9\r\n\r\n",
        ]
        for data in raws:
            tried += 1
            s = socket.create_connection(("127.0.0.1", self.logic.http_port), timeout=8)
            try:
                s.sendall(data)
                s.settimeout(8)
                while s.recv(65536):
                    pass
            except OSError:
                pass
            s.close()
        # Many connections at once, idle: logic keeps answering others,
        # and closes the idle ones at its timeout (5 s here).
        idle = [socket.create_connection(("127.0.0.1", self.logic.http_port))
                for _ in range(500)]
        tried += len(idle)
        st, res = H.http_json("GET", url + "/goim/online/total")
        self.assertEqual((st, res["code"]), (200, 0))
        for _ in range(3):
            self.pusher.round()
        self.assertEqual(self.pusher.failed, 0, self.pusher.errors)
        t0 = time.monotonic()
        for s in idle:
            s.settimeout(max(0.1, 9 - (time.monotonic() - t0)))
            try:
                self.assertEqual(s.recv(1), b"", "idle HTTP connection kept")
            except socket.timeout:
                self.fail("idle HTTP connection kept past the timeout")
            except OSError:
                pass
            s.close()
        self.runner.tried += tried
        self.assertEqual(H.http("GET", url + "/healthz")[0], 200)
        self.assertTrue(self.logic.alive())
        self.check_bystanders("http api")

    def test_7_rpc_port(self):
        import msgpack
        port = self.logic.rpc_port
        tried = 0
        bad = [
            b"\xc1" * 10,                                  # never-used byte
            b"\x91" * 100000,                              # 100000 nested arrays
            b"\x81\xa1a" * 50000,                          # 50000 nested maps
            b"\xdd\xff\xff\xff\xff",                       # array32 of 4G elements
            b"\xdf\xff\xff\xff\xff",                       # map32 of 4G entries
            b"\xdb\xff\xff\xff\xff" + b"a" * 100,          # str32 of 4 GB
            b"\xc6\x7f\xff\xff\xff",                       # bin32 of 2 GB
            msgpack.packb([0, 1, "Connect", [b"x" * (2 << 20)]], use_bin_type=True),
            msgpack.packb([0, 1, 5, []]),                  # method not a string
            msgpack.packb([0, "x", "Connect", []]),        # msgid not an int
            msgpack.packb([0, 2 ** 40, "Connect", [{}]]),
            msgpack.packb([9, 1, "Connect", [{}]]),        # unknown type
            msgpack.packb([0, 1, "Connect"]),              # too short
            msgpack.packb([0, 1, "Connect", {"a": 1}]),    # params not an array
            msgpack.packb([0, 1, "Connect", [{"token": {"a": [1] * 10}}]]),
            msgpack.packb([0, 1, "Connect", [{"server": 1, "cookie": None,
                                              "token": b"\xff\xfe"}]]),
            msgpack.packb([0, 1, "Disconnect", [{"mid": "x", "key": 5}]]),
            msgpack.packb([0, 1, "RenewOnline", [{"server": "s", "room_count":
                                                  {"r%d" % i: -1 for i in range(5000)}}]]),
            msgpack.packb([0, 1, "Heartbeat", [{"mid": 2 ** 63, "key": "k"}]]),
            msgpack.packb([0, 1, "Receive", [{"mid": 1, "key": "k",
                                              "proto": {"op": -1, "body": b"x" * 60000}}]]),
            msgpack.packb([2, "Nodes", [[]]]),
            msgpack.packb({"not": "an array"}),
            b"\x94\x00\x01\xa7Connect\x91" + b"\x91" * 5000 + b"\xc0",
        ]
        for data in bad:
            tried += 1
            s = socket.create_connection(("127.0.0.1", port), timeout=5)
            try:
                s.sendall(data)
                s.settimeout(3)
                while s.recv(65536):
                    pass
            except OSError:
                pass
            s.close()
        rng = random.Random(11)
        seed = msgpack.packb([0, 1, "Connect", [{"server": "s", "cookie": "",
                                                 "token": AUTH}]], use_bin_type=True)
        for _ in range(200 * ROUNDS):
            tried += 1
            s = socket.create_connection(("127.0.0.1", port), timeout=5)
            try:
                s.sendall(mutate(rng, seed))
                s.shutdown(socket.SHUT_WR)
                s.settimeout(3)
                while s.recv(65536):
                    pass
            except OSError:
                pass
            s.close()
        self.runner.tried += tried
        # Still serving: a well-formed Connect answers.
        c = H.RpcClient(port)
        err, res = c.call("Connect", {"server": "rel-check", "cookie": "",
                                      "token": AUTH})
        c.close()
        self.assertIsNone(err)
        self.assertEqual(res["mid"], 5)
        self.assertTrue(self.logic.alive())
        self.check_bystanders("rpc port")

    def test_7b_admin_port(self):
        """The comet's admin listener (/metrics, /healthz): huge headers,
        a huge request line, garbage, lying lengths; 300 idle connections
        do not keep it from answering."""
        port = self.comet.admin
        raws = [b"GET /metrics HTTP/1.1\r\n" + b"a: b\r\n" * 20000 + b"\r\n",
                b"GET /" + b"x" * 100000 + b" HTTP/1.1\r\n\r\n",
                os.urandom(5000),
                b"POST /metrics HTTP/1.1\r\nContent-Length: 999999999\r\n\r\nabc",
                b"GET /healthz HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n"
                b"FFFFFFFFFFFF\r\n"]
        for data in raws:
            s = socket.create_connection(("127.0.0.1", port), timeout=5)
            try:
                s.sendall(data)
                s.settimeout(5)
                while s.recv(65536):
                    pass
            except socket.timeout:
                self.fail("admin kept a bad request open: %r" % data[:40])
            except OSError:
                pass
            s.close()
        idle = [socket.create_connection(("127.0.0.1", port)) for _ in range(300)]
        self.runner.tried += len(raws) + len(idle)
        st, _, body = H.http("GET", "http://127.0.0.1:%d/healthz" % port, timeout=5)
        self.assertEqual(st, 200)
        for s in idle:
            s.close()
        self.assertTrue(self.comet.proc.poll() is None)

    def test_8_baseline(self):
        """Connections and fds back where they were before any attack."""
        wait_for(lambda: self.comet.metric("imgate_comet_conn_current") == BYSTANDERS,
                 10, "connections back to the bystanders")
        self.assertEqual(self.comet.shm("channels")["count"], BYSTANDERS)
        fd1 = wait_for(lambda: (lambda f: f if f == self.fd0 else None)(self.comet.fds()),
                       10, "fds back to %r" % self.fd0)
        self.assertEqual(fd1, self.fd0)
        seen = self.check_bystanders("end")
        rel.figure("bad input", "bad inputs tried", self.runner.tried)
        rel.figure("bad input", "connections held", BYSTANDERS)
        rel.figure("bad input", "pushes sent", self.pusher.sent)
        rel.figure("bad input", "pushes delivered", seen)
        exp, seen, lost, dups = rel.losses(rel.settle(self.group, self.pusher), self.pusher)
        rel.figure("bad input", "pushes lost", lost)
        rel.figure("bad input", "kept open by design", self.runner.kept_open)


if __name__ == "__main__":
    H.hard_timeout(400)
    rel.main()
