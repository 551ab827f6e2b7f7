// postgate's benchmark requests, served by the AWS SDK for JavaScript v3 (createPresignedPost,
// getSignedUrl) and jose (presign.js): a plain node:http server, one worker process per core
// (node:cluster). The JWKS for /v1/profiles/avatars/presign-jwt is the file named by BENCH_JWKS.
import cluster from "node:cluster";
import http from "node:http";
import os from "node:os";
import { avatarForm, bearerSubject, localKeySet, partUrls, putUrl } from "./presign.js";

const port = Number(process.argv[2] || 18082);
const workers = Number(process.argv[3] || os.availableParallelism());

if (cluster.isPrimary) {
  for (let i = 0; i < workers; i++) cluster.fork();
} else {
  const keySet = process.env.BENCH_JWKS ? localKeySet(process.env.BENCH_JWKS) : null;
  const routes = {
    "/v1/profiles/avatars/presign": (input) => avatarForm(input, input.vars.user),
    "/v1/profiles/avatars/presign-jwt": async (input, req) =>
      avatarForm(input, await bearerSubject(req.headers.authorization, keySet)),
    "/v1/profiles/media/presign": putUrl,
    "/v1/uploads/parts": partUrls,
  };
  http
    .createServer((req, res) => {
      const route = req.method === "POST" && routes[req.url.split("?")[0]];
      if (!route) {
        res.writeHead(404);
        res.end();
        return;
      }
      let body = "";
      req.on("data", (chunk) => (body += chunk));
      req.on("end", async () => {
        try {
          const answer = await route(JSON.parse(body), req);
          res.writeHead(200, { "content-type": "application/json" });
          res.end(JSON.stringify(answer));
        } catch (error) {
          res.writeHead(error.status ?? 500);
          res.end(error.status ? error.message : String(error));
        }
      });
    })
    .listen(port, "127.0.0.1");
}
