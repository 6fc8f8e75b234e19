"""tools/backfill: a source snapshot (JSON lines) becomes snapshot events that build the
view; a re-run changes nothing; overlapping a log-built view (either order) still equals
the oracle; a bad line stops the run before anything is produced.

Snapshots are derived from the simulator's oracle (tools/simulate/README.md): profile,
the listed orders, loyalty and open returns of every customer that is not erased."""
import datetime
import json
import os
import subprocess

import harness

CUSTOMERS = 60
START_MS = 1_700_000_000_000
HIGH_VERSION = 1000  # newer than any version the simulated log reaches


def iso(ms):
    """ISO 8601 with milliseconds and Z: half of the times are given this way."""
    t = datetime.datetime.fromtimestamp(ms / 1000, tz=datetime.timezone.utc)
    return t.strftime("%Y-%m-%dT%H:%M:%S.") + f"{ms % 1000:03d}Z"


def snapshot_from_oracle(oracle, version=lambda kind, i: HIGH_VERSION, name=lambda i, n: n):
    """{aggregate: [line objects]} for the oracle's state; version(kind, index) and
    name(index, name) let a test make some entities older or different."""
    snap = {"customers": [], "orders": [], "loyalty": [], "returns": []}
    for i, entry in enumerate(e for e in oracle if not e["erased"]):
        key, s = entry["key"], entry["sections"]
        p = s["profile"]
        snap["customers"].append({
            "id": key, "name": name(i, p["name"]), "email": p["email"], "phone": p["phone"],
            "preferred_channel": p["preferred_channel"],
            "marketing_opt_in": p["marketing_opt_in"],
            "registered_at": p["registered_at"] if i % 2 else iso(p["registered_at"]),
            "updated_at": p["updated_at"], "version": version("customers", i)})
        for j, o in enumerate(s["orders"]):
            snap["orders"].append({
                "id": o["order_id"], "customer_id": key,
                "placed_at": iso(o["created_at"]) if j % 2 else o["created_at"],
                "total_cents": o["total_cents"], "currency": o["currency"],
                "line_count": o["line_count"], "status": o["status"],
                "version": version("orders", i)})
        if s["loyalty"]:
            snap["loyalty"].append({"customer_id": key, **s["loyalty"],
                                    "version": version("loyalty", i)})
        for r in s["returns"]:
            snap["returns"].append({"id": r["return_id"], "order_id": r["order_id"],
                                    "reason": r["reason"], "opened_at": r["opened_at"],
                                    "status": "OPEN", "version": version("returns", i)})
    return snap


def write_snapshot(workdir, snap, tag):
    paths = {}
    for aggregate, lines in snap.items():
        paths[aggregate] = os.path.join(workdir, f"{tag}-{aggregate}.jsonl")
        with open(paths[aggregate], "w") as f:
            f.writelines(json.dumps(line) + "\n" for line in lines)
    return paths


def backfill(config, aggregate, path, *extra):
    return subprocess.run([harness.binary("tools/backfill/backfill"), "--config", config,
                           "--aggregate", aggregate, "--input", path, "-q", *extra],
                          cwd=harness.ROOT, capture_output=True, text=True, timeout=120)


def summary(out):
    """The key=value summary line, as a dict."""
    line = out.stdout.strip().splitlines()[-1]
    assert line.startswith("backfill "), out.stdout
    return dict(kv.split("=", 1) for kv in line.split()[1:])


def backfill_all(config, paths):
    """Orders before returns: a return finds its customer through the order's link."""
    produced = 0
    for aggregate in ("customers", "orders", "loyalty", "returns"):
        out = backfill(config, aggregate, paths[aggregate])
        assert out.returncode == 0, f"{aggregate}: {out.returncode} {out.stderr[-2000:]}"
        s = summary(out)
        assert s["produced"] == s["read"] == s["valid"] and s["failed"] == "0", s
        produced += int(s["produced"])
    return produced


def project(config):
    out = harness.run_projector(config)
    assert out.returncode == 0, out.stderr[-3000:]


def docs(config, oracle):
    """{key: rendered document line} as tools/inspect prints it (bytes of the view)."""
    out = harness.inspect(config, "get", *[e["key"] for e in oracle])
    return dict(zip([e["key"] for e in oracle], out.stdout.splitlines()))


def assert_equals_oracle(config, oracle):
    rendered = docs(config, oracle)

    def fetch(key):
        doc = json.loads(rendered[key])
        return None if "error" in doc else doc["sections"]

    problems = harness.compare_with_oracle(oracle, fetch)
    assert not problems, f"{len(problems)} customers differ; first: {problems[:3]}"


def dry_oracle(workdir, seed):
    """The oracle of a stream without producing it (same seed and start as simulate_live)."""
    path = os.path.join(workdir, f"dry-{seed}.jsonl")
    out = subprocess.run([harness.binary("tools/simulate/simulate"), "--dry-run",
                          "--customers", str(CUSTOMERS), "--seed", str(seed),
                          "--start-ms", str(START_MS), "--oracle", path, "-q"],
                         cwd=harness.ROOT, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    return harness.read_oracle(path)


def simulate_live(broker, workdir, seed):
    _, oracle_path = harness.simulate(broker.bootstrap, workdir, CUSTOMERS, seed,
                                      extra=("--start-ms", str(START_MS)))
    return harness.read_oracle(oracle_path)


def snapshot_only_expectation(oracle):
    """What a view built from the snapshot alone must hold: payments and shipments are not
    in it, so statuses are NONE, no issues or exceptions, one order per listed order. The
    oracle lists only the 20 newest orders: a return of an older order finds no link and
    stays parked (it appears once the order's event arrives, test 3b)."""
    expected = []
    for entry in oracle:
        if entry["erased"]:
            expected.append(entry)
            continue
        s = json.loads(json.dumps(entry["sections"]))
        for o in s["orders"]:
            o["payment_status"] = o["shipment_status"] = "NONE"
        s["payment_issues"], s["delivery_exceptions"] = [], []
        listed = {o["order_id"] for o in s["orders"]}
        s["returns"] = [r for r in s["returns"] if r["order_id"] in listed]
        s["counters"] = {"lifetime_orders": len(s["orders"]), "lifetime_settled_cents": 0}
        expected.append({"key": entry["key"], "erased": False, "sections": s})
    return expected


def test_backfill_into_an_empty_view_and_again(broker, workdir):
    oracle = dry_oracle(workdir, 21)
    snap = snapshot_from_oracle(oracle)
    assert snap["returns"] and snap["loyalty"], "the seed should exercise every aggregate"
    paths = write_snapshot(workdir, snap, "snap")
    config = harness.write_config(workdir, broker.bootstrap, projector__metrics_listen="")

    # (1) into an empty view: the view equals the snapshot's state
    produced = backfill_all(config, paths)
    assert produced == sum(len(v) for v in snap.values())
    project(config)
    expected = snapshot_only_expectation(oracle)
    assert_equals_oracle(config, expected)
    first = docs(config, oracle)
    stats = json.loads(harness.inspect(config, "stats").stdout)

    # (2) the same backfill again: the same events (same ids and versions) are stale, so the
    # view is byte-identical — no doubled counters, no duplicate items, no new entries
    assert backfill_all(config, paths) == produced
    project(config)
    assert harness.committed_offsets(config) == 2 * produced  # the re-run was consumed
    again = docs(config, oracle)
    changed = [k for k in first if first[k] != again[k]]
    assert not changed, f"{len(changed)} documents changed; first: {changed[0]}:\n" \
                        f"{first[changed[0]]}\n{again[changed[0]]}"
    again_stats = json.loads(harness.inspect(config, "stats").stdout)
    assert again_stats["doc"] == stats["doc"] and again_stats["link"] == stats["link"]


def test_backfill_over_a_log_built_view_changes_nothing(broker, workdir):
    """(3a) the log first, then a snapshot of the same entities: newer versions (same
    values) must not double lifetime_orders; older versions with other values (half of
    the customers, version 1 and a changed name) must not revert anything."""
    oracle = simulate_live(broker, workdir, 22)
    config = harness.write_config(workdir, broker.bootstrap, projector__metrics_listen="")
    project(config)
    assert_equals_oracle(config, oracle)
    before = harness.committed_offsets(config)

    snap = snapshot_from_oracle(
        oracle,
        version=lambda kind, i: 1 if kind == "customers" and i % 2 == 0 else HIGH_VERSION,
        name=lambda i, n: "STALE " + n if i % 2 == 0 else n)
    produced = backfill_all(config, write_snapshot(workdir, snap, "overlap"))
    project(config)
    assert harness.committed_offsets(config) == before + produced
    assert_equals_oracle(config, oracle)


def test_log_after_a_backfill_still_equals_the_oracle(broker, workdir):
    """(3b) the reverse: the snapshot first, then the whole log — OrderCreated arrives after
    the OrderSnapshot of its order; payments and shipments find orders through the links
    the snapshots learned; older orders the snapshot does not list still count."""
    oracle = dry_oracle(workdir, 23)
    # customers with more than 20 orders exercise "older orders the snapshot does not list"
    assert any(e["sections"]["counters"]["lifetime_orders"] > 20
               for e in oracle if not e["erased"]), "pick a seed with a 20+ order customer"
    config = harness.write_config(workdir, broker.bootstrap, projector__metrics_listen="")
    backfill_all(config, write_snapshot(workdir, snapshot_from_oracle(oracle), "first"))
    project(config)
    live = simulate_live(broker, workdir, 23)
    assert live == oracle
    project(config)
    assert_equals_oracle(config, oracle)


def test_a_bad_line_stops_the_run_before_producing(broker, workdir):
    config = harness.write_config(workdir, broker.bootstrap, projector__metrics_listen="")
    oracle = dry_oracle(workdir, 24)
    lines = snapshot_from_oracle(oracle)["orders"][:5]
    lines[2]["total_cents"] = "12.50"
    path = os.path.join(workdir, "bad-orders.jsonl")
    with open(path, "w") as f:
        f.writelines(json.dumps(line) + "\n" for line in lines)

    out = backfill(config, "orders", path)
    assert out.returncode == 2, (out.returncode, out.stderr)
    assert f"{path}:3: total_cents: expected an integer >= 0" in out.stderr, out.stderr
    s = summary(out)
    assert (s["read"], s["invalid"], s["produced"]) == ("5", "1", "0"), s
    project(config)
    assert harness.committed_offsets(config) == 0, "something was produced"

    # stdin and --skip-invalid: the four good lines are produced, the bad one reported
    with open(path) as f:
        out = subprocess.run([harness.binary("tools/backfill/backfill"), "--config", config,
                              "--aggregate", "orders", "--input", "-", "--skip-invalid", "-q"],
                             stdin=f, cwd=harness.ROOT, capture_output=True, text=True,
                             timeout=60)
    assert out.returncode == 0, out.stderr
    assert "(stdin):3: total_cents:" in out.stderr
    s = summary(out)
    assert (s["produced"], s["skipped"], s["invalid"]) == ("4", "1", "1"), s
    project(config)
    assert harness.committed_offsets(config) == 4


def test_a_failed_delivery_exits_1(workdir):
    """No broker: every delivery report fails (message.timeout.ms), the run says so."""
    oracle = dry_oracle(workdir, 25)
    path = os.path.join(workdir, "customers.jsonl")
    with open(path, "w") as f:
        f.writelines(json.dumps(line) + "\n"
                     for line in snapshot_from_oracle(oracle)["customers"][:3])
    config = harness.write_config(workdir, f"127.0.0.1:{harness.free_port()}")
    out = backfill(config, "customers", path, "-X", "message.timeout.ms=1000")
    assert out.returncode == 1, (out.returncode, out.stderr[-2000:])
    s = summary(out)
    assert (s["read"], s["produced"], s["failed"]) == ("3", "0", "3"), s
    assert "delivery failed" in out.stderr
