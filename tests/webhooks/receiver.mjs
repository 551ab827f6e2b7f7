#!/usr/bin/env node
// Webhook receiver/verifier built on the reference `standardwebhooks` library from npm
// (installed in ./node_modules by install.sh). Same CLI as receiver.py:
//
//   serve  --port P --secret S --record FILE [--answer ok|refuse|fail]
//       HTTP server on 127.0.0.1:P. Each POST is verified with new Webhook(S).verify(raw body,
//       headers). Bad signature: records {"rejected": "<error>"} and answers 401. Good: records
//       {"id","timestamp","signature","body","verified_by":"node"} and answers per the mode:
//       ok -> 200 {"received": id, ...}, refuse -> 422, fail -> 503. If FILE.answer exists, its
//       trimmed content overrides --answer on each request. Prints "listening <port>" once bound.
//   verify --secret S --file FILE [--tamper] [--expect ok|refused]
//       Verifies each delivery line of FILE (lines with "rejected" are skipped) and prints
//       "ok <id>" or "refused <id> <reason>". --tamper changes one body character first.
//       Exit 0 iff every delivery matched --expect, 1 otherwise, 2 if FILE had no deliveries.
//
// The library also rejects timestamps more than 5 minutes off; that is intended.
// Only node's standard library besides `standardwebhooks`.
import { appendFileSync, readFileSync } from "node:fs";
import http from "node:http";
import { parseArgs } from "node:util";
import { Webhook } from "standardwebhooks";

const usage = "usage: receiver.mjs serve --port P --secret S --record FILE [--answer ok|refuse|fail]\n" +
  "       receiver.mjs verify --secret S --file FILE [--tamper] [--expect ok|refused]";

// Appends one JSON line in a single write, so readers never see half a line from us.
const record = (path, obj) => appendFileSync(path, JSON.stringify(obj) + "\n");

function answerMode(opts) {
  try {
    return readFileSync(opts.record + ".answer", "utf8").trim();
  } catch (e) {
    if (e.code === "ENOENT") return opts.answer;
    throw e;
  }
}

function serve(opts) {
  const wh = new Webhook(opts.secret);
  const server = http.createServer((req, res) => {
    const reply = (status, obj) => {
      const data = obj === undefined ? "" : JSON.stringify(obj);
      const headers = { "content-length": Buffer.byteLength(data) };
      if (obj !== undefined) headers["content-type"] = "application/json";
      res.writeHead(status, headers).end(data);
    };
    if (req.method !== "POST") return reply(405, { error: "POST webhooks here" });
    const chunks = [];
    req.on("data", (c) => chunks.push(c));
    req.on("end", () => {
      const raw = Buffer.concat(chunks);
      try {
        // jsonParse: false: the verdict is about the signature only; tests read the body.
        wh.verify(raw, req.headers, { jsonParse: false });
      } catch (e) {
        record(opts.record, { rejected: e.message || e.name });
        return reply(401, { error: e.message });
      }
      const id = req.headers["webhook-id"];
      record(opts.record, {
        id,
        timestamp: req.headers["webhook-timestamp"],
        signature: req.headers["webhook-signature"],
        body: raw.toString("utf8"),
        verified_by: "node",
      });
      const mode = answerMode(opts);
      if (mode === "ok") reply(200, { received: id, verified_by: "standardwebhooks (node)" });
      else if (mode === "refuse") reply(422, { error: "refused by the test app" });
      else reply(503);
    });
  });
  const stop = () => {
    server.close(() => process.exit(0));
    server.closeAllConnections();
  };
  process.on("SIGTERM", stop);
  process.on("SIGINT", stop);
  server.listen(Number(opts.port), "127.0.0.1", () => {
    process.stdout.write(`listening ${server.address().port}\n`);
  });
}

// Changes one character: the first digit becomes another digit, else a space is appended.
function tamper(body) {
  const i = body.search(/[0-9]/);
  if (i < 0) return body + " ";
  return body.slice(0, i) + String((Number(body[i]) + 1) % 10) + body.slice(i + 1);
}

function verify(opts) {
  const wh = new Webhook(opts.secret);
  const lines = readFileSync(opts.file, "utf8").split("\n").filter((l) => l.trim()).map((l) => JSON.parse(l));
  let deliveries = 0;
  let mismatches = 0;
  for (const d of lines) {
    if ("rejected" in d) continue;
    deliveries += 1;
    const headers = {
      "webhook-id": String(d.id),
      "webhook-timestamp": String(d.timestamp),
      "webhook-signature": String(d.signature),
    };
    const body = opts.tamper ? tamper(d.body) : d.body;
    let verdict;
    try {
      wh.verify(body, headers, { jsonParse: false });
      verdict = "ok";
      console.log(`ok ${d.id}`);
    } catch (e) {
      verdict = "refused";
      console.log(`refused ${d.id} ${e.message || e.name}`);
    }
    if (verdict !== opts.expect) mismatches += 1;
  }
  if (deliveries === 0) {
    console.error(`no deliveries in ${opts.file}`);
    return 2;
  }
  return mismatches ? 1 : 0;
}

function main() {
  const [cmd, ...rest] = process.argv.slice(2);
  const options = {
    serve: {
      port: { type: "string" }, secret: { type: "string" }, record: { type: "string" },
      answer: { type: "string", default: "ok" },
    },
    verify: {
      secret: { type: "string" }, file: { type: "string" },
      tamper: { type: "boolean", default: false }, expect: { type: "string", default: "ok" },
    },
  }[cmd];
  let opts;
  try {
    if (!options) throw new Error(`unknown command ${cmd ?? ""}`);
    opts = parseArgs({ args: rest, options, strict: true }).values;
    const required = cmd === "serve" ? ["port", "secret", "record"] : ["secret", "file"];
    for (const k of required) if (opts[k] === undefined) throw new Error(`--${k} is required`);
    if (cmd === "serve" && !["ok", "refuse", "fail"].includes(opts.answer)) throw new Error("bad --answer");
    if (cmd === "verify" && !["ok", "refused"].includes(opts.expect)) throw new Error("bad --expect");
  } catch (e) {
    console.error(`${e.message}\n${usage}`);
    process.exit(2);
  }
  if (cmd === "serve") serve(opts);
  else process.exitCode = verify(opts);
}

main();
