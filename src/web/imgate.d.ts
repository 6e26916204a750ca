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

export interface Backoff {
  baseDelay?: number;
  maxDelay?: number;
  factor?: number;
  jitter?: number;
  base_delay?: number;
  max_delay?: number;
}

export declare function backoffDelay(attempt: number, backoff?: Backoff): number;

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
}
