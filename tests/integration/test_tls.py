"""TLS on the query API (docs/query-api.md, Security): HTTPS with the configured
certificate serves the same documents as plain HTTP, plain HTTP and an unknown CA fail, keep-
alive survives TLS (docs/architecture.md §8), client certificates are required when a client CA is
configured, and a half-configured TLS is a configuration error (exit 2) naming the key.
Certificates are made here with the openssl CLI."""
import http.client
import json
import os
import socket
import ssl
import subprocess

import pytest

import harness

VIEW = "/v1/views/customer360/"


def openssl(*args, cwd):
    out = subprocess.run(["openssl", *args], cwd=cwd, capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr


def make_ca(directory, name):
    openssl("req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes",
            "-keyout", f"{name}.key", "-out", f"{name}.pem", "-days", "2",
            "-subj", f"/CN={name}", cwd=directory)


def make_cert(directory, name, ca, extensions):
    """A P-256 key and a certificate signed by ca with the given X.509v3 extensions."""
    openssl("req", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes",
            "-keyout", f"{name}.key", "-out", f"{name}.csr", "-subj", f"/CN={name}", cwd=directory)
    with open(os.path.join(directory, f"{name}.ext"), "w") as f:
        f.write(extensions + "\n")
    openssl("x509", "-req", "-in", f"{name}.csr", "-CA", f"{ca}.pem", "-CAkey", f"{ca}.key",
            "-CAcreateserial", "-out", f"{name}.pem", "-days", "2", "-extfile", f"{name}.ext",
            cwd=directory)


def client_context(directory, ca="ca", cert=None):
    ctx = ssl.create_default_context(cafile=os.path.join(directory, f"{ca}.pem"))
    if cert:
        ctx.load_cert_chain(os.path.join(directory, f"{cert}.pem"),
                            os.path.join(directory, f"{cert}.key"))
    return ctx


def https_get(port, path, ctx, conn=None):
    """(status, headers with lower-case names, parsed body); reuses conn when given."""
    own = conn is None
    conn = conn or http.client.HTTPSConnection("127.0.0.1", port, context=ctx, timeout=10)
    try:
        conn.request("GET", path)
        resp = conn.getresponse()
        body = resp.read()
        headers = {k.lower(): v for k, v in resp.getheaders()}
        return resp.status, headers, json.loads(body) if body else None
    finally:
        if own:
            conn.close()


def start_tls_api(workdir, config, port, ctx, name):
    api = harness.Process(name, [harness.binary("query-api/query-api"), "--config", config,
                                 "--set", f"query_api.listen=127.0.0.1:{port}"], workdir)

    def up():
        try:
            return https_get(port, "/healthz", ctx)[0] == 200
        except (OSError, http.client.HTTPException):
            assert api.alive(), api.log_text()
            return False
    harness.wait_until(up, 30, f"{name} /healthz over HTTPS")
    return api


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    """A projected store, certificates, and a config writer with TLS settings."""
    workdir = str(tmp_path_factory.mktemp("tls"))
    broker = harness.DevBroker(workdir)
    try:
        _, oracle_path = harness.simulate(broker.bootstrap, workdir, 30, 41)
        config = harness.write_config(workdir, broker.bootstrap, projector__metrics_listen="")
        out = harness.run_projector(config)
        assert out.returncode == 0, out.stderr[-3000:]
        make_ca(workdir, "ca")
        make_ca(workdir, "rogue")
        make_cert(workdir, "server", "ca",
                  "subjectAltName=IP:127.0.0.1,DNS:localhost\nextendedKeyUsage=serverAuth")
        make_cert(workdir, "agent", "ca", "extendedKeyUsage=clientAuth")
        make_cert(workdir, "intruder", "rogue", "extendedKeyUsage=clientAuth")

        def tls_config(name, extra=None, **tls):
            settings = {f"query_api__tls.{k}": os.path.join(workdir, v) for k, v in tls.items()}
            settings.update(extra or {})
            return harness.write_config(workdir, broker.bootstrap, name=name,
                                        projector__metrics_listen="", **settings)
        oracle = {e["key"]: e for e in harness.read_oracle(oracle_path) if not e["erased"]}
        yield workdir, config, tls_config, oracle
    finally:
        broker.stop()


def test_https_serves_the_same_documents(store, processes):
    workdir, plain_config, tls_config, oracle = store
    config = tls_config("tls.yaml", cert_file="server.pem", key_file="server.key")
    port = harness.free_port()
    ctx = client_context(workdir)
    processes.append(start_tls_api(workdir, config, port, ctx, "query-api-tls"))
    plain = harness.QueryApi(workdir, plain_config, harness.free_port())
    processes.append(plain)

    # the same documents as plain HTTP, and as the oracle
    problems = harness.compare_with_oracle(
        list(oracle.values()),
        lambda key: (lambda r: r[2]["sections"] if r[0] == 200 else None)(
            https_get(port, VIEW + key + "?fields=profile,orders,payment_issues,"
                      "delivery_exceptions,loyalty,returns,counters", ctx)))
    assert not problems, problems[:5]
    key = next(iter(oracle))
    status, headers, doc = https_get(port, VIEW + key, ctx)
    assert status == 200
    pstatus, pheaders, pdoc = plain.get(VIEW + key)
    assert pstatus == 200 and doc == pdoc
    assert headers["etag"] == pheaders["ETag"]

    # keep-alive over TLS (docs/architecture.md §8): one connection, one socket, three answers
    conn = http.client.HTTPSConnection("127.0.0.1", port, context=ctx, timeout=10)
    try:
        sockets = set()
        for _ in range(3):
            status, headers, _ = https_get(port, VIEW + key, ctx, conn)
            assert status == 200 and headers.get("connection", "").lower() != "close", headers
            sockets.add(conn.sock.getsockname())
        assert len(sockets) == 1, sockets
        assert conn.sock.version() in ("TLSv1.2", "TLSv1.3")
    finally:
        conn.close()

    # TLS 1.2 is offered as well; the server's priorities refuse what is below it
    ctx12 = client_context(workdir)
    ctx12.maximum_version = ssl.TLSVersion.TLSv1_2
    assert https_get(port, "/healthz", ctx12)[0] == 200
    weak = client_context(workdir)
    weak.maximum_version = ssl.TLSVersion.TLSv1_2
    weak.set_ciphers("ECDHE-ECDSA-AES128-SHA")  # CBC: not in the default priorities
    with pytest.raises(ssl.SSLError):
        https_get(port, "/healthz", weak)

    # plain HTTP on the TLS port gets no answer
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    with pytest.raises((OSError, http.client.HTTPException)):
        conn.request("GET", "/healthz")
        conn.getresponse().read()
    conn.close()
    # a client that trusts another CA refuses the server
    with pytest.raises(ssl.SSLCertVerificationError):
        https_get(port, "/healthz", client_context(workdir, ca="rogue"))


def test_client_certificates(store, processes):
    workdir, _, tls_config, oracle = store
    config = tls_config("mtls.yaml", cert_file="server.pem", key_file="server.key",
                        client_ca_file="ca.pem")
    port = harness.free_port()
    agent = client_context(workdir, cert="agent")
    api = start_tls_api(workdir, config, port, agent, "query-api-mtls")
    processes.append(api)
    key = next(iter(oracle))

    status, _, doc = https_get(port, VIEW + key, agent)
    assert status == 200 and doc["sections"]["profile"] == oracle[key]["sections"]["profile"]
    # no certificate, or one from another CA: refused before any route, with a TLS alert
    for ctx, alert in ((client_context(workdir), "CERTIFICATE_REQUIRED"),
                       (client_context(workdir, cert="intruder"), "UNKNOWN_CA")):
        with pytest.raises(ssl.SSLError) as refused:
            https_get(port, VIEW + key, ctx)
        assert alert in str(refused.value), refused.value
    # the server's own certificate is not a client certificate (extended key usage)
    with pytest.raises(ssl.SSLError):
        https_get(port, "/healthz", client_context(workdir, cert="server"))
    assert https_get(port, "/healthz", agent)[0] == 200
    log = api.log_text()
    assert "no client certificate" in log
    assert "client certificate not signed by query_api.tls.client_ca_file" in log


def refused_before_body(port, ctx, head):
    """Sends head (request line and headers announcing a 100 MB body, no body) over TLS
    and reads: the server must refuse (a TLS alert or a close) without waiting for the
    body. A server that waits for the body answers nothing: recv times out."""
    raw = socket.create_connection(("127.0.0.1", port), timeout=20)
    with ctx.wrap_socket(raw, server_hostname="127.0.0.1") as tls:
        tls.sendall(head)
        try:
            data = tls.recv(4096)
        except ssl.SSLError as err:
            return str(err)
        except socket.timeout:
            return None
        return "closed" if data == b"" else data.decode(errors="replace")


def test_client_without_certificate_is_refused_before_its_body(store, processes):
    """Without a client certificate a connection is refused as soon as its request head
    is read: it cannot stream an endless body, or hold a connection slot, first."""
    workdir, _, tls_config, oracle = store
    config = tls_config("mtls-early.yaml", cert_file="server.pem", key_file="server.key",
                        client_ca_file="ca.pem")
    port = harness.free_port()
    agent = client_context(workdir, cert="agent")
    api = start_tls_api(workdir, config, port, agent, "query-api-mtls-early")
    processes.append(api)
    key = next(iter(oracle))
    for method in ("GET", "POST"):
        head = (f"{method} {VIEW}{key} HTTP/1.1\r\nHost: 127.0.0.1\r\n"
                "Content-Length: 100000000\r\n\r\n").encode()
        answer = refused_before_body(port, client_context(workdir), head)
        assert answer is not None, f"{method}: the server waited for the body"
        assert "CERTIFICATE_REQUIRED" in answer or answer == "closed", (method, answer)
    # a client with a certificate is served as before
    assert https_get(port, VIEW + key, agent)[0] == 200


def make_crl(directory, ca, revoked):
    """A CRL signed by ca listing the certificates named in revoked (openssl ca)."""
    db = os.path.join(directory, f"{ca}-crl")
    os.makedirs(db, exist_ok=True)
    open(os.path.join(db, "index.txt"), "w").close()
    with open(os.path.join(db, "crlnumber"), "w") as f:
        f.write("01\n")
    conf = os.path.join(db, "ca.cnf")
    with open(conf, "w") as f:
        f.write(f"[ca]\ndefault_ca = CA\n[CA]\ndatabase = {db}/index.txt\n"
                f"crlnumber = {db}/crlnumber\ncertificate = {directory}/{ca}.pem\n"
                f"private_key = {directory}/{ca}.key\ndefault_md = sha256\n"
                "default_crl_days = 2\n")
    for name in revoked:
        openssl("ca", "-config", conf, "-revoke", f"{name}.pem", cwd=directory)
    openssl("ca", "-config", conf, "-gencrl", "-out", f"{ca}.crl.pem", cwd=directory)


def test_revoked_client_certificate_is_refused(store, processes):
    """query_api.tls.crl_file: a client certificate the CA revoked is refused like one
    it never signed; the others are served."""
    workdir, _, tls_config, oracle = store
    make_cert(workdir, "revoked-agent", "ca", "extendedKeyUsage=clientAuth")
    make_crl(workdir, "ca", ["revoked-agent"])
    config = tls_config("mtls-crl.yaml", cert_file="server.pem", key_file="server.key",
                        client_ca_file="ca.pem", crl_file="ca.crl.pem")
    port = harness.free_port()
    agent = client_context(workdir, cert="agent")
    api = start_tls_api(workdir, config, port, agent, "query-api-mtls-crl")
    processes.append(api)
    key = next(iter(oracle))
    assert https_get(port, VIEW + key, agent)[0] == 200
    with pytest.raises((ssl.SSLError, ConnectionError)):
        https_get(port, VIEW + key, client_context(workdir, cert="revoked-agent"))
    # the alert goes out before the refusal is logged
    harness.wait_until(lambda: "client certificate revoked" in api.log_text(), 10,
                       "the refusal in the log")
    # a CRL file that holds no CRL, or one not signed by the client CA, is exit 2
    make_crl(workdir, "rogue", [])
    for bad in ("server.pem", "rogue.crl.pem"):
        config = tls_config(f"mtls-badcrl-{bad}.yaml", cert_file="server.pem",
                            key_file="server.key", client_ca_file="ca.pem", crl_file=bad)
        out = subprocess.run([harness.binary("query-api/query-api"), "--config", config, "--set",
                              f"query_api.listen=127.0.0.1:{harness.free_port()}"],
                             capture_output=True, text=True, timeout=30)
        assert out.returncode == 2 and "query_api.tls.crl_file" in out.stderr, out.stderr[-500:]


def test_client_certificates_with_bearer_tokens_on_one_connection(store, processes):
    """Client certificates and authentication together. The certificate check and the
    bearer-token memo share one state per connection (http_server.c note 5); when each
    registered its own libmicrohttpd connection callback, only one of them was kept and
    the other read the wrong struct. Over one keep-alive connection: a good token twice,
    a forged token refused, then the good token again."""
    workdir, _, tls_config, oracle = store
    policy = os.path.join(workdir, "mtls-policy.yaml")
    with open(policy, "w") as f:
        f.write("roles: {reader: {pii: true, views: {customer360: {sections: ['*']}}}}\n")
    config = tls_config("mtls-auth.yaml", cert_file="server.pem", key_file="server.key",
                        client_ca_file="ca.pem",
                        extra={"query_api__auth.enabled": "on", "query_api__auth.policy": policy,
                               "query_api__auth.hs256_secret": "mtls-auth-test-secret-0123456789",
                               "query_api__auth.issuer": "https://idp.test",
                               "query_api__auth.audience": "rm"})
    port = harness.free_port()
    agent = client_context(workdir, cert="agent")
    api = start_tls_api(workdir, config, port, agent, "query-api-mtls-auth")
    processes.append(api)
    token = harness.mint_token(config, "mtls-reader", "reader")
    forged = token[:-4] + ("AAAA" if not token.endswith("AAAA") else "BBBB")
    key = next(iter(oracle))
    conn = http.client.HTTPSConnection("127.0.0.1", port, context=agent, timeout=10)

    def get(bearer):
        conn.request("GET", VIEW + key, headers={"Authorization": "Bearer " + bearer})
        resp = conn.getresponse()
        return resp.status, json.loads(resp.read())

    try:
        for bearer, expected in ((token, 200), (token, 200), (forged, 401), (token, 200)):
            status, body = get(bearer)
            assert status == expected, body
            if status == 200:
                assert body["sections"]["profile"] == oracle[key]["sections"]["profile"]
    finally:
        conn.close()
    assert api.alive(), api.log_text()


@pytest.mark.parametrize("tls, named", [
    ({"cert_file": "server.pem"}, "query_api.tls.key_file"),
    ({"key_file": "server.key"}, "query_api.tls.cert_file"),
    ({"cert_file": "server.pem", "key_file": "agent.key"}, "query_api.tls.key_file"),
    ({"cert_file": "server.pem", "key_file": "nowhere.key"}, "query_api.tls.key_file"),
    ({"client_ca_file": "ca.pem"}, "query_api.tls.client_ca_file"),
    ({"cert_file": "server.pem", "key_file": "server.key", "client_ca_file": "server.key"},
     "query_api.tls.client_ca_file"),
])
def test_half_configured_tls_is_a_configuration_error(store, tls, named):
    workdir, _, tls_config, _ = store
    config = tls_config("bad-tls.yaml", **tls)
    out = subprocess.run([harness.binary("query-api/query-api"), "--config", config,
                          "--set", f"query_api.listen=127.0.0.1:{harness.free_port()}"],
                         cwd=harness.ROOT, capture_output=True, text=True, timeout=30)
    assert out.returncode == 2, (out.returncode, out.stderr[-2000:])
    assert named in out.stderr, out.stderr[-2000:]
