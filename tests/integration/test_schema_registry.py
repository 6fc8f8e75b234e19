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
