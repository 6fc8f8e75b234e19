"""Query API security end to end (docs/query-api.md, Security): bearer JWTs and API keys
(every authentication negative is a 401 that never echoes the credential), the roles x
sections x fields matrix against the oracle with PII masked for roles without the
entitlement, one audit line per read (no PII, no tokens in any log), rate limits (429 with
Retry-After) and oversized requests (414/431, never a crash)."""
import base64
import hashlib
import hmac
import http.client
import json
import os
import subprocess
import time
import urllib.parse

import pytest

import harness

VIEW = harness.VIEW
PROBLEM = "https://readmodel.dev/problems/"
ISSUER, AUDIENCE = "https://idp.test", "readmodel-test"
API_KEY = "svc-key-0123456789abcdef"
AUDIT_KEY = b"audit-hmac-key-for-the-tests-0001"

POLICY = f"""
roles:
  admin:
    pii: true
    views:
      customer360: {{sections: ["*"]}}
  agent:
    views:
      customer360:
        sections: [profile, orders, counters]
        fields: {{profile: [customer_id, name, email, phone, preferred_channel]}}
  analyst:
    views:
      customer360: {{sections: [orders, counters]}}
  nobody:
    views:
      other_view: {{sections: ["*"]}}
  elsewhere_pii:                # pii, but only for another view
    pii: true
    views:
      other_view: {{sections: ["*"]}}
  loyalty_pii:                  # pii, but only over a section without PII fields
    pii: true
    views:
      customer360: {{sections: [loyalty]}}
  verifier:                     # one PII field unmasked, granted per view and field
    views:
      customer360:
        sections: [profile]
        pii: [profile.email]
api_keys:
  - name: billing-service
    sha256: {hashlib.sha256(API_KEY.encode()).hexdigest()}
    roles: [agent]
"""
PROFILE_AGENT_FIELDS = ["customer_id", "name", "email", "phone", "preferred_channel"]
ROLE_SECTIONS = {"admin": None, "agent": {"profile", "orders", "counters"},
                 "analyst": {"orders", "counters"}}


def b64url(data):
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def jws(header, claims, sign):
    signing_input = (b64url(json.dumps(header).encode()) + "." +
                     b64url(json.dumps(claims).encode())).encode()
    return signing_input.decode() + "." + b64url(sign(signing_input))


def hs256(secret):
    return lambda data: hmac.new(secret, data, hashlib.sha256).digest()


def claims(**over):
    now = int(time.time())
    c = {"sub": "tester", "iss": ISSUER, "aud": AUDIENCE, "iat": now, "exp": now + 600,
         "roles": ["admin"]}
    c.update(over)
    return {k: v for k, v in c.items() if v is not None}


def mask(kind, value):
    """The masks of lib/mask.c, written again from their documentation."""
    if value is None:
        return None
    if kind == "last4":
        digits = [c for c in value if c.isdigit()]
        return "***" + "".join(digits[-4:]) if len(digits) >= 4 else "***"
    if kind == "email":
        local, at, domain = value.partition("@")
        return local[0] + "***@" + domain if at and local else "***"
    if kind == "initials":
        words = value.replace("\t", " ").replace("-", " ").split()
        return " ".join(w[0] + "." for w in words[:8]) if words else "***"
    return "***"


PROFILE_MASKS = {"name": "initials", "email": "email", "phone": "last4"}


def expected(sections, role, fields=None):
    """What role may see of the oracle's sections (fields: the ?fields= list)."""
    allowed = ROLE_SECTIONS[role]
    out = {}
    for name, value in sections.items():
        if allowed is not None and name not in allowed:
            continue
        if fields and name not in fields:
            continue
        if name == "profile" and value is not None and role != "admin":
            value = {f: (mask(PROFILE_MASKS[f], v) if f in PROFILE_MASKS else v)
                     for f, v in value.items() if f in PROFILE_AGENT_FIELDS}
        out[name] = value
    # fraud_holds is live; this test runs no risk service, so it is served unavailable (null)
    if (allowed is None or "fraud_holds" in allowed) and (not fields or "fraud_holds" in fields):
        out["fraud_holds"] = None
    return out




def bearer(token, request_id=None):
    h = {"Authorization": "Bearer " + token}
    if request_id:
        h["X-Request-Id"] = request_id
    return h


@pytest.fixture(scope="module")
def secured(tmp_path_factory):
    workdir = str(tmp_path_factory.mktemp("auth"))
    started = []
    try:
        broker = harness.DevBroker(workdir)
        started.append(broker)
        _, oracle_path = harness.simulate(broker.bootstrap, workdir, 60, 11)
        keys = {}
        for name in ("rs", "other"):
            priv = os.path.join(workdir, f"{name}.pem")
            subprocess.run(["openssl", "genpkey", "-algorithm", "RSA", "-pkeyopt",
                            "rsa_keygen_bits:2048", "-out", priv], check=True, capture_output=True)
            pub = os.path.join(workdir, f"{name}.pub.pem")
            subprocess.run(["openssl", "pkey", "-in", priv, "-pubout", "-out", pub],
                           check=True, capture_output=True)
            keys[name] = (priv, pub)
        secret = os.urandom(32).hex().encode()
        with open(os.path.join(workdir, "hs.secret"), "wb") as f:
            f.write(secret + b"\n")
        with open(os.path.join(workdir, "audit.key"), "wb") as f:
            f.write(AUDIT_KEY)
        policy = os.path.join(workdir, "policy.yaml")
        with open(policy, "w") as f:
            f.write(POLICY)
        audit = os.path.join(workdir, "audit.jsonl")
        settings = {
            "query_api__auth.enabled": "on", "query_api__auth.policy": policy,
            "query_api__auth.issuer": ISSUER, "query_api__auth.audience": AUDIENCE,
            "query_api__auth.hs256_secret_file": os.path.join(workdir, "hs.secret"),
            "query_api__auth.hs256_kid": "hs1",
            "query_api__auth.jwt_keys": f"rs1:RS256:{keys['rs'][1]}",
            "query_api__auth.leeway_s": 5,
            "query_api__audit.file": audit,
            "query_api__audit.hmac_key_file": os.path.join(workdir, "audit.key"),
        }
        config = harness.write_config(workdir, broker.bootstrap, projector__metrics_listen="",
                                      **settings)
        out = harness.run_projector(config)
        assert out.returncode == 0, out.stderr[-3000:]
        api = harness.QueryApi(workdir, config, harness.free_port())
        started.append(api)
        oracle = {e["key"]: e for e in harness.read_oracle(oracle_path) if not e["erased"]}

        def rs256(priv):
            def sign(data):
                return subprocess.run(["openssl", "dgst", "-sha256", "-sign", priv], input=data,
                                      check=True, capture_output=True).stdout
            return sign
        yield {"api": api, "oracle": oracle, "config": config, "secret": secret, "keys": keys,
               "rs256": rs256, "audit": audit, "workdir": workdir, "settings": settings,
               "broker": broker}
    finally:
        for proc in reversed(started):
            proc.stop()


def assert_401(api, path, headers, credential, reason=None):
    status, hdrs, body = harness.http_request(api.base, path, headers)
    assert status == 401, (headers, status, body)
    assert hdrs["www-authenticate"].startswith("Bearer realm=\"readmodel\""), hdrs
    problem = json.loads(body)
    assert problem["type"] == PROBLEM + "unauthorized" and problem["status"] == 401
    if reason:
        assert reason in problem["detail"], problem
    # the credential is never echoed, not even a piece of its signature
    for piece in [credential] + credential.split("."):
        if len(piece) >= 8:
            assert piece.encode() not in body and piece not in json.dumps(hdrs), piece[:20]
    return problem


def test_open_routes_and_401s(secured):
    api, oracle, rs256, keys = secured["api"], secured["oracle"], secured["rs256"], secured["keys"]
    key = next(iter(oracle))
    path = VIEW + key
    for open_path in ("/healthz", "/readyz", "/metrics", "/openapi.json", "/dashboard",
                      "/v1/status", "/v1/status/history", "/ui/"):
        status, _, _ = harness.http_request(api.base, open_path)
        assert status == 200, open_path
    status, hdrs, body = harness.http_request(api.base, path)
    assert status == 401 and hdrs["www-authenticate"] == 'Bearer realm="readmodel"'
    assert harness.http_request(api.base, VIEW[:-1] + "?order_id=x")[0] == 401
    secret, pub = secured["secret"], open(keys["rs"][1], "rb").read()
    good_rs = jws({"alg": "RS256", "kid": "rs1", "typ": "JWT"}, claims(), rs256(keys["rs"][0]))
    assert harness.http_request(api.base, path, bearer(good_rs))[0] == 200
    good_hs = jws({"alg": "HS256", "kid": "hs1"}, claims(), hs256(secret))
    assert harness.http_request(api.base, path, bearer(good_hs))[0] == 200
    now = int(time.time())
    negatives = {
        "alg none": (b64url(b'{"alg":"none","kid":"rs1"}') + "." +
                     b64url(json.dumps(claims()).encode()) + ".", "alg none"),
        "alg none, no kid": (b64url(b'{"alg":"none"}') + "." +
                             b64url(json.dumps(claims()).encode()) + ".", "alg none"),
        # the RS public key used as an HMAC secret: algorithm confusion
        "HS/RS confusion": (jws({"alg": "HS256", "kid": "rs1"}, claims(), hs256(pub)),
                            "algorithm not allowed"),
        "RS token on the HS kid": (jws({"alg": "RS256", "kid": "hs1"}, claims(),
                                       rs256(keys["rs"][0])), "algorithm not allowed"),
        "expired": (jws({"alg": "HS256", "kid": "hs1"}, claims(exp=now - 60), hs256(secret)),
                    "expired"),
        "not yet valid": (jws({"alg": "HS256", "kid": "hs1"}, claims(nbf=now + 600),
                              hs256(secret)), "not yet valid"),
        "no exp": (jws({"alg": "HS256", "kid": "hs1"}, claims(exp=None), hs256(secret)),
                   "no exp"),
        "wrong issuer": (jws({"alg": "HS256", "kid": "hs1"}, claims(iss="https://evil"),
                             hs256(secret)), "wrong issuer"),
        "wrong audience": (jws({"alg": "HS256", "kid": "hs1"}, claims(aud=["a", "b"]),
                               hs256(secret)), "wrong audience"),
        "unknown kid": (jws({"alg": "RS256", "kid": "rs9"}, claims(), rs256(keys["rs"][0])),
                        "unknown key id"),
        "signed by another key": (jws({"alg": "RS256", "kid": "rs1"}, claims(),
                                      rs256(keys["other"][0])), "bad signature"),
        "wrong secret": (jws({"alg": "HS256", "kid": "hs1"}, claims(), hs256(b"x" * 40)),
                         "bad signature"),
        "oversized": (jws({"alg": "HS256", "kid": "hs1"}, claims(pad="p" * 9000),
                          hs256(secret)), "too large"),
        "garbage": ("not-a-token-at-all", "malformed"),
    }
    for name, (token, reason) in negatives.items():
        assert_401(api, path, bearer(token), token, reason)
    # a valid token for the audience array form is accepted
    assert harness.http_request(api.base, path, bearer(jws({"alg": "HS256", "kid": "hs1"},
                                         claims(aud=["x", AUDIENCE]), hs256(secret))))[0] == 200
    assert_401(api, path, {"Authorization": "Basic " + good_hs}, good_hs, "Bearer")
    assert_401(api, path, {"X-Api-Key": "wrong-key-123456789"}, "wrong-key-123456789",
               "unknown API key")
    assert harness.http_request(api.base, path, {"X-Api-Key": API_KEY})[0] == 200


def test_authz_matrix_masks_pii(secured):
    api, oracle, config = secured["api"], secured["oracle"], secured["config"]
    tokens = {role: harness.mint_token(config, f"user-{role}", role) for role in ROLE_SECTIONS}
    keys = [k for k, e in oracle.items() if e["sections"]["profile"]][:12]
    assert keys
    pii_strings = {v for k in keys for f, v in oracle[k]["sections"]["profile"].items()
                   if f in PROFILE_MASKS and v}
    etags = {}
    for role, token in tokens.items():
        for key in keys:
            for fields in (None, ["orders"], ["profile", "counters"]):
                path = VIEW + urllib.parse.quote(key, safe="")
                if fields:
                    path += "?fields=" + ",".join(fields)
                status, hdrs, body = harness.http_request(api.base, path, bearer(token))
                allowed = ROLE_SECTIONS[role]
                if fields and allowed is not None and not set(fields) <= allowed:
                    assert status == 403, (role, fields, body)
                    assert json.loads(body)["type"] == PROBLEM + "forbidden-section"
                    continue
                assert status == 200, (role, key, fields, body)
                doc = json.loads(body)
                want = expected(oracle[key]["sections"], role, fields)
                diff = harness.first_difference(doc["sections"], want)
                assert diff is None, (role, key, fields, diff)
                assert set(doc["freshness"]) == set(want)
                if role != "admin":
                    leaked = [s for s in pii_strings if s.encode() in body]
                    assert not leaked, (role, key, "unmasked PII in the body")
                if not fields:
                    etags.setdefault(key, {})[role] = hdrs["etag"]
    for key, by_role in etags.items():
        assert len(set(by_role.values())) == len(by_role), (key, "ETag must differ per role shape")
    # a principal with no grant on this view reads nothing
    nobody = harness.mint_token(config, "user-nobody", "nobody")
    status, _, body = harness.http_request(api.base, VIEW + keys[0], bearer(nobody))
    assert status == 403 and json.loads(body)["type"] == PROBLEM + "forbidden"
    # lookups: a PII index needs the entitlement; the summary is masked like the view
    email = oracle[keys[0]]["sections"]["profile"]["email"]
    q = VIEW[:-1] + "?email=" + urllib.parse.quote(email)
    status, _, body = harness.http_request(api.base, q, bearer(tokens["agent"]))
    assert status == 403 and json.loads(body)["type"] == PROBLEM + "forbidden-lookup"
    status, _, body = harness.http_request(api.base, q, bearer(tokens["admin"]))
    assert status == 200 and keys[0] in [m["key"] for m in json.loads(body)["matches"]]
    order = next(k for k in keys if oracle[k]["sections"]["orders"])
    q = VIEW[:-1] + "?order_id=" + urllib.parse.quote(oracle[order]["sections"]["orders"][0]["order_id"])
    status, _, body = harness.http_request(api.base, q, bearer(tokens["agent"]))
    assert status == 200, body
    (match,) = json.loads(body)["matches"]
    assert match["key"] == order
    assert match["profile"] == expected(oracle[order]["sections"], "agent")["profile"]
    status, _, body = harness.http_request(api.base, q, bearer(tokens["analyst"]))
    assert status == 200 and "profile" not in json.loads(body)["matches"][0]


def test_pii_is_granted_per_view_and_field(secured):
    """PII is unmasked, and searchable, only where a role grants it: for the view it names,
    over the sections and fields that same role grants. A pii role on another view, or on
    a section without PII, unmasks nothing in what another role of the same token shows,
    and a lookup by a field needs the right to read that very field."""
    api, oracle, config = secured["api"], secured["oracle"], secured["config"]
    key = next(k for k, e in oracle.items() if e["sections"]["profile"] and
               e["sections"]["profile"].get("email") and e["sections"]["profile"].get("phone"))
    profile = oracle[key]["sections"]["profile"]
    by_email = VIEW[:-1] + "?email=" + urllib.parse.quote(profile["email"])
    by_phone = VIEW[:-1] + "?phone=" + urllib.parse.quote(profile["phone"])

    def read(*roles):
        token = harness.mint_token(config, "pii-" + "-".join(roles), *roles)
        status, _, body = harness.http_request(api.base, VIEW + urllib.parse.quote(key, safe=""), bearer(token))
        assert status == 200, (roles, body)
        return json.loads(body)["sections"], token

    for roles in (("agent", "elsewhere_pii"), ("agent", "loyalty_pii")):
        sections, token = read(*roles)
        for field, kind in PROFILE_MASKS.items():
            assert sections["profile"][field] == mask(kind, profile[field]), (roles, field)
        status, _, body = harness.http_request(api.base, by_email, bearer(token))
        assert status == 403 and json.loads(body)["type"] == PROBLEM + "forbidden-lookup", roles
    # pii over loyalty alone: no lookup by a profile field
    token = harness.mint_token(config, "pii-loyalty-only", "loyalty_pii")
    assert harness.http_request(api.base, by_email, bearer(token))[0] == 403
    # one field granted: that field unmasked and searchable, the others masked and not
    sections, token = read("verifier")
    assert sections["profile"]["email"] == profile["email"]
    assert sections["profile"]["phone"] == mask("last4", profile["phone"])
    assert sections["profile"]["name"] == mask("initials", profile["name"])
    status, _, body = harness.http_request(api.base, by_email, bearer(token))
    assert status == 200 and key in [m["key"] for m in json.loads(body)["matches"]], body
    status, _, body = harness.http_request(api.base, by_phone, bearer(token))
    assert status == 403 and json.loads(body)["type"] == PROBLEM + "forbidden-lookup"


def test_keep_alive_connection_rechecks_every_token(secured):
    """One connection, several credentials (the per-connection token memo, http_auth.h):
    a token that differs from the remembered one by a byte is verified (and refused), a
    second principal's token gets its own grants, and a remembered token that expired
    (exp + leeway) is refused although it verified on this very connection."""
    api, oracle, config = secured["api"], secured["oracle"], secured["config"]
    key = next(iter(oracle))
    admin = harness.mint_token(config, "memo-admin", "admin")
    analyst = harness.mint_token(config, "memo-analyst", "analyst")
    forged = admin[:-4] + ("AAAA" if not admin.endswith("AAAA") else "BBBB")
    now = int(time.time())
    # HS256 signed with the test secret: exp 1 s ahead, so with the 5 s leeway it dies
    # about 6 s from now.
    short = jws({"alg": "HS256", "typ": "JWT", "kid": "hs1"},
                claims(sub="memo-short", exp=now + 1), hs256(secured["secret"]))
    host, port = api.base.rsplit("/", 1)[1].split(":")
    conn = http.client.HTTPConnection(host, int(port), timeout=30)

    def get(token):
        conn.request("GET", VIEW + key, headers={"Authorization": "Bearer " + token})
        resp = conn.getresponse()
        return resp.status, json.loads(resp.read())

    try:
        status, doc = get(admin)
        assert status == 200 and "profile" in doc["sections"]
        assert get(forged)[0] == 401
        status, doc = get(analyst)
        assert status == 200 and set(doc["sections"]) == ROLE_SECTIONS["analyst"]
        status, doc = get(admin)
        assert status == 200 and "profile" in doc["sections"]
        assert get(short)[0] == 200
        harness.wait_until(lambda: time.time() > now + 1 + 5 + 1, 15, "the token's expiry")
        status, problem = get(short)
        assert status == 401 and "expired" in problem["detail"], problem
    finally:
        conn.close()


def test_audit_line_for_every_read(secured):
    api, oracle, config = secured["api"], secured["oracle"], secured["config"]
    token = harness.mint_token(config, "auditor-check", "agent")
    keys = list(oracle)[:5]
    sent = {}
    for i, key in enumerate(keys):
        rid = f"audit-{os.getpid()}-{i}"
        status, hdrs, _ = harness.http_request(api.base, VIEW + key, bearer(token, rid))
        assert hdrs["x-request-id"] == rid
        sent[rid] = (key, status, "view_read")
    rid = f"audit-{os.getpid()}-forbidden"
    sent[rid] = (keys[0], harness.http_request(api.base, VIEW + keys[0] + "?fields=loyalty", bearer(token, rid))[0],
                 "view_read")
    # an unauthenticated request read nothing: a 401 is counted in the metrics, not audited
    anon = f"audit-{os.getpid()}-anon"
    assert harness.http_request(api.base, VIEW + keys[1], {"X-Request-Id": anon})[0] == 401
    email = oracle[keys[2]]["sections"]["profile"]["email"]
    rid = f"audit-{os.getpid()}-lookup"
    sent[rid] = (None, harness.http_request(api.base, VIEW[:-1] + "?email=" + urllib.parse.quote(email),
                               bearer(token, rid))[0], "lookup")

    def lines():
        with open(secured["audit"]) as f:
            return [json.loads(line) for line in f]
    got = harness.wait_until(lambda: [ln for ln in lines() if ln["request_id"] in sent]
                             if len([ln for ln in lines() if ln["request_id"] in sent]) >= len(sent)
                             else None, 10, "audit lines")
    assert sorted(ln["request_id"] for ln in got) == sorted(sent), "exactly one line per read"
    assert not [ln for ln in lines() if ln["request_id"] == anon], "a 401 is not a read"
    for line in got:
        key, status, event = sent[line["request_id"]]
        assert line["status"] == status and line["event"] == event and line["view"] == "customer360"
        if key:
            assert line["key_hmac"] == hmac.new(AUDIT_KEY, key.encode(), hashlib.sha256).hexdigest()
        if line["request_id"].endswith("forbidden"):
            assert status == 403 and line["sections"] == []
        elif event == "lookup":
            assert status == 403 and line["index"] == "email"
            assert line["value_hmac"] == hmac.new(AUDIT_KEY, email.encode(), hashlib.sha256).hexdigest()
        else:
            assert status == 200 and line["principal"] == "auditor-check" and line["auth"] == "jwt"
            assert line["sections"] == ["profile", "orders", "counters"]


def raw_request(api, method, path, headers=None, body=b""):
    host, port = api.base.rsplit("/", 1)[1].split(":")
    conn = http.client.HTTPConnection(host, int(port), timeout=30)
    try:
        conn.request(method, path, body=body, headers=headers or {})
        resp = conn.getresponse()
        return resp.status, {k.lower(): v for k, v in resp.getheaders()}, resp.read()
    finally:
        conn.close()


def test_audit_records_reads_not_noise(secured):
    """The audit log records reads, not what an attacker controls: a 401, a 429 and a
    405 (any method but GET and HEAD, with Allow) write no line; other methods are rate-
    limited like reads. The read sent last is audited, and lines are written in order,
    so once its line is there every earlier one would be too."""
    settings = dict(secured["settings"])
    audit = os.path.join(secured["workdir"], "noise-audit.jsonl")
    settings.update({"query_api__rate_limit.principal_rps": 1,
                     "query_api__rate_limit.principal_burst": 1,
                     "query_api__audit.file": audit})
    config = harness.write_config(secured["workdir"], secured["broker"].bootstrap,
                                  name="noise.yaml", projector__metrics_listen="", **settings)
    api = harness.QueryApi(secured["workdir"], config, harness.free_port())
    key = next(iter(secured["oracle"]))
    tag = f"noise-{os.getpid()}"
    try:
        noisy = harness.mint_token(config, "noisy-user", "agent")
        final = harness.mint_token(config, "closing-user", "agent")
        for i in range(5):
            assert harness.http_request(api.base, VIEW + key, {"X-Request-Id": f"{tag}-anon-{i}"})[0] == 401
        for i, method in enumerate(("POST", "PUT", "DELETE")):
            status, hdrs, body = raw_request(api, method, VIEW + key,
                                             {**bearer(noisy, f"{tag}-{method}"),
                                              "Content-Length": "2"}, b"{}")
            assert status == 405 and hdrs["allow"] == "GET, HEAD", (method, status, body)
        codes = [harness.http_request(api.base, VIEW + key, bearer(noisy, f"{tag}-limited-{i}"))[0]
                 for i in range(3)]
        assert codes[0] == 200 and 429 in codes[1:], codes
        assert harness.http_request(api.base, VIEW + key, bearer(final, f"{tag}-final"))[0] == 200

        def lines():
            with open(audit) as f:
                return [json.loads(line) for line in f]
        harness.wait_until(lambda: any(ln["request_id"] == f"{tag}-final" for ln in lines()),
                           10, "the last read's audit line")
        got = sorted(ln["request_id"] for ln in lines() if ln["request_id"].startswith(tag))
        assert got == [f"{tag}-final", f"{tag}-limited-0"], got
    finally:
        api.stop()
    # other methods spend the per-address budget like reads do
    settings.update({"query_api__rate_limit.ip_rps": 1, "query_api__rate_limit.ip_burst": 2,
                     "query_api__rate_limit.principal_rps": 0})
    config = harness.write_config(secured["workdir"], secured["broker"].bootstrap,
                                  name="noise-ip.yaml", projector__metrics_listen="", **settings)
    api = harness.QueryApi(secured["workdir"], config, harness.free_port())
    try:
        codes = [raw_request(api, "POST", VIEW + key, {"Content-Length": "2"}, b"{}")[0]
                 for _ in range(10)]
        assert 429 in codes and set(codes) <= {405, 429}, codes
    finally:
        api.stop()


def test_no_pii_or_tokens_in_logs(secured):
    """Runs after the reads above (same module): nothing they sent or read is in a log."""
    api, oracle, config = secured["api"], secured["oracle"], secured["config"]
    token = harness.mint_token(config, "log-check", "admin")
    for key in list(oracle)[:10]:
        assert harness.http_request(api.base, VIEW + key, bearer(token))[0] == 200
        harness.http_request(api.base, VIEW + key, bearer(token[:-4] + "AAAA"))  # a 401 with a near-token
    email = oracle[next(iter(oracle))]["sections"]["profile"]["email"]
    harness.http_request(api.base, VIEW[:-1] + "?email=" + urllib.parse.quote(email), bearer(token))
    texts = [open(secured["audit"]).read(), api.log_text()]
    secrets = [token, token.split(".")[2], API_KEY, secured["secret"].decode()]
    pii = {v for e in oracle.values() if e["sections"]["profile"]
           for f, v in e["sections"]["profile"].items() if f in ("email", "phone") and v}
    assert pii and texts[0]
    for text in texts:
        for s in secrets:
            assert s not in text
        leaked = [p for p in pii if p in text]
        assert not leaked, leaked[:3]


def test_rate_limits_and_oversized_requests(secured):
    settings = dict(secured["settings"])
    settings.update({"query_api__rate_limit.principal_rps": 1,
                     "query_api__rate_limit.principal_burst": 3,
                     "query_api__rate_limit.ip_rps": 1000, "query_api__rate_limit.ip_burst": 1000})
    workdir = secured["workdir"]
    config = harness.write_config(workdir, secured["broker"].bootstrap, name="limited.yaml",
                                  projector__metrics_listen="", **settings)
    api = harness.QueryApi(workdir, config, harness.free_port())
    try:
        key = next(iter(secured["oracle"]))
        token = harness.mint_token(config, "busy-user", "agent")
        statuses = [harness.http_request(api.base, VIEW + key, bearer(token)) for _ in range(6)]
        codes = [s for s, _, _ in statuses]
        assert codes[:3] == [200, 200, 200] and 429 in codes[3:], codes
        status, hdrs, body = next(r for r in statuses if r[0] == 429)
        assert int(hdrs["retry-after"]) >= 1
        assert json.loads(body)["type"] == PROBLEM + "rate-limited"
        # another principal has its own bucket
        other = harness.mint_token(config, "calm-user", "agent")
        assert harness.http_request(api.base, VIEW + key, bearer(other))[0] == 200
        # oversized requests: 4xx, and the server lives on
        assert harness.http_request(api.base, VIEW + "C" * 5000, bearer(other))[0] == 414
        assert harness.http_request(api.base, VIEW + key + "?fields=" + "x" * 5000, bearer(other))[0] == 414
        assert harness.http_request(api.base, VIEW + key, {**bearer(other), "X-Big": "y" * 20000})[0] == 431
        status = harness.http_request(api.base, VIEW + key, {**bearer(other), "X-Huge": "z" * 70000})[0]
        assert 400 <= status < 500, status
        assert harness.http_request(api.base, "/healthz")[0] == 200
    finally:
        api.stop()
    # the per-address limit: a burst of 2 at 1/s from this one address
    settings.update({"query_api__rate_limit.ip_rps": 1, "query_api__rate_limit.ip_burst": 2,
                     "query_api__rate_limit.principal_rps": 0})
    config = harness.write_config(workdir, secured["broker"].bootstrap, name="iplimited.yaml",
                                  projector__metrics_listen="", **settings)
    port = harness.free_port()
    api = harness.QueryApi(workdir, config, port)  # its /healthz polls may use the burst
    try:
        codes = [harness.http_request(api.base, "/healthz")[0] for _ in range(4)]
        assert 429 in codes, codes
    finally:
        api.stop()


def test_auth_config_errors_exit_2(secured, tmp_path):
    query_api = harness.binary("query-api/query-api")
    base = dict(secured["settings"])
    cases = {
        "no policy": {"query_api__auth.policy": ""},
        "no issuer": {"query_api__auth.issuer": ""},
        "short secret": {"query_api__auth.hs256_secret_file": str(tmp_path / "short")},
        "private key as public": {"query_api__auth.jwt_keys":
                                  f"rs1:RS256:{secured['keys']['rs'][0]}"},
        "HS256 in jwt_keys": {"query_api__auth.jwt_keys": f"rs1:HS256:{secured['keys']['rs'][1]}"},
    }
    (tmp_path / "short").write_text("too-short\n")
    for name, change in cases.items():
        config = harness.write_config(str(tmp_path), secured["broker"].bootstrap,
                                      name=f"bad-{len(name)}.yaml", **{**base, **change})
        out = subprocess.run([query_api, "--config", config, "--set",
                              f"query_api.listen=127.0.0.1:{harness.free_port()}"],
                             capture_output=True, text=True, timeout=30)
        assert out.returncode == 2, (name, out.stderr[-500:])
    bad_policy = tmp_path / "bad-policy.yaml"
    bad_policy.write_text("roles:\n  agent:\n    views:\n      customer360: {sections: [bogus]}\n")
    config = harness.write_config(str(tmp_path), secured["broker"].bootstrap, name="badpol.yaml",
                                  **{**base, "query_api__auth.policy": str(bad_policy)})
    out = subprocess.run([query_api, "--config", config], capture_output=True, text=True, timeout=30)
    assert out.returncode == 2 and "bad-policy.yaml:4" in out.stderr and "bogus" in out.stderr
