// Browser uploads in real headless Chromium against `postgate dev`: the JavaScript page served at
// `/` (presign with fetch, upload with XMLHttpRequest: a POST form, or a PUT with signed headers) and the no-JavaScript form at `/form/{profile}`
// (signed server-side, posted straight to the store, redirected back to `/uploaded`). Every upload
// is checked in the store's data directory, byte for byte.
//
// Needs a built `postgate` (`GATEWAY_BIN`, default `target/debug/postgate`) and free ports 8080
// and 9000: the attachments profile redirects to http://127.0.0.1:8080/uploaded.
// Run with `bash tests/browser/run.sh` from the repository root.

import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { readFile } from 'node:fs/promises';
import path from 'node:path';
import { after, before, test } from 'node:test';

import { MiB, gateway, listFiles, makePng, startSuite } from './harness.mjs';

let suite;
let data;
let browser;

before(async () => {
  suite = await startSuite('postgate-browser-');
  ({ data, browser } = suite);
});

after(async () => {
  await suite?.stop();
});

/// The app's answer to the signed `upload.completed` event (here `postgate dev`'s own receiver,
/// which checks the Standard Webhooks signature), shown by the page as `complete` passed it back.
async function assertAppAnswer(page, key) {
  const answer = JSON.parse(await page.locator('#app-answer').textContent());
  assert.match(answer.received, /^msg_[0-9a-f]{32}$/);
  assert.equal(answer.type, 'upload.completed');
  assert.equal(answer.key, key);
  assert.equal(await page.locator('#app-answer-line').isVisible(), true);
}

test('the JavaScript page uploads a PNG under the signed key', async () => {
  const page = await browser.newPage();
  await page.goto(`${gateway}/`);
  const png = makePng(16, 16);

  await page.getByLabel('Profile').selectOption('avatars');
  await page.getByLabel('user', { exact: true }).fill('alice');
  await page.getByLabel('purpose', { exact: true }).selectOption('avatar');
  await page.getByLabel('File', { exact: true }).setInputFiles({ name: 'me.png', mimeType: 'image/png', buffer: png });
  await page.getByRole('button', { name: 'Upload', exact: true }).click();

  const key = await success(page);
  assert.match(key, /^avatars\/alice\/[0-9a-f-]{36}\/me\.png$/);
  assert.deepEqual(await readFile(path.join(data, 'user-content', key)), png);
  const md5 = createHash('md5').update(png).digest('hex');
  assert.equal((await page.locator('#etag').textContent()).replaceAll('"', ''), md5);
  const progress = page.locator('#progress');
  assert.equal(await progress.evaluate((p) => p.value === p.max && p.max > 0), true, 'the progress bar is full');
  await assertAppAnswer(page, key);
  await page.close();
});

test('the JavaScript page uploads a photo by PUT with its SHA-256', async () => {
  const page = await browser.newPage();
  await page.goto(`${gateway}/`);
  const png = makePng(8, 8);

  await page.getByLabel('Profile').selectOption('photos');
  await page.getByLabel('user', { exact: true }).fill('alice');
  await page.getByLabel('File', { exact: true }).setInputFiles({ name: 'cat.png', mimeType: 'image/png', buffer: png });
  await page.getByRole('button', { name: 'Upload', exact: true }).click();

  const key = await success(page);
  assert.match(key, /^photos\/alice\/[0-9a-f-]{36}\/cat\.png$/);
  assert.deepEqual(await readFile(path.join(data, 'user-content', key)), png);
  await page.close();
});

test('the JavaScript page uploads a document by PUT when asked to', async () => {
  const page = await browser.newPage();
  await page.goto(`${gateway}/`);
  const pdf = Buffer.concat([Buffer.from('%PDF-1.4\n'), Buffer.alloc(2048, 0x20)]);

  await page.getByLabel('Profile').selectOption('documents');
  await page.getByLabel('user', { exact: true }).fill('bob');
  await page.getByLabel('kind', { exact: true }).selectOption('contract');
  await page.getByLabel('Method', { exact: true }).selectOption('PUT');
  await page.getByLabel('File', { exact: true }).setInputFiles({ name: 'lease.pdf', mimeType: 'application/pdf', buffer: pdf });
  await page.getByRole('button', { name: 'Upload', exact: true }).click();

  const key = await success(page);
  assert.match(key, /^documents\/bob\/\d{4}-\d{2}-\d{2}\/[0-9a-f-]{36}\/lease\.pdf$/);
  assert.deepEqual(await readFile(path.join(data, 'user-documents', key)), pdf);
  await page.close();
});

test('the JavaScript page shows the gateway refusing a file over the size limit', async () => {
  const page = await browser.newPage();
  await page.goto(`${gateway}/`);
  const stored = await listFiles(data);

  await page.getByLabel('Profile').selectOption('avatars');
  await page.getByLabel('user', { exact: true }).fill('alice');
  await page.getByLabel('purpose', { exact: true }).selectOption('avatar');
  const big = Buffer.concat([makePng(1, 1), Buffer.alloc(6 * MiB)]);
  await page.getByLabel('File', { exact: true }).setInputFiles({ name: 'big.png', mimeType: 'image/png', buffer: big });
  await page.getByRole('button', { name: 'Upload', exact: true }).click();

  const error = await failure(page);
  assert.equal(error.code, 'size-out-of-range');
  const item = page.locator('#error li[data-code="size-out-of-range"]');
  assert.match(await item.textContent(), /^size: \d+ bytes is outside 1\.\.=5242880/);
  assert.equal(await page.getByLabel('File', { exact: true }).getAttribute('aria-invalid'), 'true');
  assert.deepEqual(await listFiles(data), stored, 'nothing new is stored');
  await page.close();
});

test('the JavaScript page uploads a large file in parts and the gateway verifies it', async () => {
  const page = await browser.newPage();
  await page.goto(`${gateway}/`);
  const png = Buffer.concat([makePng(2, 2), Buffer.alloc(11 * MiB + 7, 0x42)]);

  await page.getByLabel('Profile').selectOption('media');
  await page.getByLabel('user', { exact: true }).fill('alice');
  await page.getByLabel('Method').selectOption('multipart');
  await page.getByLabel('File', { exact: true }).setInputFiles({ name: 'large.png', mimeType: 'image/png', buffer: png });
  await page.getByRole('button', { name: 'Upload', exact: true }).click();

  const key = await success(page);
  assert.match(key, /^media\/alice\/[0-9a-f-]{36}\/large\.png$/);
  assert.deepEqual(await readFile(path.join(data, 'user-content', key)), png);
  assert.match(await page.locator('#verified').textContent(), /image\/png, bytes checked against the type/);
  assert.match(await page.locator('#etag').textContent(), /-3$/, 'a multipart ETag names its 3 parts');
  await assertAppAnswer(page, key);
  await page.close();
});

test('the JavaScript page shows the gateway refusing a file whose bytes are not its type', async () => {
  const page = await browser.newPage();
  await page.goto(`${gateway}/`);
  const stored = await listFiles(data);

  await page.getByLabel('Profile').selectOption('media');
  await page.getByLabel('user', { exact: true }).fill('alice');
  await page.getByLabel('Method').selectOption('PUT');
  const html = Buffer.from('<!DOCTYPE html><html><body><script>alert(1)</script></body></html>');
  await page.getByLabel('File', { exact: true }).setInputFiles({ name: 'cat.png', mimeType: 'image/png', buffer: html });
  await page.getByRole('button', { name: 'Upload', exact: true }).click();

  const error = await failure(page);
  assert.equal(error.code, 'content-sniff-mismatch');
  assert.match(error.text, /text\/html, not the declared image\/png/);
  assert.deepEqual(await listFiles(data), stored, 'the refused upload is removed');
  await page.close();
});

test("the JavaScript page shows S3's refusal from the bucket's XML error", async () => {
  const page = await browser.newPage();
  // Without `size` the gateway signs the profile's whole range, so the bucket is the one to refuse.
  await page.route('**/v1/profiles/*/presign', (route) => {
    const request = JSON.parse(route.request().postData());
    delete request.size;
    return route.continue({ postData: JSON.stringify(request) });
  });
  await page.goto(`${gateway}/`);
  const stored = await listFiles(data);

  await page.getByLabel('Profile').selectOption('attachments');
  await page.getByLabel('File', { exact: true }).setInputFiles({ name: 'big.txt', mimeType: 'text/plain', buffer: Buffer.alloc(2 * MiB, 'x') });
  await page.getByRole('button', { name: 'Upload', exact: true }).click();

  const error = await failure(page);
  assert.equal(error.code, 'EntityTooLarge');
  assert.match(error.text, /EntityTooLarge[\s\S]*exceeds the maximum allowed object size/);
  assert.deepEqual(await listFiles(data), stored, 'nothing new is stored');
  await page.close();
});

test('the no-JavaScript form uploads and lands on /uploaded', async () => {
  const context = await browser.newContext({ javaScriptEnabled: false });
  const page = await context.newPage();
  await page.goto(`${gateway}/form/attachments`);
  const text = Buffer.from('Minutes of the meeting\nno JavaScript was harmed\n');

  await page.getByLabel('File', { exact: true }).setInputFiles({ name: 'notes 1.txt', mimeType: 'text/plain', buffer: text });
  await Promise.all([
    page.waitForURL((url) => url.href.startsWith(`${gateway}/uploaded?`)),
    page.getByRole('button', { name: 'Upload', exact: true }).click(),
  ]);

  assert.equal(await page.locator('#bucket').textContent(), 'user-content');
  const key = await page.locator('#key').textContent();
  assert.ok(key.startsWith('attachments/') && key.endsWith('/notes 1.txt'), `key ${key}`);
  assert.match(await page.locator('#etag').textContent(), /^"?[0-9a-f]{32}"?$/);
  assert.deepEqual(await readFile(path.join(data, 'user-content', key)), text);
  await context.close();
});

test('the no-JavaScript form shows S3 refusing a file over the size limit', async () => {
  const context = await browser.newContext({ javaScriptEnabled: false });
  const page = await context.newPage();
  await page.goto(`${gateway}/form/attachments`);
  const stored = await listFiles(data);

  await page.getByLabel('File', { exact: true }).setInputFiles({ name: 'big.txt', mimeType: 'text/plain', buffer: Buffer.alloc(2 * MiB, 'x') });
  const [response] = await Promise.all([
    page.waitForResponse((r) => r.request().isNavigationRequest() && r.request().method() === 'POST'),
    page.getByRole('button', { name: 'Upload', exact: true }).click(),
  ]);
  await page.waitForLoadState();

  assert.equal(response.status(), 400);
  // Chromium shows the XML error as a document tree.
  const shown = page.getByText('EntityTooLarge', { exact: true }).filter({ visible: true });
  assert.ok((await shown.count()) > 0, `EntityTooLarge is not shown:\n${await page.content()}`);
  assert.deepEqual(await listFiles(data), stored, 'nothing new is stored');
  await context.close();
});

/** Waits for the page's outcome and returns the key in `#result`; fails with `#error`'s text. */
async function success(page) {
  await page.locator('#done:visible, #error:visible').first().waitFor();
  if (await page.locator('#error').isVisible()) {
    assert.fail(`the page shows an error: ${await page.locator('#error').innerText()}`);
  }
  return page.locator('#result').textContent();
}

/** Waits for the page's outcome and returns `#error`'s code and text; fails on a success. */
async function failure(page) {
  await page.locator('#done:visible, #error:visible').first().waitFor();
  assert.equal(await page.locator('#done').isVisible(), false, 'the upload should have been refused');
  const error = page.locator('#error');
  return { code: await error.getAttribute('data-code'), text: await error.innerText() };
}

/** Starts `postgate dev` and waits for `/readyz`; a failed start reports the gateway's stderr. */
