// Uppy, the upload client people already use, in real headless Chromium against `postgate dev`:
// the pinned `@uppy/core` + `@uppy/aws-s3` 6 (bundled with esbuild from node_modules) with a
// `signRequest` that only forwards Uppy's request to `POST /v1/profiles/{name}/uppy`. A small
// file by POST form, the same by PUT, a file above the multipart threshold (set low here) in
// parts; an oversized file and a file whose bytes lie about their type show the gateway's error
// in Uppy and leave nothing stored. Every upload is checked in the store's data directory.
//
// Needs a built `postgate` (`GATEWAY_BIN`, default `target/debug/postgate`) and free ports 8080
// and 9000. Run with `bash tests/browser/run.sh` from the repository root.

import assert from 'node:assert/strict';
import { readFile } from 'node:fs/promises';
import path from 'node:path';
import { after, before, test } from 'node:test';

import * as esbuild from 'esbuild';

import { MiB, gateway, listFiles, makePng, root, startSuite } from './harness.mjs';

const DEV_KEY = 'dev-key-web-local';
// Uppy uploads files above this in parts (its default is 100 MiB).
const MULTIPART_ABOVE = 1 * MiB;

let suite;
let data;
let browser;
let bundle;

before(async () => {
  const built = await esbuild.build({
    entryPoints: [path.join(root, 'tests/browser/uppy-entry.mjs')],
    bundle: true,
    format: 'iife',
    platform: 'browser',
    write: false,
    logLevel: 'error',
  });
  bundle = built.outputFiles[0].text;
  suite = await startSuite('postgate-uppy-');
  ({ data, browser } = suite);
});

after(async () => {
  await suite?.stop();
});

/// Uploads one file with Uppy from a page of the gateway's origin; returns Uppy's result.
async function uppyUpload({ profile, vars, method, name, type, file }) {
  const page = await browser.newPage();
  await page.goto(`${gateway}/healthz`);
  await page.setContent('<!doctype html><title>uppy</title>');
  await page.addScriptTag({ content: bundle });
  const result = await page.evaluate(
    async ({ profile, vars, method, name, type, file: spec, key, threshold }) => {
      // The file, made here as `fileBytes` makes it in Node (megabytes do not cross the bridge).
      const head = Uint8Array.from(atob(spec.head), (c) => c.charCodeAt(0));
      const bytes = new Uint8Array(spec.size);
      bytes.set(head);
      for (let i = head.length; i < spec.size; i++) {
        const j = i - head.length;
        bytes[i] = spec.fill === 'space' ? 0x20 : spec.fill === 'zero' ? 0 : (j * 31 + spec.fill) & 0xff;
      }
      const uppy = new globalThis.Uppy({ autoProceed: false });
      uppy.use(globalThis.AwsS3, {
        shouldUseMultipart: (file) => file.size > threshold,
        // The file's id as Uppy's proposed key, so `signRequest` finds the file; the gateway
        // answers the real key.
        generateObjectKey: (file) => file.id,
        // The whole integration: forward Uppy's request, with the file's description.
        signRequest: async (request) => {
          const file = request.uploadId ? undefined : uppy.getFile(request.key);
          const upload = file ? { size: file.size, filename: file.name, content_type: file.type, vars, method } : {};
          const response = await fetch(`/v1/profiles/${profile}/uppy`, {
            method: 'POST',
            headers: { Authorization: `Bearer ${key}`, 'Content-Type': 'application/json' },
            body: JSON.stringify({ request, upload }),
          });
          const answer = await response.json();
          if (!response.ok) throw new Error(`${answer.code}: ${answer.detail}`);
          return answer;
        },
      });
      uppy.addFile({ name, type, data: new File([bytes], name, { type }) });
      const outcome = await uppy.upload();
      const [file] = uppy.getFiles();
      return {
        successful: outcome.successful.length,
        key: file.response?.body?.key ?? file.s3Multipart?.key ?? null,
        error: file.error ?? null,
        info: uppy.getState().info?.map((i) => `${i.message} ${i.details ?? ''}`) ?? [],
      };
    },
    { profile, vars, method, name, type, file, key: DEV_KEY, threshold: MULTIPART_ABOVE },
  );
  await page.close();
  return result;
}

/// A file: `head`, then `size - head.length` bytes of `fill` (a seed for a byte pattern, `space`
/// or `zero`). The page makes the same bytes from the same spec.
function fileOf(head, size, fill) {
  const spec = { head: head.toString('base64'), size, fill };
  const bytes = Buffer.alloc(size);
  head.copy(bytes);
  for (let i = head.length; i < size; i++) {
    const j = i - head.length;
    bytes[i] = fill === 'space' ? 0x20 : fill === 'zero' ? 0 : (j * 31 + fill) & 0xff;
  }
  return { spec, bytes };
}

const pngOf = (size, seed) => fileOf(makePng(4, 4), size, seed);

// `media` stages single uploads under incoming/ (its app's `complete` copies what it checked to
// the key); a multipart upload writes the key itself.
test('Uppy uploads a small file by POST form', async () => {
  const { spec, bytes: png } = pngOf(4096, 1);
  const result = await uppyUpload({ profile: 'media', vars: { user: 'alice' }, method: 'post', name: 'small.png', type: 'image/png', file: spec });
  assert.equal(result.successful, 1, JSON.stringify(result));
  assert.match(result.key, /^incoming\/media\/alice\/[0-9a-f-]{36}\/small\.png$/);
  assert.deepEqual(await readFile(path.join(data, 'user-content', result.key)), png);
});

test('Uppy uploads the same by PUT', async () => {
  const { spec, bytes: png } = pngOf(4096, 2);
  const result = await uppyUpload({ profile: 'media', vars: { user: 'alice' }, method: 'put', name: 'small.png', type: 'image/png', file: spec });
  assert.equal(result.successful, 1, JSON.stringify(result));
  assert.match(result.key, /^incoming\/media\/alice\/[0-9a-f-]{36}\/small\.png$/);
  assert.deepEqual(await readFile(path.join(data, 'user-content', result.key)), png);
});

test('Uppy uploads a file above its multipart threshold in parts, completed by the gateway', async () => {
  const { spec, bytes: png } = pngOf(6 * MiB + 123, 3);
  const result = await uppyUpload({ profile: 'media', vars: { user: 'alice' }, name: 'big.png', type: 'image/png', file: spec });
  assert.equal(result.successful, 1, JSON.stringify(result));
  assert.match(result.key, /^media\/alice\/[0-9a-f-]{36}\/big\.png$/);
  assert.deepEqual(await readFile(path.join(data, 'user-content', result.key)), png);
});

test('An oversized file shows the gateway refusal in Uppy and stores nothing', async () => {
  const before = await listFiles(data);
  const { spec } = fileOf(Buffer.from('%PDF-1.7\n'), 21 * MiB, 'zero');
  const result = await uppyUpload({ profile: 'scans', vars: { user: 'alice' }, name: 'huge.pdf', type: 'application/pdf', file: spec });
  assert.equal(result.successful, 0, JSON.stringify(result));
  assert.match(String(result.error), /size-out-of-range/);
  assert.deepEqual(await listFiles(data), before);
});

test('A file whose bytes lie about its type is refused at complete, shown in Uppy, and removed', async () => {
  const { spec } = fileOf(Buffer.from('<!DOCTYPE html><html><body><script>alert(1)</script>'), 2 * MiB, 'space');
  const result = await uppyUpload({ profile: 'media', vars: { user: 'alice' }, name: 'evil.png', type: 'image/png', file: spec });
  assert.equal(result.successful, 0, JSON.stringify(result));
  assert.match(String(result.error), /422.*content-sniff-mismatch/);
  const stored = (await listFiles(data)).filter((f) => f.includes('evil.png'));
  assert.deepEqual(stored, []);
});
