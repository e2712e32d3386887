"""Users and access keys: created, listed, disabled and deleted with `tessera user`, used by
boto3. A user gets exactly what its identity policy or a bucket policy allows it, an explicit
Deny in either wins, a disabled or deleted key is refused by the next request, users survive a
restart, and only the root user reaches the admin API. Every refusal is checked to have
changed nothing."""

from __future__ import annotations

import json
import os
import subprocess
import uuid

import pytest
from botocore.exceptions import ClientError

from conftest import ACCESS_KEY, SECRET_KEY, boto3_client, tessera_bin, unique_bucket_name
from test_boto3 import assert_missing, error_of, get_bytes


def cli(server, *args: str, access_key: str = ACCESS_KEY, secret_key: str = SECRET_KEY,
        check: bool = True) -> subprocess.CompletedProcess:
    env = dict(os.environ, TESSERA_ACCESS_KEY=access_key, TESSERA_SECRET_KEY=secret_key,
               NO_PROXY="*", no_proxy="*")
    r = subprocess.run([str(tessera_bin()), "user", "--endpoint", server.url, "--json", *args],
                       env=env, capture_output=True, text=True, timeout=60)
    if check:
        assert r.returncode == 0, f"tessera user {' '.join(args)}: {r.stderr}"
    return r


def new_user(server, tag: str) -> tuple[str, str, str]:
    """A fresh user: (name, access key, secret key)."""
    name = f"{tag}-{uuid.uuid4().hex[:8]}"
    k = json.loads(cli(server, "create", name).stdout)
    assert k["user"] == name and k["access_key"].startswith("TK") and len(k["secret_key"]) == 40
    return name, k["access_key"], k["secret_key"]


def client_of(server, access_key: str, secret_key: str):
    return boto3_client(server.endpoint, access_key=access_key, secret_key=secret_key)


def put_policy(server, tmp_path, name: str, doc: dict) -> None:
    f = tmp_path / f"{name}.json"
    f.write_text(json.dumps(doc))
    cli(server, "policy", "put", name, str(f))


def refused(call, code: str = "AccessDenied", status: int = 403) -> None:
    with pytest.raises(ClientError) as e:
        call()
    assert error_of(e) == (code, status)


def two_buckets(s3) -> tuple[str, str]:
    a, b = unique_bucket_name("usr"), unique_bucket_name("usr")
    for n in (a, b):
        s3.create_bucket(Bucket=n)
        s3.put_object(Bucket=n, Key="home/alice/mine", Body=b"alice's")
        s3.put_object(Bucket=n, Key="home/bob/theirs", Body=b"bob's")
    return a, b


def test_a_user_without_a_policy_can_do_nothing(tessera, s3):
    bucket, _ = two_buckets(s3)
    _, ak, sk = new_user(tessera, "nobody")
    u = client_of(tessera, ak, sk)
    refused(lambda: u.list_buckets())
    refused(lambda: u.create_bucket(Bucket=unique_bucket_name("usr")))
    refused(lambda: u.get_object(Bucket=bucket, Key="home/alice/mine"))
    refused(lambda: u.put_object(Bucket=bucket, Key="home/alice/new", Body=b"x"))
    refused(lambda: u.delete_object(Bucket=bucket, Key="home/alice/mine"))
    refused(lambda: u.list_objects_v2(Bucket=bucket))
    assert get_bytes(s3, bucket, "home/alice/mine") == b"alice's"
    assert_missing(s3, bucket, "home/alice/new")


def test_an_identity_policy_allows_exactly_its_prefix(tessera, s3, tmp_path):
    bucket, other = two_buckets(s3)
    name, ak, sk = new_user(tessera, "alice")
    put_policy(tessera, tmp_path, name, {"Version": "2012-10-17", "Statement": [{
        "Effect": "Allow", "Action": ["s3:GetObject", "s3:PutObject"],
        "Resource": f"arn:aws:s3:::{bucket}/home/alice/*"}]})
    assert json.loads(cli(tessera, "policy", "get", name).stdout)["Statement"][0]["Effect"] == "Allow"
    alice = client_of(tessera, ak, sk)
    assert get_bytes(alice, bucket, "home/alice/mine") == b"alice's"
    alice.put_object(Bucket=bucket, Key="home/alice/new", Body=b"written by alice")
    assert get_bytes(s3, bucket, "home/alice/new") == b"written by alice"
    refused(lambda: alice.get_object(Bucket=bucket, Key="home/bob/theirs"))
    refused(lambda: alice.put_object(Bucket=bucket, Key="home/bob/theirs", Body=b"x"))
    refused(lambda: alice.get_object(Bucket=other, Key="home/alice/mine"))
    refused(lambda: alice.put_object(Bucket=other, Key="home/alice/new", Body=b"x"))
    refused(lambda: alice.delete_object(Bucket=bucket, Key="home/alice/mine"))
    refused(lambda: alice.list_objects_v2(Bucket=bucket, Prefix="home/alice/"))
    refused(lambda: alice.list_buckets())
    assert get_bytes(s3, bucket, "home/bob/theirs") == b"bob's"
    assert get_bytes(s3, bucket, "home/alice/mine") == b"alice's"
    assert_missing(s3, other, "home/alice/new")
    # s3:ListAllMyBuckets is what ListBuckets needs.
    put_policy(tessera, tmp_path, name, {"Statement": [
        {"Effect": "Allow", "Action": "s3:ListAllMyBuckets", "Resource": "*"}]})
    assert bucket in [b["Name"] for b in alice.list_buckets()["Buckets"]]
    # A malformed policy is refused and changes nothing.
    f = tmp_path / "bad.json"
    f.write_text(json.dumps({"Statement": [{"Effect": "Allow", "Principal": "*", "Action": "s3:*",
                                            "Resource": "*"}]}))
    r = cli(tessera, "policy", "put", name, str(f), check=False)
    assert r.returncode != 0 and "MalformedPolicy" in r.stderr, r.stderr
    assert bucket in [b["Name"] for b in alice.list_buckets()["Buckets"]]
    cli(tessera, "policy", "delete", name)
    refused(lambda: alice.list_buckets())


def test_a_bucket_policy_grants_a_named_user_and_a_deny_in_either_wins(tessera, s3, tmp_path):
    bucket, _ = two_buckets(s3)
    bob, ak, sk = new_user(tessera, "bob")
    b = client_of(tessera, ak, sk)
    refused(lambda: b.get_object(Bucket=bucket, Key="home/bob/theirs"))
    s3.put_bucket_policy(Bucket=bucket, Policy=json.dumps({"Statement": [
        {"Effect": "Allow", "Principal": {"AWS": f"arn:aws:iam:::user/{bob}"},
         "Action": ["s3:GetObject", "s3:PutObject", "s3:DeleteObject"],
         "Resource": f"arn:aws:s3:::{bucket}/home/*"},
        {"Effect": "Deny", "Principal": {"AWS": f"arn:aws:iam:::user/{bob}"},
         "Action": "s3:DeleteObject", "Resource": f"arn:aws:s3:::{bucket}/home/alice/*"}]}))
    assert get_bytes(b, bucket, "home/bob/theirs") == b"bob's"
    b.put_object(Bucket=bucket, Key="home/bob/more", Body=b"more")
    b.delete_object(Bucket=bucket, Key="home/bob/more")
    assert_missing(s3, bucket, "home/bob/more")
    # The bucket policy's Deny wins over its own Allow and over an identity Allow.
    put_policy(tessera, tmp_path, bob, {"Statement": [
        {"Effect": "Allow", "Action": "s3:*", "Resource": "*"}]})
    refused(lambda: b.delete_object(Bucket=bucket, Key="home/alice/mine"))
    assert get_bytes(s3, bucket, "home/alice/mine") == b"alice's"
    # An identity Deny wins over the bucket policy's Allow.
    put_policy(tessera, tmp_path, bob, {"Statement": [
        {"Effect": "Deny", "Action": "s3:GetObject", "Resource": f"arn:aws:s3:::{bucket}/home/bob/*"}]})
    refused(lambda: b.get_object(Bucket=bucket, Key="home/bob/theirs"))
    b.put_object(Bucket=bucket, Key="home/bob/still", Body=b"still allowed")
    assert get_bytes(s3, bucket, "home/bob/still") == b"still allowed"
    # Another user is not named by the bucket policy: nothing.
    _, ak2, sk2 = new_user(tessera, "carol")
    refused(lambda: client_of(tessera, ak2, sk2).get_object(Bucket=bucket, Key="home/bob/theirs"))


def test_a_disabled_or_deleted_key_is_refused_at_once(tessera, s3, tmp_path):
    bucket, _ = two_buckets(s3)
    name, ak, sk = new_user(tessera, "dave")
    put_policy(tessera, tmp_path, name, {"Statement": [
        {"Effect": "Allow", "Action": "s3:GetObject", "Resource": f"arn:aws:s3:::{bucket}/*"}]})
    u = client_of(tessera, ak, sk)
    assert get_bytes(u, bucket, "home/alice/mine") == b"alice's"
    cli(tessera, "key", "disable", name, ak)
    refused(lambda: u.get_object(Bucket=bucket, Key="home/alice/mine"), "InvalidAccessKeyId", 403)
    listed = {x["name"]: x for x in json.loads(cli(tessera, "list").stdout)}
    assert listed[name]["keys"] == [{"access_key": ak, "status": "inactive",
                                     "created_ms": listed[name]["keys"][0]["created_ms"]}]
    assert sk not in cli(tessera, "list").stdout, "a listing never shows a secret"
    cli(tessera, "key", "enable", name, ak)
    assert get_bytes(u, bucket, "home/alice/mine") == b"alice's"
    # A second key works alongside; deleting the first leaves the second.
    k2 = json.loads(cli(tessera, "key", "create", name).stdout)
    u2 = client_of(tessera, k2["access_key"], k2["secret_key"])
    cli(tessera, "key", "delete", name, ak)
    refused(lambda: u.get_object(Bucket=bucket, Key="home/alice/mine"), "InvalidAccessKeyId", 403)
    assert get_bytes(u2, bucket, "home/alice/mine") == b"alice's"
    # Presigned URLs of a deleted user stop working too.
    url = u2.generate_presigned_url("get_object", Params={"Bucket": bucket, "Key": "home/alice/mine"})
    cli(tessera, "delete", name)
    refused(lambda: u2.get_object(Bucket=bucket, Key="home/alice/mine"), "InvalidAccessKeyId", 403)
    import urllib.error

    from test_boto3 import no_proxy_opener
    with pytest.raises(urllib.error.HTTPError) as e:
        no_proxy_opener().open(url, timeout=30)
    assert e.value.code == 403
    assert name not in [x["name"] for x in json.loads(cli(tessera, "list").stdout)]
    r = cli(tessera, "delete", name, check=False)
    assert r.returncode != 0 and "NoSuchEntity" in r.stderr, r.stderr


def test_only_the_root_user_reaches_the_admin_api(tessera, tmp_path):
    name, ak, sk = new_user(tessera, "eve")
    put_policy(tessera, tmp_path, name, {"Statement": [{"Effect": "Allow", "Action": "s3:*", "Resource": "*"}]})
    for args in (["list"], ["create", f"x{name}"], ["key", "create", name], ["policy", "get", name]):
        r = cli(tessera, *args, access_key=ak, secret_key=sk, check=False)
        assert r.returncode != 0 and "AccessDenied" in r.stderr, (args, r.stderr)
    assert f"x{name}" not in [x["name"] for x in json.loads(cli(tessera, "list").stdout)]
    keys = [x for x in json.loads(cli(tessera, "list").stdout) if x["name"] == name][0]["keys"]
    assert len(keys) == 1
    # Bad input is refused with an S3 error.
    r = cli(tessera, "create", "no/slashes", check=False)
    assert r.returncode != 0 and "InvalidArgument" in r.stderr, r.stderr
    r = cli(tessera, "create", name, check=False)
    assert r.returncode != 0 and "EntityAlreadyExists" in r.stderr, r.stderr


def test_users_and_keys_survive_a_restart(tessera_factory, tmp_path):
    server = tessera_factory()
    s3 = boto3_client(server.endpoint)
    bucket = unique_bucket_name("usr")
    s3.create_bucket(Bucket=bucket)
    s3.put_object(Bucket=bucket, Key="k", Body=b"kept")
    name, ak, sk = new_user(server, "frank")
    put_policy(server, tmp_path, name, {"Statement": [
        {"Effect": "Allow", "Action": "s3:GetObject", "Resource": f"arn:aws:s3:::{bucket}/*"}]})
    gone, gone_ak, gone_sk = new_user(server, "gone")
    cli(server, "delete", gone)
    k2 = json.loads(cli(server, "key", "create", name).stdout)
    cli(server, "key", "disable", name, k2["access_key"])
    server.restart()
    assert get_bytes(client_of(server, ak, sk), bucket, "k") == b"kept"
    refused(lambda: client_of(server, ak, sk).put_object(Bucket=bucket, Key="k", Body=b"x"))
    refused(lambda: client_of(server, k2["access_key"], k2["secret_key"]).get_object(Bucket=bucket, Key="k"),
            "InvalidAccessKeyId", 403)
    refused(lambda: client_of(server, gone_ak, gone_sk).get_object(Bucket=bucket, Key="k"),
            "InvalidAccessKeyId", 403)
    assert get_bytes(s3, bucket, "k") == b"kept"
