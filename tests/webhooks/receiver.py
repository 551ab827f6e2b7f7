#!/usr/bin/env python3
"""Webhook receiver/verifier built on the reference `standardwebhooks` library from PyPI.

Run it with the venv python from install.sh ($WEBHOOK_PYTHON). Same CLI as receiver.mjs:

  serve  --port P --secret S --record FILE [--answer ok|refuse|fail]
      HTTP server on 127.0.0.1:P. Each POST is verified with Webhook(S).verify(raw body, headers).
      Bad signature: records {"rejected": "<error>"} and answers 401. Good: records
      {"id","timestamp","signature","body","verified_by":"python"} and answers per the mode:
      ok -> 200 {"received": id, ...}, refuse -> 422, fail -> 503. If FILE.answer exists, its
      trimmed content overrides --answer on each request. Prints "listening <port>" once bound.
  verify --secret S --file FILE [--tamper] [--expect ok|refused]
      Verifies each delivery line of FILE (lines with "rejected" are skipped) and prints
      "ok <id>" or "refused <id> <reason>". --tamper changes one body character first.
      Exit 0 iff every delivery matched --expect, 1 otherwise, 2 if FILE had no deliveries.

The library also rejects timestamps more than 5 minutes off; that is intended.
Only the standard library besides `standardwebhooks`.
"""
import argparse
import json
import os
import signal
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from standardwebhooks.webhooks import Webhook

RECORD_LOCK = threading.Lock()


def record(path, obj):
    """Appends one JSON line and flushes it, so readers never see half a line from us."""
    line = json.dumps(obj) + "\n"
    with RECORD_LOCK, open(path, "a", encoding="utf-8") as f:
        f.write(line)
        f.flush()


def answer_mode(args):
    try:
        with open(args.record + ".answer", encoding="utf-8") as f:
            return f.read().strip()
    except FileNotFoundError:
        return args.answer


def read_body(handler):
    """The raw request body: Content-Length, or a chunked body."""
    if handler.headers.get("Transfer-Encoding", "").lower() == "chunked":
        body = b""
        while True:
            size = int(handler.rfile.readline().split(b";")[0].strip(), 16)
            chunk = handler.rfile.read(size + 2)  # data + CRLF
            if size == 0:
                return body
            body += chunk[:-2]
    return handler.rfile.read(int(handler.headers.get("Content-Length") or 0))


def serve(args):
    wh = Webhook(args.secret)

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def reply(self, status, obj=None):
            data = json.dumps(obj).encode() if obj is not None else b""
            self.send_response(status)
            if obj is not None:
                self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def do_POST(self):
            raw = read_body(self)
            headers = {k.lower(): v for k, v in self.headers.items()}
            try:
                # json_parse=False: the verdict is about the signature only; tests read the body.
                wh.verify(raw, headers, json_parse=False)
            except Exception as e:  # WebhookVerificationError, or anything else the lib raises
                record(args.record, {"rejected": str(e) or type(e).__name__})
                return self.reply(401, {"error": str(e)})
            msg_id = headers["webhook-id"]
            record(args.record, {
                "id": msg_id,
                "timestamp": headers["webhook-timestamp"],
                "signature": headers["webhook-signature"],
                "body": raw.decode("utf-8", errors="replace"),
                "verified_by": "python",
            })
            mode = answer_mode(args)
            if mode == "ok":
                self.reply(200, {"received": msg_id, "verified_by": "standardwebhooks (python)"})
            elif mode == "refuse":
                self.reply(422, {"error": "refused by the test app"})
            else:
                self.reply(503)

        def do_GET(self):
            self.reply(405, {"error": "POST webhooks here"})

        def log_message(self, *_):
            pass  # quiet: the record file is the log

    server = ThreadingHTTPServer(("127.0.0.1", args.port), Handler)
    # shutdown() must run off the serve_forever thread, so the handler starts a thread for it.
    stop = lambda *_: threading.Thread(target=server.shutdown, daemon=True).start()
    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    print(f"listening {server.server_address[1]}", flush=True)
    server.serve_forever()
    server.server_close()
    return 0


def tamper(body):
    """Changes one character: the first digit becomes another digit, else a space is appended."""
    for i, c in enumerate(body):
        if c.isdigit():
            return body[:i] + str((int(c) + 1) % 10) + body[i + 1:]
    return body + " "


def verify(args):
    wh = Webhook(args.secret)
    deliveries = mismatches = 0
    with open(args.file, encoding="utf-8") as f:
        lines = [json.loads(line) for line in f if line.strip()]
    for d in lines:
        if "rejected" in d:
            continue
        deliveries += 1
        headers = {
            "webhook-id": str(d["id"]),
            "webhook-timestamp": str(d["timestamp"]),
            "webhook-signature": str(d["signature"]),
        }
        body = tamper(d["body"]) if args.tamper else d["body"]
        try:
            wh.verify(body, headers, json_parse=False)
            verdict = "ok"
            print(f"ok {d['id']}")
        except Exception as e:
            verdict = "refused"
            print(f"refused {d['id']} {str(e) or type(e).__name__}")
        mismatches += verdict != args.expect
    sys.stdout.flush()
    if deliveries == 0:
        print(f"no deliveries in {args.file}", file=sys.stderr)
        return 2
    return 1 if mismatches else 0


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = p.add_subparsers(dest="cmd", required=True)
    s = sub.add_parser("serve")
    s.add_argument("--port", type=int, required=True)
    s.add_argument("--secret", required=True)
    s.add_argument("--record", required=True)
    s.add_argument("--answer", choices=["ok", "refuse", "fail"], default="ok")
    v = sub.add_parser("verify")
    v.add_argument("--secret", required=True)
    v.add_argument("--file", required=True)
    v.add_argument("--tamper", action="store_true")
    v.add_argument("--expect", choices=["ok", "refused"], default="ok")
    args = p.parse_args()
    return serve(args) if args.cmd == "serve" else verify(args)


if __name__ == "__main__":
    sys.exit(main())
