"""The avatars presign request, served by boto3's generate_presigned_post under gunicorn."""
import json
import uuid

import boto3

client = boto3.client(
    "s3",
    region_name="eu-west-1",
    aws_access_key_id="AKIAIOSFODNN7EXAMPLE",
    aws_secret_access_key="wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY",
)


def app(environ, start_response):
    if environ["REQUEST_METHOD"] != "POST":
        start_response("404 Not Found", [("Content-Length", "0")])
        return [b""]
    length = int(environ.get("CONTENT_LENGTH") or 0)
    request = json.loads(environ["wsgi.input"].read(length))
    user = request["vars"]["user"]
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
    body = json.dumps({**form, "key": key, "max_size": request["size"], "profile": "avatars"}).encode()
    start_response("200 OK", [("Content-Type", "application/json"), ("Content-Length", str(len(body)))])
    return [body]
