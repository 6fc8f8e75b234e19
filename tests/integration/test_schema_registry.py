"""Writer schemas from a Confluent-compatible schema registry (tools/devregistry).

The projector resolves ids it has not seen with GET /schemas/ids/{id}, keeps every schema
it used in its store, pauses a partition while the registry cannot answer (an outage is
not poison), and dead-letters only the ids the registry says do not exist (40403)."""
import json
import os
import subprocess
import urllib.request

import harness


class DevRegistry(harness.Process):
    def __init__(self, log_dir, bootstrap, port=0, extra=()):
        super().__init__("devregistry", [os.path.join(harness.ROOT, "tools/devregistry"),
                                         "--bootstrap", bootstrap, "--port", str(port), *extra],
                         log_dir, stdout=subprocess.PIPE)
        line = self.proc.stdout.readline().decode().strip()
        if not line:
            raise AssertionError("devregistry printed no URL:\n" + self.log_text())
        self.url = line


def registry_config(workdir, broker, url, **settings):
    return harness.write_config(workdir, broker.bootstrap, schema_registry__url=url, **settings)


def check_view(config, oracle):
    docs = harness.inspect_docs(config, [e["key"] for e in oracle])
    return harness.compare_with_oracle(
        oracle, lambda key: docs[key]["sections"] if docs[key] else None)


def kept_schema_ids(config):
    """The ids kept in the store's meta db (schema/<id>), read with mdb_dump."""
    data = os.path.join(os.path.dirname(config), "data", "customer360", "current")
    out = subprocess.run(["mdb_dump", "-p", "-s", "meta", data], capture_output=True, text=True,
                         timeout=60)
    assert out.returncode == 0, out.stderr
    return sorted(int(line.strip()[len("schema/"):]) for line in out.stdout.splitlines()
                  if line.startswith(" schema/"))


def test_ids_come_from_the_registry_and_are_kept_in_the_store(broker, workdir, processes):
    registry = DevRegistry(workdir, broker.bootstrap)
    processes.append(registry)
    _, oracle_path = harness.simulate(broker.bootstrap, workdir, 150, 31,
                                      extra=("--registry", registry.url))
    ids = json.load(urllib.request.urlopen(registry.url + "/subjects"))
    assert "orders-value" in ids and "customers-value" in ids, ids
    config = registry_config(workdir, broker, registry.url, projector__metrics_listen="")
    out = harness.run_projector(config)
    assert out.returncode == 0, out.stderr[-2000:]
    oracle = harness.read_oracle(oracle_path)
    problems = check_view(config, oracle)
    assert not problems, problems[:5]
    kept = kept_schema_ids(config)
    assert kept and max(kept) <= 20, kept  # the registry's ids, not the catalog's 30+

    # More events under the same ids, then the registry goes away: a restart still
    # decodes everything from the schemas the store kept.
    _, oracle2_path = harness.simulate(broker.bootstrap, workdir, 150, 32,
                                       extra=("--registry", registry.url))
    registry.stop()
    out = harness.run_projector(config, timeout=120)
    assert out.returncode == 0, out.stderr[-2000:]
    problems = check_view(config, oracle + harness.read_oracle(oracle2_path))
    assert not problems, problems[:5]
    assert json.loads(harness.inspect(config, "stats").stdout)["outbox"] == 0
    assert "event dead-lettered" not in out.stderr


def test_registry_down_pauses_and_dead_letters_nothing(broker, workdir, processes):
    port = harness.free_port()
    registry = DevRegistry(workdir, broker.bootstrap, port=port)
    processes.append(registry)
    _, oracle_path = harness.simulate(broker.bootstrap, workdir, 120, 33,
                                      extra=("--registry", registry.url))
    registry.stop()  # the projector starts with the registry down
    metrics_port = harness.free_port()
    config = registry_config(workdir, broker, registry.url,
                             projector__metrics_listen=f"127.0.0.1:{metrics_port}")
    projector = harness.Process("projector", [harness.binary("projector/projector"), "--config",
                                              config], workdir)
    processes.append(projector)
    url = f"http://127.0.0.1:{metrics_port}/metrics"

    def paused():
        try:
            samples = harness.scrape_metrics(url)
        except OSError:
            return False
        return harness.metric_total(samples, "readmodel_schema_registry_paused_partitions") > 0
    harness.wait_until(paused, 60, "a partition paused for the registry")
    samples = harness.scrape_metrics(url)
    assert harness.metric_total(samples, "readmodel_dead_letters_total") == 0
    assert harness.metric_total(samples, "readmodel_schema_registry_errors_total") > 0
    assert harness.metric_total(samples, "readmodel_events_total", outcome="applied") == 0

    # The registry comes back (on the same address, its ids recovered from _schemas).
    registry = DevRegistry(workdir, broker.bootstrap, port=port)
    processes.append(registry)
    oracle = harness.read_oracle(oracle_path)
    total = sum(1 for _ in oracle)

    def caught_up():
        samples = harness.scrape_metrics(url)
        return (harness.metric_total(samples, "readmodel_schema_registry_paused_partitions") == 0
                and harness.metric_total(samples, "readmodel_partition_lag_messages") == 0
                and harness.metric_total(samples, "readmodel_events_total",
                                         outcome="applied") > 0)
    harness.wait_until(caught_up, 90, f"the view of {total} customers filled")
    samples = harness.scrape_metrics(url)
    assert harness.metric_total(samples, "readmodel_dead_letters_total") == 0
    projector.stop()
    problems = check_view(config, oracle)
    assert not problems, problems[:5]


def test_an_id_the_registry_does_not_know_is_dead_lettered(broker, workdir, processes):
    registry = DevRegistry(workdir, broker.bootstrap)
    processes.append(registry)
    _, oracle_path = harness.simulate(broker.bootstrap, workdir, 50, 34,
                                      extra=("--registry", registry.url))
    # A well-formed frame with an id nobody registered.
    subprocess.run(["kcat", "-P", "-b", broker.bootstrap, "-t", "orders", "-k", "ghost", "-p", "2"],
                   input=b"\x00\x00\x00\x03\x09\x02xy", check=True, timeout=60)
    config = registry_config(workdir, broker, registry.url, projector__metrics_listen="")
    out = harness.run_projector(config)
    assert out.returncode == 0, out.stderr[-2000:]
    listed = subprocess.run([harness.binary("projector/projector"), "--config", config, "dlq",
                             "list"], cwd=harness.ROOT, capture_output=True, text=True, timeout=60)
    assert listed.returncode == 0, listed.stderr
    letters = [json.loads(line) for line in listed.stdout.splitlines()]
    assert len(letters) == 1, letters
    assert letters[0]["error"] == "schema"
    assert "not found in the schema registry" in json.dumps(letters[0]), letters[0]
    problems = check_view(config, harness.read_oracle(oracle_path))
    assert not problems, problems[:5]

    # `dlq purge` marks the letter handled on the repairs topic; in registry mode that
    # marker is framed with the id the registry gave readmodel.DeadLetterHandled, so the
    # projector applies it instead of dead-lettering it as an unknown id.
    purged = subprocess.run([harness.binary("projector/projector"), "--config", config, "dlq",
                             "purge"], cwd=harness.ROOT, capture_output=True, text=True,
                            timeout=60)
    assert purged.returncode == 0, purged.stderr
    assert "customer360.repairs-value" in json.load(urllib.request.urlopen(
        registry.url + "/subjects"))
    out = harness.run_projector(config)
    assert out.returncode == 0, out.stderr[-2000:]
    assert "event dead-lettered" not in out.stderr, out.stderr[-2000:]
    listed = subprocess.run([harness.binary("projector/projector"), "--config", config, "dlq",
                             "list"], cwd=harness.ROOT, capture_output=True, text=True, timeout=60)
    assert listed.stdout == "", listed.stdout


VENV_PYTHON = os.path.join(harness.ROOT, ".cache", "pyvenv", "bin", "python")


def test_events_serialized_by_confluent_kafka_python_are_applied(broker, workdir, processes):
    """confluent-kafka-python's AvroDeserializer reads what tools/simulate framed with the
    registry's ids, and what its AvroSerializer writes (same keys, partitions and order) is
    what the projector applies: the view equals the simulator's oracle."""
    check = subprocess.run([VENV_PYTHON, "-c", "import confluent_kafka.schema_registry.avro"],
                           capture_output=True)
    assert check.returncode == 0, ("confluent-kafka[avro] is missing from .cache/pyvenv: "
                                   "tools/lib.sh rm_python_registry_deps installs it")
    target = harness.DevBroker(workdir)
    processes.append(target)
    registry = DevRegistry(workdir, broker.bootstrap)
    processes.append(registry)
    _, oracle_path = harness.simulate(broker.bootstrap, workdir, 40, 35,
                                      extra=("--registry", registry.url))
    relay = subprocess.run([VENV_PYTHON, os.path.join(os.path.dirname(__file__),
                                                      "confluent_relay.py"),
                            broker.bootstrap, target.bootstrap, registry.url],
                           capture_output=True, text=True, timeout=300)
    assert relay.returncode == 0, relay.stderr[-3000:]
    stats = json.loads(relay.stdout.strip().splitlines()[-1])
    assert stats["relayed"] > 40 and stats["writer_schemas"] >= 10, stats
    config = registry_config(workdir, target, registry.url, projector__metrics_listen="")
    out = harness.run_projector(config)
    assert out.returncode == 0, out.stderr[-2000:]
    assert "event dead-lettered" not in out.stderr, out.stderr[-2000:]
    problems = check_view(config, harness.read_oracle(oracle_path))
    assert not problems, problems[:5]


def register(url, subject, schema):
    req = urllib.request.Request(url + f"/subjects/{subject}/versions",
                                 data=json.dumps({"schema": json.dumps(schema)}).encode(),
                                 headers={"Content-Type": "application/vnd.schemaregistry.v1+json"})
    return json.load(urllib.request.urlopen(req))["id"]


def order_created():
    with open(os.path.join(harness.ROOT, "schemas/avro/OrderCreated.v1.avsc")) as f:
        return json.load(f)


def test_the_view_is_checked_against_the_registry_at_start(broker, workdir, processes):
    """A producer's newest OrderCreated whose total_cents became a string cannot feed the
    view's upsert: the projector refuses to start and names the view file, the line that
    reads the field, and the field. A compatible evolution (a new optional field) starts."""
    registry = DevRegistry(workdir, broker.bootstrap)
    processes.append(registry)
    harness.simulate(broker.bootstrap, workdir, 5, 36, extra=("--registry", registry.url))
    config = registry_config(workdir, broker, registry.url, projector__metrics_listen="")

    evolved = order_created()
    evolved["fields"].append({"name": "channel", "type": ["null", "string"], "default": None})
    register(registry.url, "orders-value", evolved)
    out = harness.run_projector(config)
    assert out.returncode == 0, out.stderr[-2000:]

    broken = order_created()
    for field in broken["fields"]:
        if field["name"] == "total_cents":
            field["type"] = "string"
    register(registry.url, "orders-value", broken)
    out = harness.run_projector(config)
    assert out.returncode == 2, (out.returncode, out.stderr[-2000:])
    view_lines = open(os.path.join(harness.ROOT, "schemas/views/customer360.yaml")).readlines()
    rule = next(i for i, line in enumerate(view_lines)
                if "event: c360.orders.OrderCreated" in line)
    upsert = next(i + 1 for i, line in enumerate(view_lines)
                  if i > rule and "- upsert:" in line)
    message = out.stderr.strip().splitlines()[-1]
    assert "customer360.yaml:" in message and "'total_cents'" in message, message
    line = int(message.split("customer360.yaml:")[1].split(":")[0])
    assert line == upsert, (line, upsert, message)  # the upsert that reads it
    assert "c360.orders.OrderCreated" in message and "changed type" in message, message


class FlakyProxy:
    """An HTTP proxy in front of the registry that answers 503 for the ids in `failing`
    (and, with fail_subjects, for every /subjects request), or, for the ids in `slow`,
    answers after `delay_s`."""

    def __init__(self, upstream):
        import http.server
        import threading
        proxy = self
        self.failing, self.slow, self.delay_s = set(), set(), 0.0
        self.fail_subjects = False
        self.requests = []

        class Handler(http.server.BaseHTTPRequestHandler):
            def log_message(self, *args):
                pass

            def do_GET(self):
                proxy.requests.append(self.path)
                parts = self.path.split("/")
                schema_id = int(parts[3]) if self.path.startswith("/schemas/ids/") else None
                if schema_id in proxy.failing or (proxy.fail_subjects and schema_id is None):
                    body = b'{"error_code":50001,"message":"backend unavailable"}'
                    self.send_response(503)
                    self.send_header("Content-Length", str(len(body)))
                    self.end_headers()
                    self.wfile.write(body)
                    return
                if schema_id in proxy.slow:
                    import time
                    time.sleep(proxy.delay_s)
                try:
                    with urllib.request.urlopen(upstream + self.path, timeout=10) as resp:
                        status, body = resp.status, resp.read()
                except urllib.error.HTTPError as err:
                    status, body = err.code, err.read()
                try:
                    self.send_response(status)
                    self.send_header("Content-Type", "application/vnd.schemaregistry.v1+json")
                    self.send_header("Content-Length", str(len(body)))
                    self.end_headers()
                    self.wfile.write(body)
                except OSError:  # the client gave up (slow mode)
                    pass

        http.server.ThreadingHTTPServer.request_queue_size = 128
        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def stop(self):
        self.server.shutdown()


FIRST_OFFSETS = """
import json, sys
from kafka import KafkaConsumer, TopicPartition
bootstrap, topic, schema_id = sys.argv[1], sys.argv[2], int(sys.argv[3])
consumer = KafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False, group_id=None,
                         consumer_timeout_ms=3000)
tps = [TopicPartition(topic, p) for p in consumer.partitions_for_topic(topic)]
consumer.assign(tps)
consumer.seek_to_beginning(*tps)
first = {}
for rec in consumer:
    if rec.value and int.from_bytes(rec.value[1:5], "big") == schema_id:
        first.setdefault(rec.partition, rec.offset)
consumer.close()
print(json.dumps(first))
"""


def first_offsets_with_id(bootstrap, topic, schema_id):
    """{partition: offset of the first message framed with schema_id}, read with Debian's
    python3-kafka (in /usr/bin/python3, whatever interpreter runs pytest)."""
    out = subprocess.run(["/usr/bin/python3", "-c", FIRST_OFFSETS, bootstrap, topic,
                          str(schema_id)], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr[-2000:]
    return {int(p): o for p, o in json.loads(out.stdout.strip().splitlines()[-1]).items()}


def test_a_failing_id_holds_its_partitions_in_order_and_shows_in_readyz(broker, workdir,
                                                                        processes):
    """The registry answers 503 (and later: too slowly) for PaymentReversed's id only. Each
    payments partition stops exactly at its first PaymentReversed: nothing after it is
    applied, however often it is retried, nothing is dead-lettered, other topics go on,
    and /readyz says degraded with the reason. Once the id answers, the view is whole."""
    registry = DevRegistry(workdir, broker.bootstrap)
    processes.append(registry)
    _, oracle_path = harness.simulate(broker.bootstrap, workdir, 80, 37,
                                      extra=("--registry", registry.url))
    subject = registry.url + "/subjects/payments-value/versions"
    versions = [json.load(urllib.request.urlopen(f"{subject}/{v}"))
                for v in json.load(urllib.request.urlopen(subject))]
    # PaymentReversed: it comes after other payment events, so partitions stop mid-way.
    settled = [v["id"] for v in versions if '"PaymentReversed"' in v["schema"]][-1]
    first = first_offsets_with_id(broker.bootstrap, "payments", settled)
    assert len(first) >= 2 and max(first.values()) > 0, first

    proxy = FlakyProxy(registry.url)
    proxy.failing.add(settled)
    proxy.fail_subjects = True  # else the start-up check learns the id from its subject
    metrics_port, api_port = harness.free_port(), harness.free_port()
    config = registry_config(workdir, broker, proxy.url, schema_registry__timeout_ms=300,
                             projector__metrics_listen=f"127.0.0.1:{metrics_port}")
    projector = harness.Process("projector", [harness.binary("projector/projector"), "--config",
                                              config], workdir)
    processes.append(projector)
    url = f"http://127.0.0.1:{metrics_port}/metrics"

    def stored():
        out = harness.inspect(config, "offsets")
        if out.returncode != 0:
            return {}
        return {p["partition"]: p["next_offset"] for p in json.loads(out.stdout)
                if p["topic"] == "payments"}

    def held_at_first():
        try:
            samples = harness.scrape_metrics(url)
        except OSError:
            return False
        got = stored()
        return (harness.metric_total(samples, "readmodel_schema_registry_paused_partitions")
                == len(first) and all(got.get(p, 0) == o for p, o in first.items()))
    try:
        harness.wait_until(held_at_first, 60, f"payments partitions held at {first}")
    except AssertionError:
        samples = harness.scrape_metrics(url)
        raise AssertionError(("stored", stored(), "want", first, "paused",
                              harness.metric_total(samples,
                                                   "readmodel_schema_registry_paused_partitions"),
                              projector.log_text()[-1500:]))
    waits = harness.metric_total(harness.scrape_metrics(url),
                                 "readmodel_schema_registry_waits_total")
    api = harness.QueryApi(workdir, config, api_port)
    processes.append(api)
    status, _, body = api.get("/readyz")
    assert status == 200 and body["status"] == "degraded", (status, body)
    assert body["schema_registry"]["paused_partitions"] == len(first), body
    assert "503" in body["schema_registry"]["reason"], body
    status, _, body = api.get("/v1/status")  # the dashboard's data
    assert status == 200 and body["state"] == "degraded", (status, body)
    assert body["schema_registry"]["paused_partitions"] == len(first), body

    # Slow instead of failing: a timeout is an outage too.
    proxy.slow.add(settled)
    proxy.delay_s = 2.0
    proxy.failing.discard(settled)
    harness.wait_until(
        lambda: harness.metric_total(harness.scrape_metrics(url),
                                     "readmodel_schema_registry_waits_total")
        >= waits + 2 * len(first), 60, "the held partitions retried twice more")
    assert all(stored().get(p, 0) == o for p, o in first.items()), (stored(), first)
    samples = harness.scrape_metrics(url)
    assert harness.metric_total(samples, "readmodel_dead_letters_total") == 0
    assert harness.metric_total(samples, "readmodel_events_total", outcome="applied") > 0

    proxy.slow.discard(settled)
    harness.wait_until(
        lambda: harness.metric_total(harness.scrape_metrics(url),
                                     "readmodel_schema_registry_paused_partitions") == 0
        and harness.metric_total(harness.scrape_metrics(url),
                                 "readmodel_partition_lag_messages") == 0,
        60, "the view caught up")
    harness.wait_until(lambda: api.get("/readyz")[2].get("status") == "ready", 30,
                       "/readyz ready again")
    assert harness.metric_total(harness.scrape_metrics(url), "readmodel_dead_letters_total") == 0
    projector.stop()
    proxy.stop()
    problems = check_view(config, harness.read_oracle(oracle_path))
    assert not problems, problems[:5]


def make_tls(directory):
    """A CA and a certificate for 127.0.0.1 it signed (openssl CLI)."""
    def openssl(*args):
        out = subprocess.run(["openssl", *args], cwd=directory, capture_output=True, text=True,
                             timeout=60)
        assert out.returncode == 0, out.stderr
    openssl("req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes",
            "-keyout", "ca.key", "-out", "ca.pem", "-days", "2", "-subj", "/CN=registry-ca")
    openssl("req", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes",
            "-keyout", "registry.key", "-out", "registry.csr", "-subj", "/CN=registry")
    with open(os.path.join(directory, "registry.ext"), "w") as f:
        f.write("subjectAltName=IP:127.0.0.1\n")
    openssl("x509", "-req", "-in", "registry.csr", "-CA", "ca.pem", "-CAkey", "ca.key",
            "-CAcreateserial", "-out", "registry.pem", "-days", "2", "-extfile", "registry.ext")
    return [os.path.join(directory, n) for n in ("ca.pem", "registry.pem", "registry.key")]


def test_basic_auth_and_tls_through_config_and_environment(broker, workdir, processes):
    """An HTTPS registry with basic auth: the simulator and the projector reach it with
    schema_registry.* settings (the password and CA from the environment); a wrong
    password and an untrusted certificate are outages (paused, reason logged), never
    dead letters."""
    ca, cert, key = make_tls(workdir)
    registry = DevRegistry(workdir, broker.bootstrap,
                           extra=("--user", "readmodel:s3cret", "--tls-cert", cert,
                                  "--tls-key", key))
    processes.append(registry)
    assert registry.url.startswith("https://")
    env = dict(os.environ, RM_SCHEMA_REGISTRY_USERNAME="readmodel",
               RM_SCHEMA_REGISTRY_PASSWORD="s3cret", RM_SCHEMA_REGISTRY_CA_FILE=ca)
    oracle_path = os.path.join(workdir, "oracle-tls.jsonl")
    sim = subprocess.run([harness.binary("tools/simulate/simulate"), "--bootstrap",
                          broker.bootstrap, "--customers", "40", "--seed", "38", "--oracle",
                          oracle_path, "-q", "--registry", registry.url],
                         cwd=harness.ROOT, capture_output=True, text=True, timeout=300, env=env)
    assert sim.returncode == 0, sim.stderr[-2000:]

    config = registry_config(workdir, broker, registry.url, schema_registry__username="readmodel",
                             projector__metrics_listen="")
    out = subprocess.run([harness.binary("projector/projector"), "--config", config,
                          "--until-caught-up"], cwd=harness.ROOT, capture_output=True, text=True,
                         timeout=300, env=env)
    assert out.returncode == 0, out.stderr[-2000:]
    problems = check_view(config, harness.read_oracle(oracle_path))
    assert not problems, problems[:5]

    for name, bad_env, want in (
            ("wrong-password", dict(env, RM_SCHEMA_REGISTRY_PASSWORD="nope"), "HTTP 401"),
            ("untrusted", {k: v for k, v in env.items() if k != "RM_SCHEMA_REGISTRY_CA_FILE"},
             "SSL")):
        port = harness.free_port()
        os.makedirs(os.path.join(workdir, name))
        bad = registry_config(os.path.join(workdir, name), broker, registry.url,
                              schema_registry__username="readmodel",
                              projector__metrics_listen=f"127.0.0.1:{port}")
        projector = harness.Process(f"projector-{name}", [harness.binary("projector/projector"),
                                                          "--config", bad], workdir, env=bad_env)
        processes.append(projector)
        url = f"http://127.0.0.1:{port}/metrics"

        def paused():
            try:
                return harness.metric_total(harness.scrape_metrics(url),
                                            "readmodel_schema_registry_paused_partitions") > 0
            except OSError:
                return False
        harness.wait_until(paused, 60, f"{name}: partitions paused")
        samples = harness.scrape_metrics(url)
        assert harness.metric_total(samples, "readmodel_dead_letters_total") == 0
        assert harness.metric_total(samples, "readmodel_schema_registry_up") == 0
        projector.stop()
        assert want in projector.log_text(), projector.log_text()[-2000:]
