// A browser uploading with the signed-in user's ID token, no app backend: the example page
// (examples/browser/id-token-upload.html) served from its own origin, an identity provider's JWKS
// on loopback, `postgate dev` with an app that takes end-user tokens only. The page's token comes
// from `getIdToken()`, as it would from the provider's SDK; `${user}` comes from its `sub`.
//
// Run with `bash tests/browser/run.sh` from the repository root.

import assert from 'node:assert/strict';
import { generateKeyPairSync, sign } from 'node:crypto';
import { cp, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { createServer } from 'node:http';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { after, before, test } from 'node:test';

import { gateway, listFiles, makePng, root, startSuite } from './harness.mjs';

const AUDIENCE = 'postgate-example';
let suite;
let idp;
let origin;
let work;

const { privateKey, publicKey } = generateKeyPairSync('ec', { namedCurve: 'P-256' });
const b64url = (data) => Buffer.from(data).toString('base64url');

/** An ES256 ID token, as an identity provider would issue it. */
function mint(claims) {
  const header = b64url(JSON.stringify({ alg: 'ES256', kid: 'idp-key-1', typ: 'JWT' }));
  const payload = b64url(JSON.stringify(claims));
  const signature = sign('sha256', Buffer.from(`${header}.${payload}`), { key: privateKey, dsaEncoding: 'ieee-p1363' });
  return `${header}.${payload}.${b64url(signature)}`;
}

const now = () => Math.floor(Date.now() / 1000);

before(async () => {
  const page = await readFile(path.join(root, 'examples/browser/id-token-upload.html'));
  const jwks = JSON.stringify({ keys: [{ ...publicKey.export({ format: 'jwk' }), kid: 'idp-key-1', alg: 'ES256', use: 'sig' }] });
  idp = createServer((req, res) => {
    if (req.url === '/jwks.json') {
      res.writeHead(200, { 'content-type': 'application/json' }).end(jwks);
    } else if (req.url.startsWith('/id-token-upload.html')) {
      res.writeHead(200, { 'content-type': 'text/html; charset=utf-8' }).end(page);
    } else {
      res.writeHead(404).end();
    }
  });
  await new Promise((resolve) => idp.listen(0, '127.0.0.1', resolve));
  origin = `http://127.0.0.1:${idp.address().port}`;

  work = await mkdtemp(path.join(tmpdir(), 'postgate-idtoken-'));
  const policies = path.join(work, 'policies');
  await cp(path.join(root, 'policies'), policies, { recursive: true });
  await cp(path.join(root, 'examples/browser/profile-pictures.yaml'), path.join(policies, 'profile-pictures.yaml'));
  const config = path.join(work, 'gateway.yaml');
  await writeFile(
    config,
    [
      `policies: ${policies}`,
      'apps:',
      '  spa:',
      '    auth: token',
      `    cors_origins: ["${origin}"]`,
      '    end_user_tokens:',
      `      issuer: "${origin}"`,
      `      audiences: ["${AUDIENCE}"]`,
      `      jwks_url: "${origin}/jwks.json"`,
      '',
    ].join('\n'),
  );
  suite = await startSuite('postgate-idtoken-', { args: ['--config', config] });
});

after(async () => {
  await suite?.stop();
  idp?.close();
  if (work) await rm(work, { recursive: true, force: true });
});

/** Opens the example page from its own origin with `token` as the signed-in user's. */
async function uploadWith(token, file) {
  const page = await suite.browser.newPage();
  await page.addInitScript((t) => {
    window.getIdToken = async () => t;
  }, token);
  await page.goto(`${origin}/id-token-upload.html?gateway=${encodeURIComponent(gateway)}&profile=profile-pictures`);
  await page.getByLabel('File', { exact: true }).setInputFiles(file);
  await page.getByRole('button', { name: 'Upload', exact: true }).click();
  const result = page.locator('#result');
  await page.waitForFunction(() => ['done', 'failed'].includes(document.querySelector('#result').dataset.state));
  const outcome = { state: await result.getAttribute('data-state'), key: await result.getAttribute('data-key'), text: await result.textContent() };
  await page.close();
  return outcome;
}

test('the example page uploads under the user its ID token names', async () => {
  const png = makePng(12, 12);
  const token = mint({ iss: origin, aud: AUDIENCE, sub: 'user-42', exp: now() + 300, iat: now() });
  const outcome = await uploadWith(token, { name: 'me.png', mimeType: 'image/png', buffer: png });
  assert.equal(outcome.state, 'done', outcome.text);
  assert.match(outcome.key, /^profile-pictures\/user-42\/[0-9a-f-]{36}\/me\.png$/);
  assert.deepEqual(await readFile(path.join(suite.data, 'user-content', outcome.key)), png);
});

test('an expired ID token gets its code and stores nothing', async () => {
  const token = mint({ iss: origin, aud: AUDIENCE, sub: 'user-42', exp: now() - 3600, iat: now() - 7200 });
  const outcome = await uploadWith(token, { name: 'late.png', mimeType: 'image/png', buffer: makePng(4, 4) });
  assert.equal(outcome.state, 'failed');
  assert.match(outcome.text, /id-token-expired/);
  const stored = await listFiles(path.join(suite.data, 'user-content'));
  assert.ok(!stored.some((f) => f.endsWith('late.png')), `stored: ${stored}`);
});

test('a token for another audience is refused', async () => {
  const token = mint({ iss: origin, aud: 'someone-else', sub: 'user-42', exp: now() + 300 });
  const outcome = await uploadWith(token, { name: 'x.png', mimeType: 'image/png', buffer: makePng(4, 4) });
  assert.equal(outcome.state, 'failed');
  assert.match(outcome.text, /id-token-audience/);
});
