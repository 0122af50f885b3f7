#!/usr/bin/env python3
"""Writes the seed corpora under fuzz/corpus/<Target>/ (a few small files each).

Real inputs where it matters: WAL headers and frames from python's sqlite3, LZ4 frames from the `lz4` CLI,
`/stream` bodies built as the primary sends them. Deterministic apart from the WAL salts SQLite picks.
Usage: python3 fuzz/make-seeds.py   (from anywhere; rewrites the corpus directories)
"""
import os
import shutil
import sqlite3
import struct
import subprocess
import tempfile

ROOT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "corpus")


def write(target, name, data):
    d = os.path.join(ROOT, target)
    os.makedirs(d, exist_ok=True)
    if isinstance(data, str):
        data = data.encode()
    with open(os.path.join(d, name), "wb") as f:
        f.write(data)


def wal_checksum(data, big_endian, s0=0, s1=0):
    fmt = ">II" if big_endian else "<II"
    for i in range(0, len(data), 8):
        a, b = struct.unpack_from(fmt, data, i)
        s0 = (s0 + a + s1) & 0xFFFFFFFF
        s1 = (s1 + b + s0) & 0xFFFFFFFF
    return s0, s1


def real_wal(page_size=512, rows=3):
    """A real WAL file from SQLite: header plus the frames of a few small transactions."""
    tmp = tempfile.mkdtemp()
    try:
        path = os.path.join(tmp, "db")
        c = sqlite3.connect(path, isolation_level=None)
        c.execute(f"PRAGMA page_size={page_size}")
        c.execute("PRAGMA journal_mode=WAL")
        c.execute("PRAGMA wal_autocheckpoint=0")
        c.execute("CREATE TABLE t (x TEXT)")
        for i in range(rows):
            c.execute("INSERT INTO t VALUES (?)", (f"row {i}",))
        with open(path + "-wal", "rb") as f:
            wal = f.read()
        c.close()
        return wal
    finally:
        shutil.rmtree(tmp)


def big_endian_wal(page_size=512, frames=2):
    """A synthetic WAL with big-endian checksums (magic ...83), which SQLite on x86 never writes."""
    hdr = struct.pack(">IIIIII", 0x377F0683, 3007000, page_size, 0, 0x11112222, 0x33334444)
    s = wal_checksum(hdr, True)
    out = hdr + struct.pack(">II", *s)
    for n in range(frames):
        fh = struct.pack(">IIII", n + 1, frames if n == frames - 1 else 0, 0x11112222, 0x33334444)
        page = bytes((n * 7 + i) & 0xFF for i in range(page_size))
        s = wal_checksum(fh[:8], True, *s)
        s = wal_checksum(page, True, *s)
        out += fh + struct.pack(">II", *s) + page
    return out


def lz4(data, *flags):
    return subprocess.run(["lz4", "-c", "-q", *flags], input=data, stdout=subprocess.PIPE, check=True).stdout


def stream_record(kind, generation, index, offset, payload):
    return struct.pack(">IIQQQQ", kind, 0, generation, index, offset, len(payload)) + payload


def main():
    if os.path.isdir(ROOT):
        shutil.rmtree(ROOT)
    wal = real_wal()
    frame = 24 + 512
    # FuzzWAL: byte 0 is the mode (bit 0 repair header, bit 1 big-endian, bit 2 repair frames; upper bits sizes).
    write("FuzzWAL", "real-3-frames", b"\x00" + wal[: 32 + 3 * frame])
    write("FuzzWAL", "real-all-frames-repair", b"\x25" + wal)
    write("FuzzWAL", "real-header-only", b"\x01" + wal[:32])
    write("FuzzWAL", "real-torn-tail", b"\x48" + wal[: 32 + 2 * frame + 100])
    write("FuzzWAL", "big-endian", b"\x87" + big_endian_wal())

    # FuzzLZ4: byte 0 seeds the piece sizes (odd: also compress the rest).
    text = b"".join(b"page %d of a wal segment " % i for i in range(40))
    write("FuzzLZ4", "default", b"\x02" + lz4(text, "-B4", "--content-size"))
    write("FuzzLZ4", "block-checksum-dependent", b"\x04" + lz4(text, "-BX", "-BD", "-B4"))
    write("FuzzLZ4", "no-frame-crc", b"\x06" + lz4(wal[:600], "--no-frame-crc"))
    write("FuzzLZ4", "empty", b"\x08" + lz4(b""))
    skippable = struct.pack("<II", 0x184D2A50, 5) + b"skip!"
    write("FuzzLZ4", "skippable-and-two-frames", b"\x0a" + skippable + lz4(b"one") + lz4(b"two", "-9"))
    write("FuzzLZ4", "raw-to-compress", b"\x01" + text[:300])

    # FuzzStreamRecord: byte 0 seeds the read sizes; the rest is a /stream body.
    gen = 0x0123456789ABCDEF
    snapshot = stream_record(1, gen, 5, 0, bytes(range(256)) * 4)
    segment = stream_record(2, gen, 5, 0, lz4(wal[: 32 + frame], "-B7"))
    more = stream_record(2, gen, 5, 32 + frame, lz4(wal[32 + frame: 32 + 2 * frame], "-B7"))
    heartbeat = stream_record(3, gen, 5, 32 + 2 * frame, b"")
    write("FuzzStreamRecord", "snapshot-then-segments", b"\x11" + snapshot + segment + more)
    write("FuzzStreamRecord", "heartbeats", b"\x22" + heartbeat + heartbeat)
    write("FuzzStreamRecord", "segment-torn", b"\x33" + segment + more[:57])
    write("FuzzStreamRecord", "header-only", b"\x44" + snapshot[:40])

    # FuzzReplicaURL
    for i, u in enumerate([
        "s3://mybkt/db",
        "s3://bkt.s3.us-west-2.backblazeb2.com:8080/path/to/db?region=x",
        "s3://user:pa%40ss@bkt.nyc3.digitaloceanspaces.com/db",
        "file:///var/lib/backup/../db",
        "gs://bucket/some/path",
        "abs://account@container/path",
        "sftp://user:secret@host:2222/home/user/backups",
        "s3://[::1]:9000/bucket",
    ]):
        write("FuzzReplicaURL", f"url-{i}", u)

    # FuzzConfig
    write("FuzzConfig", "env", """dbs:
  - path: ${DB}
    replicas:
      - url: s3://$BUCKET/db?region=${REGION}
        retention: 72h
        secret-access-key: ${PASS:-default}  # a $COMMENT is not expanded
""")
    write("FuzzConfig", "full", """addr: ":9090"
exec: myapp serve --port 8080
access-key-id: AKIA
secret-access-key: ${EMPTY:-x}
dbs:
  - path: /data/app.db
    monitor-delay-interval: 10ms
    checkpoint-interval: 1m
    min-checkpoint-page-count: 1000
    max-checkpoint-page-count: 0
    replicas:
      - type: file
        path: /backup
        name: local
      - type: s3
        bucket: bkt
        path: app
        endpoint: http://localhost:9000
        force-path-style: true
        sync-interval: 1s
      - type: sftp
        host: h:22
        user: u
        password: p
        path: /b
  - path: ~/other.db
    upstream:
      url: http://primary:9090
""")
    write("FuzzConfig", "errors", "dbs:\n  - path: /x\n    replicas:\n      - url: s3://b\n        name: a\n      - url: gs://c\n        name: a\n")
    write("FuzzConfig", "unset-and-legacy", "logging:\n  level: debug\nlease: {}\ndbs: [{path: $UNSET_VAR}]\n")

    # FuzzShellWords
    for i, line in enumerate([
        "myapp serve --port 8080",
        "sh -c 'echo \"hi there\"; exit 3' && ignored",
        'python3 -u "my script.py" "" \'\' x\\ y 2>/dev/null',
        "echo $(date) `uname -a` done",
        "app\t--flag=\"a\\\"b\"\r\n| tail",
    ]):
        write("FuzzShellWords", f"line-{i}", line)

    # FuzzS3XML
    write("FuzzS3XML", "list", """<?xml version="1.0" encoding="UTF-8"?>
<ListBucketResult xmlns="http://s3.amazonaws.com/doc/2006-03-01/"><Name>bkt</Name><Prefix>db/</Prefix>
<KeyCount>2</KeyCount><MaxKeys>1000</MaxKeys><IsTruncated>true</IsTruncated>
<NextContinuationToken>1ueGcxLPRx1Tr/XYExHnhbYLgveDs2J/wm36Hy4vbOwM=</NextContinuationToken>
<Contents><Key>db/generations/0123456789abcdef/wal/00000001/0000000000000000.wal.lz4</Key>
<LastModified>2026-12-05T10:00:00.000Z</LastModified><ETag>&quot;9b2cf535f27731c974343645a3985328&quot;</ETag>
<Size>1234</Size><StorageClass>STANDARD</StorageClass></Contents>
<Contents><Key>db/a&amp;b &#x263A; &#65;</Key><Size>0</Size></Contents></ListBucketResult>""")
    write("FuzzS3XML", "error", """<?xml version="1.0"?><Error><Code>NoSuchKey</Code><Message>The key <![CDATA[<x>]]> does not exist</Message>
<!-- comment --><Resource>/bkt/k</Resource><RequestId>4442587FB7D0A2F9</RequestId></Error>""")
    write("FuzzS3XML", "delete", """<DeleteResult xmlns="http://s3.amazonaws.com/doc/2006-03-01/"><Deleted><Key>a</Key></Deleted>
<Error><Key>b</Key><Code>AccessDenied</Code></Error><s3:Empty/></DeleteResult>""")
    write("FuzzS3XML", "multipart", """<InitiateMultipartUploadResult><Bucket>b</Bucket><Key>k</Key>
<UploadId attr='x>y'>VXBsb2FkIElE</UploadId></InitiateMultipartUploadResult>""")


if __name__ == "__main__":
    main()
