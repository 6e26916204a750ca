// The imgate demo page: join a room over WebSocket with ImgateClient, show
// the room's online count and its messages live, post messages to the
// room through imgate-logic's push API (same origin as this page).
import { ImgateClient, nodesOptions } from './imgate.js';

const OP_ROOM_MESSAGE = 1000; // the operation this demo pushes and accepts
const ROOM_TYPE = 'live'; // room ids are "live://<room>", as goim builds them
const MAX_SHOWN = 200; // messages kept on the page

const $ = (id) => document.getElementById(id);
const ui = {
  join: $('join'),
  name: $('name'),
  room: $('room'),
  connect: $('connect'),
  status: $('status'),
  online: $('online'),
  messages: $('messages'),
  say: $('say'),
  text: $('text'),
  send: $('send'),
  error: $('error'),
  endpoint: $('endpoint'),
};

// A member id for this tab: goim tokens carry a numeric mid.
const mid = 1 + Math.floor(Math.random() * 2 ** 31);
let client = null;
let room = null;
let connects = 0;

function setStatus(state, text) {
  ui.status.dataset.state = state;
  ui.status.textContent = text;
  const live = state === 'connected';
  ui.text.disabled = !live;
  ui.send.disabled = !live;
}

function showError(text) {
  ui.error.textContent = text ?? '';
}

function addLine(cls, who, text) {
  const li = document.createElement('li');
  li.className = cls;
  if (who !== null) {
    const w = document.createElement('span');
    w.className = 'who';
    w.textContent = who;
    li.append(w);
  }
  li.append(document.createTextNode(text));
  const t = document.createElement('time');
  t.textContent = new Date().toLocaleTimeString();
  li.append(t);
  ui.messages.append(li);
  while (ui.messages.children.length > MAX_SHOWN) ui.messages.firstChild.remove();
  ui.messages.scrollTop = ui.messages.scrollHeight;
}

// Pushes are whatever a business server posted: JSON from this page,
// anything else shown as text.
function onMessage(e) {
  const { op, text } = e.detail;
  if (op !== OP_ROOM_MESSAGE) return;
  let m = null;
  try {
    m = JSON.parse(text);
  } catch (_) {
    /* not ours: plain text */
  }
  if (m && typeof m === 'object' && typeof m.text === 'string')
    addLine(m.mid === mid ? 'msg mine' : 'msg', String(m.name ?? '?') + ':', m.text);
  else addLine('msg', null, text);
}

async function getJSON(path) {
  try {
    const r = await fetch(path, { cache: 'no-store' });
    return r.ok ? await r.json() : null;
  } catch (_) {
    return null;
  }
}

// The comet's WebSocket address: [demo] ws_url when logic has one, else
// this page's host on the WebSocket port logic advertises.
function wsUrl(config, nodes) {
  if (config && typeof config.ws_url === 'string' && config.ws_url !== '')
    return config.ws_url;
  const secure = location.protocol === 'https:';
  const port = (secure ? nodes?.wss_port : nodes?.ws_port) || (secure ? 3103 : 3102);
  return `${secure ? 'wss' : 'ws'}://${location.hostname}:${port}/sub`;
}

function token(r) {
  return {
    mid,
    key: '',
    room_id: `${ROOM_TYPE}://${r}`,
    platform: 'web',
    accepts: [OP_ROOM_MESSAGE],
  };
}

async function start(r) {
  setStatus('connecting', 'connecting…');
  const [config, nodes] = await Promise.all([
    getJSON('config.json'),
    getJSON('/goim/nodes/weighted?platform=web'),
  ]);
  const url = wsUrl(config, nodes?.data);
  ui.endpoint.textContent = `comet ${url} · mid ${mid}`;
  client = new ImgateClient(url, { token: token(r), ...nodesOptions(nodes?.data) });
  client.addEventListener('auth', () => {
    connects++;
    ui.status.dataset.connects = String(connects);
    setStatus('connected', `connected to room ${room}`);
    showError('');
    addLine('system', null, connects === 1 ? `joined room ${room}` : `reconnected to room ${room}`);
  });
  client.addEventListener('online', (e) => {
    ui.online.textContent = String(e.detail.count);
  });
  client.addEventListener('roomchange', () => {
    setStatus('connected', `connected to room ${room}`);
    addLine('system', null, `moved to room ${room}`);
  });
  client.addEventListener('message', onMessage);
  client.addEventListener('close', (e) => {
    ui.online.textContent = '–';
    const why = e.detail.reason ? ` (${e.detail.reason})` : '';
    if (e.detail.willReconnect) setStatus('reconnecting', `disconnected${why}`);
    else setStatus('closed', `closed${why}`);
    // Repeated failures while the server is away show in the status only.
    if (ui.status.dataset.lastConnect !== String(connects)) {
      ui.status.dataset.lastConnect = String(connects);
      addLine('system', null, `disconnected${why}`);
    }
  });
  client.addEventListener('reconnect', (e) => {
    const s = (e.detail.delay / 1000).toFixed(1);
    setStatus('reconnecting', `${ui.status.textContent}, retrying in ${s}s (attempt ${e.detail.attempt})`);
  });
  client.connect();
}

ui.join.addEventListener('submit', (ev) => {
  ev.preventDefault();
  const r = ui.room.value.trim();
  if (!ui.join.reportValidity() || r === '') return;
  if (client && r === room) return;
  room = r;
  ui.online.textContent = '–';
  ui.connect.textContent = 'Change room';
  if (!client) start(r);
  else if (!client.changeRoom(`${ROOM_TYPE}://${r}`)) {
    // Not connected right now: the next connect uses the new room.
    client.token = token(r);
  }
});

ui.say.addEventListener('submit', async (ev) => {
  ev.preventDefault();
  const text = ui.text.value.trim();
  if (text === '' || room === null) return;
  const q = new URLSearchParams({ operation: String(OP_ROOM_MESSAGE), type: ROOM_TYPE, room });
  const body = JSON.stringify({ name: ui.name.value.trim() || 'anonymous', text, mid });
  ui.send.disabled = true;
  try {
    const r = await fetch(`/goim/push/room?${q}`, { method: 'POST', body });
    const res = await r.json().catch(() => null);
    if (!r.ok || !res || res.code !== 0)
      showError(`push failed: ${res?.message || r.status}`);
    else {
      ui.text.value = '';
      showError('');
    }
  } catch (err) {
    showError(`push failed: ${err.message}`);
  } finally {
    ui.send.disabled = ui.status.dataset.state !== 'connected';
    ui.text.focus();
  }
});

// ?name=&room= prefill the form, so a room can be shared as a link.
const params = new URLSearchParams(location.search);
ui.name.value = params.get('name') ?? `guest-${mid % 10000}`;
if (params.get('room')) ui.room.value = params.get('room');
setStatus('idle', 'not connected');
window.imgateDemo = { get client() { return client; }, mid };
