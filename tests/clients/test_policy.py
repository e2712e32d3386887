"""Bucket policies: stored and returned as sent, enforced for anonymous callers and for the root
user's explicit denies, kept across a restart, gone with their bucket; the admin API is never
reachable by a policy. Every refusal is checked to have changed nothing."""

from __future__ import annotations

import json
import urllib.error
import urllib.request

import pytest
from botocore import UNSIGNED
from botocore.config import Config
from botocore.exceptions import ClientError

from conftest import boto3_client, unique_bucket_name
from test_boto3 import assert_missing, error_of, get_bytes, no_proxy_opener


def anonymous(endpoint):
    import boto3

    return boto3.session.Session().client(
        "s3", endpoint_url=endpoint.url, region_name=endpoint.region,
        config=Config(signature_version=UNSIGNED, s3={"addressing_style": "path"},
                      retries={"max_attempts": 1, "mode": "standard"}),
    )


def public_read(bucket: str, prefix: str) -> str:
    return json.dumps({
        "Version": "2012-10-17",
        "Statement": [{"Sid": "PublicRead", "Effect": "Allow", "Principal": "*",
                       "Action": "s3:GetObject", "Resource": f"arn:aws:s3:::{bucket}/{prefix}*"}],
    })


def test_policy_put_get_delete_and_malformed_ones_are_refused(s3, bucket):
    with pytest.raises(ClientError) as e:
        s3.get_bucket_policy(Bucket=bucket)
    assert error_of(e) == ("NoSuchBucketPolicy", 404)
    doc = public_read(bucket, "pub/")
    s3.put_bucket_policy(Bucket=bucket, Policy=doc)
    assert json.loads(s3.get_bucket_policy(Bucket=bucket)["Policy"]) == json.loads(doc)
    for bad in [
        "not json",
        json.dumps({"Statement": [{"Effect": "Allow", "Action": "s3:GetObject",
                                   "Resource": f"arn:aws:s3:::{bucket}/*"}]}),  # no Principal
        json.dumps({"Statement": [{"Effect": "Allow", "Principal": "*", "Action": "s3:GetObject",
                                   "Resource": "arn:aws:s3:::another-bucket/*"}]}),
        json.dumps({"Statement": [{"Effect": "Allow", "Principal": "*", "Action": "s3:GetObject",
                                   "Resource": f"arn:aws:s3:::{bucket}/*",
                                   "Condition": {"StringEquals": {"aws:UnknownKey": "x"}}}]}),
    ]:
        with pytest.raises(ClientError) as e:
            s3.put_bucket_policy(Bucket=bucket, Policy=bad)
        assert error_of(e) == ("MalformedPolicy", 400), bad
    # The refused ones changed nothing.
    assert json.loads(s3.get_bucket_policy(Bucket=bucket)["Policy"]) == json.loads(doc)
    s3.delete_bucket_policy(Bucket=bucket)
    with pytest.raises(ClientError) as e:
        s3.get_bucket_policy(Bucket=bucket)
    assert error_of(e) == ("NoSuchBucketPolicy", 404)
    with pytest.raises(ClientError) as e:
        s3.put_bucket_policy(Bucket=unique_bucket_name("none"), Policy=doc)
    assert error_of(e) == ("NoSuchBucket", 404)


def test_anonymous_callers_get_exactly_what_the_policy_allows(tessera, s3, bucket):
    anon = anonymous(tessera.endpoint)
    s3.put_object(Bucket=bucket, Key="pub/a", Body=b"public bytes")
    s3.put_object(Bucket=bucket, Key="private/b", Body=b"secret bytes")
    # No policy: nothing.
    with pytest.raises(ClientError) as e:
        anon.get_object(Bucket=bucket, Key="pub/a")
    assert error_of(e) == ("AccessDenied", 403)
    s3.put_bucket_policy(Bucket=bucket, Policy=public_read(bucket, "pub/"))
    assert anon.get_object(Bucket=bucket, Key="pub/a")["Body"].read() == b"public bytes"
    with no_proxy_opener().open(f"{tessera.url}/{bucket}/pub/a", timeout=30) as r:
        assert r.read() == b"public bytes"
    for call in [
        lambda: anon.get_object(Bucket=bucket, Key="private/b"),
        lambda: anon.put_object(Bucket=bucket, Key="pub/new", Body=b"x"),
        lambda: anon.delete_object(Bucket=bucket, Key="pub/a"),
        lambda: anon.list_objects_v2(Bucket=bucket),
        lambda: anon.get_bucket_policy(Bucket=bucket),
        lambda: anon.delete_bucket_policy(Bucket=bucket),
        lambda: anon.copy_object(Bucket=bucket, Key="pub/copy", CopySource={"Bucket": bucket, "Key": "private/b"}),
        lambda: anon.list_buckets(),
        lambda: anon.create_bucket(Bucket=unique_bucket_name("anon")),
    ]:
        with pytest.raises(ClientError) as e:
            call()
        assert error_of(e)[1] == 403, error_of(e)
    assert_missing(s3, bucket, "pub/new")
    assert_missing(s3, bucket, "pub/copy")
    assert get_bytes(s3, bucket, "pub/a") == b"public bytes"
    # The admin API is the root user's alone, whatever a policy says.
    with pytest.raises(urllib.error.HTTPError) as e:
        no_proxy_opener().open(f"{tessera.url}/_tessera/status", timeout=30)
    assert e.value.code == 403


def test_an_explicit_deny_binds_the_root_user_but_never_locks_it_out(s3, bucket):
    s3.put_object(Bucket=bucket, Key="keep/a", Body=b"kept")
    s3.put_object(Bucket=bucket, Key="keep/b", Body=b"kept too")
    s3.put_object(Bucket=bucket, Key="tmp/c", Body=b"scratch")
    s3.put_bucket_policy(Bucket=bucket, Policy=json.dumps({"Statement": [{
        "Effect": "Deny", "Principal": "*", "Action": ["s3:DeleteObject", "s3:PutObject"],
        "Resource": f"arn:aws:s3:::{bucket}/keep/*"}]}))
    for call in [lambda: s3.delete_object(Bucket=bucket, Key="keep/a"),
                 lambda: s3.put_object(Bucket=bucket, Key="keep/a", Body=b"overwritten")]:
        with pytest.raises(ClientError) as e:
            call()
        assert error_of(e) == ("AccessDenied", 403)
    # DeleteObjects answers per key: the denied ones fail, the rest go.
    out = s3.delete_objects(Bucket=bucket, Delete={"Objects": [{"Key": "keep/b"}, {"Key": "tmp/c"}]})
    assert [d["Key"] for d in out.get("Deleted", [])] == ["tmp/c"]
    assert [(x["Key"], x["Code"]) for x in out.get("Errors", [])] == [("keep/b", "AccessDenied")]
    assert get_bytes(s3, bucket, "keep/a") == b"kept"
    assert get_bytes(s3, bucket, "keep/b") == b"kept too"
    assert_missing(s3, bucket, "tmp/c")
    # Reads are not denied; and the owner can always remove the policy.
    s3.put_object(Bucket=bucket, Key="other", Body=b"fine")
    s3.delete_bucket_policy(Bucket=bucket)
    s3.delete_object(Bucket=bucket, Key="keep/a")
    assert_missing(s3, bucket, "keep/a")


def test_a_policy_survives_a_restart_and_dies_with_its_bucket(tessera_factory):
    server = tessera_factory()
    s3 = boto3_client(server.endpoint)
    name = unique_bucket_name("pol")
    s3.create_bucket(Bucket=name)
    s3.put_object(Bucket=name, Key="pub/x", Body=b"hello")
    s3.put_bucket_policy(Bucket=name, Policy=public_read(name, "pub/"))
    server.restart()
    s3 = boto3_client(server.endpoint)
    assert json.loads(s3.get_bucket_policy(Bucket=name)["Policy"]) == json.loads(public_read(name, "pub/"))
    assert anonymous(server.endpoint).get_object(Bucket=name, Key="pub/x")["Body"].read() == b"hello"
    s3.delete_object(Bucket=name, Key="pub/x")
    s3.delete_bucket(Bucket=name)
    s3.create_bucket(Bucket=name)
    with pytest.raises(ClientError) as e:
        s3.get_bucket_policy(Bucket=name)
    assert error_of(e) == ("NoSuchBucketPolicy", 404)
    s3.put_object(Bucket=name, Key="pub/x", Body=b"again")
    with pytest.raises(ClientError) as e:
        anonymous(server.endpoint).get_object(Bucket=name, Key="pub/x")
    assert error_of(e) == ("AccessDenied", 403)
