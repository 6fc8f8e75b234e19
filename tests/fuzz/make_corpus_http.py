#!/usr/bin/python3
"""Writes the seed corpus of fuzz_http: requests as "METHOD\\nURL\\nName: value\\n...".

Valid routes, lookups, fields, list pages and cursors, consistency tokens, and the abuse
abuse shapes: percent-encoding tricks (%00, %2F, %252F, overlong UTF-8, truncated
escapes), long keys, and bearer tokens that are valid, expired, not yet valid, alg=none,
signed with another secret, for another issuer or audience, huge, or malformed. Tokens are
signed with fuzz_http.c's fixed HS256 secret against its fixed clock (FUZZ_NOW_S)."""
import base64
import hashlib
import hmac
import json
import os
import struct
import sys

SECRET = b"fuzz-hs256-secret-0123456789abcdef"  # = FUZZ_HS256_SECRET
KID = "hs1"
ISSUER, AUDIENCE = "https://idp.fuzz", "readmodel-fuzz"
API_KEY = "fuzz-api-key-0123456789abcdef"
NOW_S = 1900000000
VIEW = "/v1/views/customer360/"


def b64url(data):
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def token(header=None, secret=SECRET, **claims):
    head = {"alg": "HS256", "typ": "JWT", "kid": KID}
    head.update(header or {})
    body = {"sub": "fuzzer", "iss": ISSUER, "aud": AUDIENCE, "iat": NOW_S, "exp": NOW_S + 3600,
            "roles": ["admin"]}
    body.update(claims)
    body = {k: v for k, v in body.items() if v is not None}
    signing_input = b64url(json.dumps(head).encode()) + "." + b64url(json.dumps(body).encode())
    sig = hmac.new(secret, signing_input.encode(), hashlib.sha256).digest()
    return signing_input + "." + b64url(sig)


def cursor(sort, item_id):
    """As http_params_cursor_encode: version 1, big-endian sort key, item id."""
    return b64url(b"\x01" + struct.pack(">q", sort) + item_id.encode())


def request(url, headers=(), method="GET"):
    lines = [method, url] + [f"{name}: {value}" for name, value in headers]
    return "\n".join(lines).encode("utf-8", "surrogateescape")


def seeds():
    admin = ("Authorization", "Bearer " + token())
    agent = ("Authorization", "Bearer " + token(sub="agent-1", roles=["agent"]))
    key = ("X-Api-Key", API_KEY)
    # routes
    yield "healthz", request("/healthz")
    yield "metrics", request("/metrics")
    yield "status", request("/v1/status")
    yield "unknown-route", request("/v2/nothing")
    yield "post", request(VIEW + "C1", [admin], method="POST")
    yield "head", request(VIEW + "C1", [admin], method="HEAD")
    yield "view", request(VIEW + "C00001", [admin])
    yield "view-api-key", request(VIEW + "C00001", [key])
    yield "view-agent-fields", request(VIEW + "C1?fields=profile,orders", [agent])
    yield "view-forbidden-field", request(VIEW + "C1?fields=loyalty", [agent])
    yield "view-unknown-field", request(VIEW + "C1?fields=profile,nope", [admin])
    yield "view-empty-field", request(VIEW + "C1?fields=profile,,orders", [admin])
    yield "view-pages", request(VIEW + "C1?orders_limit=5&orders_cursor=" + cursor(1700000000000, "O17")
                                + "&returns_limit=1", [admin])
    yield "view-bad-cursor", request(VIEW + "C1?orders_cursor=AQ", [admin])
    yield "view-limit-overflow", request(VIEW + "C1?orders_limit=99999999999999999999", [admin])
    yield "view-staleness", request(VIEW + "C1?max_staleness_ms=5000&wait_ms=100", [admin])
    yield "view-tokens", request(VIEW + "C1?min_offsets=customers:0:10,orders:3:7,customers:0:12",
                                 [admin, ("X-Readmodel-Min-Offsets", "payments:1:99")])
    yield "view-token-unknown-topic", request(VIEW + "C1?min_offsets=nosuch:0:1", [admin])
    yield "view-token-malformed", request(VIEW + "C1?min_offsets=customers:-1:1:2", [admin])
    yield "view-etag", request(VIEW + "C1", [admin, ("If-None-Match", 'W/"0123456789abcdef", "x"')])
    yield "view-etag-star", request(VIEW + "C1", [admin, ("If-None-Match", "*")])
    yield "view-etag-broken", request(VIEW + "C1", [admin, ("If-None-Match", '"unterminated, ,')])
    # lookups
    yield "lookup-email", request("/v1/views/customer360?email=Ada%40Example.com", [admin])
    yield "lookup-phone", request("/v1/views/customer360?phone=%2B44+20+7946+0000", [agent])
    yield "lookup-order", request("/v1/views/customer360?order_id=O17", [key])
    yield "lookup-two", request("/v1/views/customer360?email=a%40b&phone=1", [admin])
    yield "lookup-none", request("/v1/views/customer360?fields=profile", [admin])
    yield "lookup-other-view", request("/v1/views/other?email=a%40b", [admin])
    # percent-encoding tricks
    yield "key-nul", request(VIEW + "C%001", [admin])
    yield "key-slash", request(VIEW + "C%2F1", [admin])
    yield "key-raw-slash", request(VIEW + "C/1", [admin])
    yield "key-double-encoded", request(VIEW + "C%252F1", [admin])
    yield "key-overlong-utf8", request(VIEW + "%C0%AF%E0%80%AF%F0%80%80%AF", [admin])
    yield "key-truncated-escape", request(VIEW + "C1%4", [admin])
    yield "key-bad-hex", request(VIEW + "C1%zz", [admin])
    yield "key-long", request(VIEW + "K" * 129, [admin])
    yield "key-long-encoded", request(VIEW + "%41" * 129, [admin])
    yield "view-name-bad", request("/v1/views/cust%2e360/C1", [admin])
    yield "arg-nul", request(VIEW + "C1?fields=profile%00orders", [admin])
    yield "arg-no-value", request(VIEW + "C1?fields&orders_limit=", [admin])
    yield "lookup-nul", request("/v1/views/customer360?email=a%00b", [admin])
    yield "path-long", request("/v1/views/customer360/" + "x" * 3000, [admin])
    # credentials
    yield "token-expired", request(VIEW + "C1", [("Authorization", "Bearer " + token(exp=NOW_S - 3600))])
    yield "token-nbf", request(VIEW + "C1", [("Authorization", "Bearer " + token(nbf=NOW_S + 3600))])
    yield "token-no-exp", request(VIEW + "C1", [("Authorization", "Bearer " + token(exp=None))])
    yield "token-no-sub", request(VIEW + "C1", [("Authorization", "Bearer " + token(sub=None))])
    yield "token-wrong-iss", request(VIEW + "C1", [("Authorization", "Bearer " + token(iss="https://evil"))])
    yield "token-aud-list", request(VIEW + "C1", [("Authorization", "Bearer " + token(aud=["x", AUDIENCE]))])
    yield "token-roles-string", request(VIEW + "C1", [("Authorization", "Bearer " + token(roles="analyst"))])
    yield "token-roles-odd", request(VIEW + "C1", [("Authorization", "Bearer " + token(roles=[1, None, "nobody"]))])
    yield "token-other-secret", request(VIEW + "C1", [("Authorization", "Bearer " + token(secret=b"guess"))])
    yield "token-unknown-kid", request(VIEW + "C1", [("Authorization", "Bearer " + token({"kid": "k9"}))])
    yield "token-rs256", request(VIEW + "C1", [("Authorization", "Bearer " + token({"alg": "RS256"}))])
    none = b64url(b'{"alg":"none","typ":"JWT"}') + "." + b64url(json.dumps(
        {"sub": "x", "iss": ISSUER, "aud": AUDIENCE, "exp": NOW_S + 60}).encode()) + "."
    yield "token-alg-none", request(VIEW + "C1", [("Authorization", "Bearer " + none)])
    yield "token-huge", request(VIEW + "C1", [("Authorization", "Bearer " + token(pad="p" * 9000))])
    yield "token-malformed", request(VIEW + "C1", [("Authorization", "Bearer a.b.c")])
    yield "token-scheme", request(VIEW + "C1", [("Authorization", "Basic dXNlcjpwYXNz")])
    yield "token-and-key", request(VIEW + "C1", [admin, key])
    yield "key-wrong", request(VIEW + "C1", [("X-Api-Key", "nope")])
    yield "no-credentials", request(VIEW + "C1")
    yield "empty", b""


def main():
    out = sys.argv[1] if len(sys.argv) > 1 else os.path.join(os.path.dirname(__file__), "corpus-http")
    os.makedirs(out, exist_ok=True)
    for name, data in seeds():
        with open(os.path.join(out, name), "wb") as f:
            f.write(data)


if __name__ == "__main__":
    main()
