"""HTTPS: `tessera server --tls-cert/--tls-key` serves S3 over TLS to boto3 and the AWS CLI,
refuses plain HTTP on that port, and re-reads its certificate on SIGHUP without dropping the
listener (a bad renewal keeps the old certificate).

Certificates are made per test with the `openssl` command (a throwaway CA signing a
certificate for 127.0.0.1), so each check verifies the chain, never `verify=False`."""

from __future__ import annotations

import shutil
import signal
import socket
import ssl
import subprocess
from pathlib import Path

import pytest
from botocore.exceptions import SSLError

from conftest import boto3_client, require_tool, run_tool, tool_env, unique_bucket_name, wait_until


def openssl(*args: str) -> None:
    subprocess.run(["openssl", *args], check=True, capture_output=True, timeout=60)


def make_ca(d: Path, name: str) -> tuple[Path, Path]:
    key, crt = d / f"{name}-ca.key", d / f"{name}-ca.pem"
    openssl("req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes",
            "-keyout", str(key), "-out", str(crt), "-days", "2", "-subj", f"/CN={name} test CA")
    return crt, key


def make_leaf(d: Path, name: str, ca: tuple[Path, Path]) -> tuple[Path, Path]:
    key, csr, crt, ext = d / f"{name}.key", d / f"{name}.csr", d / f"{name}.pem", d / f"{name}.ext"
    openssl("req", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes",
            "-keyout", str(key), "-out", str(csr), "-subj", f"/CN={name}")
    ext.write_text("subjectAltName=IP:127.0.0.1,DNS:localhost\n")
    openssl("x509", "-req", "-in", str(csr), "-CA", str(ca[0]), "-CAkey", str(ca[1]), "-CAcreateserial",
            "-out", str(crt), "-days", "2", "-extfile", str(ext))
    return crt, key


def presented_issuer(port: int, ca: Path) -> str | None:
    """The issuer CN of the certificate the server presents, if it verifies against `ca`."""
    ctx = ssl.create_default_context(cafile=str(ca))
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=10) as raw:
            with ctx.wrap_socket(raw, server_hostname="127.0.0.1") as tls:
                cert = tls.getpeercert()
    except ssl.SSLError:
        return None
    issuer = dict(x[0] for x in cert["issuer"])
    return issuer["commonName"]


@pytest.fixture
def pki(tmp_path):
    if shutil.which("openssl") is None:
        pytest.fail("the openssl command is needed (Debian: apt-get install openssl)", pytrace=False)
    d = tmp_path / "pki"
    d.mkdir()
    a = make_ca(d, "alpha")
    b = make_ca(d, "beta")
    return {"dir": d, "ca_a": a[0], "ca_b": b[0], "leaf_a": make_leaf(d, "leaf-a", a), "leaf_b": make_leaf(d, "leaf-b", b)}


def test_https_serves_s3_verifies_and_refuses_plain_http(tessera_factory, pki, tmp_path):
    live_cert, live_key = pki["dir"] / "live.pem", pki["dir"] / "live.key"
    shutil.copy(pki["leaf_a"][0], live_cert)
    shutil.copy(pki["leaf_a"][1], live_key)
    server = tessera_factory(["--tls-cert", str(live_cert), "--tls-key", str(live_key)])
    assert server.ready_line.startswith("tessera ready: https://"), server.ready_line

    s3 = boto3_client(server.endpoint, verify=str(pki["ca_a"]))
    bucket = unique_bucket_name("tls")
    s3.create_bucket(Bucket=bucket)
    body = bytes(range(256)) * 4096
    s3.put_object(Bucket=bucket, Key="over-tls", Body=body)
    assert s3.get_object(Bucket=bucket, Key="over-tls")["Body"].read() == body

    # A client trusting another CA refuses the server: the chain is really checked.
    stranger = boto3_client(server.endpoint, verify=str(pki["ca_b"]))
    with pytest.raises(SSLError):
        stranger.list_buckets()

    # Plain HTTP on the TLS port is not served as S3.
    with socket.create_connection(("127.0.0.1", server.port), timeout=10) as raw:
        raw.sendall(b"GET / HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
        raw.settimeout(15)
        try:
            answer = raw.recv(4096)
        except (ConnectionResetError, socket.timeout):
            answer = b""
    assert not answer.startswith(b"HTTP/1.1 200"), answer

    # The AWS CLI over HTTPS with the CA bundle.
    env = tool_env({"AWS_ACCESS_KEY_ID": server.endpoint.access_key,
                    "AWS_SECRET_ACCESS_KEY": server.endpoint.secret_key,
                    "AWS_DEFAULT_REGION": server.endpoint.region})
    aws = require_tool("aws", "TESSERA_AWS_CLI", ["/usr/bin/aws", "/usr/local/bin/aws"])
    out = run_tool([aws, "--endpoint-url", server.endpoint.url, "--ca-bundle", str(pki["ca_a"]),
                    "s3api", "head-object", "--bucket", bucket, "--key", "over-tls"], env)
    assert '"ContentLength": 1048576' in out.stdout, out.stdout

    # SIGHUP with a key that does not match the certificate: refused, the old one stays.
    shutil.copy(pki["leaf_b"][0], live_cert)
    server.proc.send_signal(signal.SIGHUP)
    assert wait_until(lambda: "still presenting the previous certificate" in server.stderr_tail(), 10), \
        server.stderr_tail()
    assert presented_issuer(server.port, pki["ca_a"]) == "alpha test CA"
    s3.head_object(Bucket=bucket, Key="over-tls")

    # SIGHUP with a whole new pair: new connections present it, and the data is all there.
    shutil.copy(pki["leaf_b"][1], live_key)
    server.proc.send_signal(signal.SIGHUP)
    assert wait_until(lambda: presented_issuer(server.port, pki["ca_b"]) == "beta test CA", 10)
    assert presented_issuer(server.port, pki["ca_a"]) is None
    renewed = boto3_client(server.endpoint, verify=str(pki["ca_b"]))
    assert renewed.get_object(Bucket=bucket, Key="over-tls")["Body"].read() == body
