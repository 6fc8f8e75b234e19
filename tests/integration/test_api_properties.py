"""Property-based checking of the whole query API against its own /openapi.json, with the
demo's roles (tools/demo: demo-admin with PII, agent with every section and PII masked) plus
a narrower analyst and an anonymous caller: schemathesis generates the requests
(api_properties.py, run in the venv of tools/lib.sh rm_python_test_deps), every answer
must match the document with no 5xx, and no answer to a lower role may hold a section, a
freshness entry or an unmasked PII value that role may not see."""
import json
import os
import subprocess
import time
import urllib.parse

import pytest

import harness
from test_auth import mask

VENV_PYTHON = os.path.join(harness.ROOT, ".cache", "pyvenv", "bin", "python")
MAX_EXAMPLES = 100         # per operation and role: 8 operations x 4 roles, ~2,800 requests
POLICY = """
roles:
  demo-admin: {pii: true, views: {customer360: {sections: ["*"]}}}
  agent: {views: {customer360: {sections: ["*"]}}}
  analyst: {views: {customer360: {sections: [orders, counters]}}}
"""
ALL = None
ROLE_SECTIONS = {"demo-admin": ALL, "agent": ALL, "analyst": {"orders", "counters"}}
PROFILE_MASKS = {"name": "initials", "email": "email", "phone": "last4"}


@pytest.fixture(scope="module")
def api(tmp_path_factory):
    if not os.path.exists(VENV_PYTHON):
        pytest.skip("no .cache/pyvenv: tools/test installs schemathesis there "
                    "(tools/lib.sh rm_python_test_deps)")
    workdir = str(tmp_path_factory.mktemp("properties"))
    started = []
    try:
        broker = harness.DevBroker(workdir)
        started.append(broker)
        _, oracle_path = harness.simulate(broker.bootstrap, workdir, 40, 17)
        policy = os.path.join(workdir, "policy.yaml")
        with open(policy, "w") as f:
            f.write(POLICY)
        secret = os.path.join(workdir, "hs.secret")
        with open(secret, "w") as f:
            f.write(os.urandom(32).hex() + "\n")
        config = harness.write_config(
            workdir, broker.bootstrap, projector__metrics_listen="",
            # generated consistency tokens may name offsets never reached: keep waits short
            query_api__consistency_wait_ms=100, **{
                "query_api__auth.enabled": "on", "query_api__auth.policy": policy,
                "query_api__auth.hs256_secret_file": secret, "query_api__auth.hs256_kid": "hs1",
                "query_api__auth.issuer": "https://idp.test",
                "query_api__auth.audience": "readmodel-test"})
        out = harness.run_projector(config)
        assert out.returncode == 0, out.stderr[-3000:]
        server = harness.QueryApi(workdir, config, harness.free_port())
        started.append(server)
        oracle = {e["key"]: e for e in harness.read_oracle(oracle_path) if not e["erased"]}
        roles = {role: {"Authorization": "Bearer " + harness.mint_token(config, "p-" + role, role)}
                 for role in ROLE_SECTIONS}
        roles["anonymous"] = {}
        yield {"server": server, "oracle": oracle, "roles": roles, "workdir": workdir}
    finally:
        for proc in reversed(started):
            proc.stop()


def admin_profile(env, key, cache={}):
    if key not in cache:
        path = "/v1/views/customer360/" + urllib.parse.quote(key, safe="") + "?fields=profile"
        status, _, body = env["server"].get(path, env["roles"]["demo-admin"])
        assert status == 200, (key, status, body)
        cache[key] = body["sections"]["profile"]
    return cache[key]


def check_profile(env, role, key, profile, where):
    """A profile shown to a role without PII holds each PII field masked, nothing else."""
    if profile is None:
        return
    full = admin_profile(env, key)
    for field, value in profile.items():
        want = mask(PROFILE_MASKS[field], full[field]) if field in PROFILE_MASKS else full[field]
        assert value == want, (where, role, field, value)


def leaks(env, line):
    """Asserts that one recorded answer shows its role nothing beyond its grant."""
    role, status, body = line["role"], line["status"], line.get("body")
    if role == "demo-admin" or status not in (200, 304) or not line["path"].startswith("/v1/views"):
        return  # open routes carry no customer data (docs/query-api.md, Security)
    where = f"{line['path']}?{urllib.parse.urlencode(line['query'], doseq=True)}"
    assert role != "anonymous", ("an anonymous caller was served", where)
    if status == 304:
        return
    allowed = ROLE_SECTIONS[role]
    if line["path"].startswith("/v1/views/customer360/"):
        if allowed is not ALL:
            assert set(body["sections"]) <= allowed, (where, role, set(body["sections"]))
            assert set(body["freshness"]) <= allowed, (where, role, set(body["freshness"]))
        check_profile(env, role, body["key"], body["sections"].get("profile"), where)
    elif line["path"].startswith("/v1/views/customer360"):
        for match in body.get("matches", []):
            if allowed is not ALL:
                assert set(match) - {"key"} <= allowed, (where, role, match)
            check_profile(env, role, match["key"], match.get("profile"), where)


def test_every_answer_matches_the_document_and_no_role_sees_more(api):
    out = os.path.join(api["workdir"], "answers.jsonl")
    keys = sorted(api["oracle"])[:10]
    lookups = []
    for key in keys:
        sections = api["oracle"][key]["sections"]
        if sections["profile"]:
            lookups += [{"email": sections["profile"]["email"]},
                        {"phone": sections["profile"]["phone"]}]
        lookups += [{"order_id": o["order_id"]} for o in sections["orders"][:1]]
    started = time.monotonic()
    run = subprocess.run(
        [VENV_PYTHON, os.path.join(harness.ROOT, "tests/integration/api_properties.py"),
         "--url", api["server"].base, "--view", "customer360",
         "--roles", json.dumps(api["roles"]), "--keys", json.dumps(keys),
         "--lookups", json.dumps(lookups),
         "--max-examples", str(MAX_EXAMPLES), "--out", out],
        cwd=harness.ROOT, capture_output=True, text=True, timeout=300)
    elapsed = time.monotonic() - started
    summary = json.loads(run.stdout.strip().splitlines()[-1]) if run.stdout.strip() else {}
    print(f"property-based run: {summary.get('requests')} generated requests in {elapsed:.1f} s")
    assert run.returncode == 0, (summary, run.stderr[-6000:])
    with open(out) as f:
        answers = [json.loads(line) for line in f]
    assert len(answers) == summary["requests"] > 0
    served = [a for a in answers if a["status"] == 200 and a["role"] in ("agent", "analyst")
              and a["path"].startswith("/v1/views/customer360/")]
    assert served, "no document was served to a lower role: the run checked no grant"
    for line in answers:
        leaks(api, line)
