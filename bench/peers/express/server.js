// The tutorial approach a user would write instead of spout: Express spawns the
// process, keeps every event in an in-memory array, and res.write()s SSE to each
// client, formatting per client, with a setInterval heartbeat per connection and a
// Last-Event-ID that indexes the array. Kept small and honest: no tricks a tutorial
// would not have. Same HTTP shape as spout (POST /jobs, GET /jobs/:id/events) so the
// bench client needs no special case.
//
// Env: GEN_BIN (the one command, "gen"), PORT (0 = any), HEARTBEAT_MS.
'use strict';
const express = require('express');
const { spawn } = require('child_process');
const crypto = require('crypto');

const COMMANDS = { gen: process.env.GEN_BIN };
const HEARTBEAT_MS = Number(process.env.HEARTBEAT_MS || 15000);
const jobs = new Map();
const children = new Set();
const app = express();

function sendEvent(res, ev) {
  res.write(`id: ${ev.id}\nevent: ${ev.type}\ndata: ${JSON.stringify(ev.data)}\n\n`);
}

function push(job, type, data) {
  const ev = { id: job.events.length + 1, type, data };
  job.events.push(ev);
  for (const res of job.clients) {
    sendEvent(res, ev);
    if (type === 'exit') res.end();
  }
}

app.post('/jobs', express.json(), (req, res) => {
  const bin = COMMANDS[req.body.command];
  if (!bin) return res.status(404).json({ error: 'no such command' });
  const id = crypto.randomBytes(12).toString('base64url');
  const job = { id, events: [], clients: new Set(), exit: null };
  jobs.set(id, job);
  const child = spawn(bin, req.body.args || [], { stdio: ['ignore', 'pipe', 'pipe'] });
  children.add(child);
  push(job, 'start', { command: req.body.command, pid: child.pid });
  child.stdout.on('data', (d) => push(job, 'stdout', { text: d.toString() }));
  child.stderr.on('data', (d) => push(job, 'stderr', { text: d.toString() }));
  child.on('close', (code, signal) => {
    children.delete(child);
    job.exit = { code, signal };
    push(job, 'exit', job.exit);
  });
  res.status(201).json({ id });
});

app.get('/jobs/:id', (req, res) => {
  const job = jobs.get(req.params.id);
  if (!job) return res.status(404).json({ error: 'no such job' });
  res.json({ id: job.id, exit: job.exit, last_event_id: job.events.length });
});

app.get('/jobs/:id/events', (req, res) => {
  const job = jobs.get(req.params.id);
  if (!job) return res.status(404).json({ error: 'no such job' });
  res.writeHead(200, {
    'Content-Type': 'text/event-stream',
    'Cache-Control': 'no-cache',
    Connection: 'keep-alive',
  });
  res.write('retry: 2000\n\n');
  const last = Number(req.get('Last-Event-ID') || 0);
  for (const ev of job.events.slice(last)) sendEvent(res, ev);
  if (job.exit) return res.end();
  job.clients.add(res);
  const hb = setInterval(() => res.write(':\n\n'), HEARTBEAT_MS);
  req.on('close', () => {
    clearInterval(hb);
    job.clients.delete(res);
  });
});

const server = app.listen(Number(process.env.PORT || 0), '127.0.0.1', () => {
  console.error(`listening on http://127.0.0.1:${server.address().port}`);
});
server.maxConnections = 100000;
process.on('SIGTERM', () => {
  for (const c of children) c.kill('SIGKILL');
  process.exit(0);
});
