"""The real-process crash campaign: N SIGKILLs of a `tessera server` under mixed S3 load, with
every object checked after every restart.

Each cycle starts the server (same data directory, same port), runs a mixed load from several
client threads for a random time, SIGKILLs the server in the middle of it, starts it again and
checks every key the campaign ever wrote:

- an operation the server acknowledged (a 2xx response) must be visible exactly, bytes and
  ETag, until a later operation on the key replaces it;
- an operation cut short by the kill (or answered with an error) may have happened or not,
  wholly: the key then holds the old value or the new one, never a mix and never anything else;
- a LIST of the bucket names exactly the keys that exist.

Each client thread owns its keys, so the operations on one key are sequential and their order is
known. Loads: PUT of inline (<= 16 KiB), single-stripe and multi-stripe objects, overwrites,
DELETE, CopyObject and multipart uploads (two parts). The bounds are in count (N kills) and time
(each load phase lasts at most --max-load-secs); the server listens on 127.0.0.1 only.

Exit status: 0 when nothing acknowledged was lost or changed, 1 otherwise (the first differences
are printed), 2 when the server could not be started.
"""

from __future__ import annotations

import argparse
import hashlib
import os
import random
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

import boto3
from botocore.config import Config
from botocore.exceptions import BotoCoreError, ClientError

ACCESS_KEY = "CRASHCAMPAIGNKEY0001"
SECRET_KEY = "crash/campaign/secret/0123456789abcdefghij"
BUCKET = "campaign"
READY = "tessera ready:"
MIB = 1 << 20


@dataclass(frozen=True)
class Value:
    """What a key holds: its SHA-256, size and ETag (None for a multipart ETag not known)."""

    sha: str
    size: int
    etag: str | None


ABSENT = None  # A key that does not exist.


@dataclass
class Key:
    name: str
    acked: Value | None = ABSENT
    # Values left by operations whose outcome is unknown since the last acknowledged one (cut
    # short by a kill, or answered with an error): any one of them may be what the key holds.
    maybe: list = field(default_factory=list)


@dataclass
class Totals:
    acked_ops: int = 0
    unknown_ops: int = 0
    error_answers: int = 0
    checks: int = 0
    lost: list = field(default_factory=list)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Node:
    """One tessera server process on a fixed data directory and port."""

    def __init__(self, binary: Path, data: Path, port: int, segment_mib: int, log: Path):
        self.binary, self.data, self.port, self.segment_mib, self.log = binary, data, port, segment_mib, log
        self.proc: subprocess.Popen | None = None

    def start(self) -> None:
        env = dict(os.environ, TESSERA_ACCESS_KEY=ACCESS_KEY, TESSERA_SECRET_KEY=SECRET_KEY)
        env.setdefault("TESSERA_LOG", "warn")
        cmd = [
            str(self.binary), "server", "--listen", f"127.0.0.1:{self.port}", "--data", str(self.data),
            "--segment-mib", str(self.segment_mib),
        ]
        with open(self.log, "ab") as err:
            self.proc = subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=err, text=True)
        deadline = time.monotonic() + 60
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            if line.startswith(READY):
                threading.Thread(target=self.proc.stdout.read, daemon=True).start()
                return
            if time.monotonic() > deadline:
                break
        self.proc.kill()
        raise RuntimeError(f"the server did not become ready; see {self.log}")

    def kill(self) -> None:
        if self.proc is not None:
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait()
            self.proc = None

    def stop(self) -> None:
        if self.proc is not None:
            self.proc.send_signal(signal.SIGTERM)
            self.proc.wait(timeout=60)
            self.proc = None


def client(port: int):
    return boto3.client(
        "s3",
        endpoint_url=f"http://127.0.0.1:{port}",
        aws_access_key_id=ACCESS_KEY,
        aws_secret_access_key=SECRET_KEY,
        region_name="us-east-1",
        config=Config(
            s3={"addressing_style": "path"},
            retries={"max_attempts": 1, "mode": "standard"},
            connect_timeout=5,
            read_timeout=60,
        ),
    )


def value_of(body: bytes, etag: str | None) -> Value:
    return Value(hashlib.sha256(body).hexdigest(), len(body), etag)


def pick_size(rng: random.Random) -> int:
    r = rng.random()
    if r < 0.45:
        return rng.randint(0, 16 * 1024)  # inline in the log
    if r < 0.80:
        return rng.randint(16 * 1024 + 1, 400 * 1024)  # one stripe
    return rng.randint(1 * MIB, 5 * MIB)  # several stripes


class Worker(threading.Thread):
    """Runs operations on its own keys until told to stop; never two at once on one key."""

    def __init__(self, wid: int, keys: list[Key], port: int, seed: int, totals: Totals, lock: threading.Lock):
        super().__init__(daemon=True)
        self.keys, self.rng, self.totals, self.lock = keys, random.Random(seed), totals, lock
        self.s3 = client(port)
        self.stop = threading.Event()

    def run(self) -> None:
        while not self.stop.is_set():
            key = self.rng.choice(self.keys)
            op = self.rng.random()
            try:
                if op < 0.60:
                    self.put(key)
                elif op < 0.75:
                    self.delete(key)
                elif op < 0.90:
                    self.copy(key)
                else:
                    self.multipart(key)
            except (ClientError, BotoCoreError, OSError) as e:
                # Cut short by the kill, or answered with an error: the outcome is unknown.
                # Errors while the server is up are counted (and shown) apart.
                with self.lock:
                    self.totals.unknown_ops += 1
                    if isinstance(e, ClientError) and not self.stop.is_set():
                        self.totals.error_answers += 1
                        print(f"  error answer on {key.name}: {e}", file=sys.stderr)
                if not isinstance(e, ClientError):
                    return  # The server is gone: this load phase is over for this thread.

    def acked(self, key: Key, value: Value | None) -> None:
        key.acked, key.maybe = value, []
        with self.lock:
            self.totals.acked_ops += 1

    def put(self, key: Key) -> None:
        body = os.urandom(pick_size(self.rng))
        new = value_of(body, '"' + hashlib.md5(body).hexdigest() + '"')
        key.maybe.append(new)
        r = self.s3.put_object(Bucket=BUCKET, Key=key.name, Body=body)
        if r["ETag"] != new.etag:
            with self.lock:
                self.totals.lost.append(f"{key.name}: PUT answered ETag {r['ETag']}, the body's is {new.etag}")
        self.acked(key, new)

    def delete(self, key: Key) -> None:
        key.maybe.append(ABSENT)
        self.s3.delete_object(Bucket=BUCKET, Key=key.name)
        self.acked(key, ABSENT)

    def copy(self, key: Key) -> None:
        sources = [k for k in self.keys if k is not key and k.acked is not ABSENT and not k.maybe]
        if not sources:
            return self.put(key)
        src = self.rng.choice(sources)
        # A copy is a new single-part object: its ETag is the MD5 of the bytes (not a
        # multipart source's ETag), known only from the answer; until then any ETag will do.
        key.maybe.append(Value(src.acked.sha, src.acked.size, None))
        r = self.s3.copy_object(Bucket=BUCKET, Key=key.name, CopySource={"Bucket": BUCKET, "Key": src.name})
        etag = r["CopyObjectResult"]["ETag"]
        if "-" not in src.acked.etag and etag != src.acked.etag:
            with self.lock:
                self.totals.lost.append(f"{key.name}: copy of {src.name} answered ETag {etag}, the bytes' is {src.acked.etag}")
        self.acked(key, Value(src.acked.sha, src.acked.size, etag))

    def multipart(self, key: Key) -> None:
        parts = [os.urandom(5 * MIB), os.urandom(self.rng.randint(1, 2 * MIB))]
        whole = b"".join(parts)
        md5s = b"".join(hashlib.md5(p).digest() for p in parts)
        new = value_of(whole, f'"{hashlib.md5(md5s).hexdigest()}-{len(parts)}"')
        up = self.s3.create_multipart_upload(Bucket=BUCKET, Key=key.name)["UploadId"]
        done = []
        for n, p in enumerate(parts, 1):
            etag = self.s3.upload_part(Bucket=BUCKET, Key=key.name, UploadId=up, PartNumber=n, Body=p)["ETag"]
            done.append({"PartNumber": n, "ETag": etag})
        key.maybe.append(new)
        self.s3.complete_multipart_upload(
            Bucket=BUCKET, Key=key.name, UploadId=up, MultipartUpload={"Parts": done}
        )
        self.acked(key, new)


def verify(s3, keys: list[Key], totals: Totals, cycle: int) -> None:
    """Every key holds its acknowledged value or, if its last operation's outcome is unknown,
    that operation's value; LIST agrees. The observed value becomes the acknowledged one."""
    for key in keys:
        allowed = [key.acked] + key.maybe
        try:
            r = s3.get_object(Bucket=BUCKET, Key=key.name)
            body = r["Body"].read()
            seen = value_of(body, r["ETag"])
        except ClientError as e:
            if e.response["Error"]["Code"] != "NoSuchKey":
                raise
            seen = ABSENT
        totals.checks += 1
        ok = any(
            (a is ABSENT and seen is ABSENT)
            or (a is not ABSENT and seen is not ABSENT and a.sha == seen.sha and a.size == seen.size
                and (a.etag is None or a.etag == seen.etag))
            for a in allowed
        )
        if not ok:
            totals.lost.append(f"cycle {cycle}: {key.name}: saw {seen}, allowed {allowed}")
        key.acked, key.maybe = seen, []
    listed = set()
    token = None
    while True:
        kw = {"Bucket": BUCKET, "MaxKeys": 1000}
        if token:
            kw["ContinuationToken"] = token
        page = s3.list_objects_v2(**kw)
        listed.update(o["Key"] for o in page.get("Contents", []))
        if not page.get("IsTruncated"):
            break
        token = page["NextContinuationToken"]
    present = {k.name for k in keys if k.acked is not ABSENT}
    if listed != present:
        totals.lost.append(
            f"cycle {cycle}: LIST disagrees: listed but absent {sorted(listed - present)[:5]}, "
            f"present but not listed {sorted(present - listed)[:5]}"
        )


def segment_bytes(data: Path) -> int:
    total = 0
    for root, _, files in os.walk(data):
        for f in files:
            if f.startswith("seg-") and f.endswith(".dat"):
                total += os.stat(os.path.join(root, f)).st_blocks * 512
    return total


def started_ok(node: Node, when: str) -> bool:
    try:
        node.start()
        return True
    except RuntimeError as e:
        print(f"crash-campaign: {when}: {e}", file=sys.stderr)
        return False


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("kills", type=int, help="how many SIGKILLs")
    ap.add_argument("--binary", default=os.environ.get("TESSERA_BIN", "target/debug/tessera"))
    ap.add_argument("--workers", type=int, default=4)
    ap.add_argument("--keys-per-worker", type=int, default=25)
    ap.add_argument("--max-load-secs", type=float, default=2.5)
    ap.add_argument("--segment-mib", type=int, default=32)
    ap.add_argument("--seed", type=int, default=int(time.time()))
    ap.add_argument("--data", help="data directory (default: a fresh temporary one, removed at the end)")
    args = ap.parse_args()

    print(f"crash-campaign: {args.kills} kills, seed {args.seed} (replay: --seed {args.seed})", flush=True)
    rng = random.Random(args.seed)
    tmp = None
    if args.data:
        data = Path(args.data)
    else:
        tmp = Path(tempfile.mkdtemp(prefix="tessera-crash-"))
        data = tmp / "data"
    log = data.parent / "server.log"
    node = Node(Path(args.binary).resolve(), data, free_port(), args.segment_mib, log)
    if not started_ok(node, "first start"):
        return 2
    s3 = client(node.port)
    s3.create_bucket(Bucket=BUCKET)
    keys = [[Key(f"w{w}/k{i:03}") for i in range(args.keys_per_worker)] for w in range(args.workers)]
    every = [k for ks in keys for k in ks]
    totals, lock = Totals(), threading.Lock()
    started = time.monotonic()
    for cycle in range(1, args.kills + 1):
        workers = [
            Worker(w, keys[w], node.port, rng.getrandbits(64), totals, lock) for w in range(args.workers)
        ]
        for w in workers:
            w.start()
        time.sleep(rng.uniform(0.05, args.max_load_secs))
        for w in workers:
            w.stop.set()
        node.kill()
        for w in workers:
            w.join(timeout=120)
        if not started_ok(node, f"cycle {cycle}"):
            return 2
        s3 = client(node.port)
        verify(s3, every, totals, cycle)
        if totals.lost:
            break
        if cycle % 10 == 0 or cycle == args.kills:
            print(
                f"  {cycle} kills, {totals.acked_ops} acknowledged operations, {totals.checks} object checks, "
                f"{totals.unknown_ops} cut short, {len(totals.lost)} lost, "
                f"segments {segment_bytes(data) / MIB:.0f} MiB, {time.monotonic() - started:.0f} s",
                flush=True,
            )
    live = sum(k.acked.size for k in every if k.acked is not ABSENT)
    on_disk = segment_bytes(data)
    node.stop()
    print(
        f"crash-campaign: {cycle} kills, {totals.acked_ops} acknowledged operations, {totals.checks} object "
        f"checks, {totals.unknown_ops} operations cut short, {totals.error_answers} error answers, "
        f"{len(totals.lost)} lost; live data {live / MIB:.1f} MiB, segment files {on_disk / MIB:.1f} MiB; "
        f"{time.monotonic() - started:.0f} s; seed {args.seed}"
    )
    for line in totals.lost[:20]:
        print(f"LOST {line}", file=sys.stderr)
    if tmp is not None and not totals.lost:
        shutil.rmtree(tmp, ignore_errors=True)
    elif totals.lost:
        print(f"data directory and server log kept in {data.parent}", file=sys.stderr)
    return 1 if totals.lost else 0


if __name__ == "__main__":
    sys.exit(main())
