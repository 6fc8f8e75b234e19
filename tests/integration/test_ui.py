"""The screens in a real browser: playwright-core (tests/ui/driver.js, installed by
tools/lib.sh rm_install_playwright) drives Debian's Chromium.

The agent screen (/ui/), on a live pipeline with authentication on and the risk service
up: search by email and open the customer, every card against the simulator's oracle;
an event produced for the open customer updates its card ("just updated") while the
other cards stay the same DOM nodes; the agent role sees PII masked and its email search
refused with the 403 explained; without a credential the 401 is explained; the risk
service down makes the live card say "unavailable" while the rest stays; a dead-lettered
event of the customer shows as a banner naming it. The dashboard
(/dashboard) against 6 topics x 256 partitions: the per-topic rollup equals the sums of
its partitions, and the render time and page weight are measured (printed with -s)."""
import json
import os
import re
import shutil
import subprocess
import time
import urllib.request

import pytest

import harness
from test_shaping import customer_registered

NODE = shutil.which("node")
DRIVER = os.path.join(harness.ROOT, "tests/ui/driver.js")
MODULES = os.path.join(harness.ROOT, ".cache/ui-node/node_modules/playwright-core")
CHROMIUM = os.environ.get("RM_CHROMIUM", "/usr/bin/chromium")
pytestmark = pytest.mark.skipif(
    not (NODE and os.path.isdir(MODULES) and os.path.exists(CHROMIUM)),
    reason="node, playwright-core (tools/lib.sh rm_install_playwright) or chromium missing")

CUSTOMERS = 40
SEED = 57
POLICY = """roles:
  admin: {pii: true, views: {customer360: {sections: ["*"]}}}
  agent: {views: {customer360: {sections: ["*"]}}}
"""


class Browser:
    """One Chromium page behind tests/ui/driver.js (one JSON command a line)."""

    def __init__(self):
        self.proc = subprocess.Popen([NODE, DRIVER], stdin=subprocess.PIPE,
                                     stdout=subprocess.PIPE, text=True, cwd=harness.ROOT)
        first = json.loads(self.proc.stdout.readline() or '{"ok":false,"error":"no answer"}')
        assert first["ok"], first

    def __call__(self, op, **args):
        self.proc.stdin.write(json.dumps(dict(op=op, **args)) + "\n")
        self.proc.stdin.flush()
        line = self.proc.stdout.readline()
        assert line, "the browser driver exited"
        answer = json.loads(line)
        assert answer["ok"], answer
        return answer["value"]

    def wait(self, js, timeout=15000):
        return self("wait", js=js, timeout=timeout)

    def close(self):
        try:
            self("close")
        except (AssertionError, OSError):
            pass
        self.proc.stdin.close()
        try:
            self.proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()


@pytest.fixture(scope="module")
def screen(tmp_path_factory):
    workdir = str(tmp_path_factory.mktemp("ui"))
    started = []
    try:
        broker = harness.DevBroker(workdir)
        started.append(broker)
        risk, oracle_path = harness.simulate_with_sources(
            workdir, broker.bootstrap, CUSTOMERS, SEED, started)
        with open(os.path.join(workdir, "hs.secret"), "w") as f:
            f.write(os.urandom(32).hex() + "\n")
        with open(os.path.join(workdir, "audit.key"), "w") as f:
            f.write(os.urandom(32).hex() + "\n")
        policy = os.path.join(workdir, "policy.yaml")
        with open(policy, "w") as f:
            f.write(POLICY)
        config = harness.write_config(
            workdir, broker.bootstrap, projector__metrics_listen="",
            query_api__live_urls=f"risk={risk}",
            **{"query_api__auth.enabled": "on", "query_api__auth.policy": policy,
               "query_api__auth.issuer": "ui-test", "query_api__auth.audience": "readmodel",
               "query_api__auth.hs256_secret_file": os.path.join(workdir, "hs.secret"),
               "query_api__audit.hmac_key_file": os.path.join(workdir, "audit.key")})
        projector = harness.Process("projector", [harness.binary("projector/projector"),
                                                  "--config", config], workdir)
        started.append(projector)
        api = harness.QueryApi(workdir, config, harness.free_port())
        started.append(api)
        oracle = {e["key"]: e for e in harness.read_oracle(oracle_path) if not e["erased"]}
        admin = harness.mint_token(config, "ui-admin", "admin")
        # caught up: every oracle customer's newest registration is served
        key = max(oracle, key=lambda k: (len(oracle[k]["sections"]["orders"]), k))
        harness.wait_until(
            lambda: api.get("/v1/status")[2].get("state") == "running" and
            api.get(f"/v1/views/customer360/{key}", {"Authorization": "Bearer " + admin})[0] == 200,
            90, "the projector to catch up")
        browser = Browser()
        started.append(browser)
        yield {"api": api, "oracle": oracle, "config": config, "risk": risk, "key": key,
               "admin": admin, "agent": harness.mint_token(config, "ui-agent", "agent"),
               "broker": broker, "browser": browser, "workdir": workdir}
    finally:
        for proc in reversed(started):  # every one, even when another fails to stop
            try:
                proc.close() if isinstance(proc, Browser) else proc.stop()
            except Exception as err:  # noqa: BLE001 -- report, and go on stopping the rest
                print(f"could not stop {proc}: {err}")


def sign_in(b, base, token):
    b("goto", url=base + "/ui/")
    b("fill", sel="#cred", value=token)
    b("click", sel="#cred-save")


def search(b, kind, value):
    b("select", sel="#search-kind", value=kind)
    b("fill", sel="#search-value", value=value)
    b("click", sel="#search-go")


CARDS_JS = """(() => {
  const cards = [...document.querySelectorAll('#cards .card')];
  if (cards.length < 8) return null;
  return Object.fromEntries(cards.map(c => [c.dataset.section, {
    state: c.querySelector('.state').textContent, fresh: c.querySelector('.fresh').textContent,
    title: c.querySelector('.fresh').title,
    fields: Object.fromEntries([...c.querySelectorAll('dd[data-field]')].map(d => [d.dataset.field, d.textContent])),
    rows: [...c.querySelectorAll('tbody tr')].map(r => [...r.cells].map(x => x.textContent)),
    text: c.textContent}]));
})()"""


def test_search_by_email_shows_the_oracle(screen):
    b, api, key = screen["browser"], screen["api"], screen["key"]
    want = screen["oracle"][key]["sections"]
    sign_in(b, api.base, screen["admin"])
    # the credential stays in session storage, out of the URL
    stored = json.loads(b("eval", js="sessionStorage.getItem('readmodel.credential')"))
    assert stored == {"kind": "bearer", "value": screen["admin"]}
    assert screen["admin"] not in b("eval", js="location.href")
    search(b, "email", want["profile"]["email"])
    cards = b.wait(CARDS_JS)
    assert cards["profile"]["fields"]["customer_id"] == key
    for field in ("name", "email", "phone", "preferred_channel"):
        assert cards["profile"]["fields"][field] == str(want["profile"][field]), field
    assert cards["loyalty"]["fields"]["tier"] == want["loyalty"]["tier"]
    assert cards["loyalty"]["fields"]["points"] == str(want["loyalty"]["points"])
    assert cards["counters"]["fields"]["lifetime_orders"] == str(want["counters"]["lifetime_orders"])
    assert cards["counters"]["fields"]["lifetime_settled_cents"] == \
        f'{want["counters"]["lifetime_settled_cents"] / 100:.2f}'
    for name in ("payment_issues", "delivery_exceptions", "returns"):
        assert len(cards[name]["rows"]) == len(want[name]), name
    # every projected card says how fresh it is, in words and with a state, and where from
    for name in ("profile", "orders", "payment_issues", "loyalty", "counters"):
        assert re.match(r"updated \d+ (s|min|h|d) ago", cards[name]["fresh"]), cards[name]
        assert cards[name]["state"] in ("WITHIN BUDGET", "BEHIND", "STALE")
        assert re.match(r"topic \S+, partition \d+, offset \d+", cards[name]["title"])
    assert cards["fraud_holds"]["state"] == "LIVE", cards["fraud_holds"]
    # orders: 5 newest first, then every page through the cursor: the oracle's orders
    first = [r[0] for r in cards["orders"]["rows"]]
    newest = sorted(want["orders"], key=lambda o: (-o["created_at"], o["order_id"]))
    assert first == [o["order_id"] for o in newest[:5]]
    count = "document.querySelectorAll('#card-orders tbody tr').length"
    while b("eval", js="!!document.getElementById('orders-more')"):
        shown = b("eval", js=count)
        b("click", sel="#orders-more")
        b.wait(f"{count} > {shown}")
    ids = b("eval", js="[...document.querySelectorAll('#card-orders tbody tr')].map(r => r.cells[0].textContent)")
    assert sorted(ids) == sorted(o["order_id"] for o in want["orders"])
    assert b("eval", js="document.getElementById('banner').hidden") is True
    assert screen["admin"] not in api.log_text()  # the query API never logs the credential


def test_event_updates_its_card_and_nothing_else(screen):
    b, api, key = screen["browser"], screen["api"], screen["key"]
    sign_in(b, api.base, screen["admin"])
    search(b, "key", key)
    b.wait(CARDS_JS)
    b("eval", js="(window.__orders = document.getElementById('card-orders'), true)")
    event = os.path.join(screen["workdir"], "renamed.avro")
    with open(event, "wb") as f:
        f.write(customer_registered(key, "Renamed Person", 10**6, f"{key}-ui"))
    sent = time.monotonic()
    # kcat sends the file as one message, keyed like the simulator's (the customer id)
    subprocess.run(["kcat", "-P", "-b", screen["broker"].bootstrap, "-t", "customers",
                    "-k", key, event], check=True, timeout=30)
    b.wait("(() => { const c = document.getElementById('card-profile');"
           " return c && c.textContent.includes('Renamed Person') && c.textContent.includes('just updated'); })()",
           timeout=20000)
    seen_s = time.monotonic() - sent
    print(f"\nUI: event produced -> profile card updated in the browser: {seen_s:.2f} s")
    # the orders card was not rebuilt (no flicker): the same node is still in the page
    assert b("eval", js="window.__orders === document.getElementById('card-orders')") is True
    assert b("eval", js="!document.querySelector('#card-orders .just')") is True


def test_polls_with_if_none_match_and_keeps_the_credential_out_of_urls(screen):
    """Each poll revalidates with the entity tag of the answer before it; a 304 keeps the
    cards. The credential travels in a header, never in a URL."""
    b, api, key = screen["browser"], screen["api"], screen["key"]
    sign_in(b, api.base, screen["admin"])
    search(b, "key", key)
    b.wait(CARDS_JS)
    b("requests")
    b("eval", js="(window.__profile = document.getElementById('card-profile'), true)")
    polls = []
    harness.wait_until(lambda: polls.extend(r for r in b("requests") if f"/{key}?" in r["url"])
                       or len(polls) >= 3, 30, "three polls of the document")
    for before, after in zip(polls, polls[1:]):
        assert after["authorized"] and after["status"] in (200, 304), after
        assert after["ifNoneMatch"] == (before["etag"] or before["ifNoneMatch"]), (before, after)
    assert all(screen["admin"] not in r["url"] for r in polls)
    # nothing about the customer changed: the profile card is the same node
    assert b("eval", js="window.__profile === document.getElementById('card-profile')") is True


def test_agent_sees_masked_and_refusals_explained(screen):
    b, api, key = screen["browser"], screen["api"], screen["key"]
    b("goto", url=api.base + "/ui/")
    b("eval", js="(sessionStorage.clear(), true)")
    search(b, "key", key)
    msg = b.wait("document.getElementById('messages').textContent")
    assert "401" in msg and "paste a bearer token" in msg, msg
    sign_in(b, api.base, screen["agent"])
    search(b, "email", screen["oracle"][key]["sections"]["profile"]["email"])
    msg = b.wait("document.getElementById('messages').textContent")
    assert "403" in msg and "PII" in msg, msg
    search(b, "key", key)
    cards = b.wait(CARDS_JS)
    profile = cards["profile"]["fields"]
    want = screen["oracle"][key]["sections"]["profile"]
    assert want["email"] not in profile["email"] and "***" in profile["email"], profile
    assert profile["email"].endswith("masked") and profile["phone"].endswith("masked")
    assert profile["name"].endswith("masked") and want["name"] not in profile["name"]


def test_live_card_unavailable_rest_stays(screen):
    b, api, key = screen["browser"], screen["api"], screen["key"]

    def set_risk(mode):
        req = urllib.request.Request(screen["risk"] + "/_faults", method="POST",
                                     data=json.dumps({"service": "risk", "mode": mode}).encode())
        with urllib.request.urlopen(req, timeout=10) as resp:
            assert resp.status == 200
    sign_in(b, api.base, screen["admin"])
    search(b, "key", key)
    b.wait(CARDS_JS)
    set_risk("down")
    try:
        fresh = b.wait("(() => { const c = document.getElementById('card-fraud_holds');"
                       " return c && c.querySelector('.state').textContent === 'UNAVAILABLE' &&"
                       " c.querySelector('.fresh').textContent; })()", timeout=20000)
        assert fresh.startswith("unavailable: "), fresh
        cards = b("eval", js=CARDS_JS)
        assert cards["profile"]["fields"]["customer_id"] == key
        assert len(cards["orders"]["rows"]) > 0
    finally:
        set_risk("ok")


def test_degraded_customer_gets_a_banner(screen):
    """A message for the customer that is not an event is dead-lettered and marks the
    customer degraded: the screen names the missing event."""
    b, api = screen["browser"], screen["api"]
    key = sorted(k for k in screen["oracle"] if k != screen["key"])[0]
    sign_in(b, api.base, screen["admin"])
    search(b, "key", key)
    b.wait(CARDS_JS)
    assert b("eval", js="document.getElementById('banner').hidden") is True
    subprocess.run(["kcat", "-P", "-b", screen["broker"].bootstrap, "-t", "loyalty", "-p", "0",
                    "-k", key], input=b"not an avro event", check=True, timeout=60)
    text = b.wait("!document.getElementById('banner').hidden && "
                  "document.getElementById('banner').textContent", timeout=20000)
    assert "could not be applied" in text and re.search(r"loyalty partition 0 offset \d+", text), text
    # the rest of the customer is still there
    assert b("eval", js=CARDS_JS)["profile"]["fields"]["customer_id"] == key


def test_dashboard_many_partitions(tmp_path):
    """6 topics x 256 partitions on the dev broker, every one with a row in the store."""
    workdir = str(tmp_path)
    started = []
    b = None
    try:
        broker = harness.DevBroker(workdir, partitions=256)
        started.append(broker)
        summary, _ = harness.simulate(broker.bootstrap, workdir, 2500, 58)
        config = harness.write_config(workdir, broker.bootstrap, projector__metrics_listen="")
        projector = harness.Process("projector", [harness.binary("projector/projector"),
                                                  "--config", config], workdir)
        started.append(projector)
        api = harness.QueryApi(workdir, config, harness.free_port())
        started.append(api)
        topics = ("customers", "orders", "payments", "shipments", "loyalty", "returns")

        def applied(events):
            """/v1/status once the view's topics hold `events` applied offsets, else None."""
            s = api.get("/v1/status")[2]
            done = sum(p["next_offset"] for p in s["partitions"] if p["topic"] in topics)
            return s if done == events and s.get("lag_messages") == 0 else None
        status = harness.wait_until(lambda: applied(summary["events"]), 180,
                                    "the projector to apply the stream")
        # A partition the stream left empty has no row in the store: give each one message
        # the projector cannot decode (it is dead-lettered, and its offset committed).
        present = {(p["topic"], p["partition"]) for p in status["partitions"]}
        junk = os.path.join(workdir, "junk.bin")
        with open(junk, "wb") as f:
            f.write(b"not an event")
        missing = sorted({(t, p) for t in topics for p in range(256)} - present)
        for topic, part in missing:
            subprocess.run(["kcat", "-P", "-b", broker.bootstrap, "-t", topic, "-p", str(part),
                            "-k", "junk", junk], check=True, timeout=30)
        status = harness.wait_until(lambda: applied(summary["events"] + len(missing)), 120,
                                    "every partition in the store")
        assert len([p for p in status["partitions"] if p["topic"] in topics]) == 6 * 256
        n = len(status["partitions"])
        b = Browser()
        t0 = time.monotonic()
        b("goto", url=api.base + "/dashboard#expand=orders")
        dash = b.wait("window.__dash.renders >= 1 && window.__dash", timeout=30000)
        first_paint_s = time.monotonic() - t0
        dash = b.wait("window.__dash.renders >= 3 && window.__dash", timeout=30000)
        # the rollup equals the sums of its partitions, topic by topic
        for topic, r in dash["rollup"].items():
            parts = [p for p in status["partitions"] if p["topic"] == topic]
            assert r["partitions"] == len(parts)
            assert r["next"] == sum(p["next_offset"] for p in parts), topic
            assert r["hw"] == sum(p["high_watermark"] for p in parts), topic
        assert sum(r["partitions"] for r in dash["rollup"].values()) == n
        dom = b("eval", js="({rows: document.querySelectorAll('tr').length,"
                           " nodes: document.getElementsByTagName('*').length,"
                           " more: document.getElementById('all-orders') && document.getElementById('all-orders').textContent})")
        # a topic shows its worst 20 partitions until "show all"
        assert dom["more"] and "show all" in dom["more"], dom
        assert dom["rows"] <= 1 + 6 + 20 + 1, dom
        # "show all" for a topic: every partition row; then the worst case, every topic
        # expanded and shown in full (all partitions as rows), layout included
        show_all_ms = b("eval", js="(() => { const t = performance.now();"
                                   " document.getElementById('all-orders').click();"
                                   " document.body.offsetHeight; return performance.now() - t; })()")
        rows = b("eval", js="document.querySelectorAll('tr.part[id^=\"p-orders-\"]').length")
        assert rows == dash["rollup"]["orders"]["partitions"]
        every_ms = b("eval", js="(() => { const t = performance.now();"
                                " for (const x of document.querySelectorAll('button[aria-expanded=false]')) x.click();"
                                " for (const x of document.querySelectorAll('button[id^=all-]'))"
                                "   if (x.textContent.startsWith('show all')) x.click();"
                                " document.body.offsetHeight; return performance.now() - t; })()")
        assert b("eval", js="document.querySelectorAll('tr.part[id^=p-]').length") == n
        renders = b("eval", js="window.__dash.renders")
        every_poll_ms = b.wait(f"window.__dash.renders > {renders} && window.__dash.renderMs", timeout=30000)
        weight = b("eval", js="(() => { const r = performance.getEntriesByType('resource')"
                              ".filter(e => e.name.endsWith('/v1/status'));"
                              " const n = performance.getEntriesByType('navigation')[0];"
                              " return {page: n.decodedBodySize, status: r.length ? r[r.length-1].decodedBodySize : null,"
                              " history: performance.getEntriesByType('resource').filter(e => e.name.endsWith('/history'))"
                              ".map(e => e.decodedBodySize)[0] || 0, heap: performance.memory ? performance.memory.usedJSHeapSize : null}; })()")
        print(f"\nDASHBOARD at {n} partitions: render {dash['renderMs']:.1f} ms per poll, "
              f"first render {first_paint_s:.2f} s after load, 'show all' of one topic "
              f"{show_all_ms:.1f} ms, every partition of every topic {every_ms:.1f} ms "
              f"(then {every_poll_ms:.1f} ms per poll); "
              f"page {weight['page']} B, /v1/status {weight['status']} B, history {weight['history']} B, "
              f"DOM {dom['nodes']} elements, JS heap {weight['heap']} B")
        shot = os.environ.get("RM_UI_SCREENSHOT_DIR")
        if shot:
            b("screenshot", path=os.path.join(shot, "dashboard-many.png"), full=False)
    finally:
        if b:
            b.close()
        for proc in reversed(started):
            proc.stop()
