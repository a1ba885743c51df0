// The Socket.IO side of the websocket benchmark (tests/bench/bench_ws.py): the stack this project
// replaces served the connect page's live updates with Socket.IO on Node, so the benchmark fans the
// same frames out to the same viewers through a minimal Socket.IO server too.
//
//   node tests/bench/_socketio_server.js PORT     (socket.io resolved through NODE_PATH)
//
// A viewer connects with ?salon=N (websocket transport only, as ours), joins the room of company N
// and is sent one "hello" event (the snapshot's stand-in). POST /_bench/round?companies=C&period=P
// publishes one QR-like frame to each company 1..C, company i at i·P/C seconds into the round,
// stamped sent_at (seconds since the epoch), and answers when the round is over with the CPU time the
// round took. Prints "listening" on stdout once it accepts connections.
"use strict";

const http = require("http");
const { Server } = require("socket.io");

const QR_PAYLOAD = "2@" + "Q".repeat(60) + "," + "K".repeat(44) + "," + "I".repeat(44) + "," + "A".repeat(24);
const port = Number(process.argv[2]);
let seq = 0;

function sleep(ms) {
  return new Promise((resolve) => setTimeout(resolve, ms));
}

async function round(io, companies, period) {
  seq += 1;
  const started = process.cpuUsage();
  const start = Date.now();
  for (let index = 0; index < companies; index += 1) {
    const due = start + (index * period * 1000) / companies;
    const wait = due - Date.now();
    if (wait > 0) {
      await sleep(wait);
    }
    // The same keys, in the same order, as the Python servers' frame.
    const frame = { type: "qr", qr: QR_PAYLOAD, expires_in: 20, seq, sent_at: Date.now() / 1000 };
    io.to(`company:${index + 1}`).emit("frame", frame);
  }
  await sleep(200); // the last frames' sends, as the Python servers
  const used = process.cpuUsage(started);
  return { seq, cpu_ms: Math.round((used.user + used.system) / 1000) };
}

const server = http.createServer((request, response) => {
  const url = new URL(request.url, "http://localhost");
  if (request.method !== "POST" || url.pathname !== "/_bench/round") {
    response.writeHead(404).end();
    return;
  }
  const companies = Number(url.searchParams.get("companies") || "1");
  const period = Number(url.searchParams.get("period") || "0");
  round(io, companies, period).then((report) => {
    response.writeHead(200, { "content-type": "application/json" }).end(JSON.stringify(report));
  });
});

// Engine.IO's defaults otherwise (ping every 25 s, no per-message compression), as a deployment would.
const io = new Server(server, { transports: ["websocket"], serveClient: false });
io.on("connection", (socket) => {
  const salon = Number(socket.handshake.query.salon || "1");
  socket.join(`company:${salon}`);
  socket.emit("hello", { type: "state", state: "idle" });
});

server.listen({ port, host: "127.0.0.1", backlog: 4096 }, () => {
  process.stdout.write("listening\n");
});
