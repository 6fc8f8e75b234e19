"""Crash images from a write-order log (tests/crash/wrlog.c), ALICE-style.

An OS crash leaves on disk everything a completed sync covered, plus any subset of the
writes issued after it, at page granularity (ext4 without barriers promises no order).
This module parses the recorder's log and builds such images of one LMDB file; the
checker (tests/crash/crash_check) says what a program would find in each."""
import json
import os
import random
import struct
import subprocess

PAGE = 4096                # LMDB's page size on this platform (and the unit of a torn write)
META_BYTES = 2 * PAGE      # LMDB's two meta pages
META_TXNID_AT = 16 + 128   # page header, then MDB_meta's magic .. mm_last_pg

OPEN, WRITE, SYNC_BEGIN, SYNC_END, TRUNCATE, RENAME, UNLINK = 1, 2, 3, 4, 5, 6, 7
REC = struct.Struct("<IIqqq")


class Rec:
    __slots__ = ("idx", "op", "file", "offset", "length", "aux", "data", "path")

    def __init__(self, idx, op, file, offset, length, aux, data, path):
        self.idx, self.op, self.file, self.offset = idx, op, file, offset
        self.length, self.aux, self.data, self.path = length, aux, data, path


def parse(log_path):
    """The records, in order; each knows the path of its file (None for RENAME/UNLINK)."""
    with open(log_path, "rb") as f:
        raw = f.read()
    paths, recs, pos = {}, [], 0
    while pos < len(raw):
        op, file, offset, length, aux = REC.unpack_from(raw, pos)
        pos += REC.size
        data = raw[pos:pos + length]
        pos += length
        if op == OPEN:
            paths[file] = data.rstrip(b"\0").decode()
        recs.append(Rec(len(recs), op, file, offset, length, aux, data, paths.get(file)))
    return recs


class Store:
    """The history of one file (every descriptor that opened its path) and its marks."""

    def __init__(self, recs, data_path):
        self.recs = recs
        self.writes = [r for r in recs if r.op == WRITE and r.path == data_path]
        self.syncs = []  # (begin idx, end idx, ok) of fsync/fdatasync on the file
        open_begin = {}
        for r in recs:
            if r.path != data_path:
                continue
            if r.op == SYNC_BEGIN:
                open_begin[r.file] = r.idx
            elif r.op == SYNC_END and r.file in open_begin:
                self.syncs.append((open_begin.pop(r.file), r.idx, r.aux == 0))
        assert not any(r.op == TRUNCATE and r.path == data_path for r in recs), \
            "LMDB truncated the file: the replay does not model it"
        assert not any(r.op == SYNC_BEGIN and r.file == 0 for r in recs), \
            "an msync the replay cannot place"
        self.first_write = self.writes[0].idx if self.writes else len(recs)
        # The committed states: after each write of a meta page, the txnid it carries.
        self.commits = []  # (record idx, txnid)
        for w in self.writes:
            if w.offset < META_BYTES:
                page = w.offset // PAGE
                lo = page * PAGE + META_TXNID_AT - w.offset
                if 0 <= lo and lo + 8 <= len(w.data):
                    self.commits.append((w.idx, struct.unpack_from("<Q", w.data, lo)[0]))

    def durable_cut(self, point):
        """Writes logged before this index are on disk for a crash at point."""
        cut = -1
        for begin, end, ok in self.syncs:
            if ok and end < point:
                cut = max(cut, begin)
        return cut

    def split(self, point):
        """(durable writes, pending units) for a crash just before record point. A unit is
        (write idx, file offset, bytes) within one page: any subset may reach the disk."""
        cut = self.durable_cut(point)
        durable, pending = [], []
        for w in self.writes:
            if w.idx >= point:
                break
            if w.idx < cut or w.aux == 1:  # before a completed sync, or O_DSYNC
                durable.append(w)
                continue
            start = 0
            while start < len(w.data):
                off = w.offset + start
                take = min(PAGE - off % PAGE, len(w.data) - start)
                pending.append((w.idx, off, w.data[start:start + take]))
                start += take
        return durable, pending

    def durable_txnid(self, point):
        """The newest commit whose meta page is durable at point (a crash must keep it)."""
        durable, _ = self.split(point)
        ids = {w.idx for w in durable}
        return max([t for i, t in self.commits if i in ids], default=0)

    def image(self, writes):
        """The file after applying writes ((idx, offset, bytes), in log order)."""
        size = max((off + len(b) for _, off, b in writes), default=0)
        buf = bytearray(size)
        for _, off, b in sorted(writes, key=lambda w: w[0]):
            buf[off:off + len(b)] = b
        return bytes(buf)

    def state_after(self, idx):
        """The file as the page cache held it right after record idx: a committed state."""
        return self.image([(w.idx, w.offset, w.data) for w in self.writes if w.idx <= idx])


def strategies(pending, seed, randoms):
    """Named subsets of the pending units to persist: none, all, the meta pages only,
    everything but them, in-order prefixes and random subsets."""
    rng = random.Random(seed)
    meta = [u for u in pending if u[1] < META_BYTES]
    data = [u for u in pending if u[1] >= META_BYTES]
    out = [("synced-only", []), ("all", pending)]
    if meta and data:
        out += [("meta-only", meta), ("all-but-meta", data)]
    if len(pending) > 2:
        k = rng.randrange(1, len(pending))
        out.append((f"prefix-{k}", pending[:k]))
    for n in range(randoms):
        out.append((f"random-{n}", [u for u in pending if rng.random() < 0.5]))
    return out


def check(checker, directory, env):
    """crash_check's verdict on directory: (suspect, dump dict or None if it crashed)."""
    out = subprocess.run([checker, directory], capture_output=True, text=True, env=env,
                         timeout=60)
    lines = out.stdout.splitlines()
    suspect = json.loads(lines[0])["suspect"] if lines else None
    dump = json.loads(lines[1]) if len(lines) > 1 else None
    return suspect, dump


def write_image(directory, content, marks):
    os.makedirs(directory, exist_ok=True)
    for name in os.listdir(directory):
        os.unlink(os.path.join(directory, name))
    with open(os.path.join(directory, "data.mdb"), "wb") as f:
        f.write(content)
    for name, text in marks.items():
        with open(os.path.join(directory, name), "w") as f:
            f.write(text)
