"""The AWS CLI (v2 from Debian's `awscli`, or whatever `aws` runs) against a real server.

The CLI is driven as a user would: a subprocess with credentials in the environment and
`--endpoint-url`; downloaded bytes are compared with the sources.
"""

from __future__ import annotations

import hashlib
import json
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
# The CLI's defaults: multipart from 8 MiB on, in 8 MiB parts.
CLI_PART_BYTES = 8 * MIB
LS_LINE = re.compile(r"^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d\s+(\d+) (.+)$")


@pytest.fixture(scope="module")
def aws_bin():
    return require_tool("aws", "TESSERA_AWS_CLI", ["/usr/bin/aws", "/usr/local/bin/aws"])


class Aws:
    def __init__(self, binary: str, endpoint, config_dir: Path):
        config = config_dir / "aws-config"
        config.write_text(
            "[default]\nregion = us-east-1\ns3 =\n  addressing_style = path\n"
        )
        self.binary = binary
        self.endpoint = endpoint
        self.env = tool_env(
            {
                "AWS_ACCESS_KEY_ID": endpoint.access_key,
                "AWS_SECRET_ACCESS_KEY": endpoint.secret_key,
                "AWS_DEFAULT_REGION": endpoint.region,
                "AWS_CONFIG_FILE": str(config),
                "AWS_SHARED_CREDENTIALS_FILE": str(config_dir / "no-credentials"),
                "AWS_PAGER": "",
                "AWS_EC2_METADATA_DISABLED": "true",
                "AWS_RETRY_MODE": "standard",
                "AWS_MAX_ATTEMPTS": "1",
            }
        )

    def __call__(self, *args: str, check: bool = True):
        cmd = [self.binary, "--endpoint-url", self.endpoint.url, "--no-cli-pager", *args]
        return run_tool(cmd, self.env, check=check)

    def json(self, *args: str):
        out = self(*args, "--output", "json").stdout
        return json.loads(out) if out.strip() else {}


@pytest.fixture
def aws(aws_bin, tessera, tmp_path):
    return Aws(aws_bin, tessera.endpoint, tmp_path)


@pytest.fixture
def cli_bucket(aws, s3):
    name = unique_bucket_name("cli")
    aws("s3", "mb", f"s3://{name}")
    yield name
    empty_and_delete_bucket(s3, name)


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def multipart_etag(data: bytes, part: int) -> str:
    parts = [data[i : i + part] for i in range(0, len(data), part)]
    digest = hashlib.md5(b"".join(hashlib.md5(p).digest() for p in parts)).hexdigest()
    return f'"{digest}-{len(parts)}"'


def ls_recursive(aws: Aws, url: str) -> dict[str, int]:
    """`aws s3 ls --recursive` parsed into key -> size."""
    listing = {}
    for line in aws("s3", "ls", url, "--recursive").stdout.splitlines():
        m = LS_LINE.match(line)
        assert m, f"unexpected 'aws s3 ls' line: {line!r}"
        listing[m.group(2)] = int(m.group(1))
    return listing


def test_aws_s3_mb_then_bucket_is_listed(aws, cli_bucket):
    buckets = aws("s3", "ls").stdout
    assert any(line.split()[-1] == cli_bucket for line in buckets.splitlines()), buckets
    listed = aws.json("s3api", "list-buckets")
    assert cli_bucket in [b["Name"] for b in listed["Buckets"]]


def test_aws_s3_cp_small_and_multipart_roundtrip(aws, cli_bucket, tmp_path):
    small = tmp_path / "small.txt"
    small.write_bytes(b"hello from the aws cli\n" * 10)
    big = tmp_path / "big.bin"
    make_tree(tmp_path, {"big.bin": 20 * MIB}, seed=3)
    big_data = big.read_bytes()

    aws("s3", "cp", str(small), f"s3://{cli_bucket}/small.txt")
    aws("s3", "cp", str(big), f"s3://{cli_bucket}/dir/big.bin")

    head = aws.json("s3api", "head-object", "--bucket", cli_bucket, "--key", "small.txt")
    assert head["ContentLength"] == small.stat().st_size
    assert head["ETag"] == f'"{hashlib.md5(small.read_bytes()).hexdigest()}"'

    head = aws.json("s3api", "head-object", "--bucket", cli_bucket, "--key", "dir/big.bin")
    assert head["ContentLength"] == 20 * MIB
    # 20 MiB in 8 MiB parts: the CLI used a 3-part multipart upload.
    assert head["ETag"] == multipart_etag(big_data, CLI_PART_BYTES)

    down = tmp_path / "down"
    down.mkdir()
    aws("s3", "cp", f"s3://{cli_bucket}/small.txt", str(down / "small.txt"))
    aws("s3", "cp", f"s3://{cli_bucket}/dir/big.bin", str(down / "big.bin"))
    assert (down / "small.txt").read_bytes() == small.read_bytes()
    assert sha256((down / "big.bin").read_bytes()) == sha256(big_data)

    assert ls_recursive(aws, f"s3://{cli_bucket}") == {
        "small.txt": small.stat().st_size,
        "dir/big.bin": 20 * MIB,
    }
    listed = aws.json("s3api", "list-objects-v2", "--bucket", cli_bucket)
    assert [(o["Key"], o["Size"]) for o in listed["Contents"]] == [
        ("dir/big.bin", 20 * MIB),
        ("small.txt", small.stat().st_size),
    ]


TREE = {
    "a.txt": 1000,
    "empty": 0,
    "sub/b.bin": 100 * 1024,
    "sub/deeper/c with spaces.txt": 4097,
    "sub/ü-unicode.txt": 33,
    "sub/deeper/still/d.bin": 9 * MIB + 5,  # above the CLI's multipart threshold
    "z+plus&amp.txt": 12,
}


def test_aws_s3_sync_ls_and_rm_recursive(aws, cli_bucket, tmp_path):
    src = tmp_path / "src"
    contents = make_tree(src, TREE, seed=11)
    remote = f"s3://{cli_bucket}/tree/"

    aws("s3", "sync", str(src), remote)
    expected = {f"tree/{rel}": len(data) for rel, data in contents.items()}
    assert ls_recursive(aws, f"s3://{cli_bucket}") == expected

    listed = aws.json("s3api", "list-objects-v2", "--bucket", cli_bucket, "--prefix", "tree/sub/")
    assert {o["Key"]: o["Size"] for o in listed["Contents"]} == {
        k: v for k, v in expected.items() if k.startswith("tree/sub/")
    }
    delimited = aws.json(
        "s3api", "list-objects-v2", "--bucket", cli_bucket, "--prefix", "tree/", "--delimiter", "/"
    )
    assert [p["Prefix"] for p in delimited["CommonPrefixes"]] == ["tree/sub/"]

    back = tmp_path / "back"
    aws("s3", "sync", remote, str(back))
    assert read_tree(back) == contents

    # Nothing changed: a second sync uploads nothing.
    again = aws("s3", "sync", str(src), remote).stdout
    assert "upload:" not in again, again

    # Deletions and changes propagate with --delete.
    (src / "a.txt").unlink()
    (src / "sub" / "b.bin").write_bytes(b"changed and shorter")
    del contents["a.txt"]
    contents["sub/b.bin"] = b"changed and shorter"
    out = aws("s3", "sync", str(src), remote, "--delete").stdout
    assert f"delete: s3://{cli_bucket}/tree/a.txt" in out, out
    assert ls_recursive(aws, f"s3://{cli_bucket}") == {
        f"tree/{rel}": len(data) for rel, data in contents.items()
    }
    back2 = tmp_path / "back2"
    aws("s3", "sync", remote, str(back2))
    assert read_tree(back2) == contents

    aws("s3", "cp", str(src / "empty"), f"s3://{cli_bucket}/outside")
    aws("s3", "rm", remote, "--recursive")
    left = aws.json("s3api", "list-objects-v2", "--bucket", cli_bucket, "--prefix", "tree/")
    assert left.get("Contents", []) == [] and left.get("KeyCount", 0) == 0, left
    assert ls_recursive(aws, f"s3://{cli_bucket}") == {"outside": 0}

    aws("s3", "rm", f"s3://{cli_bucket}/outside")
    aws("s3", "rb", f"s3://{cli_bucket}")
    assert cli_bucket not in aws("s3", "ls").stdout


def test_aws_s3_sync_of_empty_and_multipart_files_does_not_stall(aws, cli_bucket, tmp_path):
    # The CLI sends `Expect: 100-continue` with every upload, an empty file's too. The server
    # answers an empty body's request at once (no interim 100); the botocore inside Debian's CLI
    # then kept that status on the connection and misread the next 100-continue response on it
    # (a 60 s read-timeout stall). With a short read timeout and no retries the stall fails here.
    src = tmp_path / "src"
    contents = make_tree(src, {"empty-a": 0, "empty-b": 0, "big.bin": CLI_PART_BYTES + MIB}, seed=5)
    for round_ in range(3):
        aws("--cli-read-timeout", "15", "s3", "sync", str(src), f"s3://{cli_bucket}/r{round_}/")
        dst = tmp_path / f"back{round_}"
        aws("s3", "sync", f"s3://{cli_bucket}/r{round_}/", str(dst))
        assert read_tree(dst) == contents


def test_aws_s3api_head_object_of_missing_key_fails(aws, cli_bucket):
    proc = aws("s3api", "head-object", "--bucket", cli_bucket, "--key", "missing", check=False)
    assert proc.returncode != 0
    assert "404" in proc.stderr, proc.stderr


def test_aws_s3_cp_with_wrong_secret_is_refused(aws, cli_bucket, tmp_path):
    f = tmp_path / "f"
    f.write_bytes(b"forged")
    aws.env["AWS_SECRET_ACCESS_KEY"] = "wrong-secret-wrong-secret-wrong-secret00"
    proc = aws("s3", "cp", str(f), f"s3://{cli_bucket}/forged", check=False)
    assert proc.returncode != 0
    assert "SignatureDoesNotMatch" in proc.stderr, proc.stderr
    s3 = boto3_client(aws.endpoint)
    assert s3.list_objects_v2(Bucket=cli_bucket).get("KeyCount", 0) == 0


def test_aws_s3_cp_between_buckets_server_side(aws, cli_bucket, tmp_path, s3):
    """`aws s3 cp s3://... s3://...` copies server-side: CopyObject for small objects,
    UploadPartCopy for ones above the multipart threshold."""
    small = tmp_path / "small"
    small.write_bytes(b"server-side copy" * 100)
    make_tree(tmp_path, {"big": 17 * MIB + 3}, seed=5)
    big = (tmp_path / "big").read_bytes()
    aws("s3", "cp", str(small), f"s3://{cli_bucket}/src/small")
    aws("s3", "cp", str(tmp_path / "big"), f"s3://{cli_bucket}/src/big")

    other = unique_bucket_name("clicopy")
    aws("s3", "mb", f"s3://{other}")
    try:
        aws("s3", "cp", f"s3://{cli_bucket}/src/", f"s3://{other}/dst/", "--recursive")
        assert ls_recursive(aws, f"s3://{other}") == {
            "dst/small": small.stat().st_size,
            "dst/big": len(big),
        }
        down = tmp_path / "down"
        aws("s3", "cp", f"s3://{other}/dst/", str(down), "--recursive")
        assert (down / "small").read_bytes() == small.read_bytes()
        assert sha256((down / "big").read_bytes()) == sha256(big)
    finally:
        empty_and_delete_bucket(s3, other)
