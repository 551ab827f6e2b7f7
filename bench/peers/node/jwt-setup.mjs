// The end-user token for the presign-jwt benchmark: `node jwt-setup.mjs OUTDIR ALG` (ALG is ES256
// or RS256) makes a key pair with jose, writes the public key to OUTDIR/jwks.json and prints one
// token signed with it (iss https://id.bench.example, aud postgate-bench, sub alice, 2 h).
import { mkdirSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { SignJWT, calculateJwkThumbprint, exportJWK, generateKeyPair } from "jose";

const [outdir, alg] = process.argv.slice(2);
if (!outdir || !["ES256", "RS256"].includes(alg)) {
  console.error("usage: node jwt-setup.mjs OUTDIR ES256|RS256");
  process.exit(2);
}

const { publicKey, privateKey } = await generateKeyPair(alg);
const jwk = await exportJWK(publicKey);
const kid = await calculateJwkThumbprint(jwk);
mkdirSync(outdir, { recursive: true });
writeFileSync(join(outdir, "jwks.json"), JSON.stringify({ keys: [{ ...jwk, kid, alg, use: "sig" }] }, null, 2) + "\n");

const token = await new SignJWT({})
  .setProtectedHeader({ alg, kid, typ: "JWT" })
  .setIssuer("https://id.bench.example")
  .setAudience("postgate-bench")
  .setSubject("alice")
  .setIssuedAt()
  .setExpirationTime("2h")
  .sign(privateKey);
console.log(token);
