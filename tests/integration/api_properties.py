"""Property-based requests against a running query API, driven by its own /openapi.json
(schemathesis generates the requests, hypothesis shrinks a failure). Run by
test_api_properties.py with the interpreter of the venv tools/lib.sh rm_python_test_deps
makes, so the system Python needs none of this.

For every operation of the document and every role given, --max-examples requests are
generated (path keys drawn now and then from real view keys, so documents are served and
not only 404s) and each answer is checked by schemathesis: no 5xx, a status code, content
type, headers and body the document declares. Every answer is also written as one JSON
line to --out, for the caller's own checks (what each role may see).

Exit status 0 when every check held; 1 with the failures on stderr. The last stdout line
is {"requests": N, "failures": M}."""
import argparse
import json
import sys

import hypothesis
from hypothesis import strategies as st
import requests
import schemathesis
from schemathesis import checks
from schemathesis.specs.openapi import checks as openapi_checks

CHECKS = [checks.not_a_server_error, openapi_checks.status_code_conformance,
          openapi_checks.content_type_conformance, openapi_checks.response_headers_conformance,
          openapi_checks.response_schema_conformance]


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--url", required=True)
    ap.add_argument("--roles", required=True, help='JSON {"role": {"Header": "value"}}')
    ap.add_argument("--keys", required=True, help="JSON list of view keys that exist")
    ap.add_argument("--lookups", required=True,
                    help='JSON list of lookup queries that find something ({"email": ...})')
    ap.add_argument("--view", required=True)
    ap.add_argument("--max-examples", type=int, default=50)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--out", required=True)
    args = ap.parse_args()
    roles = json.loads(args.roles)
    keys = json.loads(args.keys)
    lookups = json.loads(args.lookups)
    schema = schemathesis.openapi.from_url(args.url + "/openapi.json")
    session = requests.Session()
    counts = {"requests": 0, "failures": 0}
    failures = []
    with open(args.out, "w") as out:
        for result in schema.get_all_operations():
            operation = result.ok()
            for role, headers in roles.items():
                run_operation(operation, role, headers, keys, lookups, args, session, out,
                              counts, failures)
    for failure in failures[:20]:
        print(failure, file=sys.stderr)
    print(json.dumps(counts))
    return 1 if counts["failures"] else 0


def run_operation(operation, role, headers, keys, lookups, args, session, out, counts,
                  failures):
    params = {p.name for p in operation.path_parameters} if operation.path_parameters else set()

    @hypothesis.settings(max_examples=args.max_examples, deadline=None, database=None,
                         derandomize=True, phases=[hypothesis.Phase.generate],
                         suppress_health_check=list(hypothesis.HealthCheck))
    @hypothesis.given(case=operation.as_strategy(),
                      key=st.sampled_from(keys + [None]),  # None: the generated key
                      real_view=st.integers(0, 4), plain=st.booleans(),
                      lookup=st.sampled_from(lookups))
    def run(case, key, real_view, plain, lookup):
        if "key" in params and key is not None:
            case.path_parameters["key"] = key
        if "view" in params and real_view:  # 0: the generated name, else the real one
            case.path_parameters["view"] = args.view
        if plain and "key" in params:
            case.query = {}  # a document as most clients ask for it: served, and checked
        elif plain and "view" in params:
            case.query = dict(lookup)  # a lookup by a value that exists
        # the role's credentials, and no others (generated security headers are dropped)
        case.headers = {k: v for k, v in (case.headers or {}).items()
                        if k.lower() not in ("authorization", "x-api-key")}
        response = case.call(base_url=args.url, session=session, headers=headers, timeout=30)
        counts["requests"] += 1
        ctype = {k.lower(): v for k, v in response.headers.items()}.get("content-type", "")
        ctype = ctype[0] if isinstance(ctype, list) else ctype  # one list per header name
        line = {"role": role, "method": case.method, "path": case.formatted_path,
                "query": case.query or {}, "status": response.status_code,
                "content_type": ctype}
        if "json" in ctype:
            line["body"] = response.json()  # a body that is not JSON fails the checks below
        out.write(json.dumps(line) + "\n")
        try:
            case.validate_response(response, checks=CHECKS)
        except AssertionError as err:  # schemathesis' FailureGroup is one
            counts["failures"] += 1
            failures.append(f"{role} {case.method} {case.formatted_path} {case.query}: "
                            f"{response.status_code} {str(err)[:600]}")
    run()


if __name__ == "__main__":
    sys.exit(main())
