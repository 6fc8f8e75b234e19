"""Metrics are present and move while the pipeline runs; logs are JSON lines with the
documented fields."""
import json
import re
import urllib.request

import harness

PROJECTOR_METRICS = [
    "readmodel_partition_next_offset", "readmodel_partition_high_watermark",
    "readmodel_partition_lag_messages", "readmodel_partition_lag_seconds",
    "readmodel_events_total", "readmodel_events_applied_total", "readmodel_batch_events_bucket",
    "readmodel_commit_seconds_bucket", "readmodel_parked_events", "readmodel_dead_letters_total",
    "readmodel_gaps_total", "readmodel_store_map_bytes", "readmodel_store_used_bytes",
]
API_METRICS = [
    "readmodel_http_requests_total", "readmodel_http_request_duration_seconds_bucket",
    "readmodel_store_partition_lag_messages", "readmodel_store_partition_lag_seconds",
]


def assert_families_grouped(text):
    """The text exposition format: every family's samples form one group, right after its
    HELP/TYPE lines, and no family appears twice."""
    seen, current = set(), None
    for line in text.splitlines():
        if line.startswith("# TYPE "):
            current = line.split()[2]
            assert current not in seen, f"family {current} appears twice"
            seen.add(current)
        elif line and not line.startswith("#"):
            name = line.split("{")[0].split(" ")[0]
            base = re.sub(r"_(bucket|sum|count)$", "", name)
            assert current in (name, base), f"sample {name} outside its family (in {current})"


def test_metrics_move_and_logs_are_json(broker, workdir, processes):
    harness.simulate(broker.bootstrap, workdir, 100, 41)
    port = harness.free_port()
    config = harness.write_config(workdir, broker.bootstrap,
                                  projector__metrics_listen=f"127.0.0.1:{port}")
    projector = harness.Process("projector", [harness.binary("projector/projector"), "--config",
                                              config], workdir)
    processes.append(projector)
    api = harness.QueryApi(workdir, config, harness.free_port())
    processes.append(api)
    url = f"http://127.0.0.1:{port}/metrics"
    harness.wait_until(lambda: harness.committed_offsets(config) > 0, 60, "a first commit")
    first = harness.wait_until(lambda: (lambda s: s if harness.metric_total(s, "readmodel_events_total") > 0
                                        else None)(harness.scrape_metrics(url)), 30, "events counted")
    for name in PROJECTOR_METRICS:
        assert any(k.split("{")[0] == name for k in first), f"{name} not exported"
    assert re.search(r'readmodel_partition_lag_messages\{view="customer360",topic="orders",'
                     r'partition="\d+"\}', "\n".join(first))
    with urllib.request.urlopen(url, timeout=30) as r:
        assert_families_grouped(r.read().decode())

    harness.simulate(broker.bootstrap, workdir, 100, 42)
    second = harness.wait_until(
        lambda: (lambda s: s if harness.metric_total(s, "readmodel_events_total", outcome="applied") >
                 harness.metric_total(first, "readmodel_events_total", outcome="applied") else None)(harness.scrape_metrics(url)),
        60, "the applied counter to move")
    assert harness.metric_total(second, "readmodel_batch_events_count") > harness.metric_total(first, "readmodel_batch_events_count")

    # The query API opens the store lazily (and retries a failed open shortly after), so
    # allow it a moment to see the store the projector has just created: before that an
    # unknown key answers 503, not 404.
    harness.wait_until(
        lambda: harness.metric_total(harness.scrape_metrics(api.base + "/metrics"),
                                     "readmodel_http_store_open") == 1, 30,
        "the query API to open the store")
    assert api.get("/v1/views/customer360/nope")[0] == 404
    api_samples = harness.scrape_metrics(api.base + "/metrics")
    for name in API_METRICS:
        assert any(k.split("{")[0] == name for k in api_samples), f"query-api: {name} not exported"
    assert harness.metric_total(api_samples, "readmodel_http_requests_total", route="view", status="404") >= 1
    with urllib.request.urlopen(api.base + "/metrics", timeout=30) as r:
        assert_families_grouped(r.read().decode())

    projector.stop()
    lines = [l for l in projector.log_text().splitlines() if l.strip()]
    assert lines, "the projector logged nothing"
    for line in lines:
        record = json.loads(line)  # every line is one JSON object
        for field in ("ts", "level", "component", "msg"):
            assert field in record, (field, line)
        assert record["component"] == "projector"
        assert record["level"] in ("debug", "info", "warn", "error")
