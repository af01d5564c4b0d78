/**
 * A --require preload that takes the network away from a Node process and every worker thread
 * it starts (preloads run in workers too): TCP and TLS connections, DNS lookups, http(s)
 * requests and fetch all throw, and each attempt is appended, with its thread, to the file
 * NETWORK_ATTEMPTS_FILE. Each thread it arms says so in the same file, so that a test can tell
 * an engine that never tried the network from one whose threads were never watched.
 */
/* eslint-disable @typescript-eslint/no-require-imports */
/* global require, process */
'use strict';
const fs = require('node:fs');
const { threadId } = require('node:worker_threads');

const file = process.env.NETWORK_ATTEMPTS_FILE;
if (!file) throw new Error('denyNetwork: NETWORK_ATTEMPTS_FILE is not set');
const note = (line) => fs.appendFileSync(file, `${JSON.stringify({ thread: threadId, ...line })}\n`);

function deny(what) {
  return function denied() {
    note({ attempt: what });
    throw new Error(`network access blocked by the test: ${what}`);
  };
}

const net = require('node:net');
net.Socket.prototype.connect = deny('net.Socket.connect');
net.connect = deny('net.connect');
net.createConnection = deny('net.createConnection');
const tls = require('node:tls');
tls.connect = deny('tls.connect');
const dns = require('node:dns');
for (const name of ['lookup', 'lookupService', 'resolve', 'resolve4', 'resolve6', 'resolveAny']) dns[name] = deny(`dns.${name}`);
for (const name of ['lookup', 'lookupService', 'resolve', 'resolve4', 'resolve6', 'resolveAny']) dns.promises[name] = deny(`dns.promises.${name}`);
for (const mod of ['http', 'https']) {
  const m = require(`node:${mod}`);
  m.request = deny(`${mod}.request`);
  m.get = deny(`${mod}.get`);
}
globalThis.fetch = deny('fetch');
note({ armed: true });
