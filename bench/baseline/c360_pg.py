#!/usr/bin/python3
"""c360_pg: the Customer 360 projector a team would write instead — Python + PostgreSQL.

The baseline of bench/run's projection scenario (scenario 1c). It consumes the
simulator's topics, decodes the Confluent-framed Avro, applies the Customer 360 rules of
schemas/views/customer360.yaml in plain Python to one JSONB document per customer, and
upserts the documents into PostgreSQL, one transaction per batch (up to --batch-events
messages or --batch-ms, like the projector's batch_max_events=10000 / batch_max_ms=20).

Written the way a competent team would write it in an afternoon, not as a straw man:
  * every partition is assigned directly (no consumer group join), with the projector's
    fetch settings; the next offset of each partition is stored in the same transaction
    as the documents it changed (exactly-once effect, like ours), and read back on start;
  * per batch, the documents the batch touches are read with one SELECT ... = ANY, changed
    in memory, and written back with one multi-row INSERT ... ON CONFLICT DO UPDATE; links,
    parked events and offsets likewise — a handful of statements per batch, not per event;
  * email and phone lookups are expression indexes on the JSONB document (ours keeps the
    same two secondary indexes), so every document write also maintains them.

What it does per event (the same rules as the view definition):
  profile set (CustomerRegistered; CustomerContactUpdated with null = unchanged), erasure
  (document deleted, later events of the customer dropped), orders upsert with the 20
  newest kept by created_at, order status / payment status / shipment status updates,
  payment issues (failed/reversed upserted, deleted when settled), delivery exceptions,
  returns in progress, loyalty, counters (lifetime orders, settled cents), the order ->
  customer link, parking of payment/shipment/return events whose order is not linked yet
  (in a table, applied when the order arrives), and a per-entity version guard
  (an event whose aggregate version is not newer than the applied one is ignored).
What it does not do: field-level last-writer-wins stamps (fields take the value of the
  last event applied, which is right when each field's writers share a partition, as in
  the simulator's stream), per-section freshness/provenance, dead-letter publishing (an
  undecodable message is only counted), parked-event expiry, snapshot and repair events,
  and the query side. bench/run checks its documents against the simulator's oracle.

Requirements (Debian packages only): python3-confluent-kafka (librdkafka 2.0.2 underneath),
python3-avro (Debian 12 has no python3-fastavro), python3-psycopg2, python3-yaml; a
PostgreSQL server (Debian's postgresql; bench/run initdb's and starts one on loopback).

Usage: c360_pg.py --bootstrap HOST:PORT --dsn DSN [--reset] [--dump FILE]
Prints one JSON line: events, seconds, rate and where the time went."""
import argparse
import io
import json
import os
import sys
import time

import avro.io
import avro.schema
import psycopg2
import psycopg2.extras
import yaml
from confluent_kafka import OFFSET_BEGINNING, Consumer, TopicPartition

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
TOPICS = ["customers", "orders", "payments", "shipments", "loyalty", "returns"]
MAX_ORDERS = 20  # the view's orders.max_items

SCHEMA_SQL = """
CREATE TABLE IF NOT EXISTS customer360 (customer_id text PRIMARY KEY, doc jsonb NOT NULL);
CREATE INDEX IF NOT EXISTS customer360_email ON customer360 (lower(doc->'profile'->>'email'));
CREATE INDEX IF NOT EXISTS customer360_phone ON customer360 ((doc->'profile'->>'phone'));
CREATE TABLE IF NOT EXISTS order_link (order_id text PRIMARY KEY, customer_id text NOT NULL);
CREATE TABLE IF NOT EXISTS erased (customer_id text PRIMARY KEY);
CREATE TABLE IF NOT EXISTS parked (order_id text NOT NULL, seq bigserial, event jsonb NOT NULL,
                                   PRIMARY KEY (order_id, seq));
CREATE TABLE IF NOT EXISTS kafka_offsets (topic text, part int, next_offset bigint NOT NULL,
                                          PRIMARY KEY (topic, part));
"""


def without_logical_types(node):
    """The schema with logicalType dropped: timestamps decode as epoch-ms ints (the view's
    unit) instead of datetime objects that would need converting back for JSON."""
    if isinstance(node, dict):
        return {k: without_logical_types(v) for k, v in node.items() if k != "logicalType"}
    if isinstance(node, list):
        return [without_logical_types(v) for v in node]
    return node


def load_readers(catalog_path):
    """Schema id -> (record full name, DatumReader), built once per id."""
    catalog = yaml.safe_load(open(catalog_path))
    base = os.path.dirname(catalog_path)
    readers = {}
    for entry in catalog["schemas"]:
        with open(os.path.join(base, entry["file"])) as f:
            schema = avro.schema.parse(json.dumps(without_logical_types(json.load(f))))
        readers[entry["id"]] = (schema.fullname, avro.io.DatumReader(schema))
    return readers


def new_doc():
    return {"profile": None, "orders": {}, "payment_issues": {}, "delivery_exceptions": {},
            "loyalty": None, "returns": {}, "counters": {"lifetime_orders": 0,
                                                         "lifetime_settled_cents": 0},
            "_versions": {}}


class Projector:
    def __init__(self, conn):
        self.conn = conn
        self.links = {}    # order_id -> customer_id (cache of order_link)
        self.erased = set()
        self.parked = {}   # order_id -> [(name, event)], mirrored in the parked table
        self.ignored = 0
        self.dead = 0

    # --- per batch -------------------------------------------------------------------
    def begin(self, events):
        """Loads what the batch needs with one query per table."""
        self.docs, self.dirty, self.deleted = {}, set(), set()
        self.new_links, self.parked_add, self.parked_done = {}, [], set()
        order_ids = {e["order_id"] for _, e in events if "order_id" in e} - self.links.keys()
        cur = self.conn.cursor()
        if order_ids:
            cur.execute("SELECT order_id, customer_id FROM order_link WHERE order_id = ANY(%s)",
                        (list(order_ids),))
            self.links.update(cur.fetchall())
        keys = {e["customer_id"] for _, e in events if "customer_id" in e}
        keys |= {self.links[e["order_id"]] for _, e in events if e.get("order_id") in self.links}
        if keys:
            cur.execute("SELECT customer_id, doc FROM customer360 WHERE customer_id = ANY(%s)",
                        (list(keys),))
            self.docs.update(cur.fetchall())

    def doc(self, key):
        """The batch's copy of a customer's document (None once erased)."""
        if key in self.erased:
            return None
        if key not in self.docs:  # a key the prefetch could not know (a parked event's)
            cur = self.conn.cursor()
            cur.execute("SELECT doc FROM customer360 WHERE customer_id = %s", (key,))
            row = cur.fetchone()
            self.docs[key] = row[0] if row else None
        if self.docs[key] is None:
            self.docs[key] = new_doc()
        self.dirty.add(key)
        return self.docs[key]

    def commit(self, offsets):
        cur = self.conn.cursor()
        rows = [(k, json.dumps(self.docs[k])) for k in self.dirty - self.deleted]
        psycopg2.extras.execute_values(
            cur, "INSERT INTO customer360 (customer_id, doc) VALUES %s ON CONFLICT (customer_id) "
            "DO UPDATE SET doc = EXCLUDED.doc", rows, template="(%s, %s::jsonb)", page_size=1000)
        if self.deleted:
            cur.execute("DELETE FROM customer360 WHERE customer_id = ANY(%s)", (list(self.deleted),))
            cur.execute("INSERT INTO erased VALUES " + ",".join(["(%s)"] * len(self.deleted))
                        + " ON CONFLICT DO NOTHING", list(self.deleted))
        if self.new_links:
            psycopg2.extras.execute_values(
                cur, "INSERT INTO order_link VALUES %s ON CONFLICT (order_id) DO UPDATE SET "
                "customer_id = EXCLUDED.customer_id", list(self.new_links.items()), page_size=1000)
        if self.parked_done:
            cur.execute("DELETE FROM parked WHERE order_id = ANY(%s)", (list(self.parked_done),))
        if self.parked_add:
            psycopg2.extras.execute_values(
                cur, "INSERT INTO parked (order_id, event) VALUES %s",
                [(oid, json.dumps([name, e])) for oid, name, e in self.parked_add
                 if oid not in self.parked_done], page_size=1000)
        psycopg2.extras.execute_values(
            cur, "INSERT INTO kafka_offsets VALUES %s ON CONFLICT (topic, part) DO UPDATE SET "
            "next_offset = EXCLUDED.next_offset", [(t, p, o) for (t, p), o in offsets.items()])
        self.conn.commit()

    # --- rules (schemas/views/customer360.yaml) ---------------------------------------
    def guard(self, doc, entity, event):
        """False when the entity already applied this version or a newer one."""
        vkey = f"{entity}:{event[entity + '_id'] if entity != 'loyalty' else event['customer_id']}"
        if doc["_versions"].get(vkey, 0) >= event["version"]:
            self.ignored += 1
            return False
        doc["_versions"][vkey] = event["version"]
        return True

    def apply(self, name, e):
        kind = name.rsplit(".", 1)[1]
        if kind in ("CustomerRegistered", "CustomerContactUpdated", "CustomerErased",
                    "LoyaltyTierChanged", "OrderCreated", "OrderCancelled"):
            self.apply_direct(kind, e)
        elif kind in VIA_ORDER:
            key = self.links.get(e["order_id"])
            if key is None:  # the order is not known yet: park until it is
                self.parked.setdefault(e["order_id"], []).append((name, e))
                self.parked_add.append((e["order_id"], name, e))
                return
            self.apply_via(kind, key, e)
        # other record types (snapshots, repairs) are not part of this baseline

    def apply_direct(self, kind, e):
        key = e["customer_id"]
        doc = self.doc(key)
        if doc is None:  # an erased customer: its late orders' events are dropped, not parked
            if kind == "OrderCreated":
                self.links[e["order_id"]] = self.new_links[e["order_id"]] = key
                if self.parked.pop(e["order_id"], None):
                    self.parked_done.add(e["order_id"])
            return
        entity = {"OrderCreated": "order", "OrderCancelled": "order",
                  "LoyaltyTierChanged": "loyalty"}.get(kind, "customer")
        if not self.guard(doc, entity, e):
            return
        t = e["occurred_at"]
        if kind == "CustomerRegistered":
            doc["profile"] = {"customer_id": key, "name": e["name"], "email": e["email"],
                              "phone": e["phone"], "preferred_channel": e["preferred_channel"],
                              "marketing_opt_in": e["marketing_opt_in"], "registered_at": t,
                              "updated_at": t}
        elif kind == "CustomerContactUpdated":
            profile = doc["profile"] or {}
            phone = e.get("mobile", e.get("phone"))  # v2 renamed phone to mobile
            if e.get("email") is not None:
                profile["email"] = e["email"]
            if phone is not None:
                profile["phone"] = phone
            profile.update(preferred_channel=e["preferred_channel"],
                           marketing_opt_in=e["marketing_opt_in"], updated_at=t)
            doc["profile"] = profile
        elif kind == "CustomerErased":
            self.erased.add(key)
            self.deleted.add(key)
            self.docs[key] = None
        elif kind == "LoyaltyTierChanged":
            doc["loyalty"] = {"tier": e["tier"], "points": e["points"], "updated_at": t}
        elif kind == "OrderCreated":
            self.links[e["order_id"]] = key
            self.new_links[e["order_id"]] = key
            orders = doc["orders"]
            orders[e["order_id"]] = {**orders.get(e["order_id"], {"status": "CREATED",
                                                                  "payment_status": "NONE",
                                                                  "shipment_status": "NONE"}),
                                     "order_id": e["order_id"], "created_at": t,
                                     "total_cents": e["total_cents"], "currency": e["currency"],
                                     "line_count": len(e["lines"])}
            if len(orders) > MAX_ORDERS:  # keep the 20 newest (ties: smaller order id first)
                oldest = min(orders.values(), key=lambda o: (o["created_at"], _neg(o["order_id"])))
                del orders[oldest["order_id"]]
            doc["counters"]["lifetime_orders"] += 1
            for name, parked in self.parked.pop(e["order_id"], []):
                self.parked_done.add(e["order_id"])
                self.apply(name, parked)
        elif kind == "OrderCancelled":
            order = doc["orders"].get(e["order_id"])
            if order:
                order["status"] = "CANCELLED"

    def apply_via(self, kind, key, e):
        doc = self.doc(key)
        if doc is None:
            return
        entity, status_field, status = VIA_ORDER[kind]
        if not self.guard(doc, entity, e):
            return
        order = doc["orders"].get(e["order_id"])
        if order and status_field:
            order[status_field] = status
        if kind == "PaymentSettled":
            doc["payment_issues"].pop(e["payment_id"], None)
            doc["counters"]["lifetime_settled_cents"] += e["amount_cents"]
        elif kind in ("PaymentFailed", "PaymentReversed"):
            doc["payment_issues"][e["payment_id"]] = {
                "payment_id": e["payment_id"], "order_id": e["order_id"], "kind": status,
                "amount_cents": e["amount_cents"], "currency": e["currency"],
                "reason": e["reason"], "occurred_at": e["occurred_at"]}
            if kind == "PaymentReversed":
                doc["counters"]["lifetime_settled_cents"] -= e["amount_cents"]
        elif kind == "ShipmentDelayed":
            doc["delivery_exceptions"][e["shipment_id"]] = {
                "shipment_id": e["shipment_id"], "order_id": e["order_id"], "reason": e["reason"],
                "new_eta": e["new_eta"], "occurred_at": e["occurred_at"]}
        elif kind == "ShipmentDelivered":
            doc["delivery_exceptions"].pop(e["shipment_id"], None)
        elif kind == "ReturnOpened":
            doc["returns"][e["return_id"]] = {"return_id": e["return_id"],
                                              "order_id": e["order_id"], "reason": e["reason"],
                                              "opened_at": e["occurred_at"]}
        elif kind == "ReturnClosed":
            doc["returns"].pop(e["return_id"], None)


# event -> (guarding entity, order field it sets, value)
VIA_ORDER = {
    "PaymentSettled": ("payment", "payment_status", "SETTLED"),
    "PaymentFailed": ("payment", "payment_status", "FAILED"),
    "PaymentReversed": ("payment", "payment_status", "REVERSED"),
    "ShipmentDispatched": ("shipment", "shipment_status", "DISPATCHED"),
    "ShipmentDelayed": ("shipment", "shipment_status", "DELAYED"),
    "ShipmentDelivered": ("shipment", "shipment_status", "DELIVERED"),
    "ReturnOpened": ("return", None, None),
    "ReturnClosed": ("return", None, None),
}


def _neg(order_id):
    """Sort key that orders ids descending inside an ascending min()."""
    return [-b for b in order_id.encode()]


def connect(dsn, reset):
    conn = psycopg2.connect(dsn)
    cur = conn.cursor()
    if reset:
        cur.execute("DROP TABLE IF EXISTS customer360, order_link, erased, parked, kafka_offsets")
    cur.execute(SCHEMA_SQL)
    conn.commit()
    return conn


def assign(consumer, conn, topics):
    """Assigns every partition at its stored next offset; returns {(topic, part): high}."""
    cur = conn.cursor()
    cur.execute("SELECT topic, part, next_offset FROM kafka_offsets")
    stored = {(t, p): o for t, p, o in cur.fetchall()}
    metadata = consumer.list_topics(timeout=10)
    assignment, highs = [], {}
    for topic in topics:
        if topic not in metadata.topics:
            continue
        for part in metadata.topics[topic].partitions:
            offset = stored.get((topic, part), OFFSET_BEGINNING)
            assignment.append(TopicPartition(topic, part, offset))
            low, high = consumer.get_watermark_offsets(TopicPartition(topic, part), timeout=10)
            if high > (offset if offset >= 0 else low):
                highs[(topic, part)] = high
    consumer.assign(assignment)
    return highs


def dump(conn, path):
    """Documents in the simulator oracle's shape (lists sorted by id), one JSON line per key."""
    cur = conn.cursor()
    cur.execute("SELECT customer_id, doc FROM customer360 UNION ALL "
                "SELECT customer_id, NULL FROM erased ORDER BY 1")
    with open(path, "w") as f:
        for key, doc in cur.fetchall():
            if doc is None:
                f.write(json.dumps({"key": key, "erased": True}) + "\n")
                continue
            sections = {name: (sorted(doc[name].values(), key=lambda i: json.dumps(i, sort_keys=True))
                               if isinstance(doc[name], dict) and name not in
                               ("profile", "loyalty", "counters") else doc[name])
                        for name in ("profile", "orders", "payment_issues", "delivery_exceptions",
                                     "loyalty", "returns", "counters")}
            f.write(json.dumps({"key": key, "erased": False, "sections": sections},
                               sort_keys=True) + "\n")


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--bootstrap", required=True, help="Kafka bootstrap servers")
    parser.add_argument("--dsn", required=True, help="PostgreSQL DSN (libpq key=value or URI)")
    parser.add_argument("--catalog", default=os.path.join(ROOT, "schemas", "catalog.yaml"))
    parser.add_argument("--topics", default=",".join(TOPICS))
    parser.add_argument("--batch-events", type=int, default=10000)
    parser.add_argument("--batch-ms", type=int, default=20)
    parser.add_argument("--reset", action="store_true", help="drop and recreate the tables first")
    parser.add_argument("--dump", metavar="FILE", help="after catching up, write the documents "
                        "in the simulator oracle's shape")
    args = parser.parse_args()
    started = time.monotonic()
    readers = load_readers(args.catalog)
    conn = connect(args.dsn, args.reset)
    proj = Projector(conn)
    cur = conn.cursor()
    cur.execute("SELECT customer_id FROM erased")
    proj.erased.update(k for k, in cur.fetchall())
    cur.execute("SELECT order_id, event FROM parked ORDER BY seq")
    for order_id, (name, event) in cur.fetchall():
        proj.parked.setdefault(order_id, []).append((name, event))
    consumer = Consumer({"bootstrap.servers": args.bootstrap, "group.id": "c360-pg-baseline",
                         "enable.auto.commit": False, "enable.partition.eof": False,
                         "auto.offset.reset": "error", "queued.min.messages": 1000000,
                         "queued.max.messages.kbytes": 1048576, "fetch.wait.max.ms": 10,
                         "fetch.message.max.bytes": 4194304})
    highs = assign(consumer, conn, args.topics.split(","))
    events = 0
    spent = {"consume": 0.0, "decode": 0.0, "apply": 0.0, "commit": 0.0}
    while highs:
        t0 = time.monotonic()
        messages = consumer.consume(num_messages=args.batch_events, timeout=args.batch_ms / 1000)
        t1 = time.monotonic()
        decoded, offsets = [], {}
        for m in messages:
            if m.error():
                raise SystemExit(f"c360_pg: {m.error()}")
            offsets[(m.topic(), m.partition())] = m.offset() + 1
            value = m.value()
            reader = readers.get(int.from_bytes(value[1:5], "big")) if value and value[0] == 0 else None
            if reader is None:
                proj.dead += 1
                continue
            try:
                decoded.append((reader[0], reader[1].read(avro.io.BinaryDecoder(io.BytesIO(value[5:])))))
            except Exception:  # poison: counted, not published (see the docstring)
                proj.dead += 1
        t2 = time.monotonic()
        if offsets:
            proj.begin(decoded)
            for name, event in decoded:
                proj.apply(name, event)
            t3 = time.monotonic()
            proj.commit(offsets)
            t4 = time.monotonic()
            spent["decode"] += t2 - t1
            spent["apply"] += t3 - t2
            spent["commit"] += t4 - t3
            events += len(messages)
            for tp, next_offset in offsets.items():
                if tp in highs and next_offset >= highs[tp]:
                    del highs[tp]
        spent["consume"] += t1 - t0
    seconds = time.monotonic() - started
    consumer.close()
    dump_started = time.monotonic()
    if args.dump:
        dump(conn, args.dump)
    dump_seconds = time.monotonic() - dump_started
    conn.close()
    print(json.dumps({"events": events, "seconds": round(seconds, 3),
                      "rate": round(events / seconds) if seconds else 0,
                      "ignored_stale": proj.ignored, "undecodable": proj.dead,
                      "parked_left": sum(len(v) for v in proj.parked.values()),
                      "dump_s": round(dump_seconds, 3),
                      **{f"{k}_s": round(v, 3) for k, v in spent.items()}}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
