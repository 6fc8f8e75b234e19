"""The Kafka Streams peer of bench/run (bench/peers/kstreams) computes what the simulator's
oracle says, on the session's real Kafka: a benchmark against a peer that computes
something else proves nothing. bench/run checks the same at benchmark size in every run;
this is the small, fast version. RM_KAFKA=0 skips it with the other real-broker tests."""
import json
import os
import subprocess
import urllib.error
import urllib.request
import uuid

import harness

CUSTOMERS = 300


def get(url):
    try:
        with urllib.request.urlopen(url, timeout=60) as r:
            return r.status, r.read()
    except urllib.error.HTTPError as e:
        return e.code, e.read()
    except OSError:
        return 0, b""


def test_kstreams_peer_documents_equal_the_oracle(kafka, workdir, processes):
    build = subprocess.run([os.path.join(harness.ROOT, "bench", "peers", "kstreams", "build")],
                           capture_output=True, text=True, timeout=900)
    assert build.returncode == 0, build.stderr[-3000:]
    summary, oracle = harness.simulate(kafka.bootstrap, workdir, CUSTOMERS, 12)
    port = harness.free_port()
    # A fresh application id: no committed offsets or internal topics of an earlier run.
    app_id = f"c360-ks-test-{uuid.uuid4().hex[:8]}"
    peer = harness.Process("kstreams", [
        "java", "-cp", build.stdout.strip(), "dev.readmodel.kstreams.App",
        "--bootstrap", kafka.bootstrap, "--state-dir", os.path.join(workdir, "ks-state"),
        "--listen", f"127.0.0.1:{port}", "--app-id", app_id, "--instance-id", app_id,
        "--catalog", os.path.join(harness.ROOT, "schemas", "catalog.yaml")], workdir)
    processes.append(peer)
    url = f"http://127.0.0.1:{port}"

    def caught_up():
        assert peer.alive(), peer.log_text()[-3000:]
        code, body = get(url + "/v1/status")
        return code == 200 and json.loads(body)["caught_up"]
    harness.wait_until(caught_up, 300, "the Kafka Streams peer to catch up", interval=0.2)

    code, body = get(url + "/v1/dump")
    assert code == 200
    got = {d["key"]: d for d in map(json.loads, body.decode().splitlines())}
    want = {d["key"]: d for d in harness.read_oracle(oracle)}
    assert summary["customers"] == CUSTOMERS and len(want) == CUSTOMERS
    wrong = sorted(k for k in want.keys() | got.keys() if want.get(k) != got.get(k))
    assert not wrong, (f"{len(wrong)} of {len(want)} documents differ, e.g. {wrong[0]}: "
                       f"oracle {want.get(wrong[0])} peer {got.get(wrong[0])}")
    # Interactive queries serve the same document by key; an erased customer is a 404.
    live = next(k for k, d in want.items() if not d["erased"])
    code, body = get(f"{url}/v1/views/customer360/{live}")
    assert code == 200 and json.loads(body)["sections"] == want[live]["sections"]
    erased = [k for k, d in want.items() if d["erased"]]
    if erased:
        assert get(f"{url}/v1/views/customer360/{erased[0]}")[0] == 404
