"""A goim v2 test client for TCP, WebSocket and WSS (Debian's python3).

  c = GoimClient.tcp(port)           or .ws(port, path="/sub")
                                     or .wss(port, cafile=None)
  c.auth({"mid": 1, "room_id": "live://1", "accepts": [1000]})
  c.heartbeat() -> room online count
  c.send(op, body=b"", seq=None)
  c.recv(timeout) -> Frame(ver, op, seq, body, batch)
  c.expect(op, timeout) -> the next frame with op (others kept)
  c.closed(timeout) -> True once the server closed the connection

WebSocket op-9 messages are unpacked into their inner frames (each marked
with the batch it came in, so tests can check grouping); on TCP a batch is
the plain run of inner frames and reads the same as single frames.
Every length is checked, as the server does.
"""
import base64
import hashlib
import json
import os
import socket
import ssl
import struct
import time
from collections import deque, namedtuple

HEADER = struct.Struct(">ihhii")
HEADER_LEN = 16
OP_HEARTBEAT, OP_HEARTBEAT_REPLY = 2, 3
OP_DISCONNECT_REPLY = 6
OP_AUTH, OP_AUTH_REPLY = 7, 8
OP_RAW = 9
OP_CHANGE_ROOM, OP_CHANGE_ROOM_REPLY = 12, 13
OP_SUB, OP_SUB_REPLY = 14, 15
OP_UNSUB, OP_UNSUB_REPLY = 16, 17
WS_GUID = b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11"

Frame = namedtuple("Frame", "ver op seq body batch")


class ProtocolError(Exception):
    pass


def encode(op, body=b"", seq=0, ver=1):
    if isinstance(body, str):
        body = body.encode()
    return HEADER.pack(HEADER_LEN + len(body), HEADER_LEN, ver, op, seq) + body


def parse_frames(data, batch=None):
    """All frames of a buffer holding whole frames only."""
    out = []
    off = 0
    while off < len(data):
        if len(data) - off < HEADER_LEN:
            raise ProtocolError("short frame header")
        plen, hlen, ver, op, seq = HEADER.unpack_from(data, off)
        if hlen != HEADER_LEN or plen < HEADER_LEN or off + plen > len(data):
            raise ProtocolError("bad frame lengths %d/%d" % (plen, hlen))
        out.append(Frame(ver, op, seq, bytes(data[off + HEADER_LEN:off + plen]), batch))
        off += plen
    return out


class GoimClient:
    def __init__(self, sock, websocket):
        self.sock = sock
        self.websocket = websocket
        self.buf = bytearray()
        self.frames = deque()
        self.eof = False
        self.seq = 0
        self.nbatch = 0
        self.messages = 0  # WebSocket messages received

    # -- connecting ---------------------------------------------------------

    @classmethod
    def tcp(cls, port, host="127.0.0.1", timeout=5.0, rcvbuf=None):
        """rcvbuf: a small receive buffer, set before connecting (a slow
        client's window stays small)."""
        s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        if rcvbuf:
            s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
        s.settimeout(timeout)
        s.connect((host, port))
        return cls(s, False)

    @classmethod
    def ws(cls, port, host="127.0.0.1", path="/sub", timeout=5.0, sock=None,
           headers=None):
        s = sock or socket.create_connection((host, port), timeout=timeout)
        c = cls(s, True)
        try:
            c._upgrade("%s:%d" % (host, port), path, headers or {})
        except Exception:
            c.close()
            raise
        return c

    @classmethod
    def wss(cls, port, host="127.0.0.1", path="/sub", cafile=None, timeout=5.0):
        ctx = ssl.create_default_context(cafile=cafile)
        if cafile is None:
            ctx.check_hostname = False
            ctx.verify_mode = ssl.CERT_NONE
        raw = socket.create_connection((host, port), timeout=timeout)
        s = ctx.wrap_socket(raw, server_hostname=host)
        return cls.ws(port, host, path, timeout, sock=s)

    def _upgrade(self, hostport, path, headers):
        key = base64.b64encode(os.urandom(16))
        req = ("GET %s HTTP/1.1\r\nHost: %s\r\nUpgrade: websocket\r\n"
               "Connection: Upgrade\r\nSec-WebSocket-Key: %s\r\n"
               "Sec-WebSocket-Version: 13\r\n" % (path, hostport, key.decode()))
        for k, v in headers.items():
            req += "%s: %s\r\n" % (k, v)
        self.sock.sendall((req + "\r\n").encode())
        while b"\r\n\r\n" not in self.buf:
            self._fill(5.0)
            if self.eof:
                raise ProtocolError("closed during upgrade: %r" % bytes(self.buf))
        head, rest = bytes(self.buf).split(b"\r\n\r\n", 1)
        self.buf = bytearray(rest)
        lines = head.decode("latin-1").split("\r\n")
        if not lines[0].startswith("HTTP/1.1 101"):
            raise ProtocolError("upgrade refused: %s" % lines[0])
        want = base64.b64encode(hashlib.sha1(key + WS_GUID).digest()).decode()
        hdrs = {l.split(":", 1)[0].strip().lower(): l.split(":", 1)[1].strip()
                for l in lines[1:] if ":" in l}
        if hdrs.get("sec-websocket-accept") != want:
            raise ProtocolError("bad Sec-WebSocket-Accept")

    def close(self):
        try:
            self.sock.close()
        except OSError:
            pass

    # -- sending ------------------------------------------------------------

    def _ws_frame(self, opcode, payload):
        mask = os.urandom(4)
        n = len(payload)
        head = bytes([0x80 | opcode])
        if n < 126:
            head += bytes([0x80 | n])
        elif n < 65536:
            head += bytes([0x80 | 126]) + struct.pack(">H", n)
        else:
            head += bytes([0x80 | 127]) + struct.pack(">Q", n)
        masked = bytes(b ^ mask[i % 4] for i, b in enumerate(payload))
        return head + mask + masked

    def send_raw(self, data):
        self.sock.sendall(data)

    def send(self, op, body=b"", seq=None, ver=1):
        if seq is None:
            self.seq += 1
            seq = self.seq
        data = encode(op, body, seq, ver)
        if self.websocket:
            data = self._ws_frame(0x2, data)
        self.sock.sendall(data)
        return seq

    def ping(self, payload=b"p"):
        self.sock.sendall(self._ws_frame(0x9, payload))

    # -- receiving ----------------------------------------------------------

    def _fill(self, timeout):
        self.sock.settimeout(max(timeout, 0.001))
        try:
            data = self.sock.recv(65536)
        except socket.timeout:
            return
        except (ConnectionResetError, ssl.SSLError, BrokenPipeError):
            data = b""
        if not data:
            self.eof = True
        self.buf += data

    def _parse(self):
        if not self.websocket:
            while len(self.buf) >= HEADER_LEN:
                plen, hlen = struct.unpack_from(">ih", self.buf)
                if hlen != HEADER_LEN or plen < HEADER_LEN:
                    raise ProtocolError("bad header %d/%d" % (plen, hlen))
                if len(self.buf) < plen:
                    return
                self.frames.extend(parse_frames(self.buf[:plen]))
                del self.buf[:plen]
            return
        while len(self.buf) >= 2:
            b0, b1 = self.buf[0], self.buf[1]
            if b1 & 0x80:
                raise ProtocolError("server frame masked")
            if not b0 & 0x80:
                raise ProtocolError("server sent a fragment")
            n, off = b1 & 0x7F, 2
            if n == 126:
                if len(self.buf) < 4:
                    return
                n, off = struct.unpack_from(">H", self.buf, 2)[0], 4
            elif n == 127:
                if len(self.buf) < 10:
                    return
                n, off = struct.unpack_from(">Q", self.buf, 2)[0], 10
            if len(self.buf) < off + n:
                return
            payload = bytes(self.buf[off:off + n])
            del self.buf[:off + n]
            opcode = b0 & 0x0F
            if opcode == 0x8:
                self.eof = True
                self.close_payload = payload
                continue
            if opcode in (0x9, 0xA):
                self.frames.append(Frame(0, -opcode, 0, payload, None))
                continue
            if opcode != 0x2:
                raise ProtocolError("unexpected opcode %d" % opcode)
            self.messages += 1
            outer = parse_frames(payload)
            if len(outer) != 1:
                raise ProtocolError("%d frames in one message" % len(outer))
            f = outer[0]
            if f.op == OP_RAW:
                self.nbatch += 1
                self.frames.extend(parse_frames(f.body, batch=self.nbatch))
            else:
                self.frames.append(f)

    def recv(self, timeout=2.0):
        """The next frame, or None on timeout or close."""
        end = time.monotonic() + timeout
        while True:
            self._parse()
            if self.frames:
                return self.frames.popleft()
            left = end - time.monotonic()
            if self.eof or left <= 0:
                return None
            self._fill(left)

    def expect(self, op, timeout=3.0):
        """The next frame with op; frames of other ops before it are kept."""
        end = time.monotonic() + timeout
        skipped = []
        try:
            while True:
                f = self.recv(max(end - time.monotonic(), 0))
                if f is None:
                    raise AssertionError("no op %d within %.1fs (got %r)"
                                         % (op, timeout, skipped))
                if f.op == op:
                    return f
                skipped.append(f)
        finally:
            for f in reversed(skipped):
                self.frames.appendleft(f)

    def closed(self, timeout=3.0):
        """True once the server closed (frames before the close are kept)."""
        end = time.monotonic() + timeout
        while not self.eof:
            left = end - time.monotonic()
            if left <= 0:
                return False
            self._fill(left)
            self._parse()
        return True

    def disconnect_reason(self, timeout=3.0):
        f = self.expect(OP_DISCONNECT_REPLY, timeout)
        return json.loads(f.body)["reason"]

    # -- goim requests ------------------------------------------------------

    def auth(self, token, timeout=3.0):
        if not isinstance(token, (bytes, str)):
            token = json.dumps(token)
        seq = self.send(OP_AUTH, token)
        f = self.recv(timeout)
        if f is None:
            raise AssertionError("no answer to auth")
        if f.op == OP_DISCONNECT_REPLY:
            raise AuthRefused(json.loads(f.body)["reason"])
        if f.op != OP_AUTH_REPLY or f.seq != seq:
            raise AssertionError("unexpected auth answer %r" % (f,))
        return f

    def heartbeat(self, timeout=3.0):
        seq = self.send(OP_HEARTBEAT)
        f = self.expect(OP_HEARTBEAT_REPLY, timeout)
        if f.seq != seq or len(f.body) != 4:
            raise AssertionError("bad heartbeat reply %r" % (f,))
        return struct.unpack(">I", f.body)[0]

    def request(self, op, reply_op, body=b"", timeout=3.0):
        seq = self.send(op, body)
        f = self.expect(reply_op, timeout)
        if f.seq != seq:
            raise AssertionError("reply seq %d != %d" % (f.seq, seq))
        return f


class AuthRefused(Exception):
    pass
