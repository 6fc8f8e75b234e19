#!/usr/bin/python3
"""Writes the seed corpus of fuzz_apply: valid Customer 360 events and the poison
poison shapes (truncated Avro, unknown schema id, wrong magic byte, enum and
union index out of range, string length past the message, invalid UTF-8, oversized).
Input format: byte 0 = topic selector, then the Confluent-framed value."""
import os
import struct
import sys

TOPICS = {"customers": 0, "orders": 1, "payments": 2, "shipments": 3, "loyalty": 4, "returns": 5}


def zz(n):
    n = (n << 1) ^ (n >> 63)
    out = bytearray()
    while n & ~0x7F:
        out.append((n & 0x7F) | 0x80)
        n >>= 7
    out.append(n)
    return bytes(out)


def s(text):
    b = text.encode() if isinstance(text, str) else text
    return zz(len(b)) + b


def frame(schema_id, body):
    return b"\x00" + struct.pack(">I", schema_id) + body


def head(eid, ts, ver):
    return s(eid) + zz(ts) + zz(ver)


def seeds():
    reg = head("e1", 1000, 1) + s("C1") + s("Ada") + s("a@x") + s("+1") + zz(0) + b"\x01"
    yield "customers", "registered", frame(1, reg)
    upd = head("e2", 1100, 2) + s("C1") + zz(1) + s("b@x") + zz(0) + zz(1) + b"\x00"
    yield "customers", "contact", frame(2, upd)
    order = head("e3", 1200, 1) + s("O1") + s("C1") + zz(1) + s("sku") + zz(2) + zz(100) + zz(0) \
        + zz(200) + s("EUR")
    yield "orders", "order", frame(4, order)
    pay = head("e4", 1300, 1) + s("P1") + s("O1") + zz(200) + s("EUR")
    yield "payments", "settled", frame(6, pay)
    fail = head("e5", 1250, 1) + s("P2") + s("O9") + zz(200) + s("EUR") + s("declined")
    yield "payments", "failed-parked", frame(7, fail)
    delay = head("e6", 1400, 2) + s("S1") + s("O1") + s("storm") + zz(5000)
    yield "shipments", "delayed", frame(10, delay)
    loyal = head("e7", 1500, 1) + s("C1") + zz(2) + zz(900)
    yield "loyalty", "tier", frame(12, loyal)
    erase = head("e8", 1600, 3) + s("C1")
    yield "customers", "erased", frame(3, erase)
    # poison
    yield "customers", "truncated", frame(1, reg[: len(reg) // 2])
    yield "customers", "unknown-schema", frame(4242, reg)
    yield "customers", "wrong-magic", b"\x01" + frame(1, reg)[1:]
    yield "customers", "enum-out-of-range", frame(1, reg[:-2] + zz(9) + b"\x01")
    yield "customers", "union-out-of-range", frame(2, head("e9", 1, 2) + s("C1") + zz(7))
    yield "customers", "length-past-end", frame(1, zz(1 << 30) + b"abc")
    yield "customers", "invalid-utf8", frame(1, s(b"\xff\xfe") + reg[3:])
    yield "orders", "huge-array-count", frame(4, head("e10", 1, 1) + s("O2") + s("C1") + zz(1 << 40))
    yield "customers", "oversized", frame(1, s("x" * 70000) + reg)
    yield "customers", "empty", b""


def main():
    out = sys.argv[1] if len(sys.argv) > 1 else os.path.join(os.path.dirname(__file__), "corpus")
    os.makedirs(out, exist_ok=True)
    for topic, name, value in seeds():
        with open(os.path.join(out, name), "wb") as f:
            f.write(bytes([TOPICS[topic]]) + value)


if __name__ == "__main__":
    main()
