"""Integration test harness, written once: the dev broker, the simulator, the projector and
the query API as real processes, readiness by polling (never fixed sleeps), JSON compare.

Binaries come from $RM_BUILD_DIR (default build-asan, relative to the repo root)."""
import http.client
import json
import os
import signal
import socket
import subprocess
import time
import urllib.error
import urllib.parse
import urllib.request

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
BUILD = os.path.join(ROOT, os.environ.get("RM_BUILD_DIR", "build-asan"))
TOPICS = ["customers", "orders", "payments", "shipments", "loyalty", "returns"]
# The projected sections of Customer 360 (what the oracle describes); fraud_holds is live,
# fetched from a risk service at request time, so tests that compare with the oracle ask
# for ?fields=PROJECTED.
PROJECTED = "profile,orders,payment_issues,delivery_exceptions,loyalty,returns,counters"


def binary(relpath):
    path = os.path.join(BUILD, relpath)
    if not os.path.exists(path):
        raise FileNotFoundError(f"{path} is not built (RM_BUILD_DIR={BUILD})")
    return path


def wait_until(predicate, timeout, what, interval=0.05):
    """Polls predicate until it returns a true value; fails with `what` on timeout."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        time.sleep(interval)


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Process:
    """A child process whose stderr goes to a log file; stopped at teardown."""

    def __init__(self, name, argv, log_dir, **kwargs):
        self.name = name
        self.log_path = os.path.join(log_dir, f"{name}.log")
        self.log = open(self.log_path, "ab")
        self.proc = subprocess.Popen(argv, cwd=ROOT, stderr=self.log,
                                     stdout=kwargs.pop("stdout", self.log), **kwargs)

    def alive(self):
        return self.proc.poll() is None

    def send(self, sig):
        if self.alive():
            self.proc.send_signal(sig)

    def wait(self, timeout):
        return self.proc.wait(timeout=timeout)

    def stop(self, sig=signal.SIGTERM, timeout=30):
        if self.alive():
            self.proc.send_signal(sig)
            try:
                self.proc.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.log.close()
        return self.proc.returncode

    def log_text(self):
        with open(self.log_path, "rb") as f:
            return f.read().decode(errors="replace")


class DevBroker(Process):
    kind = "dev"

    def __init__(self, log_dir, partitions=6, extra=()):
        super().__init__("devbroker", [binary("tools/devbroker/devbroker"),
                                       "--partitions", str(partitions), *extra],
                         log_dir, stdout=subprocess.PIPE)
        line = self.proc.stdout.readline().decode().strip()
        if not line:
            raise AssertionError("devbroker printed no bootstrap address:\n" + self.log_text())
        self.bootstrap = line


BROKER_TOPICS = TOPICS + [t + ".dlq" for t in TOPICS] + ["customer360.repairs",
                                                          "customer360.repairs.dlq"]


def kafka_admin_module():
    """confluent_kafka (PyPI), which tools/lib.sh installs into .cache/pydeps-pyX.Y."""
    import sys
    target = os.path.join(ROOT, ".cache", "pydeps-py%d.%d" % sys.version_info[:2])
    if target not in sys.path and os.path.isdir(target):
        sys.path.insert(0, target)
    import confluent_kafka.admin
    return confluent_kafka


class RealKafka(Process):
    """A real Apache Kafka cluster from tools/kafka (KRaft, `nodes` combined nodes).

    Started once per pytest session (a JVM start and a KRaft election cost ~10-25 s);
    reset() gives each test what a fresh DevBroker gives: the Customer 360 topics, empty,
    and no consumer group offsets."""

    kind = "kafka"

    SASL_USER, SASL_PASSWORD = "readmodel", "readmodel-secret"

    def __init__(self, log_dir, nodes=1, partitions=6, sasl_ssl=False):
        self.cluster_dir = os.path.join(log_dir, "cluster")
        # --sasl-ssl costs two openssl key generations (well under a second); the session
        # cluster has it for test_real_kafka.py's security tests.
        super().__init__("kafka", [os.path.join(ROOT, "tools/kafka"), "--nodes", str(nodes),
                                   "--dir", self.cluster_dir, "--partitions", str(partitions),
                                   *(["--sasl-ssl"] if sasl_ssl else [])],
                         log_dir, stdout=subprocess.PIPE)
        line = self.proc.stdout.readline().decode().strip()
        if not line:
            raise AssertionError("tools/kafka printed no bootstrap address:\n" + self.log_text())
        self.bootstrap = line
        self.sasl_bootstrap = None
        if sasl_ssl:
            with open(os.path.join(self.cluster_dir, "bootstrap.sasl_ssl")) as f:
                self.sasl_bootstrap = f.read().strip()
        self.ca = os.path.join(self.cluster_dir, "tls", "ca.pem")
        self.nodes = nodes
        self.ck = kafka_admin_module()
        self.admin = self.ck.admin.AdminClient({"bootstrap.servers": line, "log_level": 0})

    def stop(self, sig=signal.SIGTERM, timeout=60):
        rc = super().stop(sig, timeout)
        # Nodes a killed tools/kafka left behind (they run in their own session).
        subprocess.run([os.path.join(ROOT, "tools/kafka"), "stop", self.cluster_dir],
                       capture_output=True, timeout=60)
        return rc

    def topics(self):
        md = self.admin.list_topics(timeout=30)
        return {name: len(t.partitions) for name, t in md.topics.items()
                if not name.startswith("__")}

    def reset(self, partitions=6, topics=None, topic_configs=None):
        """Deletes every topic and consumer group, then creates `topics` (default: the
        dev broker's) with `partitions` each; topic_configs: {topic: {key: value}}."""
        topics = BROKER_TOPICS if topics is None else topics
        groups = [g.group_id for g in self.admin.list_consumer_groups(
            request_timeout=30).result().valid]
        if groups:
            for fut in self.admin.delete_consumer_groups(groups, request_timeout=30).values():
                try:
                    fut.result()
                except self.ck.KafkaException:
                    pass  # a group with a live member (none: tests stop their processes)
        existing = list(self.topics())
        if existing:
            for fut in self.admin.delete_topics(existing, operation_timeout=30).values():
                fut.result()
            wait_until(lambda: not set(existing) & set(self.topics()), 60, "topics deleted")
        rf = min(self.nodes, 3)
        new = [self.ck.admin.NewTopic(t, partitions, rf,
                                      config=dict((topic_configs or {}).get(t, {})))
               for t in topics]
        for fut in self.admin.create_topics(new, operation_timeout=30).values():
            fut.result()

        # Every node must answer with the new topics: a node whose metadata lags tells a
        # client that starts now the topics do not exist (a projector then stops at once).
        def led():
            for addr in self.bootstrap.split(","):
                node = self.ck.admin.AdminClient({"bootstrap.servers": addr})
                md = node.list_topics(timeout=30)
                if not all(t in md.topics and len(md.topics[t].partitions) == partitions
                           and all(p.leader >= 0 for p in md.topics[t].partitions.values())
                           for t in topics):
                    return False
            return True
        wait_until(led, 60, "partition leaders of the new topics on every node")


class SharedKafka:
    """A test's view of the session's RealKafka: the DevBroker interface (bootstrap,
    alive, stop, log_text), with stop() a no-op since the cluster outlives the test."""

    kind = "kafka"

    def __init__(self, cluster):
        self.cluster = cluster
        self.bootstrap = cluster.bootstrap
        self.sasl_bootstrap = cluster.sasl_bootstrap
        self.ca = cluster.ca

    def alive(self):
        return self.cluster.alive()

    def stop(self, *args, **kwargs):
        return None

    def log_text(self):
        return self.cluster.log_text()


def simulate(bootstrap, tmp, customers, seed, extra=()):
    """Runs the simulator; returns (summary dict, oracle path)."""
    oracle = os.path.join(tmp, f"oracle-{seed}.jsonl")
    out = subprocess.run([binary("tools/simulate/simulate"), "--bootstrap", bootstrap,
                          "--customers", str(customers), "--seed", str(seed),
                          "--oracle", oracle, "--summary", "-q", *extra],
                         cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, f"simulate failed ({out.returncode}): {out.stderr[-2000:]}"
    return json.loads(out.stdout.strip().splitlines()[-1]), oracle


def read_oracle(path):
    with open(path) as f:
        return [json.loads(line) for line in f]


def write_config(tmp, bootstrap, name="config.yaml", kafka=None, **settings):
    """A config file for projector and query-api; settings are dotted keys.

    Authentication is off unless a test sets query_api__auth.enabled (test_auth.py does):
    the other tests check the data path; the audit log goes to a file in tmp."""
    settings.setdefault("query_api__auth.enabled", "off")
    settings.setdefault("query_api__audit.file", os.path.join(tmp, "audit.log"))
    lines = [f"data_dir: {os.path.join(tmp, 'data')}",
             f"view: {os.path.join(ROOT, 'schemas/views/customer360.yaml')}",
             f"catalog: {os.path.join(ROOT, 'schemas/catalog.yaml')}",
             "log: {format: json}"]
    sections = {}
    for key, value in settings.items():
        section, _, leaf = key.partition("__")
        sections.setdefault(section, {})[leaf] = value
    for section, values in sections.items():
        lines.append(f"{section}:")
        for leaf, value in values.items():
            lines.append(f"  {leaf}: {json.dumps(value)}")
    lines.append("kafka:")
    lines.append(f"  bootstrap.servers: \"{bootstrap}\"")
    for key, value in (kafka or {}).items():
        lines.append(f"  {key}: {json.dumps(value)}")
    path = os.path.join(tmp, name)
    with open(path, "w") as f:
        f.write("\n".join(lines) + "\n")
    return path


def mint_token(config, sub, *roles, ttl_s=3600):
    """A development bearer token from `query-api token` (HS256, the config's secret)."""
    out = subprocess.run([binary("query-api/query-api"), "token", "--config", config,
                          "--sub", sub, "--ttl-s", str(ttl_s),
                          *[a for r in roles for a in ("--role", r)]],
                         cwd=ROOT, capture_output=True, text=True, timeout=30)
    assert out.returncode == 0, out.stderr
    return out.stdout.strip()


def run_projector(config, *extra, timeout=300):
    """projector --until-caught-up; returns the CompletedProcess."""
    return subprocess.run([binary("projector/projector"), "--config", config,
                           "--until-caught-up", *extra],
                          cwd=ROOT, capture_output=True, text=True, timeout=timeout)


def inspect(config, *args):
    out = subprocess.run([binary("tools/inspect/inspect"), "--config", config, *args],
                         cwd=ROOT, capture_output=True, text=True, timeout=120)
    return out


def inspect_docs(config, keys):
    """Documents of keys via tools/inspect (read-only); {key: doc or None}."""
    docs = {}
    for i in range(0, len(keys), 500):
        chunk = keys[i:i + 500]
        out = inspect(config, "get", *chunk)
        for key, line in zip(chunk, out.stdout.splitlines()):
            doc = json.loads(line)
            docs[key] = None if "error" in doc else doc
    return docs


def committed_offsets(config):
    out = inspect(config, "offsets")
    if out.returncode != 0:
        return 0
    return sum(p["next_offset"] for p in json.loads(out.stdout))


class QueryApi(Process):
    def __init__(self, log_dir, config, port):
        super().__init__("query-api", [binary("query-api/query-api"), "--config", config,
                                       "--set", f"query_api.listen=127.0.0.1:{port}"], log_dir)
        self.base = f"http://127.0.0.1:{port}"
        wait_until(lambda: self.try_get("/healthz"), 30, "query-api /healthz")

    def try_get(self, path):
        try:
            return self.get(path)
        except OSError:
            return None

    def get(self, path, headers=None):
        """(status, headers, parsed JSON body or text)."""
        req = urllib.request.Request(self.base + path, headers=headers or {})
        try:
            with urllib.request.urlopen(req, timeout=10) as resp:
                return resp.status, dict(resp.headers), _decode(resp)
        except urllib.error.HTTPError as err:
            return err.code, dict(err.headers), _decode(err)


def _decode(resp):
    body = resp.read().decode()
    if "json" in (resp.headers.get("Content-Type") or ""):
        return json.loads(body)
    return body


def first_difference(got, want, path="$"):
    """The first path where two JSON values differ, or None."""
    if type(got) != type(want):
        return f"{path}: {json.dumps(got)[:200]} != {json.dumps(want)[:200]}"
    if isinstance(want, dict):
        for key in sorted(set(got) | set(want)):
            if key not in got or key not in want:
                return f"{path}.{key}: missing on one side"
            diff = first_difference(got[key], want[key], f"{path}.{key}")
            if diff:
                return diff
        return None
    if isinstance(want, list):
        if len(got) != len(want):
            return f"{path}: {len(got)} items != {len(want)}"
        for i, (g, w) in enumerate(zip(got, want)):
            diff = first_difference(g, w, f"{path}[{i}]")
            if diff:
                return diff
        return None
    return None if got == want else f"{path}: {json.dumps(got)[:200]} != {json.dumps(want)[:200]}"


def compare_with_oracle(oracle, fetch):
    """fetch(key) -> sections dict or None (absent). Returns a list of mismatch strings."""
    problems = []
    for entry in oracle:
        got = fetch(entry["key"])
        if entry["erased"]:
            if got is not None:
                problems.append(f"{entry['key']}: erased but still served")
            continue
        if got is None:
            problems.append(f"{entry['key']}: missing")
            continue
        diff = first_difference(got, entry["sections"])
        if diff:
            problems.append(f"{entry['key']}: {diff}")
    return problems


def scrape_metrics(url):
    """A Prometheus text exposition as {"name{labels}": value}; checks the content type."""
    with urllib.request.urlopen(url, timeout=10) as resp:
        assert resp.headers["Content-Type"].startswith("text/plain; version=0.0.4")
        text = resp.read().decode()
    samples = {}
    for line in text.splitlines():
        if line and not line.startswith("#"):
            name_labels, value = line.rsplit(" ", 1)
            samples[name_labels] = float(value)
    return samples


def metric_total(samples, name, **labels):
    """The sum of a family's samples whose labels include all of `labels`."""
    return sum(v for k, v in samples.items()
               if k.split("{")[0] == name and all(f'{lk}="{lv}"' in k for lk, lv in labels.items()))


def simulate_with_sources(workdir, bootstrap, customers, seed, started):
    """Produces a stream with tools/simulate and keeps it serving the source services (the
    risk service of live sections among them). The process is appended to `started` for
    the caller to stop. Returns (the services' base URL, the oracle's path) once both the
    stream and the services are ready."""
    oracle_path = os.path.join(workdir, "oracle.jsonl")
    ready = os.path.join(workdir, "sources.url")
    sources = Process("sources", [
        binary("tools/simulate/simulate"), "--bootstrap", bootstrap,
        "--customers", str(customers), "--seed", str(seed), "--oracle", oracle_path,
        "--serve-sources", "127.0.0.1:0", "--sources-ready-file", ready, "-q"], workdir)
    started.append(sources)

    def url():
        assert sources.alive(), sources.log_text()[-2000:]
        return open(ready).read().strip() if os.path.exists(ready) else None
    return wait_until(url, 120, "the stream and the source services"), oracle_path


# ---- shared helpers of the test files ----

VIEW = "/v1/views/customer360/"


def http_request(base, path, headers=None, method="GET", body=None):
    """(status, headers with lower-case names, raw body bytes) from base ("http://host:port")
    — raw, because a 304 has no body and urllib treats it as an error."""
    host, port = base.removeprefix("http://").split(":")
    conn = http.client.HTTPConnection(host, int(port), timeout=30)
    try:
        conn.request(method, path, body=body, headers=headers or {})
        resp = conn.getresponse()
        return resp.status, {k.lower(): v for k, v in resp.getheaders()}, resp.read()
    finally:
        conn.close()


def view_path(key, **params):
    """The view endpoint's path for key (escaped), with query parameters."""
    query = urllib.parse.urlencode(params)
    return VIEW + urllib.parse.quote(key, safe="") + ("?" + query if query else "")


def zigzag(n):
    """An Avro long: zigzag, then a little-endian base-128 varint."""
    n = (n << 1) ^ (n >> 63)
    out = bytearray()
    while n & ~0x7F:
        out.append((n & 0x7F) | 0x80)
        n >>= 7
    out.append(n)
    return bytes(out)


def avro_string(text):
    data = text.encode()
    return zigzag(len(data)) + data


def generations(config):
    """`projector generations --json`: the view's generations, as a list."""
    out = subprocess.run([binary("projector/projector"), "--config", config, "generations",
                          "--json"], cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr[-2000:]
    return json.loads(out.stdout)


def generations_by_id(config):
    return {g["id"]: g for g in generations(config)}
