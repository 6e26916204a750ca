#!/usr/bin/python3
"""loadclient.py: holds many goim connections (TCP and WebSocket) in one
process and checks every room push they receive. Driven by the reliability
tests through stdin/stdout, one JSON object per line.

  loadclient.py --tcp PORT --ws PORT -n N --mid-base M --rooms R
                [--reconnect] [--rate CONNS_PER_S] [--hb SECONDS]

Connection i (mid M+i, key "rel-<M+i>") joins room live://rel<i % R> and
accepts op 1000; odd i use WebSocket when --ws is given. Room pushes carry
"<room>:<n>" with n counting up per room, so a connection that stayed up
must have seen a contiguous run of n: any hole is a lost push, a repeat a
duplicate. Commands on stdin:
  status   -> {"up":..,"closed":..,"reconnects":..,...}
  report   -> per-room sums of what stayed-up connections saw
  keys     -> which key is up, for the test to map keys to workers
  short {"room": n, ...}
           -> the connections up since before the first push whose last
              push seen is not n (never saw one: last null)
  quit
With --reconnect a closed connection connects again after 0.2-0.5 s (a
client's backoff) under the same key; its pushes before that are not held
against it.
"""
import argparse
import base64
import json
import os
import random
import selectors
import socket
import struct
import sys
import time

HDR = struct.Struct(">ihhii")


def frame(op, body=b"", seq=1):
    return HDR.pack(16 + len(body), 16, 1, op, seq) + body


def ws_wrap(payload):
    mask = os.urandom(4)
    n = len(payload)
    if n < 126:
        head = bytes([0x82, 0x80 | n])
    else:
        head = bytes([0x82, 0x80 | 126]) + struct.pack(">H", n)
    m = (mask * (n // 4 + 1))[:n]
    return head + mask + bytes(a ^ b for a, b in zip(payload, m))


class Conn:
    __slots__ = ("i", "mid", "key", "room", "ws", "sock", "state", "buf", "out",
                 "first", "last", "count", "holes", "dups", "closed_at",
                 "incarnation", "reason", "next_hb", "authed_at")

    def __init__(self, i, mid, room, ws):
        self.i, self.mid, self.room, self.ws = i, mid, room, ws
        self.key = "rel-%d" % mid
        self.sock = None
        self.state = "idle"
        self.incarnation = 0
        self.reset()

    def reset(self):
        self.buf = bytearray()
        self.out = bytearray()
        self.first = self.last = None
        self.count = self.holes = self.dups = 0
        self.closed_at = None
        self.reason = None
        self.authed_at = None


class Load:
    def __init__(self, a):
        self.a = a
        self.sel = selectors.DefaultSelector()
        self.conns = []
        for i in range(a.n):
            room = "live://rel%d" % (i % a.rooms)
            self.conns.append(Conn(i, a.mid_base + i, room, bool(a.ws) and i % 2 == 1))
        self.pending = list(self.conns)  # not connected yet
        self.retry = []                  # (time, conn)
        self.up = 0
        self.closed = 0
        self.reconnects = 0
        self.connect_fail = 0
        self.bad = 0
        self.received = 0
        self.reasons = {}
        self.kept = {}  # per-room sums of incarnations that ended (reconnect)
        self.churn_rate = 0.0
        self.churned = 0
        self.churn_due = 0.0
        self.churn_t = 0.0

    # -- connection life ----------------------------------------------------

    def start(self, c):
        c.reset()
        c.incarnation += 1
        s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        s.setblocking(False)
        try:
            s.connect_ex(("127.0.0.1", self.a.ws if c.ws else self.a.tcp))
        except OSError:
            s.close()
            self.connect_fail += 1
            self.retry.append((time.monotonic() + 0.3, c))
            return
        c.sock = s
        c.state = "connecting"
        self.sel.register(s, selectors.EVENT_WRITE, c)

    def send(self, c, data):
        c.out += data
        self.flush(c)

    def flush(self, c):
        while c.out:
            try:
                n = c.sock.send(c.out)
            except BlockingIOError:
                break
            except OSError:
                self.drop(c, "send error")
                return
            del c.out[:n]
        ev = selectors.EVENT_READ | (selectors.EVENT_WRITE if c.out else 0)
        try:
            self.sel.modify(c.sock, ev, c)
        except (KeyError, ValueError):
            pass

    def goim(self, c, op, body=b""):
        f = frame(op, body)
        self.send(c, ws_wrap(f) if c.ws else f)

    def on_connected(self, c):
        err = c.sock.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR)
        if err:
            self.connect_fail += 1
            self.drop(c, "connect: %s" % os.strerror(err), counted=False)
            return
        if c.ws:
            key = base64.b64encode(os.urandom(16)).decode()
            req = ("GET /sub HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\n"
                   "Connection: Upgrade\r\nSec-WebSocket-Key: %s\r\n"
                   "Sec-WebSocket-Version: 13\r\n\r\n" % key)
            c.state = "upgrade"
            self.send(c, req.encode())
        else:
            self.auth(c)

    def auth(self, c):
        c.state = "auth"
        tok = json.dumps({"mid": c.mid, "key": c.key, "room_id": c.room,
                          "platform": "rel", "accepts": [1000]}).encode()
        self.goim(c, 7, tok)

    def drop(self, c, reason, counted=True):
        if c.sock is not None:
            try:
                self.sel.unregister(c.sock)
            except (KeyError, ValueError):
                pass
            c.sock.close()
            c.sock = None
        was_up = c.state == "up"
        c.state = "closed"
        c.reason = reason
        c.closed_at = time.monotonic()
        if was_up:
            self.up -= 1
        if counted:
            self.closed += 1
            self.reasons[reason] = self.reasons.get(reason, 0) + 1
        if self.a.reconnect:
            self.keep(c)
            self.retry.append((time.monotonic() + random.uniform(0.2, 0.5), c))

    def keep(self, c):
        """A finished incarnation's pushes still count as received."""
        k = self.kept.setdefault(c.room, [0, 0, 0])
        k[0] += c.count
        k[1] += c.dups
        k[2] += c.holes

    # -- input --------------------------------------------------------------

    def on_read(self, c):
        try:
            data = c.sock.recv(262144)
        except BlockingIOError:
            return
        except OSError as e:
            self.drop(c, "recv: %s" % e.strerror)
            return
        if not data:
            self.drop(c, "eof" if c.reason is None else c.reason)
            return
        c.buf += data
        if c.state == "upgrade":
            end = c.buf.find(b"\r\n\r\n")
            if end < 0:
                return
            if not c.buf.startswith(b"HTTP/1.1 101"):
                self.drop(c, "upgrade refused")
                return
            del c.buf[:end + 4]
            self.auth(c)
        if c.ws:
            self.parse_ws(c)
        else:
            self.parse_goim(c, c.buf, consume=True)

    def parse_ws(self, c):
        b = c.buf
        while len(b) >= 2 and c.sock is not None:
            n, off = b[1] & 0x7F, 2
            if n == 126:
                if len(b) < 4:
                    return
                n, off = struct.unpack_from(">H", b, 2)[0], 4
            elif n == 127:
                if len(b) < 10:
                    return
                n, off = struct.unpack_from(">Q", b, 2)[0], 10
            if len(b) < off + n:
                return
            opcode = b[0] & 0x0F
            payload = bytes(b[off:off + n])
            del b[:off + n]
            if opcode == 0x8:
                self.drop(c, c.reason or "ws close")
                return
            if opcode == 0x2:
                self.parse_goim(c, bytearray(payload), consume=False)

    def parse_goim(self, c, b, consume):
        off = 0
        while len(b) - off >= 16 and c.sock is not None:
            plen, hlen, ver, op, seq = HDR.unpack_from(b, off)
            if plen < 16 or hlen != 16 or plen > 1 << 20:
                self.bad += 1
                self.drop(c, "bad frame")
                return
            if len(b) - off < plen:
                break
            body = bytes(b[off + 16:off + plen])
            off += plen
            if op == 9:
                self.parse_goim(c, bytearray(body), consume=False)
            else:
                self.on_frame(c, op, body)
        if consume:
            del b[:off]

    def on_frame(self, c, op, body):
        if op == 8:
            c.state = "up"
            c.authed_at = time.monotonic()
            self.up += 1
            if c.incarnation > 1:
                self.reconnects += 1
        elif op == 6:
            try:
                c.reason = json.loads(body)["reason"]
            except (ValueError, KeyError, TypeError):
                c.reason = "op6"
        elif op == 1000:
            self.received += 1
            try:
                room, n = body.decode().rsplit(":", 1)
                n = int(n)
            except ValueError:
                self.bad += 1
                return
            if room != c.room:
                self.bad += 1
                return
            if c.last is None:
                c.first = c.last = n
                c.count = 1
            elif n == c.last + 1:
                c.last = n
                c.count += 1
            elif n <= c.last:
                c.dups += 1
            else:
                c.holes += n - c.last - 1
                c.last = n
                c.count += 1

    # -- commands -----------------------------------------------------------

    def command(self, line):
        cmd = line.strip()
        if cmd == "status":
            out = {"up": self.up, "closed": self.closed, "reconnects": self.reconnects,
                   "connect_fail": self.connect_fail, "bad": self.bad,
                   "received": self.received, "pending": len(self.pending),
                   "reasons": self.reasons, "n": len(self.conns),
                   "churned": self.churned}
        elif cmd == "report":
            # Per room, over connections up since before the first push:
            # how many saw it, pushes seen, holes, duplicates, last n seen.
            rooms = {}
            for c in self.conns:
                r = rooms.setdefault(c.room, {"conns": 0, "stayed": 0, "seen": 0,
                                              "holes": 0, "dups": 0, "first": [],
                                              "last": [], "kept": 0})
                r["conns"] += 1
                if c.state == "up" and c.incarnation == 1:
                    r["stayed"] += 1
                    r["seen"] += c.count
                    r["holes"] += c.holes
                    r["dups"] += c.dups
                    r["first"].append(c.first)
                    r["last"].append(c.last)
                else:
                    r["seen_other"] = r.get("seen_other", 0) + c.count
            for c in self.conns:
                rooms[c.room]["holes_all"] = rooms[c.room].get("holes_all", 0) + c.holes
            for room, k in self.kept.items():
                rooms[room]["kept"] = k[0]
                rooms[room]["holes_all"] = rooms[room].get("holes_all", 0) + k[2]
            for r in rooms.values():
                f = [x for x in r["first"] if x is not None]
                l = [x for x in r["last"] if x is not None]
                r["first_min"], r["first_max"] = (min(f), max(f)) if f else (None, None)
                r["last_min"], r["last_max"] = (min(l), max(l)) if l else (None, None)
                r["never"] = len(r["first"]) - len(f)
                del r["first"], r["last"]
            out = rooms
        elif cmd.startswith("churn "):
            # Close this many up connections a second (the client leaves);
            # with --reconnect they come back: connect, auth, join, leave.
            self.churn_rate = float(cmd.split()[1])
            out = {"ok": True}
        elif cmd == "keys":
            out = {c.key: {"up": c.state == "up", "inc": c.incarnation}
                   for c in self.conns}
        elif cmd.startswith("short "):
            # short {"room": last pushed n, ...}: the connections up since
            # before the first push that have not seen their room's last
            # one, for the test to tell where deliveries went missing.
            want = json.loads(cmd.split(" ", 1)[1])
            out = [{"key": c.key, "room": c.room, "last": c.last, "count": c.count,
                    "holes": c.holes, "ws": c.ws}
                   for c in self.conns
                   if c.state == "up" and c.incarnation == 1 and want.get(c.room)
                   and c.last != want[c.room]]
        elif cmd == "heartbeat":
            for c in self.conns:
                if c.state == "up":
                    self.goim(c, 2)
            out = {"ok": True}
        elif cmd == "quit":
            for c in self.conns:
                if c.sock is not None:
                    c.sock.close()
            sys.stdout.write("{}\n")
            sys.stdout.flush()
            sys.exit(0)
        else:
            out = {"error": "unknown command %r" % cmd}
        sys.stdout.write(json.dumps(out) + "\n")
        sys.stdout.flush()

    def run(self):
        self.sel.register(sys.stdin, selectors.EVENT_READ, None)
        rate = self.a.rate
        t0 = time.monotonic()
        started = 0
        inflight_max = 200
        while True:
            now = time.monotonic()
            # Pace connects: rate per second, bounded handshakes in flight.
            want = int((now - t0) * rate) + 1
            inflight = started - self.up - self.closed - self.connect_fail
            while self.pending and started < want and inflight < inflight_max:
                self.start(self.pending.pop(0))
                started += 1
                inflight += 1
            if self.churn_rate <= 0:
                self.churn_t = now
            else:
                self.churn_due += self.churn_rate * (now - self.churn_t)
                ups = None
                while self.churn_due >= 1:
                    self.churn_due -= 1
                    if ups is None:
                        ups = [c for c in self.conns if c.state == "up"]
                    if not ups:
                        break
                    c = ups.pop(random.randrange(len(ups)))
                    self.churned += 1
                    self.drop(c, "churn", counted=False)
                self.churn_t = now
            if self.retry:
                due = [x for x in self.retry if x[0] <= now]
                if due:
                    self.retry = [x for x in self.retry if x[0] > now]
                    for _, c in due:
                        self.start(c)
            for key, ev in self.sel.select(timeout=0.05):
                c = key.data
                if c is None:
                    line = sys.stdin.readline()
                    if not line:
                        return
                    self.command(line)
                    continue
                if c.sock is None:
                    continue
                if c.state == "connecting":
                    if ev & selectors.EVENT_WRITE:
                        self.on_connected(c)
                        if c.sock is not None and not c.out:
                            self.sel.modify(c.sock, selectors.EVENT_READ, c)
                    continue
                if ev & selectors.EVENT_WRITE:
                    self.flush(c)
                if ev & selectors.EVENT_READ and c.sock is not None:
                    self.on_read(c)


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--tcp", type=int, required=True)
    p.add_argument("--ws", type=int, default=0)
    p.add_argument("-n", type=int, default=100)
    p.add_argument("--mid-base", type=int, default=100000)
    p.add_argument("--rooms", type=int, default=4)
    p.add_argument("--rate", type=float, default=1000.0)
    p.add_argument("--reconnect", action="store_true")
    a = p.parse_args()
    Load(a).run()


if __name__ == "__main__":
    main()
