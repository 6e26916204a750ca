// imgate.js: the goim v2 client protocol over WebSocket, for browsers and
// Node (20+ with --experimental-websocket, or any WHATWG-style WebSocket
// passed in options). No dependencies.
//
// Wire format: a 16-byte big-endian header {packLen i32, headerLen i16 = 16,
// ver i16, op i32, seq i32} followed by the body. One frame per WebSocket
// binary message; op 9 carries a batch: the outer header, then inner frames.

export const OP = Object.freeze({
  HEARTBEAT: 2,
  HEARTBEAT_REPLY: 3,
  SEND_MSG: 4,
  SEND_MSG_REPLY: 5,
  DISCONNECT_REPLY: 6,
  AUTH: 7,
  AUTH_REPLY: 8,
  RAW: 9,
  CHANGE_ROOM: 12,
  CHANGE_ROOM_REPLY: 13,
  SUB: 14,
  SUB_REPLY: 15,
  UNSUB: 16,
  UNSUB_REPLY: 17,
});

export const HEADER_LEN = 16;

const encoder = new TextEncoder();
const decoder = new TextDecoder();

function toBytes(body) {
  if (body === undefined || body === null) return new Uint8Array(0);
  if (typeof body === 'string') return encoder.encode(body);
  if (body instanceof Uint8Array) return body;
  if (body instanceof ArrayBuffer) return new Uint8Array(body);
  if (ArrayBuffer.isView(body))
    return new Uint8Array(body.buffer, body.byteOffset, body.byteLength);
  return encoder.encode(JSON.stringify(body));
}

// Encode one frame; returns a Uint8Array.
export function encodeFrame(op, seq, body, ver = 1) {
  const b = toBytes(body);
  const out = new Uint8Array(HEADER_LEN + b.length);
  const v = new DataView(out.buffer);
  v.setInt32(0, out.length);
  v.setInt16(4, HEADER_LEN);
  v.setInt16(6, ver);
  v.setInt32(8, op);
  v.setInt32(12, seq);
  out.set(b, HEADER_LEN);
  return out;
}

// Decode every frame in buf (an ArrayBuffer or Uint8Array), expanding op-9
// batches into their inner frames. Throws on a malformed frame: lengths are
// checked before use, never trusted.
export function decodeFrames(buf) {
  const bytes = buf instanceof Uint8Array ? buf : new Uint8Array(buf);
  const frames = [];
  walk(bytes, frames, 0);
  return frames;
}

function walk(bytes, frames, depth) {
  const v = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  let off = 0;
  while (off < bytes.length) {
    if (bytes.length - off < HEADER_LEN) throw new Error('truncated header');
    const packLen = v.getInt32(off);
    const headerLen = v.getInt16(off + 4);
    if (headerLen !== HEADER_LEN) throw new Error('bad header length');
    if (packLen < HEADER_LEN || packLen > bytes.length - off)
      throw new Error('bad packet length');
    const frame = {
      ver: v.getInt16(off + 6),
      op: v.getInt32(off + 8),
      seq: v.getInt32(off + 12),
      body: bytes.subarray(off + HEADER_LEN, off + packLen),
    };
    if (frame.op === OP.RAW && depth === 0) walk(frame.body, frames, 1);
    else frames.push(frame);
    off += packLen;
  }
}

export function bodyText(frame) {
  return decoder.decode(frame.body);
}

// Exponential backoff with jitter: the delay before reconnect number
// attempt (0-based) is min(max, base * factor^attempt), then moved by up
// to +-jitter of itself so that clients dropped together do not come back
// together. Parameters in ms as {baseDelay, maxDelay, factor, jitter}, or
// in seconds as /goim/nodes/weighted returns them ({base_delay, max_delay,
// factor, jitter}).
export function backoffDelay(attempt, b = {}) {
  const base = b.baseDelay ?? (b.base_delay ?? 1) * 1000;
  const max = b.maxDelay ?? (b.max_delay ?? 30) * 1000;
  const factor = b.factor ?? 1.6;
  const jitter = b.jitter ?? 0.2;
  let d = Math.min(max, base * Math.pow(factor, attempt));
  d += d * jitter * (Math.random() * 2 - 1);
  return Math.max(0, Math.round(d));
}

// ImgateClient options from the data of a /goim/nodes/weighted answer:
// the heartbeat interval the server wants (seconds) and its reconnect
// backoff. Fields missing or malformed keep the client's defaults.
export function nodesOptions(data) {
  const out = {};
  if (!data || typeof data !== 'object') return out;
  const num = (v) => typeof v === 'number' && Number.isFinite(v) && v >= 0;
  if (num(data.heartbeat) && data.heartbeat > 0)
    out.heartbeatMs = data.heartbeat * 1000;
  const b = data.backoff;
  if (b && typeof b === 'object') {
    out.backoff = {};
    if (num(b.base_delay)) out.backoff.baseDelay = b.base_delay * 1000;
    if (num(b.max_delay)) out.backoff.maxDelay = b.max_delay * 1000;
    if (num(b.factor) && b.factor >= 1) out.backoff.factor = b.factor;
    if (num(b.jitter) && b.jitter <= 1) out.backoff.jitter = b.jitter;
  }
  return out;
}

function event(type, detail) {
  if (typeof CustomEvent === 'function') return new CustomEvent(type, { detail });
  return Object.assign(new Event(type), { detail });
}

// A reconnecting client. Events (all CustomEvent, payload in .detail):
//   open       the WebSocket opened (auth is being sent)
//   auth       the server accepted the token
//   message    {op, ver, seq, body (Uint8Array), text}
//   online     {count}: the room's online count from a heartbeat reply
//   roomchange {room}: the server confirmed a room change
//   close      {code, reason, willReconnect}: reason is the server's op-6
//              reason when it sent one
//   reconnect  {attempt, delay}
export class ImgateClient extends EventTarget {
  constructor(url, options = {}) {
    super();
    this.url = url;
    this.token = options.token ?? {};
    this.heartbeatMs = options.heartbeatMs ?? 30000;
    this.backoff = options.backoff ?? {};
    this.reconnect = options.reconnect ?? true;
    this.WebSocket = options.WebSocket ?? globalThis.WebSocket;
    if (!this.WebSocket) throw new Error('no WebSocket implementation');
    this.seq = 1;
    this.attempt = 0;
    this.ws = null;
    this.timer = null;
    this.retryTimer = null;
    this.closed = false;
    this.authed = false;
    this.serverReason = null;
  }

  connect() {
    this.closed = false;
    if (!this.ws && !this.retryTimer) this._open();
    return this;
  }

  // Close for good (no reconnect). The close event fires at once; the
  // socket's own close, whenever it comes, is ignored.
  close() {
    const ws = this.ws;
    this.closed = true;
    clearTimeout(this.retryTimer);
    this.retryTimer = null;
    this._stopHeartbeat();
    this.ws = null;
    this.authed = false;
    if (!ws) return;
    ws.close(1000, 'bye');
    this.dispatchEvent(
      event('close', { code: 1000, reason: 'closed by the client', willReconnect: false }),
    );
  }

  send(op, body) {
    if (!this.ws || this.ws.readyState !== 1) return false;
    this.ws.send(encodeFrame(op, this.seq++, body));
    return true;
  }

  changeRoom(room) {
    this.token = { ...this.token, room_id: room };
    return this.send(OP.CHANGE_ROOM, room);
  }

  sub(ops) {
    return this.send(OP.SUB, ops.join(','));
  }

  unsub(ops) {
    return this.send(OP.UNSUB, ops.join(','));
  }

  heartbeat() {
    return this.send(OP.HEARTBEAT, null);
  }

  _open() {
    const ws = new this.WebSocket(this.url);
    ws.binaryType = 'arraybuffer';
    this.ws = ws;
    this.authed = false;
    this.serverReason = null;
    // A socket given up on (close() then connect()) may still report
    // late: only the current one drives the client.
    const mine = (fn) => (e) => {
      if (this.ws === ws) fn(e);
    };
    ws.onopen = mine(() => {
      this.dispatchEvent(event('open', {}));
      const token =
        typeof this.token === 'string' ? this.token : JSON.stringify(this.token);
      ws.send(encodeFrame(OP.AUTH, this.seq++, token));
    });
    ws.onmessage = mine((e) => this._onData(e.data));
    ws.onclose = mine((e) => this._onClose(e.code, e.reason));
    ws.onerror = () => {};
  }

  _onData(data) {
    if (typeof data === 'string') return;
    let frames;
    try {
      frames = decodeFrames(data);
    } catch (err) {
      this.serverReason = 'bad frame: ' + err.message;
      this.ws.close(1002, 'bad frame');
      return;
    }
    for (const f of frames) this._onFrame(f);
  }

  _onFrame(f) {
    switch (f.op) {
      case OP.AUTH_REPLY:
        this.authed = true;
        this.attempt = 0;
        this._startHeartbeat();
        this.dispatchEvent(event('auth', {}));
        break;
      case OP.HEARTBEAT_REPLY:
        if (f.body.length >= 4) {
          const v = new DataView(f.body.buffer, f.body.byteOffset, 4);
          this.dispatchEvent(event('online', { count: v.getInt32(0) }));
        }
        break;
      case OP.CHANGE_ROOM_REPLY:
        this.dispatchEvent(event('roomchange', { room: this.token.room_id }));
        break;
      case OP.SUB_REPLY:
      case OP.UNSUB_REPLY:
        break;
      case OP.DISCONNECT_REPLY: {
        let reason = bodyText(f);
        try {
          reason = JSON.parse(reason).reason ?? reason;
        } catch (_) {
          /* not JSON: keep the text */
        }
        this.serverReason = reason;
        break;
      }
      default:
        this.dispatchEvent(
          event('message', {
            op: f.op,
            ver: f.ver,
            seq: f.seq,
            body: f.body,
            text: bodyText(f),
          }),
        );
    }
  }

  _startHeartbeat() {
    this._stopHeartbeat();
    this.heartbeat();
    this.timer = setInterval(() => this.heartbeat(), this.heartbeatMs);
  }

  _stopHeartbeat() {
    if (this.timer) clearInterval(this.timer);
    this.timer = null;
  }

  _onClose(code, reason) {
    this._stopHeartbeat();
    this.ws = null;
    const willReconnect = this.reconnect && !this.closed;
    this.dispatchEvent(
      event('close', {
        code,
        reason: this.serverReason ?? reason,
        willReconnect,
      }),
    );
    if (!willReconnect) return;
    const delay = backoffDelay(this.attempt, this.backoff);
    this.attempt++;
    this.dispatchEvent(event('reconnect', { attempt: this.attempt, delay }));
    this.retryTimer = setTimeout(() => {
      this.retryTimer = null;
      if (!this.closed) this._open();
    }, delay);
  }
}
