// Type declarations for imgate.js.

export declare const OP: Readonly<{
  HEARTBEAT: 2;
  HEARTBEAT_REPLY: 3;
  SEND_MSG: 4;
  SEND_MSG_REPLY: 5;
  DISCONNECT_REPLY: 6;
  AUTH: 7;
  AUTH_REPLY: 8;
  RAW: 9;
  CHANGE_ROOM: 12;
  CHANGE_ROOM_REPLY: 13;
  SUB: 14;
  SUB_REPLY: 15;
  UNSUB: 16;
  UNSUB_REPLY: 17;
}>;

export declare const HEADER_LEN: 16;

export interface Frame {
  ver: number;
  op: number;
  seq: number;
  body: Uint8Array;
}

export type Body = string | Uint8Array | ArrayBuffer | ArrayBufferView | object | null | undefined;

export declare function encodeFrame(op: number, seq: number, body?: Body, ver?: number): Uint8Array;
export declare function decodeFrames(buf: ArrayBuffer | Uint8Array): Frame[];
export declare function bodyText(frame: Frame): string;

/**
 * Reconnect backoff. camelCase fields are milliseconds; snake_case fields
 * are seconds, as /goim/nodes/weighted returns them.
 */
export interface Backoff {
  baseDelay?: number;
  maxDelay?: number;
  factor?: number;
  jitter?: number;
  base_delay?: number;
  max_delay?: number;
}

export declare function backoffDelay(attempt: number, backoff?: Backoff): number;

/** The data of a /goim/nodes/weighted answer (goim's NodesReply). */
export interface NodesReply {
  domain?: string;
  tcp_port?: number;
  ws_port?: number;
  wss_port?: number;
  heartbeat?: number;
  heartbeat_max?: number;
  nodes?: string[];
  backoff?: { max_delay?: number; base_delay?: number; factor?: number; jitter?: number };
}

/** Client options (heartbeatMs, backoff in ms) from a NodesReply. */
export declare function nodesOptions(data: NodesReply): Pick<ClientOptions, 'heartbeatMs' | 'backoff'>;

export interface Token {
  mid?: number;
  key?: string;
  room_id?: string;
  platform?: string;
  accepts?: number[];
  [extra: string]: unknown;
}

export interface ClientOptions {
  token?: Token | string;
  heartbeatMs?: number;
  backoff?: Backoff;
  reconnect?: boolean;
  WebSocket?: typeof WebSocket;
}

export interface MessageDetail extends Frame {
  text: string;
}

export interface OnlineDetail {
  count: number;
}

export interface ReconnectDetail {
  attempt: number;
  delay: number;
}

export interface RoomChangeDetail {
  room: string;
}

export interface ImgateEventMap {
  open: CustomEvent<Record<string, never>>;
  auth: CustomEvent<Record<string, never>>;
  message: CustomEvent<MessageDetail>;
  online: CustomEvent<OnlineDetail>;
  roomchange: CustomEvent<RoomChangeDetail>;
  close: CustomEvent<CloseDetail>;
  reconnect: CustomEvent<ReconnectDetail>;
}

export interface CloseDetail {
  code: number;
  reason: string;
  willReconnect: boolean;
}

export declare class ImgateClient extends EventTarget {
  constructor(url: string, options?: ClientOptions);
  url: string;
  authed: boolean;
  connect(): this;
  close(): void;
  send(op: number, body?: Body): boolean;
  changeRoom(room: string): boolean;
  sub(ops: number[]): boolean;
  unsub(ops: number[]): boolean;
  heartbeat(): boolean;
  addEventListener<K extends keyof ImgateEventMap>(
    type: K,
    listener: (ev: ImgateEventMap[K]) => void,
    options?: boolean | AddEventListenerOptions,
  ): void;
  addEventListener(
    type: string,
    listener: EventListenerOrEventListenerObject | null,
    options?: boolean | AddEventListenerOptions,
  ): void;
}
