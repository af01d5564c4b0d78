/**
 * Port helpers. A stack that restarts a service on the same port must not have taken that port
 * from the ephemeral range: an outgoing connection anywhere on the machine can hold it by then
 * (CI once failed eight fault tests on "the port is in use").
 */
import * as fs from 'fs';
import * as net from 'net';
import * as os from 'os';
import * as path from 'path';

import { ephemeralPortRange, findFreePort, findReusablePort } from '../../../local/net';

async function canListen(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const server = net.createServer();
    server.once('error', () => resolve(false));
    server.listen(port, '127.0.0.1', () => server.close(() => resolve(true)));
  });
}

describe('ephemeralPortRange', () => {
  it('given the kernel file, when read, then both bounds come back as numbers', () => {
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'ports-'));
    const file = path.join(dir, 'range');
    fs.writeFileSync(file, '32768\t60999\n');
    expect(ephemeralPortRange(file)).toEqual({ low: 32768, high: 60999 });
    fs.writeFileSync(file, 'garbage\n');
    expect(ephemeralPortRange(file)).toBeUndefined();
    expect(ephemeralPortRange(path.join(dir, 'missing'))).toBeUndefined();
    fs.rmSync(dir, { recursive: true, force: true });
  });
});

describe('findReusablePort', () => {
  it('given the ephemeral range, when ports are picked, then each is below it and free to listen on', async () => {
    const range = { low: 32768, high: 60999 };
    for (let i = 0; i < 20; i++) {
      const port = await findReusablePort('127.0.0.1', range);
      expect(port).toBeGreaterThanOrEqual(20000);
      expect(port).toBeLessThan(range.low);
      expect(await canListen(port)).toBe(true);
    }
  });

  it('given the range of this machine, when a port is picked, then no outgoing connection can be given it', async () => {
    const range = ephemeralPortRange();
    // Only Linux publishes the range; elsewhere the helper is findFreePort, tested by the stacks.
    if (!range) return expect(await findReusablePort()).toBeGreaterThan(0);
    const port = await findReusablePort();
    expect(port < range.low || port > range.high).toBe(true);
    // What the old picker gave: a port in the range that any connection may take next.
    const ephemeral = await findFreePort();
    expect(ephemeral).toBeGreaterThanOrEqual(range.low);
    expect(ephemeral).toBeLessThanOrEqual(range.high);
  });

  it('given a range that leaves no room below it, when a port is picked, then it falls back to a free ephemeral one', async () => {
    const port = await findReusablePort('127.0.0.1', { low: 20500, high: 60999 });
    expect(port).toBeGreaterThan(0);
    expect(await canListen(port)).toBe(true);
  });
});
