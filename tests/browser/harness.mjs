// What the browser suites share: starting `postgate dev`, Chromium's flags, and test files.

import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { existsSync } from 'node:fs';
import { mkdtemp, readdir, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { deflateSync } from 'node:zlib';

import { chromium } from 'playwright-core';

export const root = fileURLToPath(new URL('../../', import.meta.url));
export const gateway = 'http://127.0.0.1:8080';
export const MiB = 1024 * 1024;

// Without these the browser reaches for the network at startup and stalls where there is none.
export const CHROMIUM_ARGS = [
  '--headless',
  '--no-sandbox',
  '--disable-gpu',
  '--disable-quic',
  '--no-first-run',
  '--disable-background-networking',
  '--disable-component-update',
  '--disable-sync',
];

/**
 * One suite's world: a built `postgate` (`GATEWAY_BIN`) running `dev` (with `args`) on a fresh
 * data directory, and headless Chromium. `stop()` ends both and removes the directory.
 */
export async function startSuite(prefix, { args = [] } = {}) {
  const bin = path.resolve(root, process.env.GATEWAY_BIN ?? 'target/debug/postgate');
  assert.ok(existsSync(bin), `${bin} does not exist: build it with \`cargo build\` or set GATEWAY_BIN`);
  assert.equal(await ready(), false, `${gateway} already answers: stop the server on port 8080 first`);
  const data = await mkdtemp(path.join(tmpdir(), prefix));
  const dev = await startDev(bin, data, args);
  const browser = await chromium.launch({ executablePath: '/usr/bin/chromium', args: CHROMIUM_ARGS });
  return {
    data,
    browser,
    async stop() {
      await browser.close();
      await dev.stop();
      await rm(data, { recursive: true, force: true });
    },
  };
}

export async function startDev(bin, dataDir, args = []) {
  const child = spawn(bin, ['dev', '--data', dataDir, ...args], { cwd: root, stdio: ['ignore', 'pipe', 'pipe'] });
  let output = '';
  child.stdout.on('data', (chunk) => (output += chunk));
  child.stderr.on('data', (chunk) => (output += chunk));
  const exited = new Promise((resolve) => child.once('exit', (code, signal) => resolve({ code, signal })));
  // Also when the test process ends without reaching `after` (an uncaught error, the runner's
  // SIGTERM on a timeout).
  const kill = () => child.kill('SIGKILL');
  const terminate = () => process.exit(143);
  process.once('exit', kill);
  process.once('SIGTERM', terminate);

  const deadline = Date.now() + 30_000;
  for (;;) {
    const status = await Promise.race([exited, sleep(100).then(() => null)]);
    if (status) throw new Error(`postgate dev exited (${status.code ?? status.signal}) before it was ready:\n${output}`);
    if (await ready()) break;
    if (Date.now() > deadline) {
      child.kill('SIGKILL');
      throw new Error(`postgate dev was not ready within 30 s:\n${output}`);
    }
  }
  return {
    async stop() {
      process.off('exit', kill);
      process.off('SIGTERM', terminate);
      if (child.exitCode === null && child.signalCode === null) child.kill('SIGTERM');
      const timer = setTimeout(() => child.kill('SIGKILL'), 5_000);
      await exited;
      clearTimeout(timer);
    },
  };
}

export async function ready() {
  try {
    return (await fetch(`${gateway}/readyz`)).ok;
  } catch {
    return false;
  }
}

export function sleep(ms) {
  return new Promise((resolve) => setTimeout(resolve, ms));
}

/** Every file under `dir`, as sorted relative paths. */
export async function listFiles(dir) {
  const entries = await readdir(dir, { recursive: true, withFileTypes: true });
  return entries
    .filter((e) => e.isFile())
    .map((e) => path.relative(dir, path.join(e.parentPath ?? e.path, e.name)))
    .sort();
}

/** A valid RGB PNG of the given size with a gradient, so every image is different bytes. */
export function makePng(width, height) {
  const rows = [];
  for (let y = 0; y < height; y++) {
    const row = Buffer.alloc(1 + width * 3);
    for (let x = 0; x < width; x++) row.set([x * 16, y * 16, 128], 1 + x * 3);
    rows.push(row);
  }
  const header = Buffer.alloc(13);
  header.writeUInt32BE(width, 0);
  header.writeUInt32BE(height, 4);
  header.set([8, 2, 0, 0, 0], 8); // 8-bit RGB, no interlace
  return Buffer.concat([
    Buffer.from([0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a]),
    chunk('IHDR', header),
    chunk('IDAT', deflateSync(Buffer.concat(rows))),
    chunk('IEND', Buffer.alloc(0)),
  ]);
}

function chunk(type, body) {
  const out = Buffer.alloc(12 + body.length);
  out.writeUInt32BE(body.length, 0);
  out.write(type, 4, 'latin1');
  body.copy(out, 8);
  out.writeUInt32BE(crc32(out.subarray(4, 8 + body.length)), 8 + body.length);
  return out;
}

function crc32(bytes) {
  let crc = 0xffffffff;
  for (const byte of bytes) {
    crc ^= byte;
    for (let k = 0; k < 8; k++) crc = (crc >>> 1) ^ (0xedb88320 & -(crc & 1));
  }
  return (crc ^ 0xffffffff) >>> 0;
}
