#!/usr/bin/env node
// A Node.js socket.io 4.x server speaking docs/protocol.md for the `socketio` transport, kept in
// the repository as a server pushpull did not write, to be measured with
// `pushpull bench --target URL --transports socketio` (tests/test_target_js.py). It is what a
// team with a Node.js stack would run, written the ordinary way: times are JavaScript numbers
// (IEEE doubles), so nanosecond times near 1.8e18 come out rounded to a few hundred ns
// (docs/protocol.md, "Numbers beyond 2^53"), exactly as any such server's would.
//
//   node tests/targets/socketio_server.js --port 0 --rate 10
//   -> {"listening": "http://127.0.0.1:PORT", "pid": N}   (one line on stdout, when ready)
//
// Speaks: the welcome (and resume through the connect's auth {after: SEQ}), every event as
// `response`, `message` -> a chat event with the ack {seq}, ticks on an absolute schedule,
// GET /healthz, /stats, /time and /published. Binds 127.0.0.1 only. Not done: --message-queue,
// --admin, --payload-bytes, --retain-bytes (the Python servers' options beyond the protocol).
"use strict";

const fs = require("node:fs");
const http = require("node:http");
const { Server } = require("socket.io");

const HOST = "127.0.0.1";
const MAX_BODY_BYTES = 64 * 1024;
const SLOW_CLIENT_BYTES = 8 * 2 ** 20;
const RETAINED_EVENTS = 100000;
const MAX_RATE = 10000;
// 2^63 - 1 is not a double: as a JavaScript number it is 2^63, so that is the bound here.
const MAX_T_SEND = 2 ** 63;

function fail(message) {
  process.stderr.write(`socketio_server.js: error: ${message}\n`);
  process.exit(2);
}

function parseArgs(argv) {
  const args = { port: 5000, rate: 2, clockOffsetMs: 0 };
  const names = { "--port": "port", "--rate": "rate", "--clock-offset-ms": "clockOffsetMs" };
  for (let i = 0; i < argv.length; i += 2) {
    const name = names[argv[i]];
    if (name === undefined) fail(`unknown argument ${JSON.stringify(argv[i])}`);
    const raw = argv[i + 1];
    const value = Number(raw);
    if (raw === undefined || raw.trim() === "" || !Number.isFinite(value)) {
      fail(`${argv[i]} needs a number, got ${JSON.stringify(raw)}`);
    }
    args[name] = value;
  }
  if (!Number.isInteger(args.port) || args.port < 0 || args.port > 65535) {
    fail(`--port must be an integer from 0 to 65535, got ${args.port}`);
  }
  if (args.rate < 0 || args.rate > MAX_RATE) {
    fail(`--rate must be from 0 to ${MAX_RATE}, got ${args.rate}`);
  }
  return args;
}

const args = parseArgs(process.argv.slice(2));

// --- the clock: integer ns since the epoch, as a double --------------------------------------
// Date.now() has millisecond steps; process.hrtime.bigint() is monotonic with ns steps. The
// anchor is taken at a millisecond edge of Date.now() (so it is right to about a microsecond),
// and re-taken if the wall clock moves more than a millisecond away from it (NTP stepping it).
const offsetNs = BigInt(Math.round(args.clockOffsetMs * 1e6));
function takeAnchor() {
  const first = Date.now();
  let ms = Date.now();
  while (ms === first) ms = Date.now();
  return BigInt(ms) * 1000000n - process.hrtime.bigint();
}
let anchor = takeAnchor();
setInterval(() => {
  const drift = Number(anchor + process.hrtime.bigint()) / 1e6 - Date.now();
  if (Math.abs(drift) > 1) anchor = takeAnchor();
}, 10000).unref();
// A JavaScript number, as a JS server has it: Number() rounds to the nearest double (256 ns
// apart near 1.8e18), and JSON.stringify writes the shortest decimal that reads back as it.
const nowNs = () => Number(anchor + process.hrtime.bigint() + offsetNs);
// What a client reads from such a number's JSON text, exactly (a BigInt): the published log
// compares these with /published's since and until, so it counts what clients were sent.
const asSent = (ns) => BigInt(JSON.stringify(ns));

// --- the event log ----------------------------------------------------------------------------
let lastSeq = 0;
let retained = []; // the newest events, oldest first (objects, as sent)
const logSeq = []; // /published: seq, t_pub and t_sched (ticks; -1n for chat), never trimmed
const logPub = [];
const logSched = [];
const counters = {
  requests: 0,
  eventsSent: 0,
  clients: 0,
  droppedSlowClients: 0,
  bytesRead: 0,
  bytesWritten: 0,
};
let io = null;

function publish(kind, data, tSched) {
  lastSeq += 1;
  const tPub = nowNs();
  // field order as docs/protocol.md writes it: the load generator reads the head of the text
  const event = { seq: lastSeq, t_pub: tPub, t_sched: tSched ?? tPub, kind, data };
  retained.push(event);
  if (retained.length > 2 * RETAINED_EVENTS) retained = retained.slice(-RETAINED_EVENTS);
  logSeq.push(lastSeq);
  logPub.push(asSent(tPub));
  logSched.push(kind === "tick" ? asSent(tSched) : -1n);
  counters.eventsSent += io.of("/").sockets.size;
  io.emit("response", event); // encoded once, sent to every client
  return event;
}

function since(after) {
  // retained events with seq > after, and whether some of them are gone
  const kept = retained.length > RETAINED_EVENTS ? retained.slice(-RETAINED_EVENTS) : retained;
  const oldest = kept.length ? kept[0].seq : lastSeq + 1;
  const events = kept.filter((event) => event.seq > after);
  return { events, truncated: after + 1 < oldest && after < lastSeq };
}

function firstAtLeast(values, x) {
  let lo = 0;
  let hi = values.length;
  while (lo < hi) {
    const mid = (lo + hi) >> 1;
    if (values[mid] < x) lo = mid + 1;
    else hi = mid;
  }
  return lo;
}

function publishedBetween(sinceNs, untilNs) {
  const lo = firstAtLeast(logPub, sinceNs);
  const hi = firstAtLeast(logPub, untilNs + 1n);
  const lags = [];
  for (let i = lo; i < hi; i++) {
    if (logSched[i] >= 0n) {
      const lag = logPub[i] - logSched[i]; // floor division, as the Python servers do
      lags.push(Number(lag >= 0n ? lag / 1000n : -((-lag + 999n) / 1000n)));
    }
  }
  return {
    first_seq: hi > lo ? logSeq[lo] : null,
    last_seq: hi > lo ? logSeq[hi - 1] : null,
    count: Math.max(0, hi - lo),
    publisher_lag_us: lags,
  };
}

function startPublisher(rate) {
  // t0 + k/rate: a late tick does not shift the ones after it (it shows as publisher lag).
  // Node's timers count whole milliseconds, so ticks go out about 1 ms late (/published says
  // so); a tick's latency runs from its t_pub, so that is not in the latencies.
  if (!(rate > 0)) return;
  const periodNs = Math.trunc(1e9 / rate);
  const t0 = nowNs() + periodNs;
  let k = 0;
  const next = () => {
    const tSched = t0 + k * periodNs;
    const leftMs = (tSched - nowNs()) / 1e6;
    if (leftMs > 0) {
      // timers may fire a little early (their start is the loop's cached time): look again
      setTimeout(next, Math.ceil(leftMs));
      return;
    }
    publish("tick", {}, tSched);
    k += 1;
    setImmediate(next); // behind schedule, still yield to requests between ticks
  };
  next();
}

// --- chat messages --------------------------------------------------------------------------
function kindOf(value) {
  if (value === null) return "null";
  if (Array.isArray(value)) return "list";
  return typeof value;
}

function chatProblem(message) {
  // why `message` cannot be published (null when it can), in the Python servers' words
  if (kindOf(message) !== "object") {
    return `a chat message must be a JSON object, not ${kindOf(message)}`;
  }
  const stack = [message]; // binary attachments arrive as Buffers: refused
  while (stack.length) {
    const value = stack.pop();
    if (value instanceof ArrayBuffer || ArrayBuffer.isView(value)) {
      return "the message holds a value JSON cannot carry (binary data)";
    }
    if (value !== null && typeof value === "object") stack.push(...Object.values(value));
  }
  const tSend = message.t_send;
  if (
    tSend !== undefined &&
    tSend !== null &&
    !(Number.isInteger(tSend) && tSend >= 0 && tSend <= MAX_T_SEND)
  ) {
    return "t_send must be an integer number of ns since the epoch (0 to 2**63-1)";
  }
  let text;
  try {
    text = JSON.stringify(message);
  } catch {
    return "the message is nested too deeply";
  }
  if (Buffer.byteLength(text) > MAX_BODY_BYTES) {
    return `the message is over ${MAX_BODY_BYTES} bytes`;
  }
  return null;
}

function resumeError(auth) {
  // why a connect's auth is not a valid resume point (null when it is, or asks for none)
  if (auth === undefined || auth === null) return null;
  if (kindOf(auth) !== "object") return 'auth must be a JSON object, e.g. {"after": SEQ}';
  const after = auth.after;
  if (after === undefined || after === null) return null;
  if (!Number.isInteger(after)) {
    let shown = JSON.stringify(after) ?? typeof after;
    if (shown.length > 40) shown = `${shown.slice(0, 37)}...`;
    return `auth.after must be an integer, got ${shown}`;
  }
  if (after < 0) return `auth.after must be >= 0, got ${after}`;
  if (after > lastSeq) return `auth.after ${after} is beyond the server's last seq ${lastSeq}`;
  return null;
}

// --- HTTP -----------------------------------------------------------------------------------
function sendJson(res, status, body, headers = {}) {
  const data = JSON.stringify(body);
  res.writeHead(status, {
    "Content-Type": "application/json",
    "Content-Length": Buffer.byteLength(data),
    ...headers,
  });
  res.end(data);
}

function intArg(params, name, fallback) {
  // a non-negative integer query argument, as a BigInt (exact: ns do not fit a double)
  const raw = params.get(name);
  if (raw === null) return fallback;
  if (!/^[+-]?\d+$/.test(raw.trim())) {
    throw new RangeError(`${name} must be an integer, got '${raw}'`);
  }
  const value = BigInt(raw.trim());
  if (value < 0n) throw new RangeError(`${name} must be >= 0, got ${value}`);
  return value;
}

function rlimitNofile() {
  try {
    const limits = fs.readFileSync("/proc/self/limits", "utf8").split("\n");
    const soft = limits.find((line) => line.startsWith("Max open files")).split(/\s+/)[3];
    return soft === "unlimited" ? null : Number(soft);
  } catch {
    return null;
  }
}

const liveSockets = new Set();
function socketBytes() {
  let read = counters.bytesRead;
  let written = counters.bytesWritten;
  for (const sock of liveSockets) {
    read += sock.bytesRead;
    written += sock.bytesWritten;
  }
  return { read, written };
}

const startedNs = nowNs();
const SOCKETIO_VERSION = require("socket.io/package.json").version;
const IMPLEMENTATION = `node ${process.version}, socket.io ${SOCKETIO_VERSION}`;
const routes = {
  "/healthz": () => ({ status: "ok", server: "push", pid: process.pid, last_seq: lastSeq }),
  "/stats": () => {
    const cpu = process.cpuUsage();
    const bytes = socketBytes();
    return {
      server: "push",
      implementation: IMPLEMENTATION,
      pid: process.pid,
      uptime_s: (nowNs() - startedNs) / 1e9,
      published: lastSeq,
      last_seq: lastSeq,
      clients: counters.clients,
      requests: counters.requests,
      events_sent: counters.eventsSent,
      cpu_user_s: cpu.user / 1e6,
      cpu_system_s: cpu.system / 1e6,
      rss_bytes: process.memoryUsage.rss(),
      bytes_read: bytes.read,
      bytes_written: bytes.written,
      dropped_slow_clients: counters.droppedSlowClients,
      rlimit_nofile: rlimitNofile(),
      queue: null,
    };
  },
  "/time": () => ({ t_ns: nowNs() }),
  "/published": (params) =>
    publishedBetween(intArg(params, "since", 0n), intArg(params, "until", 2n ** 63n - 1n)),
};

function handle(req, res) {
  // every request that is not socket.io's (engine.io takes /socket.io/ before this)
  const url = new URL(req.url, "http://localhost");
  const route = routes[url.pathname];
  if (route === undefined) return sendJson(res, 404, { error: `no such path: ${url.pathname}` });
  if (req.method !== "GET" && req.method !== "HEAD") {
    return sendJson(res, 405, { error: `${url.pathname} answers GET only` }, { Allow: "GET" });
  }
  try {
    return sendJson(res, 200, route(url.searchParams));
  } catch (exc) {
    if (exc instanceof RangeError) return sendJson(res, 400, { error: exc.message });
    throw exc;
  }
}

const httpServer = http.createServer({ noDelay: true }, handle);
httpServer.on("connection", (sock) => {
  sock.setNoDelay(true);
  liveSockets.add(sock);
  sock.on("close", () => {
    liveSockets.delete(sock);
    counters.bytesRead += sock.bytesRead;
    counters.bytesWritten += sock.bytesWritten;
  });
});

function originAllowed(req) {
  // no Origin (the load generator, any non-browser) or same-origin pages only
  const origin = req.headers.origin;
  if (origin === undefined) return true;
  try {
    return new URL(origin).host === req.headers.host;
  } catch {
    return false;
  }
}

io = new Server(httpServer, {
  serveClient: false,
  allowRequest: (req, callback) => {
    const allowed = originAllowed(req);
    callback(allowed ? null : "another site's page: origin not allowed", allowed);
  },
});
// counted after engine.io's attach (which wraps the handlers it finds): every HTTP request and
// websocket upgrade, engine.io's included
httpServer.prependListener("request", () => {
  counters.requests += 1;
});
httpServer.prependListener("upgrade", () => {
  counters.requests += 1;
});

io.use((socket, next) => {
  // a bad resume point is refused with CONNECT_ERROR {message} before the client is joined
  const reason = resumeError(socket.handshake.auth);
  if (reason === null) return next();
  return next(new Error(reason));
});

const replaying = new Map(); // socket id -> events replayed, not held against the slow bound

io.on("connection", (socket) => {
  // The socket is in the namespace (so in every broadcast from here on) before this runs, and
  // nothing yields until the welcome and the replay are queued: live events follow them.
  counters.clients += 1;
  const head = lastSeq;
  const after = socket.handshake.auth?.after;
  if (after === undefined || after === null) {
    socket.emit("welcome", { last_seq: head, head, pid: process.pid });
  } else {
    const { events, truncated } = since(after);
    const welcome = { last_seq: after, head, pid: process.pid };
    if (truncated) welcome.truncated = true;
    socket.emit("welcome", welcome);
    for (const event of events) socket.emit("response", event);
    counters.eventsSent += events.length;
    if (events.length) replaying.set(socket.id, events.length);
  }
  socket.on("disconnect", () => {
    counters.clients -= 1;
    replaying.delete(socket.id);
  });
  socket.on("message", (...received) => {
    const ack = typeof received.at(-1) === "function" ? received.pop() : () => {};
    if (received.length > 1) {
      return ack({ error: `\`message\` takes one argument, got ${received.length}` });
    }
    const message = received[0];
    const problem = chatProblem(message);
    if (problem !== null) return ack({ error: problem });
    // a chat event's t_sched is its sender's t_send (a double here, like every JS number)
    return ack({ seq: publish("chat", message, message.t_send ?? null).seq });
  });
});

setInterval(() => {
  // twice a second: a client with more than SLOW_CLIENT_BYTES unsent (it stopped reading) is
  // dropped and counted; a resumed client's replay is counted on top of the bound
  const newest = retained.length ? JSON.stringify(retained[retained.length - 1]).length : 100;
  for (const socket of io.of("/").sockets.values()) {
    const conn = socket.conn;
    let unsent = conn.transport?.socket?.bufferedAmount ?? 0;
    for (const packet of conn.writeBuffer) {
      if (typeof packet.data === "string") unsent += packet.data.length;
    }
    const allowance = (replaying.get(socket.id) ?? 0) * newest;
    if (unsent <= SLOW_CLIENT_BYTES) replaying.delete(socket.id);
    else if (unsent > SLOW_CLIENT_BYTES + allowance) {
      counters.droppedSlowClients += 1;
      conn.close();
    }
  }
}, 500).unref();

for (const signal of ["SIGTERM", "SIGINT", "SIGHUP"]) {
  process.on(signal, () => {
    io.close();
    httpServer.closeAllConnections?.();
    process.exit(0);
  });
}

httpServer.on("error", (exc) => {
  const reason = exc.code === "EADDRINUSE" ? "address already in use" : exc.message;
  fail(`--port ${args.port}: ${reason}`);
});
httpServer.listen(args.port, HOST, () => {
  startPublisher(args.rate);
  const { port } = httpServer.address();
  const announce = { listening: `http://${HOST}:${port}`, pid: process.pid };
  process.stdout.write(`${JSON.stringify(announce)}\n`);
});
