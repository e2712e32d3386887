"""rclone (Debian's package) against a real server, configured only through environment
variables: remote `tess:` is an S3 remote, provider Other, path-style, region us-east-1."""

from __future__ import annotations

import hashlib
import re
from pathlib import Path

import pytest

from conftest import (
    boto3_client,
    empty_and_delete_bucket,
    make_tree,
    read_tree,
    require_tool,
    run_tool,
    tool_env,
    unique_bucket_name,
)

MIB = 1024 * 1024
LS_LINE = re.compile(r"^\s*(\d+) (.+)$")


@pytest.fixture(scope="module")
def rclone_bin():
    return require_tool("rclone", "TESSERA_RCLONE", ["/usr/bin/rclone"])


class Rclone:
    def __init__(self, binary: str, endpoint, config_dir: Path):
        self.binary = binary
        self.endpoint = endpoint
        self.env = tool_env(
            {
                "RCLONE_CONFIG": str(config_dir / "rclone.conf"),  # absent: env remotes only
                "RCLONE_CONFIG_TESS_TYPE": "s3",
                "RCLONE_CONFIG_TESS_PROVIDER": "Other",
                "RCLONE_CONFIG_TESS_ENV_AUTH": "false",
                "RCLONE_CONFIG_TESS_ENDPOINT": endpoint.url,
                "RCLONE_CONFIG_TESS_ACCESS_KEY_ID": endpoint.access_key,
                "RCLONE_CONFIG_TESS_SECRET_ACCESS_KEY": endpoint.secret_key,
                "RCLONE_CONFIG_TESS_REGION": endpoint.region,
                "RCLONE_CONFIG_TESS_FORCE_PATH_STYLE": "true",
            }
        )

    def __call__(self, *args: str, check: bool = True):
        cmd = [self.binary, "--retries", "1", "--low-level-retries", "1", *args]
        return run_tool(cmd, self.env, check=check)

    def ls(self, remote: str) -> dict[str, int]:
        listing = {}
        for line in self("ls", remote).stdout.splitlines():
            m = LS_LINE.match(line)
            assert m, f"unexpected 'rclone ls' line: {line!r}"
            listing[m.group(2)] = int(m.group(1))
        return listing


@pytest.fixture
def rclone(rclone_bin, tessera, tmp_path):
    return Rclone(rclone_bin, tessera.endpoint, tmp_path)


@pytest.fixture
def rc_bucket(rclone, s3):
    name = unique_bucket_name("rclone")
    rclone("mkdir", f"tess:{name}")
    yield name
    empty_and_delete_bucket(s3, name)


TREE = {
    "one.txt": 10,
    "empty": 0,
    "dir/two.bin": 200_000,
    "dir/sub/three with space.txt": 4096,
    "dir/sub/ünïcode.bin": 65_537,
    "other/four.bin": 1 * MIB + 1,
}


def sizes(tree: dict[str, bytes]) -> dict[str, int]:
    return {rel: len(data) for rel, data in tree.items()}


def test_rclone_copy_check_ls_and_copy_back(rclone, rc_bucket, tmp_path, s3):
    src = tmp_path / "src"
    contents = make_tree(src, TREE, seed=21)
    remote = f"tess:{rc_bucket}/data"

    rclone("copy", str(src), remote)
    rclone("check", str(src), remote)  # sizes and MD5s (the ETags of single-part objects)
    assert rclone.ls(remote) == sizes(contents)
    assert rclone.ls(f"tess:{rc_bucket}/data/dir/sub") == {
        "three with space.txt": 4096,
        "ünïcode.bin": 65_537,
    }
    for rel, data in contents.items():
        got = s3.get_object(Bucket=rc_bucket, Key=f"data/{rel}")["Body"].read()
        assert got == data, rel

    back = tmp_path / "back"
    rclone("copy", remote, str(back))
    assert read_tree(back) == contents

    # A changed remote object makes `rclone check` fail: it really compares content.
    s3.put_object(Bucket=rc_bucket, Key="data/one.txt", Body=b"0123456789"[::-1])
    proc = rclone("check", str(src), remote, check=False)
    assert proc.returncode != 0, proc.stderr


def test_rclone_sync_propagates_changes_and_deletions(rclone, rc_bucket, tmp_path):
    src = tmp_path / "src"
    contents = make_tree(src, TREE, seed=22)
    remote = f"tess:{rc_bucket}/sync"
    rclone("sync", str(src), remote)
    assert rclone.ls(remote) == sizes(contents)

    # Delete a file and a whole directory, change one, add one.
    (src / "one.txt").unlink()
    for rel in ("other/four.bin",):
        (src / rel).unlink()
    (src / "other").rmdir()
    (src / "dir" / "two.bin").write_bytes(b"now different and shorter")
    (src / "new" / "five.txt").parent.mkdir()
    (src / "new" / "five.txt").write_bytes(b"five")
    now = read_tree(src)

    rclone("sync", str(src), remote)
    assert rclone.ls(remote) == sizes(now)
    rclone("check", str(src), remote)
    back = tmp_path / "back"
    rclone("copy", remote, str(back))
    assert read_tree(back) == now

    # Syncing an empty directory deletes everything under the prefix.
    empty = tmp_path / "empty"
    empty.mkdir()
    rclone("sync", str(empty), remote)
    assert rclone.ls(f"tess:{rc_bucket}") == {}


def test_rclone_large_file_goes_multipart(rclone, rc_bucket, tmp_path, s3):
    size = 17 * MIB + 333
    contents = make_tree(tmp_path / "src", {"large.bin": size}, seed=23)
    data = contents["large.bin"]
    remote = f"tess:{rc_bucket}/large.bin"
    multipart = ["--s3-upload-cutoff", "5M", "--s3-chunk-size", "5M", "--s3-upload-concurrency", "2"]

    rclone("copyto", str(tmp_path / "src" / "large.bin"), remote, *multipart)
    head = s3.head_object(Bucket=rc_bucket, Key="large.bin")
    assert head["ContentLength"] == size
    assert head["ETag"].endswith('-4"'), f"expected a 4-part multipart ETag, got {head['ETag']}"
    # rclone keeps the whole file's MD5 in metadata for multipart objects; check uses it.
    assert head["Metadata"].get("md5chksum"), head["Metadata"]
    rclone("check", str(tmp_path / "src"), f"tess:{rc_bucket}")

    dst = tmp_path / "dst.bin"
    rclone("copyto", remote, str(dst))
    assert hashlib.sha256(dst.read_bytes()).hexdigest() == hashlib.sha256(data).hexdigest()
    assert rclone.ls(f"tess:{rc_bucket}") == {"large.bin": size}


def test_rclone_wrong_secret_is_refused(rclone, rc_bucket, tmp_path):
    f = tmp_path / "f.txt"
    f.write_bytes(b"forged")
    rclone.env["RCLONE_CONFIG_TESS_SECRET_ACCESS_KEY"] = "wrong-secret-wrong-secret-000000000000000"
    proc = rclone("copy", str(f), f"tess:{rc_bucket}", check=False)
    assert proc.returncode != 0
    assert "SignatureDoesNotMatch" in proc.stderr or "403" in proc.stderr, proc.stderr
    assert boto3_client(rclone.endpoint).list_objects_v2(Bucket=rc_bucket)["KeyCount"] == 0
