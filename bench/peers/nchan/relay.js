// The relay a user of nchan writes: run the process, POST each chunk of its output to
// the channel's publisher location as {"text": ...}, then an `exit` message. Chunks
// are published one at a time, in order (the stream is paused while a POST is in
// flight), over a keep-alive connection. At the end it prints its own CPU seconds so
// the bench can count them as part of the server's cost.
//
// Usage: node relay.js PUBLISH_URL CMD ARGS...
'use strict';
const http = require('http');
const { spawn } = require('child_process');

const [url, cmd, ...args] = process.argv.slice(2);
const agent = new http.Agent({ keepAlive: true, maxSockets: 1 });

function publish(body, event) {
  return new Promise((resolve, reject) => {
    const headers = { 'Content-Type': 'application/json' };
    if (event) headers['X-EventSource-Event'] = event;
    const req = http.request(url, { method: 'POST', agent, headers }, (res) => {
      res.resume();
      res.on('end', () => (res.statusCode < 300 ? resolve() : reject(new Error(`publish: ${res.statusCode}`))));
    });
    req.on('error', reject);
    req.end(body);
  });
}

async function main() {
  const child = spawn(cmd, args, { stdio: ['ignore', 'pipe', 'inherit'] });
  const closed = new Promise((resolve) => child.on('close', (code, signal) => resolve({ code, signal })));
  for await (const chunk of child.stdout) {
    await publish(JSON.stringify({ text: chunk.toString() }));
  }
  const exit = await closed;
  await publish(JSON.stringify(exit), 'exit');
  const cpu = process.cpuUsage();
  console.log(`cpu_s ${(cpu.user + cpu.system) / 1e6}`);
  agent.destroy();
}

main().catch((e) => {
  console.error(`relay: ${e.message}`);
  process.exit(1);
});
