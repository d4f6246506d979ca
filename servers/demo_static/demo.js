/* pushpull demo: one pane per transport, each a real browser client of the demo server.
 *
 * Every pane measures delivery latency as the load generator does: the arrival time here
 * (performance.timeOrigin + performance.now()) moved onto the server's clock, minus the event's
 * t_pub. The clock offset comes from GET /time by the minimum-round-trip rule (NTP's): of a few
 * samples, the one with the smallest round trip; offset = t_ns - the midpoint of that round trip.
 *
 * Each pane element carries data-transport, data-received, data-p50-ms and data-p99-ms (and
 * data-requests, data-status), updated live, for tests and scripts.
 * Everything a client sent is shown as text (textContent), never as HTML.
 */
"use strict";

const WINDOW_EVENTS = 100; // latency figures over the last this many events
const STRIP_MS = 10_000; // the strip shows the last 10 s
const MAX_LINES = 40; // messages kept in a pane's list
const LONGPOLL_HOLD_S = 20; // as the load generator's long-poll
const RETRY_MIN_MS = 500;
const RETRY_MAX_MS = 8_000;
const CLOCK_SAMPLES = 8;
const CLOCK_EVERY_MS = 30_000; // another batch of /time samples this often (and 2 s after start)
const CLOCK_KEEP_MS = 300_000;
const COLOR = /^#[0-9a-fA-F]{6}$/;

const settings = { shortPollMs: 500 };
const clock = { offsetMs: 0, rttMs: null, takenMs: 0 };

const nowMs = () => performance.timeOrigin + performance.now();
const onServerClock = (localMs) => localMs + clock.offsetMs;
const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));

/* ---------- the clock offset ---------- */

/* A batch of samples; its best replaces the offset in use when its round trip is shorter (a
 * tighter bound), or when the one in use is older than CLOCK_KEEP_MS (clocks drift). */
async function measureClock() {
  let best = null;
  for (let i = 0; i < CLOCK_SAMPLES; i++) {
    const sent = nowMs();
    const response = await fetch("/time", { cache: "no-store" });
    const body = await response.json();
    const received = nowMs();
    const rtt = received - sent;
    if (best === null || rtt < best.rtt) {
      best = { rtt, offset: body.t_ns / 1e6 - (sent + received) / 2 };
    }
  }
  const stale = nowMs() - clock.takenMs > CLOCK_KEEP_MS;
  if (clock.rttMs !== null && best.rtt > clock.rttMs && !stale) return;
  clock.offsetMs = best.offset;
  clock.rttMs = best.rtt;
  clock.takenMs = nowMs();
  document.getElementById("clock").textContent =
    `clock offset ${clock.offsetMs >= 0 ? "+" : ""}${clock.offsetMs.toFixed(2)} ms ` +
    `± ${(clock.rttMs / 2).toFixed(2)} ms (the /time round trip with the least delay)`;
}

/* ---------- figures ---------- */

function percentile(sorted, q) {
  return sorted[Math.max(0, Math.ceil(q * sorted.length) - 1)];
}

function ms(value) {
  if (value === null || value === undefined) return "–";
  if (Math.abs(value) < 10) return value.toFixed(1);
  return Math.round(value).toString();
}

class Backoff {
  constructor() {
    this.ms = RETRY_MIN_MS;
  }
  next() {
    const delay = this.ms * (0.75 + Math.random() * 0.5);
    this.ms = Math.min(this.ms * 2, RETRY_MAX_MS);
    return delay;
  }
  reset() {
    this.ms = RETRY_MIN_MS;
  }
}

/* ---------- a pane ---------- */

class Pane {
  constructor(transport, container) {
    const node = document.getElementById("pane-template").content.firstElementChild.cloneNode(true);
    node.dataset.transport = transport.name;
    if (COLOR.test(transport.color)) node.style.setProperty("--c", transport.color);
    node.querySelector(".label").textContent = transport.label;
    container.appendChild(node);
    this.transport = transport;
    this.node = node;
    this.color = COLOR.test(transport.color) ? transport.color : "#888888";
    this.fields = {};
    for (const name of ["status", "last", "p50", "p99", "received", "requests"]) {
      this.fields[name] = node.querySelector(`.${name}`);
    }
    this.canvas = node.querySelector(".strip");
    this.list = node.querySelector(".messages");
    this.latencies = []; // the last WINDOW_EVENTS, ms
    this.marks = []; // {pub, arrived, chat}: server-clock ms, for the strip
    this.received = 0;
    this.requests = 0;
    this.lastSeq = null;
    this.lastLatency = null;
    this.setStatus("connecting");
  }

  setStatus(state) {
    const text = { connecting: "connecting…", connected: "live", reconnecting: "reconnecting…" };
    this.node.classList.remove("connecting", "connected", "reconnecting", "unsupported");
    this.node.classList.add(state);
    this.node.dataset.status = state;
    this.fields.status.textContent = text[state] || state;
  }

  unsupported() {
    this.setStatus("unsupported");
    this.fields.status.textContent = "no browser client for this transport yet";
  }

  /* The server's word on where this client starts: events after lastSeq are owed to it. A
   * restarted server starts again from a lower seq. */
  welcome(lastSeq) {
    this.lastSeq = lastSeq;
  }

  deliver(event, arrivedLocalMs) {
    if (this.lastSeq !== null && event.seq <= this.lastSeq) return; // seen already
    this.lastSeq = event.seq;
    const arrived = onServerClock(arrivedLocalMs);
    const published = event.t_pub / 1e6;
    const latency = arrived - published;
    this.received += 1;
    this.lastLatency = latency;
    this.latencies.push(latency);
    if (this.latencies.length > WINDOW_EVENTS) this.latencies.shift();
    const chat = event.kind === "chat";
    this.marks.push({ pub: published, arrived, chat });
    this.addLine(event, latency, chat);
  }

  addLine(event, latency, chat) {
    const item = document.createElement("li");
    item.className = chat ? "chat" : "tick";
    const parts = [
      ["seq", `#${event.seq}`],
      ["text", chat ? chatText(event.data) : event.kind],
      ["ms", `${ms(latency)} ms`],
    ];
    for (const [cls, text] of parts) {
      const span = document.createElement("span");
      span.className = cls;
      span.textContent = text; // as text, never as HTML
      item.appendChild(span);
    }
    this.list.prepend(item);
    while (this.list.childElementCount > MAX_LINES) this.list.lastElementChild.remove();
  }

  note(text) {
    const item = document.createElement("li");
    item.className = "note";
    const span = document.createElement("span");
    span.className = "text";
    span.textContent = text;
    item.appendChild(span);
    this.list.prepend(item);
  }

  render(now) {
    const sorted = [...this.latencies].sort((a, b) => a - b);
    const p50 = sorted.length ? percentile(sorted, 0.5) : null;
    const p99 = sorted.length ? percentile(sorted, 0.99) : null;
    this.fields.last.textContent = ms(this.lastLatency);
    this.fields.p50.textContent = ms(p50);
    this.fields.p99.textContent = ms(p99);
    this.fields.received.textContent = this.received;
    this.fields.requests.textContent = this.requests;
    const data = this.node.dataset;
    data.received = this.received;
    data.requests = this.requests;
    data.p50Ms = p50 === null ? "" : p50.toFixed(3);
    data.p99Ms = p99 === null ? "" : p99.toFixed(3);
    this.drawStrip(now);
  }

  /* Publish times (top) against arrivals here (bottom), the last STRIP_MS: a push pane's lines
   * stand upright, a polling pane's lean by how long each event waited. */
  drawStrip(now) {
    const canvas = this.canvas;
    const scale = window.devicePixelRatio || 1;
    const width = Math.round(canvas.clientWidth * scale);
    const height = Math.round(canvas.clientHeight * scale);
    if (!width || !height) return;
    if (canvas.width !== width || canvas.height !== height) {
      canvas.width = width;
      canvas.height = height;
    }
    const ctx = canvas.getContext("2d");
    const left = now - STRIP_MS;
    const x = (t) => ((t - left) / STRIP_MS) * width;
    const top = 15 * scale;
    const bottom = height - 8 * scale;
    this.marks = this.marks.filter((m) => m.arrived >= left);
    ctx.clearRect(0, 0, width, height);
    ctx.font = `${9 * scale}px system-ui, sans-serif`;
    ctx.fillStyle = "#8a939d";
    ctx.fillText("published", 3 * scale, 9 * scale);
    ctx.textAlign = "right";
    ctx.fillText(`arrived (last ${STRIP_MS / 1000} s)`, width - 3 * scale, 9 * scale);
    ctx.textAlign = "left";
    ctx.strokeStyle = "#e3e7eb";
    ctx.lineWidth = scale;
    for (const y of [top, bottom]) {
      ctx.beginPath();
      ctx.moveTo(0, y);
      ctx.lineTo(width, y);
      ctx.stroke();
    }
    for (const mark of this.marks) {
      const reach = mark.chat ? 6 : 4;
      ctx.strokeStyle = this.color;
      ctx.globalAlpha = 0.45;
      ctx.beginPath();
      ctx.moveTo(x(mark.pub), top);
      ctx.lineTo(x(mark.arrived), bottom);
      ctx.stroke();
      ctx.globalAlpha = 1;
      ctx.strokeStyle = "#4a525b";
      ctx.lineWidth = (mark.chat ? 2 : 1) * scale;
      ctx.beginPath();
      ctx.moveTo(x(mark.pub), top - reach * scale);
      ctx.lineTo(x(mark.pub), top + reach * scale);
      ctx.stroke();
      ctx.strokeStyle = this.color;
      ctx.lineWidth = (mark.chat ? 3 : 2) * scale;
      ctx.beginPath();
      ctx.moveTo(x(mark.arrived), bottom - reach * scale);
      ctx.lineTo(x(mark.arrived), bottom + reach * scale);
      ctx.stroke();
      ctx.lineWidth = scale;
    }
  }
}

function chatText(data) {
  if (data && typeof data.text === "string") return data.text;
  return JSON.stringify(data); // another client's chat message (the load generator's, say)
}

/* ---------- the transports' browser clients ---------- */

/* Socket.IO with the official client: over a websocket, or over Engine.IO's long-polling only.
 * socket.io-client reconnects by itself. Requests: one per connection attempt (the handshake or
 * the websocket upgrade), and with polling every held GET and every POST. */
function socketIO(pane, transports) {
  const socket = io({
    transports,
    upgrade: false,
    forceNew: true, // its own connection, never multiplexed with the other Socket.IO pane
    reconnectionDelay: RETRY_MIN_MS,
    reconnectionDelayMax: RETRY_MAX_MS,
  });
  const manager = socket.io;
  pane.requests += 1;
  manager.on("reconnect_attempt", () => {
    pane.requests += 1;
    pane.setStatus("reconnecting");
  });
  manager.on("open", () => {
    const transport = manager.engine.transport;
    if (transport.name === "polling") {
      transport.on("poll", () => (pane.requests += 1));
      transport.on("drain", () => (pane.requests += 1));
    }
  });
  socket.on("connect", () => pane.setStatus("connected"));
  socket.on("disconnect", (reason) => {
    pane.setStatus("reconnecting");
    if (reason === "io server disconnect") socket.connect(); // not retried by itself
  });
  socket.on("welcome", (welcome) => pane.welcome(welcome.last_seq));
  socket.on("response", (event) => pane.deliver(event, nowMs()));
}

/* Plain WebSocket at /ws: one JSON text frame per event; retried with backoff. */
function plainWebSocket(pane) {
  const backoff = new Backoff();
  const url = `${location.protocol === "https:" ? "wss" : "ws"}://${location.host}/ws`;
  const connect = () => {
    pane.requests += 1;
    const ws = new WebSocket(url);
    ws.onopen = () => {
      backoff.reset();
      pane.setStatus("connected");
    };
    ws.onmessage = (message) => {
      const arrived = nowMs();
      const frame = JSON.parse(message.data);
      if (frame.type === "welcome") pane.welcome(frame.last_seq);
      else if (frame.type === "error") pane.note(`server: ${frame.error}`);
      else pane.deliver(frame, arrived);
    };
    ws.onclose = () => {
      pane.setStatus("reconnecting");
      setTimeout(connect, backoff.next());
    };
  };
  connect();
}

/* Server-Sent Events with the browser's EventSource, which reconnects by itself and resumes with
 * Last-Event-ID. A restarted server refuses that resume (400): then a fresh EventSource. */
function serverSentEvents(pane) {
  const backoff = new Backoff();
  const open = () => {
    pane.requests += 1;
    const source = new EventSource("/stream");
    source.addEventListener("welcome", (message) => {
      const welcome = JSON.parse(message.data);
      backoff.reset();
      pane.welcome(welcome.last_seq);
      if (welcome.truncated) pane.note("resumed, but some events were no longer kept");
      pane.setStatus("connected");
    });
    source.onmessage = (message) => {
      const arrived = nowMs();
      pane.deliver(JSON.parse(message.data), arrived);
    };
    source.onerror = () => {
      pane.setStatus("reconnecting");
      if (source.readyState === EventSource.CLOSED) setTimeout(open, backoff.next());
      else pane.requests += 1; // the browser retries by itself, with Last-Event-ID
    };
  };
  open();
}

/* Long-poll (held GET /events?after=&timeout=20) or short-poll (timeout=0 every interval, from
 * the previous poll's start). Network errors are retried with backoff; a 400 means the server
 * restarted under us (our seq is beyond its last): take a new baseline. */
function poll(pane, holdS) {
  const backoff = new Backoff();
  const get = async (url) => {
    pane.requests += 1;
    const response = await fetch(url, { cache: "no-store" });
    const body = await response.text();
    return { status: response.status, arrived: nowMs(), body };
  };
  const loop = async () => {
    let after = null;
    for (;;) {
      const started = nowMs();
      try {
        if (after === null) {
          const answer = await get("/events");
          if (answer.status !== 200) throw new Error(`GET /events: ${answer.status}`);
          after = JSON.parse(answer.body).last_seq;
          pane.welcome(after);
        } else {
          const answer = await get(`/events?after=${after}&timeout=${holdS}`);
          if (answer.status === 400) {
            after = null;
            pane.note("the server restarted: a new baseline");
            continue;
          }
          if (answer.status !== 200) throw new Error(`GET /events: ${answer.status}`);
          const { events } = JSON.parse(answer.body);
          for (const event of events) pane.deliver(event, answer.arrived);
          if (events.length) after = events[events.length - 1].seq;
        }
        backoff.reset();
        pane.setStatus("connected");
      } catch {
        pane.setStatus("reconnecting");
        await sleep(backoff.next());
        continue;
      }
      if (holdS === 0) await sleep(Math.max(0, started + settings.shortPollMs - nowMs()));
    }
  };
  loop();
}

const CLIENTS = {
  socketio: (pane) => socketIO(pane, ["websocket"]),
  websocket: plainWebSocket,
  sse: serverSentEvents,
  longpoll: (pane) => poll(pane, LONGPOLL_HOLD_S),
  shortpoll: (pane) => poll(pane, 0),
  "socketio-polling": (pane) => socketIO(pane, ["polling"]),
};

/* ---------- controls ---------- */

function showControlError(text) {
  document.getElementById("control-error").textContent = text;
}

async function postJSON(url, body) {
  const response = await fetch(url, {
    method: "POST",
    headers: { "Content-Type": "application/json" },
    body: JSON.stringify(body),
  });
  const answer = await response.json().catch(() => ({}));
  if (!response.ok) throw new Error(answer.error || `${url}: ${response.status}`);
  return answer;
}

function wireControls() {
  const form = document.getElementById("chat");
  const input = document.getElementById("chat-text");
  form.addEventListener("submit", async (submit) => {
    submit.preventDefault();
    const text = input.value;
    if (!text) return;
    // t_send on the server's clock, integer ns (the protocol's chat message)
    const tSend = Math.round(onServerClock(nowMs()) * 1e6);
    try {
      await postJSON("/messages", { text, t_send: tSend });
      input.value = "";
      showControlError("");
    } catch (error) {
      showControlError(`not sent: ${error.message}`);
    }
  });

  const rate = document.getElementById("rate");
  rate.addEventListener("change", async () => {
    try {
      const answer = await postJSON("/demo/rate", { rate: Number(rate.value) });
      rate.value = answer.rate;
      showControlError("");
    } catch (error) {
      showControlError(error.message);
    }
  });

  const interval = document.getElementById("poll-interval");
  interval.addEventListener("change", () => {
    const seconds = Number(interval.value);
    if (!(seconds >= 0.05 && seconds <= 10)) {
      showControlError("the short-poll interval must be from 0.05 to 10 s");
      return;
    }
    settings.shortPollMs = seconds * 1000;
    showControlError("");
  });
}

/* ---------- start ---------- */

async function main() {
  wireControls();
  const config = await (await fetch("/demo/config", { cache: "no-store" })).json();
  document.getElementById("rate").value = config.rate;
  settings.shortPollMs = Number(document.getElementById("poll-interval").value) * 1000;
  await measureClock();
  const remeasure = () => measureClock().catch(() => {}); // a server away: keep the offset in use
  setTimeout(remeasure, 2_000); // the page has settled: likely a shorter round trip
  setInterval(remeasure, CLOCK_EVERY_MS);
  const container = document.getElementById("panes");
  const panes = config.transports.map((transport) => new Pane(transport, container));
  for (const pane of panes) {
    const client = CLIENTS[pane.transport.name];
    if (client) client(pane);
    else pane.unsupported();
  }
  setInterval(() => {
    const now = onServerClock(nowMs());
    for (const pane of panes) pane.render(now);
  }, 100);
}

main().catch((error) => showControlError(`the demo could not start: ${error.message}`));
