#!/usr/bin/python3
"""A minimal stand-in for a goim comet, a WebSocket hub and a push API, so
t/bench/test_cli.sh can check imgate-bench's figures against known input.

On one port, the first bytes of a connection choose what it is:
  - a goim client over TCP: op 7 is answered with op 8 (or op 6 when the
    token's mid is >= 1000000), op 2 with op 3 carrying 4242; after the
    auth reply, PUSHES pushes (op 1000, timestamped bodies) follow as plain
    concatenated frames;
  - "GET /sub": the same over WebSocket, the pushes in one binary message
    (outer op-9 header + inner frames);
  - "GET /plain/...": a WebSocket hub: a ping, then PUSHES timestamped text
    messages;
  - "POST ...": HTTP/1.1 keep-alive, answered 200, or 400 when a
    /goim/push/ request lacks what goim's API needs.
Prints its port on stdout once listening.
"""
import asyncio
import base64
import hashlib
import json
import os
import struct
import sys
import time

PUSHES = int(os.environ.get("PUSHES", "5"))
GUID = b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11"


def frame(op, seq, body, ver=1):
    return struct.pack(">ihhii", 16 + len(body), 16, ver, op, seq) + body


def stamped():
    return ("%d push" % int(time.time() * 1e6)).encode()


def ws_frame(opcode, payload):
    n = len(payload)
    if n < 126:
        head = struct.pack(">BB", 0x80 | opcode, n)
    elif n < 65536:
        head = struct.pack(">BBH", 0x80 | opcode, 126, n)
    else:
        head = struct.pack(">BBQ", 0x80 | opcode, 127, n)
    return head + payload


async def read_ws(reader):
    """One client frame: (opcode, unmasked payload)."""
    b0, b1 = await reader.readexactly(2)
    n = b1 & 0x7F
    if n == 126:
        (n,) = struct.unpack(">H", await reader.readexactly(2))
    elif n == 127:
        (n,) = struct.unpack(">Q", await reader.readexactly(8))
    if not b1 & 0x80:
        raise ValueError("unmasked client frame")
    mask = await reader.readexactly(4)
    data = bytearray(await reader.readexactly(n))
    for i in range(n):
        data[i] ^= mask[i % 4]
    return b0 & 0x0F, bytes(data)


async def read_goim(reader):
    head = await reader.readexactly(16)
    plen, hlen, ver, op, seq = struct.unpack(">ihhii", head)
    if hlen != 16 or plen < 16:
        raise ValueError("bad frame")
    return ver, op, seq, await reader.readexactly(plen - 16)


def answer(ver, op, seq, body):
    """The frames that answer one client frame, and whether pushes follow."""
    if op == 7:
        token = json.loads(body)
        if token.get("mid", 0) >= 1000000:
            return [frame(6, seq, b'{"reason":"denied"}', ver)], False
        return [frame(8, seq, b"", ver)], True
    if op == 2:
        return [frame(3, seq, struct.pack(">I", 4242), ver)], False
    return [], False


async def serve_goim_tcp(reader, writer, first):
    buf = first
    while True:
        while len(buf) < 16:
            more = await reader.read(4096)
            if not more:
                return
            buf += more
        plen = struct.unpack(">i", buf[:4])[0]
        while len(buf) < plen:
            more = await reader.read(4096)
            if not more:
                return
            buf += more
        _, _, ver, op, seq = struct.unpack(">ihhii", buf[:16])
        body, buf = buf[16:plen], buf[plen:]
        out, push = answer(ver, op, seq, body)
        for f in out:
            writer.write(f)
        if push:
            writer.write(b"".join(frame(1000, 0, stamped())
                                  for _ in range(PUSHES)))
        await writer.drain()


async def upgrade(reader, writer, first):
    head = first
    while b"\r\n\r\n" not in head:
        more = await reader.read(4096)
        if not more:
            return None
        head += more
    text = head.decode("latin-1")
    path = text.split(" ", 2)[1]
    key = ""
    for line in text.split("\r\n"):
        if line.lower().startswith("sec-websocket-key:"):
            key = line.split(":", 1)[1].strip()
    accept = base64.b64encode(hashlib.sha1(key.encode() + GUID).digest())
    writer.write(b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n"
                 b"Connection: Upgrade\r\nSec-WebSocket-Accept: " + accept +
                 b"\r\n\r\n")
    await writer.drain()
    return path


async def serve_ws(reader, writer, first):
    path = await upgrade(reader, writer, first)
    if path is None:
        return
    if path.startswith("/plain/"):
        writer.write(ws_frame(9, b"hi"))
        for _ in range(PUSHES):
            writer.write(ws_frame(1, stamped()))
        await writer.drain()
        while True:
            opcode, _ = await read_ws(reader)
            if opcode == 8:
                return
    while True:
        opcode, data = await read_ws(reader)
        if opcode == 8:
            return
        if opcode != 2:
            continue
        ver, op, seq, body = struct.unpack(">ihhii", data[:16])[2:] + (
            data[16:],)
        out, push = answer(ver, op, seq, body)
        for f in out:
            writer.write(ws_frame(2, f))
        if push:
            inner = b"".join(frame(1000, 0, stamped())
                             for _ in range(PUSHES))
            writer.write(ws_frame(2, frame(9, 0, inner)[:16] + inner))
        await writer.drain()


def push_path_ok(target):
    """goim's push API: an operation, and the targets its route names."""
    path, _, query = target.partition(b"?")
    args = [a.split(b"=", 1) for a in query.split(b"&") if b"=" in a]
    names = [a[0] for a in args]
    if not path.startswith(b"/goim/push/"):
        return True  # any other POST endpoint, as nchan's /pub/...
    if b"operation" not in names:
        return False
    route = path[len(b"/goim/push/"):]
    if route in (b"keys", b"mids"):
        return names.count(route) >= 1 and set(names) <= {b"operation", route}
    if route == b"room":
        return b"room" in names and b"type" in names
    return route == b"all"


async def serve_http(reader, writer, first):
    buf = first
    while True:
        while b"\r\n\r\n" not in buf:
            more = await reader.read(65536)
            if not more:
                return
            buf += more
        head, buf = buf.split(b"\r\n\r\n", 1)
        length = 0
        for line in head.split(b"\r\n"):
            if line.lower().startswith(b"content-length:"):
                length = int(line.split(b":", 1)[1])
        while len(buf) < length:
            more = await reader.read(65536)
            if not more:
                return
            buf += more
        buf = buf[length:]
        status = b"200 OK" if push_path_ok(head.split(b" ")[1]) else \
            b"400 Bad Request"
        body = b'{"code":0,"message":"","data":null}'
        writer.write(b"HTTP/1.1 " + status + b"\r\n"
                     b"Content-Type: application/json\r\n"
                     b"Content-Length: %d\r\n\r\n" % len(body) + body)
        await writer.drain()


async def handle(reader, writer):
    try:
        first = await reader.read(4096)
        if first.startswith(b"GET "):
            await serve_ws(reader, writer, first)
        elif first.startswith(b"POST "):
            await serve_http(reader, writer, first)
        elif first:
            await serve_goim_tcp(reader, writer, first)
    except (asyncio.IncompleteReadError, ConnectionError, ValueError):
        pass
    finally:
        writer.close()


async def main():
    server = await asyncio.start_server(handle, "127.0.0.1", 0, backlog=1024)
    print(server.sockets[0].getsockname()[1], flush=True)
    async with server:
        await server.serve_forever()


if __name__ == "__main__":
    try:
        asyncio.run(main())
    except KeyboardInterrupt:
        sys.exit(0)
