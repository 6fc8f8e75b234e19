"""query-api/openapi.json is kept true: every path and status code it lists is produced
by the server for a request built here, every route the server has is listed, problem
answers are application/problem+json, and the document served is the one in the repo."""
import http.client
import json
import os

import harness

DOC = os.path.join(harness.ROOT, "query-api/openapi.json")


def post(api, path):
    conn = http.client.HTTPConnection(api.base.split("//")[1], timeout=10)
    conn.request("POST", path, body=b"{}")
    resp = conn.getresponse()
    body = json.loads(resp.read().decode())
    conn.close()
    return resp.status, dict(resp.getheaders()), body


def test_openapi_document_matches_the_server(broker, workdir, processes):
    with open(DOC) as f:
        doc = json.load(f)
    assert doc["openapi"].startswith("3.1")

    # A query API started before any store exists answers the 503s.
    config = harness.write_config(workdir, broker.bootstrap, projector__metrics_listen="")
    early = harness.QueryApi(workdir, config, harness.free_port())
    processes.append(early)
    not_ready = {
        ("/readyz", "503"): lambda: early.get("/readyz"),
        ("/v1/views/{view}/{key}", "503"): lambda: early.get("/v1/views/customer360/C1-000001"),
        ("/v1/views/{view}", "503"): lambda: early.get("/v1/views/customer360?email=a@b.c"),
    }
    seen = {k: call()[0] for k, call in not_ready.items()}
    early.stop()

    summary, oracle_path = harness.simulate(broker.bootstrap, workdir, 50, 97)
    assert harness.run_projector(config).returncode == 0
    api = harness.QueryApi(workdir, config, harness.free_port())
    processes.append(api)
    oracle = harness.read_oracle(oracle_path)
    key = oracle[0]["key"]
    email = oracle[0]["sections"]["profile"]["email"]
    etag = api.get(f"/v1/views/customer360/{key}")[1]["ETag"]

    # The same store behind authentication: the 401, 403 and 429 answers.
    with open(os.path.join(workdir, "hs.secret"), "w") as f:
        f.write("openapi-test-secret-0123456789abcdef\n")
    with open(os.path.join(workdir, "policy.yaml"), "w") as f:
        f.write("roles: {narrow: {views: {customer360: {sections: [orders]}}}}\n")
    secured_config = harness.write_config(
        workdir, broker.bootstrap, name="secured.yaml", projector__metrics_listen="",
        **{"query_api__auth.enabled": "on",
           "query_api__auth.policy": os.path.join(workdir, "policy.yaml"),
           "query_api__auth.hs256_secret_file": os.path.join(workdir, "hs.secret"),
           "query_api__auth.issuer": "openapi", "query_api__auth.audience": "readmodel",
           "query_api__rate_limit.principal_rps": 1, "query_api__rate_limit.principal_burst": 1})
    secured = harness.QueryApi(workdir, secured_config, harness.free_port())
    processes.append(secured)
    narrow = {"Authorization": "Bearer " + harness.mint_token(secured_config, "narrow", "narrow")}
    narrow2 = {"Authorization": "Bearer " + harness.mint_token(secured_config, "narrow2", "narrow")}
    busy = {"Authorization": "Bearer " + harness.mint_token(secured_config, "busy", "narrow")}

    def twice(path):
        secured.get(path, busy)
        return secured.get(path, busy)

    requests = {
        ("/v1/views/{view}/{key}", "401"): lambda: secured.get(f"/v1/views/customer360/{key}"),
        ("/v1/views/{view}/{key}", "403"): lambda: secured.get(
            f"/v1/views/customer360/{key}?fields=profile", narrow),
        ("/v1/views/{view}/{key}", "429"): lambda: twice(f"/v1/views/customer360/{key}"),
        ("/v1/views/{view}", "401"): lambda: secured.get(f"/v1/views/customer360?email={email}"),
        ("/v1/views/{view}", "403"): lambda: secured.get(f"/v1/views/customer360?email={email}",
                                                         narrow2),
        ("/v1/views/{view}", "429"): lambda: twice("/v1/views/customer360?order_id=O1"),
        ("/v1/views/{view}/{key}", "200"): lambda: api.get(f"/v1/views/customer360/{key}"),
        ("/v1/views/{view}/{key}", "304"): lambda: api.get(f"/v1/views/customer360/{key}",
                                                           {"If-None-Match": etag}),
        ("/v1/views/{view}/{key}", "400"): lambda: api.get(
            f"/v1/views/customer360/{key}?fields=nonsense"),
        ("/v1/views/{view}/{key}", "404"): lambda: api.get("/v1/views/customer360/C97-999999"),
        ("/v1/views/{view}/{key}", "405"): lambda: post(api, f"/v1/views/customer360/{key}"),
        ("/v1/views/{view}", "200"): lambda: api.get(f"/v1/views/customer360?email={email}"),
        ("/v1/views/{view}", "400"): lambda: api.get("/v1/views/customer360?colour=blue"),
        ("/v1/views/{view}", "404"): lambda: api.get("/v1/views/other?email=a@b.c"),
        ("/healthz", "200"): lambda: api.get("/healthz"),
        ("/readyz", "200"): lambda: api.get("/readyz"),
        ("/metrics", "200"): lambda: api.get("/metrics"),
        ("/v1/status", "200"): lambda: api.get("/v1/status"),
        ("/dashboard", "200"): lambda: api.get("/dashboard"),
        ("/v1/status/history", "200"): lambda: api.get("/v1/status/history"),
        ("/ui/", "200"): lambda: api.get("/ui/"),
        ("/openapi.json", "200"): lambda: api.get("/openapi.json"),
    }
    listed = {(path, status) for path, item in doc["paths"].items()
              for status in item["get"]["responses"]}
    untested = listed - set(requests) - set(not_ready)
    assert not untested, f"listed in openapi.json but not checked here: {sorted(untested)}"
    unlisted = (set(requests) | set(not_ready)) - listed
    assert not unlisted, f"served but not in openapi.json: {sorted(unlisted)}"

    for (path, status), call in requests.items():
        got, headers, body = call()
        seen[(path, status)] = got
        if status >= "400":
            assert headers["Content-Type"].startswith("application/problem+json"), (path, status)
            assert {"type", "title", "status"} <= set(body), body
    wrong = {k: v for k, v in seen.items() if str(v) != k[1]}
    assert not wrong, f"status differs from the document: {wrong}"

    view = api.get(f"/v1/views/customer360/{key}")[2]
    required = doc["components"]["schemas"]["View"]["required"]
    assert set(required) <= set(view), (required, sorted(view))
    assert api.get("/openapi.json")[2] == doc, "the served document is not the repo's"
