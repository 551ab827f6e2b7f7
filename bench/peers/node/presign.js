// The work behind the Node peer's routes, shared by server.js and inprocess.mjs: the AWS SDK for
// JavaScript v3 (createPresignedPost, getSignedUrl) and jose (jwtVerify), called as their docs show.
import { randomUUID } from "node:crypto";
import { readFileSync } from "node:fs";
import { PutObjectCommand, S3Client, UploadPartCommand } from "@aws-sdk/client-s3";
import { createPresignedPost } from "@aws-sdk/s3-presigned-post";
import { getSignedUrl } from "@aws-sdk/s3-request-presigner";
import { createLocalJWKSet, jwtVerify } from "jose";

export const client = new S3Client({
  region: "eu-west-1",
  credentials: { accessKeyId: "AKIAIOSFODNN7EXAMPLE", secretAccessKey: "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY" },
  // By default getSignedUrl puts the CRC32 of an empty body (x-amz-checksum-crc32=AAAAAA==) in
  // every PUT and UploadPart URL, and the store then refuses the real bytes. No effect on POST forms.
  requestChecksumCalculation: "WHEN_REQUIRED",
});

/** An answer other than 200: `status` and a plain-text message. */
export class Refused extends Error {
  constructor(status, message) {
    super(message);
    this.status = status;
  }
}

/** `now + seconds` as RFC 3339 in UTC, to the second (as postgate writes it). */
const expiresAt = (seconds) => new Date(Date.now() + seconds * 1000).toISOString().replace(/\.\d+Z$/, "Z");

/** The avatars POST form for `user`: both avatars routes answer this. */
export async function avatarForm(input, user) {
  const key = `avatars/${user}/${randomUUID()}/${input.filename}`;
  const fields = {
    "Content-Type": input.content_type,
    acl: "private",
    "Cache-Control": "max-age=31536000",
    "Content-Disposition": "attachment",
    success_action_status: "201",
    "x-amz-server-side-encryption": "AES256",
    "x-amz-meta-uploaded-by": user,
    "x-amz-meta-purpose": input.metadata.purpose,
  };
  const conditions = [["content-length-range", input.size, input.size]];
  for (const [name, value] of Object.entries(fields)) conditions.push({ [name]: value });
  const form = await createPresignedPost(client, {
    Bucket: "user-content",
    Key: key,
    Conditions: conditions,
    Fields: fields,
    Expires: 600,
  });
  return { ...form, key, max_size: input.size, profile: "avatars" };
}

/** The media PUT URL: Content-Length, Content-Type and the metadata are signed headers. */
export async function putUrl(input) {
  if (input.method !== "put") throw new Refused(400, "this peer signs PUT URLs only");
  const user = input.vars.user;
  const key = `media/${user}/${randomUUID()}/${input.filename}`;
  const expires_at = expiresAt(900);
  const command = new PutObjectCommand({
    Bucket: "user-content",
    Key: key,
    ContentLength: input.size,
    ContentType: input.content_type,
    Metadata: { "uploaded-by": user },
  });
  // The presigner never signs content-type unless told to, and moves every x-amz-* header into
  // the query unless told not to; content-length is signed by default.
  const url = await getSignedUrl(client, command, {
    expiresIn: 900,
    signableHeaders: new Set(["content-type"]),
    unhoistableHeaders: new Set(["x-amz-meta-uploaded-by"]),
  });
  const headers = {
    "Content-Type": input.content_type,
    "Content-Length": String(input.size),
    "x-amz-meta-uploaded-by": user,
  };
  return { method: "PUT", url, headers, key, expires_at };
}

/** One UploadPart URL per part number (at most 1,000), each signing Content-Length. */
export async function partUrls(input) {
  const numbers = input.part_numbers;
  if (!Array.isArray(numbers) || numbers.length < 1 || numbers.length > 1000) {
    throw new Refused(400, "name 1 to 1000 parts in part_numbers");
  }
  const expires_at = expiresAt(900);
  const parts = await Promise.all(
    numbers.map(async (number) => {
      const command = new UploadPartCommand({
        Bucket: "user-content",
        Key: input.key,
        UploadId: input.upload_id,
        PartNumber: number,
        ContentLength: input.part_size,
      });
      const url = await getSignedUrl(client, command, { expiresIn: 900 });
      return { part_number: number, size: input.part_size, url, expires_at };
    }),
  );
  return { parts };
}

/** The JWKS file at `path` as a jose key set. */
export const localKeySet = (path) => createLocalJWKSet(JSON.parse(readFileSync(path, "utf8")));

/** The `sub` of a valid `Authorization: Bearer <JWT>`; anything else is a 401. */
export async function bearerSubject(authorization, keySet) {
  if (!keySet) throw new Refused(500, "BENCH_JWKS is not set");
  const token = /^Bearer (\S+)$/i.exec(authorization ?? "")?.[1];
  if (!token) throw new Refused(401, "a bearer token is required");
  try {
    const { payload } = await jwtVerify(token, keySet, {
      issuer: "https://id.bench.example",
      audience: "postgate-bench",
      algorithms: ["ES256", "RS256"],
    });
    if (typeof payload.sub !== "string") throw new Error("no sub");
    return payload.sub;
  } catch {
    throw new Refused(401, "invalid token");
  }
}
