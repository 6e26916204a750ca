// Unit tests of src/web/imgate.js with Node's test runner and a fake
// WebSocket: framing, op-9 batches, malformed input, the client's state
// machine (auth, heartbeat, op 6 reason, reconnect with backoff).
import { test } from 'node:test';
import assert from 'node:assert/strict';
import {
  OP,
  encodeFrame,
  decodeFrames,
  bodyText,
  backoffDelay,
  nodesOptions,
  ImgateClient,
} from '../../src/web/imgate.js';

test('encodeFrame writes the goim v2 header', () => {
  const f = encodeFrame(OP.AUTH, 5, 'hi');
  const v = new DataView(f.buffer);
  assert.equal(f.length, 18);
  assert.equal(v.getInt32(0), 18);
  assert.equal(v.getInt16(4), 16);
  assert.equal(v.getInt16(6), 1);
  assert.equal(v.getInt32(8), 7);
  assert.equal(v.getInt32(12), 5);
  assert.equal(new TextDecoder().decode(f.subarray(16)), 'hi');
});

test('decodeFrames round-trips and expands op-9 batches', () => {
  const a = encodeFrame(1000, 0, 'one');
  const b = encodeFrame(1001, 0, 'two');
  const inner = new Uint8Array(a.length + b.length);
  inner.set(a);
  inner.set(b, a.length);
  const batch = encodeFrame(OP.RAW, 0, inner);
  const frames = decodeFrames(batch.buffer);
  assert.equal(frames.length, 2);
  assert.equal(frames[0].op, 1000);
  assert.equal(bodyText(frames[0]), 'one');
  assert.equal(frames[1].op, 1001);
  assert.equal(bodyText(frames[1]), 'two');
  // TCP-style plain concatenation decodes too.
  assert.equal(decodeFrames(inner).length, 2);
});

test('decodeFrames rejects bad lengths', () => {
  const f = encodeFrame(3, 0, 'abcd');
  const v = new DataView(f.buffer);
  assert.throws(() => decodeFrames(f.subarray(0, 10)), /truncated/);
  v.setInt16(4, 15);
  assert.throws(() => decodeFrames(f), /header length/);
  v.setInt16(4, 16);
  v.setInt32(0, 1000);
  assert.throws(() => decodeFrames(f), /packet length/);
  v.setInt32(0, 8);
  assert.throws(() => decodeFrames(f), /packet length/);
  v.setInt32(0, -1);
  assert.throws(() => decodeFrames(f), /packet length/);
});

test('backoffDelay grows, caps and jitters', () => {
  const b = { baseDelay: 100, maxDelay: 1000, factor: 2, jitter: 0 };
  assert.equal(backoffDelay(0, b), 100);
  assert.equal(backoffDelay(1, b), 200);
  assert.equal(backoffDelay(10, b), 1000);
  for (let i = 0; i < 50; i++) {
    const d = backoffDelay(2, { ...b, jitter: 0.5 });
    assert.ok(d >= 200 && d <= 600, `delay ${d}`);
  }
});

test('backoffDelay takes goim\'s seconds from /goim/nodes/weighted', () => {
  const b = { base_delay: 3, max_delay: 300, factor: 1.8, jitter: 0 };
  assert.equal(backoffDelay(0, b), 3000);
  assert.equal(backoffDelay(1, b), 5400);
  assert.equal(backoffDelay(20, b), 300000);
});

test('nodesOptions converts a NodesReply and ignores junk', () => {
  assert.deepEqual(
    nodesOptions({
      heartbeat: 30,
      heartbeat_max: 3,
      backoff: { max_delay: 300, base_delay: 3, factor: 1.8, jitter: 0.3 },
    }),
    {
      heartbeatMs: 30000,
      backoff: { baseDelay: 3000, maxDelay: 300000, factor: 1.8, jitter: 0.3 },
    },
  );
  assert.deepEqual(nodesOptions(null), {});
  assert.deepEqual(nodesOptions('x'), {});
  assert.deepEqual(
    nodesOptions({
      heartbeat: 0,
      backoff: { base_delay: -1, max_delay: '9', factor: 0.5, jitter: 2 },
    }),
    { backoff: {} },
  );
  assert.deepEqual(nodesOptions({ heartbeat: Infinity }), {});
});

class FakeSocket {
  static last = null;
  constructor(url) {
    this.url = url;
    this.sent = [];
    this.readyState = 0;
    FakeSocket.last = this;
    FakeSocket.count = (FakeSocket.count ?? 0) + 1;
    queueMicrotask(() => {
      this.readyState = 1;
      this.onopen?.();
    });
  }
  send(data) {
    this.sent.push(decodeFrames(data)[0]);
  }
  close(code, reason) {
    this.readyState = 3;
    queueMicrotask(() => this.onclose?.({ code, reason }));
  }
  serverSends(...frames) {
    const total = frames.reduce((n, f) => n + f.length, 0);
    const buf = new Uint8Array(total);
    let off = 0;
    for (const f of frames) {
      buf.set(f, off);
      off += f.length;
    }
    this.onmessage({ data: buf.buffer });
  }
}

const tick = () => new Promise((r) => setTimeout(r, 5));

test('client authenticates, heartbeats, reports online count and messages', async () => {
  const c = new ImgateClient('ws://x/sub', {
    WebSocket: FakeSocket,
    token: { mid: 1, room_id: 'live://1' },
    heartbeatMs: 60000,
    reconnect: false,
  });
  const seen = [];
  for (const t of ['open', 'auth', 'online', 'message', 'close'])
    c.addEventListener(t, (e) => seen.push([t, e.detail]));
  c.connect();
  await tick();
  const ws = FakeSocket.last;
  assert.equal(ws.sent[0].op, OP.AUTH);
  assert.deepEqual(JSON.parse(bodyText(ws.sent[0])), { mid: 1, room_id: 'live://1' });
  const count = new Uint8Array(4);
  new DataView(count.buffer).setInt32(0, 42);
  ws.serverSends(encodeFrame(OP.AUTH_REPLY, 1, null));
  assert.equal(ws.sent[1].op, OP.HEARTBEAT); // first beat right after auth
  ws.serverSends(encodeFrame(OP.HEARTBEAT_REPLY, 2, count));
  ws.serverSends(encodeFrame(OP.RAW, 0, encodeFrame(1000, 0, 'hello')));
  ws.serverSends(encodeFrame(OP.DISCONNECT_REPLY, 0, '{"reason":"slow"}'));
  ws.close(1000, '');
  await tick();
  assert.deepEqual(
    seen.map((s) => s[0]),
    ['open', 'auth', 'online', 'message', 'close'],
  );
  assert.equal(seen[2][1].count, 42);
  assert.equal(seen[3][1].text, 'hello');
  assert.equal(seen[3][1].op, 1000);
  assert.equal(seen[4][1].reason, 'slow');
  assert.equal(seen[4][1].willReconnect, false);
  c.close();
});

test('client sends room change and op lists', async () => {
  const c = new ImgateClient('ws://x/sub', { WebSocket: FakeSocket, reconnect: false });
  c.connect();
  await tick();
  const ws = FakeSocket.last;
  c.changeRoom('live://2');
  c.sub([1000, 1001]);
  c.unsub([1001]);
  assert.deepEqual(
    ws.sent.slice(1).map((f) => [f.op, bodyText(f)]),
    [
      [OP.CHANGE_ROOM, 'live://2'],
      [OP.SUB, '1000,1001'],
      [OP.UNSUB, '1001'],
    ],
  );
  c.close();
});

test('client reconnects with backoff after the server closes', async () => {
  FakeSocket.count = 0;
  const c = new ImgateClient('ws://x/sub', {
    WebSocket: FakeSocket,
    backoff: { baseDelay: 10, maxDelay: 20, factor: 2, jitter: 0 },
  });
  const delays = [];
  c.addEventListener('reconnect', (e) => delays.push(e.detail.delay));
  c.connect();
  await tick();
  FakeSocket.last.close(1006, 'gone');
  await new Promise((r) => setTimeout(r, 40));
  assert.equal(FakeSocket.count, 2);
  assert.deepEqual(delays, [10]);
  c.close();
  await tick();
  assert.equal(FakeSocket.count, 2);
});

test('a malformed server frame closes the socket with a reason', async () => {
  const c = new ImgateClient('ws://x/sub', { WebSocket: FakeSocket, reconnect: false });
  let reason = null;
  c.addEventListener('close', (e) => (reason = e.detail.reason));
  c.connect();
  await tick();
  const bad = encodeFrame(1000, 0, 'x');
  new DataView(bad.buffer).setInt32(0, 99);
  FakeSocket.last.serverSends(bad);
  await tick();
  assert.match(reason, /bad frame/);
});

test('close() then connect() ignores the old socket\'s late events', async () => {
  FakeSocket.count = 0;
  const c = new ImgateClient('ws://x/sub', { WebSocket: FakeSocket, heartbeatMs: 60000 });
  const closes = [];
  c.addEventListener('close', (e) => closes.push(e.detail));
  c.connect();
  await tick();
  const old = FakeSocket.last;
  const oldClose = old.onclose;
  old.onclose = null; // its close event is delivered below, late
  c.close();
  c.connect();
  await tick();
  assert.equal(FakeSocket.count, 2);
  const cur = FakeSocket.last;
  cur.serverSends(encodeFrame(OP.AUTH_REPLY, 1, null));
  assert.equal(closes.length, 1, 'close() reports at once');
  oldClose({ code: 1000, reason: 'bye' });
  assert.equal(closes.length, 1, 'the late close is ignored');
  assert.ok(c.authed);
  assert.ok(c.heartbeat(), 'the new socket still sends');
  // connect() while connected does not open a second socket.
  c.connect();
  await tick();
  assert.equal(FakeSocket.count, 2);
  c.close();
  await tick();
  assert.equal(closes.length, 2);
  assert.deepEqual(closes[1], {
    code: 1000,
    reason: 'closed by the client',
    willReconnect: false,
  });
});
