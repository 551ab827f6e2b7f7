"""schemathesis hooks for tests/openapi/run.sh: the upload routes need what no schema can
generate — upload tokens the gateway sealed, capability URLs it tagged, and bodies a named
profile admits. At import (the gateway already runs), this module starts real uploads through
the API; `map_case` then makes every *positive* case of those operations use them, so each
operation reaches its success path. Negative cases are left as generated: they must be refused.
"""

import json
import os
import struct
import urllib.parse
import urllib.request
import zlib

import schemathesis

BASE = os.environ["CONTRACT_GATEWAY"]
KEY = os.environ.get("CONTRACT_APP_KEY", "dev-key-web-local")
MIB = 1024 * 1024


def _call(path, body):
    request = urllib.request.Request(
        BASE + path,
        data=json.dumps(body).encode(),
        method="POST",
        headers={"Authorization": f"Bearer {KEY}", "Content-Type": "application/json"},
    )
    with urllib.request.urlopen(request) as response:
        return json.load(response)


def _png(size):
    """A real 1x1 PNG, padded to `size` bytes with a trailing chunk."""
    def chunk(kind, data):
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    head = b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", 1, 1, 8, 6, 0, 0, 0))
    body = chunk(b"IDAT", zlib.compress(b"\x00\x00\x00\x00\x00"))
    pad = size - len(head) - len(body) - 12 * 2
    return head + body + chunk(b"tEXt", b"p" * max(pad, 0)) + chunk(b"IEND", b"")


def _media(size, filename="clip.png"):
    return {"vars": {"user": "alice"}, "filename": filename, "content_type": "image/png", "size": size}


def _multipart(size=11 * MIB):
    return _call("/v1/profiles/media/multipart", _media(size))["upload_token"]


def _put(url, data, headers=None):
    request = urllib.request.Request(url, data=data, method="PUT", headers=headers or {})
    urllib.request.urlopen(request).read()


def _completed():
    """A single PUT upload, stored: `complete` verifies it (again) on every call."""
    data = _png(4096)
    signed = _call("/v1/profiles/media/presign", dict(_media(len(data), "done.png"), method="put"))
    _put(signed["url"], data, signed["headers"])
    return signed["upload_token"]


def _uploaded_multipart():
    """A multipart upload of one part, that part stored: completing it succeeds, and again."""
    data = _png(4096)
    token = _multipart(len(data))
    part = _call("/v1/uploads/parts", {"upload_token": token, "part_numbers": [1]})["parts"][0]
    _put(part["url"], data)
    return token


def _capability(operation, method, token):
    answer = _call(
        "/v1/profiles/media/uppy",
        {"request": {"method": method, "key": "contract", "uploadId": token}},
    )
    query = urllib.parse.parse_qs(urllib.parse.urlsplit(answer["url"]).query)
    return {name: values[0] for name, values in query.items()}


# One upload per use, so that an abort or a refused completion does not end another's.
PARTS = _multipart()
LIST = _multipart()
ABORT = _multipart()
COMPLETE = _completed()
UPPY = {
    "list": _capability("list", "GET", _multipart()),
    "complete": _capability("complete", "POST", _uploaded_multipart()),
    "abort": _capability("abort", "DELETE", _multipart()),
}
OPERATION_OF = {"GET": "list", "POST": "complete", "DELETE": "abort"}


def _positive(case):
    meta = case.meta
    return meta is not None and meta.generation.mode == "positive"


@schemathesis.hook
def map_case(context, case):
    if not _positive(case):
        return case
    path = case.operation.path
    body = case.body if isinstance(case.body, dict) else None
    if path.startswith("/v1/uploads/") and body is not None:
        token = {"/v1/uploads/parts": PARTS, "/v1/uploads/list": LIST, "/v1/uploads/abort": ABORT}.get(path, COMPLETE)
        body = dict(body, upload_token=token)
        if path == "/v1/uploads/parts":
            numbers = [n for n in body.get("part_numbers") or [] if 1 <= n <= 3]
            body["part_numbers"] = numbers or [1]
        else:
            body.pop("part_numbers", None)
        body.pop("filename", None)
        case.body = body
    elif path == "/v1/profiles/{name}/multipart" and body is not None:
        size = body.get("size") if isinstance(body.get("size"), int) else 0
        case.body = _media(min(max(size, 1), 50 * MIB))
    elif path == "/v1/profiles/{name}/uppy" and body is not None:
        case.body = {
            "request": {"method": "PUT", "key": "contract", "contentType": "image/png"},
            "upload": _media(100, "small.png"),
        }
    elif path == "/v1/uppy/s3/{operation}":
        operation = OPERATION_OF[case.method.upper()]
        case.path_parameters = {"operation": operation}
        case.query = dict(UPPY[operation])
    return case

