"""The lag dashboard in a real browser: headless Chromium (Debian's chromium) renders
/dashboard while the pipeline runs live; every partition's lag figures appear in the DOM
(topics expanded through the page's #expand= link), they change when more events arrive,
and the charts draw the history the query API kept (/v1/status/history)."""
import os
import re
import shutil
import subprocess
import tempfile

import pytest

import harness

CHROMIUM = shutil.which("chromium")


def rendered_dom(url):
    """The DOM after the page's scripts ran (a fresh profile, no background networking)."""
    profile = tempfile.mkdtemp(prefix="rm-chromium-")
    try:
        out = subprocess.run(
            [CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic",
             "--no-first-run", "--disable-background-networking", "--disable-component-update",
             "--disable-sync", "--disable-dev-shm-usage", f"--user-data-dir={profile}",
             "--virtual-time-budget=4000", "--dump-dom", url],
            capture_output=True, text=True, timeout=120)
        assert out.returncode == 0, out.stderr[-2000:]
        return out.stdout
    finally:
        shutil.rmtree(profile, ignore_errors=True)


def partition_rows(dom):
    """{(topic, partition): (lag_messages, next_offset)} from the rendered table."""
    rows = {}
    for m in re.finditer(r'<tr id="p-([a-z0-9.]+)-(\d+)" data-lag-messages="(\d+)" '
                         r'data-lag-seconds="([0-9.]+)" data-next-offset="(\d+)"', dom):
        rows[(m.group(1), int(m.group(2)))] = (int(m.group(3)), int(m.group(5)))
    return rows


@pytest.mark.skipif(CHROMIUM is None, reason="Debian's chromium is not installed")
def test_dashboard_shows_live_lag_per_partition(broker, workdir, processes):
    harness.simulate(broker.bootstrap, workdir, 300, 31)
    config = harness.write_config(workdir, broker.bootstrap, projector__metrics_listen="")
    projector = harness.Process("projector", [harness.binary("projector/projector"), "--config",
                                              config], workdir)
    processes.append(projector)
    api = harness.QueryApi(workdir, config, harness.free_port())
    processes.append(api)
    # A partition appears in the store once its first batch is committed: wait for all
    # 36 (6 topics x 6 partitions, all with events) and for the projector to catch up.
    status = harness.wait_until(
        lambda: (lambda s: s if s.get("state") == "running" and len(s["partitions"]) == 36
                 else None)(api.get("/v1/status")[2]), 60, "the projector to catch up")
    expected = {(p["topic"], p["partition"]) for p in status["partitions"]}

    topics = sorted({t for t, _ in expected})
    url = api.base + "/dashboard#expand=" + ",".join(topics)
    dom = rendered_dom(url)
    before = partition_rows(dom)
    assert set(before) == expected, f"rows for {sorted(set(expected) - set(before))[:5]} missing"
    assert re.search(r'id="state" class="state [^"]*\brunning\b', dom), dom[:2000]
    assert 'id="dead-letters">0<' in dom
    # the per-topic rollup sums its partitions
    for t in topics:
        m = re.search(rf'<tr id="t-{t}" class="topic" data-lag-messages="(\d+)" '
                      rf'data-lag-seconds="[0-9.]+" data-next-offset="(\d+)" data-partitions="(\d+)"', dom)
        assert m, f"no rollup row for {t}"
        assert int(m.group(2)) == sum(n for (tt, _), (_, n) in before.items() if tt == t)
        assert int(m.group(3)) == 6
    # the query API keeps the history the charts draw; the lines are there at once
    history = harness.wait_until(lambda: (lambda h: h if len(h["samples"]) >= 2 else None)(
        api.get("/v1/status/history")[2]), 30, "two history samples")
    assert set(history["topics"]) == set(topics)
    assert dom.count("<path d=\"M") >= len(topics), "the charts drew no lines"

    # more events: the figures on the page follow
    harness.simulate(broker.bootstrap, workdir, 200, 32)
    harness.wait_until(lambda: api.get("/v1/status")[2]["state"] == "running" and
                       sum(p["next_offset"] for p in api.get("/v1/status")[2]["partitions"]) >
                       sum(n for _, n in before.values()), 60, "the new events to be applied")
    after = partition_rows(rendered_dom(url))
    changed = [k for k in expected if after[k][1] != before[k][1]]
    assert len(changed) >= 30, f"only {len(changed)} partitions changed on the page"


@pytest.mark.skipif(CHROMIUM is None, reason="Debian's chromium is not installed")
def test_dashboard_rollup_shows_parked_and_dead_letters_per_topic(broker, workdir, processes):
    """Orders held back: payments, shipments and returns wait for their order. The rollup's
    per-topic parked and dead-letter cells are /v1/status's per-topic figures, and the
    parked chart draws one line per topic besides the view's total."""
    manifest = os.path.join(workdir, "poison.jsonl")
    harness.simulate(broker.bootstrap, workdir, 150, 33,
                     ("--topics", "customers,payments,shipments,loyalty,returns",
                      "--poison", "5", "--poison-manifest", manifest))
    config = harness.write_config(workdir, broker.bootstrap, projector__metrics_listen="")
    out = harness.run_projector(config)
    assert out.returncode == 0, out.stderr[-2000:]
    api = harness.QueryApi(workdir, config, harness.free_port())
    processes.append(api)
    status = api.get("/v1/status")[2]
    counted = {t["topic"]: t for t in status["topics"]}
    assert sum(t["parked"] for t in counted.values()) == status["parked"] > 0
    dom = rendered_dom(api.base + "/dashboard")
    topics = sorted({p["topic"] for p in status["partitions"]})
    for t in topics:
        m = re.search(rf'<tr id="t-{t}" class="topic" [^>]*data-parked="(\d+)" '
                      rf'data-dead-letters="(\d+)"', dom)
        assert m, f"no parked / dead-letter figures in the rollup row of {t}"
        want = counted.get(t, {"parked": 0, "dead_letters_pending": 0})
        assert (int(m.group(1)), int(m.group(2))) == (want["parked"],
                                                      want["dead_letters_pending"]), t
        row = re.search(rf'<tr id="t-{t}" .*?</tr>', dom).group(0)
        cell = re.search(r'<td class="parked">([^<]*)</td>', row).group(1)
        assert cell.replace(",", "") == str(want["parked"]), (t, cell)
    assert counted["payments"]["parked"] > 0 and counted["shipments"]["parked"] > 0
    legend = re.search(r'id="legend-4" data-names="([^"]*)"', dom)
    assert legend and legend.group(1).split("|") == topics + ["view total"], legend
