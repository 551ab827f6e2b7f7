// The avatars presign request, served by the AWS SDK for JavaScript v3 (createPresignedPost):
// a plain node:http server, one worker process per core (node:cluster).
import cluster from "node:cluster";
import http from "node:http";
import os from "node:os";
import { randomUUID } from "node:crypto";
import { S3Client } from "@aws-sdk/client-s3";
import { createPresignedPost } from "@aws-sdk/s3-presigned-post";

const port = Number(process.argv[2] || 18082);
const workers = Number(process.argv[3] || os.availableParallelism());

if (cluster.isPrimary) {
  for (let i = 0; i < workers; i++) cluster.fork();
} else {
  const client = new S3Client({
    region: "eu-west-1",
    credentials: { accessKeyId: "AKIAIOSFODNN7EXAMPLE", secretAccessKey: "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY" },
  });
  http
    .createServer((req, res) => {
      let body = "";
      req.on("data", (chunk) => (body += chunk));
      req.on("end", async () => {
        try {
          const input = JSON.parse(body);
          const user = input.vars.user;
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
          res.writeHead(200, { "content-type": "application/json" });
          res.end(JSON.stringify({ ...form, key, max_size: input.size, profile: "avatars" }));
        } catch (error) {
          res.writeHead(500);
          res.end(String(error));
        }
      });
    })
    .listen(port, "127.0.0.1");
}
