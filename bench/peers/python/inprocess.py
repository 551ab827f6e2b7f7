"""In-process micro-benchmarks of the boto3 peer's work (the functions app.py serves), without
HTTP: one JSON line per case, the median time per operation over 9 batches of about 200 ms each,
after a warm-up of about 0.5 s that also sizes the batches. `python inprocess.py`; about 25 s."""
import json
import statistics
import time

import jwt
from cryptography.hazmat.primitives.asymmetric import ec, rsa

from app import avatar_form, bearer_subject, part_urls, put_url

BATCHES = 9
BATCH_NS = 200_000_000
WARMUP_NS = 500_000_000


def bench(name, op):
    count, start = 0, time.perf_counter_ns()
    while count < 3 or time.perf_counter_ns() - start < WARMUP_NS:
        op()
        count += 1
    batch = max(1, round(BATCH_NS / ((time.perf_counter_ns() - start) / count)))
    samples = []
    for _ in range(BATCHES):
        t0 = time.perf_counter_ns()
        for _ in range(batch):
            op()
        samples.append((time.perf_counter_ns() - t0) / batch)
    median_us = round(statistics.median(samples)) / 1000
    line = {"peer": "boto3", "case": name, "median_us": median_us, "ops": batch * BATCHES}
    print(json.dumps(line, separators=(",", ":")), flush=True)


def keys_and_authorization(alg):
    """A fresh key pair, its one-key JWKS and a token as jwt-setup.mjs makes it."""
    if alg == "ES256":
        private = ec.generate_private_key(ec.SECP256R1())
        jwk = jwt.algorithms.ECAlgorithm.to_jwk(private.public_key(), as_dict=True)
    else:
        private = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        jwk = jwt.algorithms.RSAAlgorithm.to_jwk(private.public_key(), as_dict=True)
    jwk.update(kid=alg.lower(), alg=alg, use="sig")
    now = int(time.time())
    claims = {"iss": "https://id.bench.example", "aud": "postgate-bench", "sub": "alice", "iat": now, "exp": now + 7200}
    token = jwt.encode(claims, private, algorithm=alg, headers={"kid": jwk["kid"], "typ": "JWT"})
    return jwt.PyJWKSet.from_dict({"keys": [jwk]}), f"Bearer {token}"


avatars = {
    "vars": {"user": "alice"},
    "filename": "me.png",
    "content_type": "image/png",
    "size": 12345,
    "metadata": {"purpose": "avatar"},
}
media = {"method": "put", "vars": {"user": "alice"}, "filename": "me.png", "content_type": "image/png", "size": 12345}
parts = {
    "upload_id": "2~bench-upload-id-0123456789",
    "key": "media/alice/0f8fad5b-d9cb-469f-a165-70867728950e/movie.mp4",
    "part_size": 5242880,
    "part_numbers": list(range(1, 1001)),
}
es256_keys, es256_authorization = keys_and_authorization("ES256")
rs256_keys, rs256_authorization = keys_and_authorization("RS256")

bench("post_form", lambda: avatar_form(avatars, avatars["vars"]["user"]))
bench("put_url", lambda: put_url(media))
bench("part_urls_1000", lambda: part_urls(parts))
bench("jwt_verify_es256", lambda: bearer_subject(es256_authorization, es256_keys))
bench("jwt_verify_rs256", lambda: bearer_subject(rs256_authorization, rs256_keys))
bench("jwt_presign_es256", lambda: avatar_form(avatars, bearer_subject(es256_authorization, es256_keys)))
