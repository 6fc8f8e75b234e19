"""Malformed and abusive HTTP over raw sockets: percent-encoding tricks (%00,
%2F, double encoding, overlong UTF-8), a 100 KB URL, 1000 headers, bodies on GET and POST,
HTTP/1.0, pipelined requests, garbage request lines. Every answer is a 4xx or the
documented 2xx, and after each case the server is still up and serves a normal request.
test_auth.py already covers a 5 KB path and query (414), a 20 KB header (431) and a 70 KB
header line; they are not repeated here. tests/fuzz/fuzz_http.c fuzzes the same parsing
without a socket."""
import hashlib
import json
import os
import socket
import time

import pytest

import harness

VIEW = "/v1/views/customer360/"
API_KEY = "abuse-key-0123456789abcdef"
POLICY = f"""
roles:
  reader:
    pii: true
    views:
      customer360: {{sections: ["*"]}}
api_keys:
  - name: abuse-tester
    sha256: {hashlib.sha256(API_KEY.encode()).hexdigest()}
    roles: [reader]
"""


@pytest.fixture(scope="module")
def served(tmp_path_factory):
    """A query API with authentication on, over a small projected store."""
    workdir = str(tmp_path_factory.mktemp("abuse"))
    started = []
    try:
        broker = harness.DevBroker(workdir)
        started.append(broker)
        _, oracle_path = harness.simulate(broker.bootstrap, workdir, 20, 61)
        policy = os.path.join(workdir, "policy.yaml")
        with open(policy, "w") as f:
            f.write(POLICY)
        config = harness.write_config(workdir, broker.bootstrap, projector__metrics_listen="",
                                      **{"query_api__auth.enabled": "on",
                                         "query_api__auth.policy": policy})
        out = harness.run_projector(config)
        assert out.returncode == 0, out.stderr[-3000:]
        port = harness.free_port()
        api = harness.QueryApi(workdir, config, port)
        started.append(api)
        oracle = [e for e in harness.read_oracle(oracle_path) if not e["erased"]]
        yield {"api": api, "port": port, "key": oracle[0]["key"], "oracle": oracle}
        # After all that abuse the server still shuts down cleanly: under ASan, no error
        # report and no leak (either would make the exit status non-zero).
        started.remove(api)
        rc = api.stop()
        assert rc == 0, f"query-api exited {rc}:\n" + api.log_text()[-3000:]
    finally:
        for proc in reversed(started):
            proc.stop()


def parse_responses(data, heads=()):
    """Splits raw bytes into [(status, {header: value}, body)]; heads: indexes of
    responses to HEAD requests (no body). Stops at an incomplete response."""
    out = []
    while data:
        end = data.find(b"\r\n\r\n")
        if end < 0:
            break
        lines = data[:end].decode("latin-1").split("\r\n")
        version, status = lines[0].split(" ")[:2]
        assert version in ("HTTP/1.0", "HTTP/1.1"), lines[0]
        headers = {}
        for line in lines[1:]:
            name, _, value = line.partition(":")
            headers[name.strip().lower()] = value.strip()
        length = 0 if len(out) in heads else int(headers.get("content-length", "0"))
        if len(data) < end + 4 + length:
            break
        out.append((int(status), headers, data[end + 4:end + 4 + length]))
        data = data[end + 4 + length:]
    return out


def exchange(port, payload, responses=1, heads=(), timeout=10, until_close=False):
    """Sends payload (bytes) on a new connection and reads until `responses` answers are
    complete (and, with until_close, the server closes) or the server closes. Returns
    (answers, closed_by_server)."""
    sock = socket.create_connection(("127.0.0.1", port), timeout=timeout)
    data, closed = b"", False
    deadline = time.monotonic() + timeout
    try:
        try:
            sock.sendall(payload)
        except (BrokenPipeError, ConnectionResetError):
            pass  # the server may answer and close before reading all of a huge request
        while until_close or len(parse_responses(data, heads)) < responses:
            if time.monotonic() > deadline:
                raise AssertionError(f"no complete answer in {timeout} s: {data[:300]!r}")
            try:
                chunk = sock.recv(65536)
            except ConnectionResetError:
                chunk = b""
            if not chunk:
                closed = True
                break
            data += chunk
    finally:
        sock.close()
    return parse_responses(data, heads), closed


def get(path, *extra, version="HTTP/1.1", key=True, close=True):
    lines = [f"GET {path} {version}", "Host: 127.0.0.1"]
    if key:
        lines.append(f"X-Api-Key: {API_KEY}")
    if close:
        lines.append("Connection: close")
    lines += list(extra)
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")


def one(served, payload):
    answers, _ = exchange(served["port"], payload)
    assert len(answers) == 1, answers
    return answers[0]


def assert_problem(answer, status):
    code, headers, body = answer
    assert code == status, (code, body[:300])
    assert headers["content-type"].startswith("application/problem+json"), headers
    assert json.loads(body)["status"] == status


def assert_still_serving(served):
    """The server is up and answers a normal, authenticated read with the document."""
    assert served["api"].alive(), served["api"].log_text()[-2000:]
    code, _, body = one(served, get(VIEW + served["key"]))
    assert code == 200, body[:300]
    assert json.loads(body)["key"] == served["key"]


def test_percent_encoding_tricks(served):
    key = served["key"]
    cases = [
        (VIEW + "C%00", 400),                     # an encoded NUL never cuts a key short
        (VIEW + key + "%00", 400),
        (VIEW + "a/b", 400),                      # a raw '/' in a key ...
        (VIEW + "a%2Fb", 404),                    # ... is spelled %2F: a key, just absent
        ("/v1/views/customer360%2Fx/" + key, 400),  # no escapes in a view name
        (VIEW + "%252F", 404),                    # decoded once: the key is "%2F"
        (VIEW + "%C0%AF", 404),                   # overlong UTF-8 '/': bytes of a key
        (VIEW + "%E0%80%AF%F0%80%80%AF", 404),
        (VIEW + key + "%4", 400),                 # truncated escape
        (VIEW + key + "%zz", 400),                # not hex
        (VIEW + "K" * 129, 400),                  # keys are at most 128 bytes ...
        (VIEW + "%4B" * 129, 400),                # ... after decoding
        (VIEW + "K" * 128, 404),
        (VIEW + key + "?fields=profile%00", 400),
        (VIEW + key + "?fields=%70rofile", 200),  # query values are decoded like the path
        (VIEW + key + "?orders_cursor=%00", 400),
        (VIEW + key + "?min_offsets=customers:0:1%2Corders%3A0%3A1&wait_ms=0", 200),
        ("/v1/views/customer360?email=%00", 400),
        ("/v1/views/customer360?email=a%40b%", 400),
    ]
    for path, status in cases:
        answer = one(served, get(path))
        if status == 200:
            assert answer[0] == 200, (path, answer[0], answer[2][:300])
        else:
            assert_problem(answer, status)
    # raw bytes that are not ASCII in the request line: a 4xx, whatever layer answers
    code, _, _ = one(served, get(VIEW + "\xc0\xaf\xff"))
    assert 400 <= code < 500, code
    assert_still_serving(served)


def test_a_100_kb_url(served):
    for path in (VIEW + "K" * 100_000, VIEW + served["key"] + "?fields=" + "p" * 100_000):
        answers, closed = exchange(served["port"], get(path))
        # libmicrohttpd refuses a request line past its buffer itself: 414 when it can
        # still answer; a close with no answer is acceptable, a 2xx or 5xx is not.
        assert all(400 <= a[0] < 500 for a in answers), [a[0] for a in answers]
        assert answers or closed
    assert_still_serving(served)


def test_a_thousand_headers(served):
    key = served["key"]
    # 300 tiny headers fit everywhere: served as usual.
    small = [f"a{i}: b" for i in range(300)]
    code, _, body = one(served, get(VIEW + key, *small))
    assert code == 200 and json.loads(body)["key"] == key
    # 1000 do not fit libmicrohttpd's per-connection memory (32 KB by default, headers and
    # its own bookkeeping): it answers 431 itself, before our handler runs.
    for filler in ([f"a{i}: b" for i in range(1000)],
                   [f"X-Filler-{i:04d}: {'v' * 8}" for i in range(1000)]):
        code, headers, body = one(served, get(VIEW + key, *filler))
        assert code == 431, (code, body[:200])
    # Fewer, larger headers pass libmicrohttpd but not query_api.max_header_bytes (16 KB):
    # our own 431 problem.
    large = [f"X-Filler-{i:04d}: {'v' * 200}" for i in range(100)]
    assert_problem(one(served, get(VIEW + key, *large)), 431)
    # 100 copies of the credential header: the first one counts, as for any header.
    code, _, _ = one(served, get(VIEW + key, *[f"X-Api-Key: {API_KEY}"] * 100))
    assert code == 200, code
    assert_still_serving(served)


def test_requests_with_a_body(served):
    key = served["key"]
    # A GET's body is read and ignored: the document as usual.
    payload = get(VIEW + key, "Content-Length: 11") + b"hello world"
    code, _, body = one(served, payload)
    assert code == 200 and json.loads(body)["key"] == key
    chunked = get(VIEW + key, "Transfer-Encoding: chunked") + b"5\r\nhello\r\n0\r\n\r\n"
    assert one(served, chunked)[0] == 200
    # Anything but GET and HEAD is a 405 that says what is allowed.
    post = get(VIEW + key, "Content-Length: 2").replace(b"GET ", b"POST ", 1) + b"{}"
    answer = one(served, post)
    assert_problem(answer, 405)
    assert answer[1]["allow"] == "GET, HEAD"
    # A body larger than anything we read is not a reason to fail either.
    big = get(VIEW + key, "Content-Length: 1000000") + b"x" * 1_000_000
    answers, closed = exchange(served["port"], big)
    assert all(a[0] in (200, 413) for a in answers) and (answers or closed)
    assert_still_serving(served)


def test_http_1_0_and_pipelining(served):
    key = served["key"]
    # HTTP/1.0: answered, then closed by the server (no keep-alive asked for).
    answers, closed = exchange(served["port"], get(VIEW + key, version="HTTP/1.0", close=False),
                               until_close=True)
    assert [a[0] for a in answers] == [200] and closed
    assert json.loads(answers[0][2])["key"] == key
    # HTTP/1.0 without a Host header is valid HTTP/1.0.
    raw = b"GET /healthz HTTP/1.0\r\n\r\n"
    assert exchange(served["port"], raw)[0][0][0] == 200
    # Pipelined: four requests in one write, answered in order on one connection,
    # a bad one among them changing nothing for the others.
    payload = (get(VIEW + key, close=False) + get(VIEW + "C%00", close=False) +
               get(VIEW + key, version="HTTP/1.1", key=False, close=False) +
               get("/healthz", close=True).replace(b"GET ", b"HEAD ", 1))
    answers, _ = exchange(served["port"], payload, responses=4, heads=(3,))
    assert [a[0] for a in answers] == [200, 400, 401, 200], [a[0] for a in answers]
    assert json.loads(answers[0][2])["key"] == key
    assert_still_serving(served)


def test_garbage_requests(served):
    cases = [
        b"GARBAGE\r\n\r\n",
        b"GET\r\n\r\n",
        b"GET / HTTP/9.9\r\nHost: x\r\n\r\n",
        # HTTP/1.1 without Host: libmicrohttpd 0.9.75 lets it through; no credentials: 401
        b"GET " + VIEW.encode() + b"x HTTP/1.1\r\n\r\n",
        b"GET /healthz HTTP/1.1\r\nHost: x\r\nBroken header line\r\n\r\n",
        b"\x01\x02\xff\xfe / HTTP/1.1\r\nHost: x\r\n\r\n",
    ]
    for payload in cases:
        answers, closed = exchange(served["port"], payload)
        # libmicrohttpd answers these itself (400, 505) or closes: never 2xx, never 5xx
        # from us, never a hang.
        assert all(400 <= a[0] < 500 or a[0] == 505 for a in answers), (payload, answers)
        assert answers or closed, payload
    # A line starting with a NUL reads as an empty line, which may precede a request
    # line (RFC 9112 §2.2): libmicrohttpd waits for one, up to query_api.timeout_s. That
    # connection must hold up no one else.
    idle = socket.create_connection(("127.0.0.1", served["port"]), timeout=10)
    try:
        idle.sendall(b"\x00\x01\x02\xff\r\n\r\n")
        assert_still_serving(served)
    finally:
        idle.close()
    # libmicrohttpd 0.9.75 takes a header line with an empty name for the end of the
    # headers: /healthz is served, and what follows reads as a malformed next request.
    answers, _ = exchange(served["port"], b"GET /healthz HTTP/1.1\r\nHost: x\r\n: no name\r\n"
                          b"Connection: close\r\n\r\n", responses=2)
    codes = [a[0] for a in answers]
    assert codes and set(codes) <= {200, 400}, answers
    assert_still_serving(served)
