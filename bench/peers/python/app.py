"""postgate's benchmark requests, served by boto3 (generate_presigned_post, generate_presigned_url)
and PyJWT under gunicorn. The JWKS for /v1/profiles/avatars/presign-jwt is the file named by
BENCH_JWKS. inprocess.py times these same functions."""
import json
import os
import uuid
from datetime import datetime, timedelta, timezone

import boto3
import jwt
from botocore.config import Config

CREDENTIALS = {
    "region_name": "eu-west-1",
    "aws_access_key_id": "AKIAIOSFODNN7EXAMPLE",
    "aws_secret_access_key": "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY",
}
# One SigV4 client for forms and URLs, as postgate signs. Without s3v4, boto3 signs with SigV2:
# generate_presigned_post then makes a SigV2 form (`AWSAccessKeyId`, `signature`: an HMAC-SHA1 of
# the policy, not SigV4's derived key and HMAC-SHA256), and generate_presigned_url cannot sign
# Content-Length and sends Content-Type and the metadata as query parameters.
client = boto3.client("s3", config=Config(signature_version="s3v4"), **CREDENTIALS)


class Refused(Exception):
    """An answer other than 200: a WSGI status and a plain-text message."""

    def __init__(self, status, message):
        super().__init__(message)
        self.status = status


def expires_at(seconds):
    """now + seconds as RFC 3339 in UTC, to the second (as postgate writes it)."""
    return (datetime.now(timezone.utc) + timedelta(seconds=seconds)).strftime("%Y-%m-%dT%H:%M:%SZ")


def avatar_form(request, user):
    """The avatars POST form for user: both avatars routes answer this."""
    key = f"avatars/{user}/{uuid.uuid4()}/{request['filename']}"
    fields = {
        "Content-Type": request["content_type"],
        "acl": "private",
        "Cache-Control": "max-age=31536000",
        "Content-Disposition": "attachment",
        "success_action_status": "201",
        "x-amz-server-side-encryption": "AES256",
        "x-amz-meta-uploaded-by": user,
        "x-amz-meta-purpose": request["metadata"]["purpose"],
    }
    conditions = [["content-length-range", request["size"], request["size"]]]
    conditions += [{name: value} for name, value in fields.items()]
    form = client.generate_presigned_post(
        "user-content", key, Fields=fields, Conditions=conditions, ExpiresIn=600
    )
    return {**form, "key": key, "max_size": request["size"], "profile": "avatars"}


def put_url(request):
    """The media PUT URL: Content-Length, Content-Type and the metadata are signed headers."""
    if request.get("method") != "put":
        raise Refused("400 Bad Request", "this peer signs PUT URLs only")
    user = request["vars"]["user"]
    key = f"media/{user}/{uuid.uuid4()}/{request['filename']}"
    at = expires_at(900)
    url = client.generate_presigned_url(
        "put_object",
        Params={
            "Bucket": "user-content",
            "Key": key,
            "ContentLength": request["size"],
            "ContentType": request["content_type"],
            "Metadata": {"uploaded-by": user},
        },
        ExpiresIn=900,
    )
    headers = {
        "Content-Type": request["content_type"],
        "Content-Length": str(request["size"]),
        "x-amz-meta-uploaded-by": user,
    }
    return {"method": "PUT", "url": url, "headers": headers, "key": key, "expires_at": at}


def part_urls(request):
    """One UploadPart URL per part number (at most 1,000), each signing Content-Length."""
    numbers = request["part_numbers"]
    if not isinstance(numbers, list) or not 1 <= len(numbers) <= 1000:
        raise Refused("400 Bad Request", "name 1 to 1000 parts in part_numbers")
    at = expires_at(900)
    size = request["part_size"]
    params = {"Bucket": "user-content", "Key": request["key"], "UploadId": request["upload_id"], "ContentLength": size}
    parts = [
        {
            "part_number": number,
            "size": size,
            "url": client.generate_presigned_url("upload_part", Params={**params, "PartNumber": number}, ExpiresIn=900),
            "expires_at": at,
        }
        for number in numbers
    ]
    return {"parts": parts}


def load_keys(path):
    """The JWKS file at path as a PyJWT key set."""
    with open(path) as f:
        return jwt.PyJWKSet.from_dict(json.load(f))


def bearer_subject(authorization, keys):
    """The sub of a valid `Authorization: Bearer <JWT>`; anything else is a 401."""
    if keys is None:
        raise Refused("500 Internal Server Error", "BENCH_JWKS is not set")
    scheme, _, token = (authorization or "").partition(" ")
    if scheme.lower() != "bearer" or not token:
        raise Refused("401 Unauthorized", "a bearer token is required")
    try:
        key = keys[jwt.get_unverified_header(token).get("kid")]
        claims = jwt.decode(
            token,
            key,
            algorithms=["ES256", "RS256"],
            issuer="https://id.bench.example",
            audience="postgate-bench",
        )
    except (jwt.PyJWTError, KeyError):
        raise Refused("401 Unauthorized", "invalid token") from None
    if not isinstance(claims.get("sub"), str):
        raise Refused("401 Unauthorized", "invalid token")
    return claims["sub"]


KEYS = load_keys(os.environ["BENCH_JWKS"]) if os.environ.get("BENCH_JWKS") else None

ROUTES = {
    "/v1/profiles/avatars/presign": lambda request, environ: avatar_form(request, request["vars"]["user"]),
    "/v1/profiles/avatars/presign-jwt": lambda request, environ: avatar_form(
        request, bearer_subject(environ.get("HTTP_AUTHORIZATION"), KEYS)
    ),
    "/v1/profiles/media/presign": lambda request, environ: put_url(request),
    "/v1/uploads/parts": lambda request, environ: part_urls(request),
}


def app(environ, start_response):
    route = ROUTES.get(environ.get("PATH_INFO"))
    if environ["REQUEST_METHOD"] != "POST" or route is None:
        start_response("404 Not Found", [("Content-Length", "0")])
        return [b""]
    length = int(environ.get("CONTENT_LENGTH") or 0)
    request = json.loads(environ["wsgi.input"].read(length))
    try:
        body = json.dumps(route(request, environ)).encode()
    except Refused as refused:
        body = str(refused).encode()
        start_response(refused.status, [("Content-Type", "text/plain"), ("Content-Length", str(len(body)))])
        return [body]
    start_response("200 OK", [("Content-Type", "application/json"), ("Content-Length", str(len(body)))])
    return [body]
