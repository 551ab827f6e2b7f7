// In-process micro-benchmarks of the Node peer's work (the functions server.js serves, from
// presign.js), without HTTP: one JSON line per case, the median time per operation over 9 batches
// of about 200 ms each, after a warm-up of about 0.5 s that also sizes the batches.
// `node inprocess.mjs`; about 20 s.
import { hrtime } from "node:process";
import { SignJWT, createLocalJWKSet, exportJWK, generateKeyPair } from "jose";
import { avatarForm, bearerSubject, partUrls, putUrl } from "./presign.js";

const BATCHES = 9;
const BATCH_NS = 200_000_000;
const WARMUP_NS = 500_000_000;

async function bench(name, op) {
  let count = 0;
  const start = hrtime.bigint();
  while (count < 3 || Number(hrtime.bigint() - start) < WARMUP_NS) {
    await op();
    count++;
  }
  const batch = Math.max(1, Math.round(BATCH_NS / (Number(hrtime.bigint() - start) / count)));
  const samples = [];
  for (let b = 0; b < BATCHES; b++) {
    const t0 = hrtime.bigint();
    for (let i = 0; i < batch; i++) await op();
    samples.push(Number(hrtime.bigint() - t0) / batch);
  }
  samples.sort((x, y) => x - y);
  const median_us = Math.round(samples[BATCHES >> 1]) / 1000;
  console.log(JSON.stringify({ peer: "node", case: name, median_us, ops: batch * BATCHES }));
}

/** A fresh key pair, its one-key local JWKS and a token as jwt-setup.mjs makes it. */
async function keySetAndToken(alg) {
  const { publicKey, privateKey } = await generateKeyPair(alg);
  const kid = alg.toLowerCase();
  const keySet = createLocalJWKSet({ keys: [{ ...(await exportJWK(publicKey)), kid, alg, use: "sig" }] });
  const token = await new SignJWT({})
    .setProtectedHeader({ alg, kid, typ: "JWT" })
    .setIssuer("https://id.bench.example")
    .setAudience("postgate-bench")
    .setSubject("alice")
    .setIssuedAt()
    .setExpirationTime("2h")
    .sign(privateKey);
  return { keySet, authorization: `Bearer ${token}` };
}

const avatars = {
  vars: { user: "alice" },
  filename: "me.png",
  content_type: "image/png",
  size: 12345,
  metadata: { purpose: "avatar" },
};
const media = { method: "put", vars: { user: "alice" }, filename: "me.png", content_type: "image/png", size: 12345 };
const parts = {
  upload_id: "2~bench-upload-id-0123456789",
  key: "media/alice/0f8fad5b-d9cb-469f-a165-70867728950e/movie.mp4",
  part_size: 5242880,
  part_numbers: Array.from({ length: 1000 }, (_, i) => i + 1),
};
const es256 = await keySetAndToken("ES256");
const rs256 = await keySetAndToken("RS256");

await bench("post_form", () => avatarForm(avatars, avatars.vars.user));
await bench("put_url", () => putUrl(media));
await bench("part_urls_1000", () => partUrls(parts));
await bench("jwt_verify_es256", () => bearerSubject(es256.authorization, es256.keySet));
await bench("jwt_verify_rs256", () => bearerSubject(rs256.authorization, rs256.keySet));
await bench("jwt_presign_es256", async () =>
  avatarForm(avatars, await bearerSubject(es256.authorization, es256.keySet)),
);
