"""OS crashes, replayed: the projector runs with a write-order recorder preloaded
(tests/crash/wrlog.c), and the store's disk states an OS crash could leave are rebuilt
from the log (crashimg.py): all a completed sync covered, plus subsets and reorderings
of the writes after it, page by page. For every image:

* sync and nometasync: the store is consistent and equals a committed state no older
  than the newest durable commit (LMDB writes the meta page only after a data sync);
* periodic (MDB_NOSYNC): some images are torn — what the query API and the projector
  would have served before — and every image is refused after the reboot, so the
  projector rebuilds the generation from Kafka before anything serves it.

The reboot is simulated with RM_BOOT_ID_FILE (the store reads the boot id from it)."""
import os
import shutil
import subprocess

import crashimg
import harness
import pytest

CUSTOMERS = 25
CRASH_POINTS = 10    # per run; images per point: 4 fixed subsets + a prefix + RANDOMS
RANDOMS = 4
BOOT_A = "aaaaaaaa-0000-4000-8000-000000000001"  # the boot the projector ran in
BOOT_B = "bbbbbbbb-0000-4000-8000-000000000002"  # the boot after the simulated crash


def boot_file(workdir, name, boot_id):
    path = os.path.join(workdir, name)
    with open(path, "w") as f:
        f.write(boot_id + "\n")
    return path


def recorded_run(broker, workdir, durability):
    """Runs the projector under the recorder; returns (config, oracle path, log path)."""
    _, oracle_path = harness.simulate(broker.bootstrap, workdir, CUSTOMERS, 91)
    # Small batches and a short sync interval: many commits, several syncs between them.
    config = harness.write_config(workdir, broker.bootstrap, projector__metrics_listen="",
                                  projector__durability=durability,
                                  projector__batch_max_events=40,
                                  projector__sync_interval_ms=30)
    log = os.path.join(workdir, "writes.log")
    env = dict(os.environ, RM_WRLOG=log, RM_WRLOG_MATCH=os.path.join(workdir, "data") + "/",
               LD_PRELOAD=harness.binary("tests/crash/librm_wrlog.so"),
               RM_BOOT_ID_FILE=boot_file(workdir, "boot-a", BOOT_A),
               # The recorder is preloaded ahead of the ASan runtime of an ASan build.
               ASAN_OPTIONS=os.environ.get("ASAN_OPTIONS", "") + ":verify_asan_link_order=0")
    out = subprocess.run([harness.binary("projector/projector"), "--config", config,
                          "--until-caught-up"], cwd=harness.ROOT, env=env,
                         capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-3000:]
    return config, oracle_path, log


def gen_dir(workdir):
    return os.path.join(workdir, "data", "customer360", "gen-000001")


def mark_window(recs, gdir):
    """(from, to, text): record indices between which the unsynced mark is on disk
    for certain (from its rename's directory fsync until its unlink's directory fsync),
    and the boot id it holds; None when the run never wrote one."""
    mark = os.path.join(gdir, "unsynced-boot")
    text, renamed, durable, unlinked = None, None, None, None
    for r in recs:
        if r.op == crashimg.WRITE and r.path == mark + ".tmp":
            text = r.data.decode()
        elif r.op == crashimg.RENAME and r.data.split(b"\0")[1].decode() == mark:
            renamed = r.idx
        elif r.op == crashimg.UNLINK and r.data.rstrip(b"\0").decode() == mark:
            unlinked = r.idx
        elif r.op == crashimg.SYNC_END and r.path == gdir:
            if unlinked is not None:
                return durable, r.idx, text
            if renamed is not None and durable is None:
                durable = r.idx
    return (durable, len(recs), text) if durable is not None else None


def crash_points(store, recs, end):
    """Up to CRASH_POINTS record indices spread over the run: just before a sync of the
    data file begins (the most writes pending), just after a commit's meta page was
    written, and half-way between two syncs."""
    begins = [b for b, _, _ in store.syncs if store.first_write < b < end]
    commits = [i + 1 for i, _ in store.commits if store.first_write < i + 1 < end]
    candidates = sorted(set(begins + commits +
                            [(a + b) // 2 for a, b in zip(begins, begins[1:])]))
    if len(candidates) <= CRASH_POINTS:
        return candidates
    step = len(candidates) / CRASH_POINTS
    return [candidates[int(i * step)] for i in range(CRASH_POINTS)]


def replay(workdir, log):
    """Every image's verdict: a list of dicts (point, strategy, suspect, verdict)."""
    gdir = gen_dir(workdir)
    recs = crashimg.parse(log)
    store = crashimg.Store(recs, os.path.join(gdir, "data.mdb"))
    mark = mark_window(recs, gdir)
    # Crash points stop at the final close, whose sync leaves nothing pending.
    first_commit = min([i for i, t in store.commits if t > 0], default=len(recs))
    end = mark[1] if mark and first_commit < mark[1] < len(recs) else len(recs)
    checker = harness.binary("tests/crash/crash_check")
    env = dict(os.environ, RM_BOOT_ID_FILE=boot_file(workdir, "boot-b", BOOT_B))
    scratch = os.path.join(workdir, "image")
    refs = {}

    def reference(txnid):
        if txnid not in refs:
            idx = max([i for i, t in store.commits if t == txnid], default=None)
            if idx is None:
                refs[txnid] = None
            else:
                crashimg.write_image(scratch, store.state_after(idx), {})
                refs[txnid] = crashimg.check(checker, scratch, env)[1]
        return refs[txnid]

    results = []
    for n, point in enumerate(crash_points(store, recs, end)):
        durable, pending = store.split(point)
        must_keep = store.durable_txnid(point)
        newest = max([t for i, t in store.commits if i < point], default=0)
        marks = {"unsynced-boot": mark[2]} if mark and mark[0] < point <= mark[1] else {}
        for name, units in crashimg.strategies(pending, n, RANDOMS):
            content = store.image([(w.idx, w.offset, w.data) for w in durable] + units)
            crashimg.write_image(scratch, content, marks)
            suspect, dump = crashimg.check(checker, scratch, env)
            if dump is None or "error" in dump:
                verdict = "corrupt"
            elif reference(dump["txnid"]) is None:
                verdict = "corrupt"  # a txnid no commit wrote: a torn meta page
            elif reference(dump["txnid"])["digest"] != dump["digest"]:
                verdict = "torn"
            elif dump["txnid"] < must_keep:
                verdict = "lost"
            else:
                verdict = "ok"
            results.append({"point": point, "strategy": name, "suspect": suspect,
                            "verdict": verdict, "dump": dump, "content": content,
                            "marks": marks, "newest": newest})
    return store, mark, results


def summary(results):
    counts = {}
    for r in results:
        key = (r["verdict"], "refused" if r["suspect"] else "served")
        counts[key] = counts.get(key, 0) + 1
    return counts


@pytest.mark.parametrize("durability", ["sync", "nometasync"])
def test_synced_modes_survive_every_crash_image(broker, workdir, durability):
    _, _, log = recorded_run(broker, workdir, durability)
    store, mark, results = replay(workdir, log)
    assert len(store.commits) >= 8 and len(results) >= 20, (len(store.commits), len(results))
    print(f"{durability}: {len(store.commits)} commits, {len(store.syncs)} syncs, "
          f"{len(results)} images: {summary(results)}")
    bad = [(r["point"], r["strategy"], r["verdict"], r["suspect"]) for r in results
           if r["verdict"] != "ok" and not r["suspect"]]
    assert not bad, f"{summary(results)}; first: {bad[:5]}"
    # The mark covers only the creation of the environment (LMDB's first meta pages
    # are written unsynced); it is gone before the first commit.
    assert mark is not None and mark[0] < store.first_write, mark
    first_commit = min(i for i, t in store.commits if t > 0)
    assert mark[1] < first_commit, (mark, first_commit)
    refused = [(r["point"], r["strategy"]) for r in results
               if r["suspect"] and r["point"] > mark[1]]
    assert not refused, f"a synced store was refused after its creation: {refused[:5]}"
    # A process crash leaves every completed write (the page cache): the newest commit.
    behind = [(r["point"], r["dump"], r["newest"]) for r in results
              if r["strategy"] == "all" and (r["dump"] or {}).get("txnid") != r["newest"]]
    assert not behind, f"a process crash lost commits: {behind[:5]}"


def test_periodic_crash_images_are_refused_and_rebuilt(broker, workdir, processes):
    config, oracle_path, log = recorded_run(broker, workdir, "periodic")
    store, mark, results = replay(workdir, log)
    assert len(store.commits) >= 8 and len(results) >= 20, (len(store.commits), len(results))
    counts = summary(results)
    print(f"periodic: {len(store.commits)} commits, {len(store.syncs)} syncs, "
          f"{len(results)} images: {counts}")
    # The threat is real: without the mark, readers would have served these.
    torn = [r for r in results if r["verdict"] != "ok"]
    assert torn, f"no image was torn, so this test proves nothing: {counts}"
    # Nothing torn, lost or corrupt is ever served: after the reboot every image of a
    # store a periodic writer had open is refused.
    served_bad = [(r["point"], r["strategy"], r["verdict"]) for r in results
                  if r["verdict"] != "ok" and not r["suspect"]]
    assert not served_bad, f"{counts}; served: {served_bad[:5]}"
    # The mark is durable before LMDB writes a byte of the store.
    assert mark is not None and mark[0] < store.first_write, (mark, store.first_write)
    # A process crash (the same boot) leaves the page cache: accepted, the newest commit.
    checker = harness.binary("tests/crash/crash_check")
    same_boot = dict(os.environ, RM_BOOT_ID_FILE=os.path.join(workdir, "boot-a"))
    scratch = os.path.join(workdir, "image")
    for r in [r for r in results if r["strategy"] == "all"]:
        crashimg.write_image(scratch, r["content"], r["marks"])
        suspect, dump = crashimg.check(checker, scratch, same_boot)
        assert not suspect and r["verdict"] == "ok" and dump["txnid"] == r["newest"], \
            (r["point"], suspect, r["verdict"], dump, r["newest"])

    # End to end on the worst image: the query API refuses it, the projector rebuilds the
    # generation from Kafka by itself, and the query API then serves the oracle.
    worst = sorted(torn, key=lambda r: r["verdict"] != "corrupt")[0]
    gdir = gen_dir(workdir)
    for name in os.listdir(gdir):
        if name in ("data.mdb", "lock.mdb", "unsynced-boot"):
            os.unlink(os.path.join(gdir, name))
    with open(os.path.join(gdir, "data.mdb"), "wb") as f:
        f.write(worst["content"])
    for name, text in worst["marks"].items():
        with open(os.path.join(gdir, name), "w") as f:
            f.write(text)
    rebooted = dict(os.environ, RM_BOOT_ID_FILE=os.path.join(workdir, "boot-b"))
    port = harness.free_port()
    api = harness.Process("query-api", [harness.binary("query-api/query-api"), "--config",
                                        config, "--set", f"query_api.listen=127.0.0.1:{port}"],
                          workdir, env=rebooted)
    processes.append(api)
    client = harness.QueryApi.__new__(harness.QueryApi)  # its HTTP helpers, not a process
    client.base = f"http://127.0.0.1:{port}"
    harness.wait_until(lambda: client.try_get("/healthz"), 30, "query-api /healthz")
    oracle = harness.read_oracle(oracle_path)
    key = [e for e in oracle if not e["erased"]][0]["key"]
    status = client.get(f"/v1/views/customer360/{key}")[0]
    assert status == 503, f"the query API served a torn store ({worst['verdict']})"
    out = subprocess.run([harness.binary("projector/projector"), "--config", config,
                          "--until-caught-up"], cwd=harness.ROOT, env=rebooted,
                         capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-3000:]
    assert "rebuilding it from Kafka" in out.stderr, out.stderr[-3000:]

    def served(k):
        st, _, body = client.get(f"/v1/views/customer360/{k}?fields={harness.PROJECTED}")
        return body["sections"] if st == 200 else None
    harness.wait_until(lambda: client.try_get(f"/v1/views/customer360/{key}")[0] == 200, 30,
                       "the query API to follow the rebuilt generation")
    problems = harness.compare_with_oracle(oracle, served)
    assert not problems, f"{len(problems)} differ after the rebuild; first: {problems[:5]}"
    shutil.rmtree(os.path.join(workdir, "image"), ignore_errors=True)
