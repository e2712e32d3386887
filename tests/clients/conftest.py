"""Fixtures that run a real `tessera server` for the client-compatibility tests.

Nothing is built here: the binary comes from `TESSERA_BIN` (default `target/debug/tessera`
relative to the repository root; `scripts/test-all` builds it). Every server listens on a free
port of 127.0.0.1 only, keeps its data in a fresh temporary directory, and uses the fixed root
credentials below, passed through `TESSERA_ACCESS_KEY` / `TESSERA_SECRET_KEY`.

Fixtures:
- `tessera`: one server for the whole session (tests use their own uniquely named buckets).
- `tessera_factory`: a callable that starts an extra server (own data dir) for tests that stop,
  kill or restart it; each is stopped at the end of the test.
- `s3`: a boto3 client for `tessera` (path-style, region us-east-1, no retries).
- `bucket`: a fresh, uniquely named bucket on `tessera`.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import threading
import time
import uuid
from dataclasses import dataclass
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[2]
ACCESS_KEY = "TESSERATESTACCESSKEY"
SECRET_KEY = "tessera/test/secret/key/0123456789abcdefghij"
REGION = "us-east-1"
READY_PREFIX = "tessera ready:"
READY_TIMEOUT_S = 30.0
STOP_GRACE_S = 10.0
STDERR_TAIL_BYTES = 8000

# The clients must see only what the tests give them: no profile, config file or endpoint from
# the machine, and no proxy between them and the loopback server.
for _name in list(os.environ):
    if _name.startswith("AWS_") and _name != "AWS_CA_BUNDLE":
        del os.environ[_name]
os.environ["AWS_CONFIG_FILE"] = os.devnull
os.environ["AWS_SHARED_CREDENTIALS_FILE"] = os.devnull
os.environ["AWS_EC2_METADATA_DISABLED"] = "true"
for _name in ("HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY", "http_proxy", "https_proxy", "all_proxy"):
    os.environ.pop(_name, None)
os.environ["NO_PROXY"] = os.environ["no_proxy"] = "127.0.0.1,localhost"


def tessera_bin() -> Path:
    """The server binary: `TESSERA_BIN`, else `target/debug/tessera` under the repo root."""
    configured = os.environ.get("TESSERA_BIN")
    path = Path(configured) if configured else REPO_ROOT / "target" / "debug" / "tessera"
    if not path.is_absolute():
        path = REPO_ROOT / path
    if not (path.is_file() and os.access(path, os.X_OK)):
        pytest.fail(
            f"tessera binary not found at {path}: build it with 'cargo build -p tessera' "
            "(or run scripts/test-all), or point TESSERA_BIN at it",
            pytrace=False,
        )
    return path


def free_loopback_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@dataclass(frozen=True)
class Endpoint:
    url: str
    access_key: str
    secret_key: str
    region: str = REGION


class TesseraServer:
    """One `tessera server` process on a fixed data dir; can be stopped and started again."""

    def __init__(self, data_dir: Path, log_dir: Path, extra_args: list[str] | None = None,
                 env_credentials: bool = True):
        # env_credentials=False starts it without TESSERA_ACCESS_KEY / TESSERA_SECRET_KEY, so it
        # generates (or reloads) its own pair; `printed_credentials()` reads them off stdout.
        self.env_credentials = env_credentials
        self.data_dir = data_dir
        self.log_dir = log_dir
        self.extra_args = list(extra_args or [])
        self.port = free_loopback_port()
        self.proc: subprocess.Popen | None = None
        self.ready_line: str | None = None
        self.stdout_lines: list[str] = []
        self.starts = 0
        self._stderr_path: Path | None = None
        self._reader: threading.Thread | None = None

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"

    @property
    def scheme(self) -> str:
        return "https" if "--tls-cert" in self.extra_args else "http"

    @property
    def endpoint(self) -> Endpoint:
        if not self.env_credentials:
            access, secret = self.printed_credentials()
            return Endpoint(f"{self.scheme}://{self.address}", access, secret)
        return Endpoint(f"{self.scheme}://{self.address}", ACCESS_KEY, SECRET_KEY)

    def printed_credentials(self) -> tuple[str, str]:
        """The root key pair as printed before the ready line (AWS_ACCESS_KEY_ID=... lines)."""
        import re

        text = "".join(self.stdout_lines)
        access = re.search(r"AWS_ACCESS_KEY_ID=(\S+)", text)
        secret = re.search(r"AWS_SECRET_ACCESS_KEY=(\S+)", text)
        assert access, f"no access key printed on stdout:\n{text}"
        if secret is None:
            # Printed only when generated; a restart names the file that holds it.
            assert "not printed again" in text, f"no secret and no word of where it is:\n{text}"
            stored = (self.data_dir / "credentials").read_text()
            secret = re.search(r"secret_key=(\S+)", stored)
            assert secret, f"no secret_key in {self.data_dir / 'credentials'}"
        return access.group(1), secret.group(1)

    @property
    def url(self) -> str:
        return self.endpoint.url

    def stderr_tail(self) -> str:
        if self._stderr_path is None or not self._stderr_path.exists():
            return ""
        data = self._stderr_path.read_bytes()[-STDERR_TAIL_BYTES:]
        return data.decode("utf-8", "replace")

    def describe(self) -> str:
        return (
            f"tessera on {self.address}, data {self.data_dir}\n"
            f"--- stdout ---\n{''.join(self.stdout_lines)[-STDERR_TAIL_BYTES:]}"
            f"--- stderr (tail, full log {self._stderr_path}) ---\n{self.stderr_tail()}"
        )

    def start(self) -> "TesseraServer":
        assert self.proc is None, "server already running"
        self.starts += 1
        self.log_dir.mkdir(parents=True, exist_ok=True)
        self._stderr_path = self.log_dir / f"stderr-{self.starts}.log"
        env = dict(os.environ)
        env.pop("TESSERA_ACCESS_KEY", None)
        env.pop("TESSERA_SECRET_KEY", None)
        if self.env_credentials:
            env["TESSERA_ACCESS_KEY"] = ACCESS_KEY
            env["TESSERA_SECRET_KEY"] = SECRET_KEY
        env.setdefault("RUST_BACKTRACE", "1")
        cmd = [str(tessera_bin()), "server", "--listen", self.address, "--data", str(self.data_dir), "--segment-mib", "16"]
        cmd += self.extra_args
        stderr = open(self._stderr_path, "wb")
        try:
            self.proc = subprocess.Popen(
                cmd, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=stderr, env=env
            )
        finally:
            stderr.close()
        ready = threading.Event()
        self.ready_line = None
        self.stdout_lines = []
        proc = self.proc

        def read_stdout() -> None:
            # Drains stdout for the whole life of the process so the server never blocks on it.
            for raw in proc.stdout:
                line = raw.decode("utf-8", "replace")
                self.stdout_lines.append(line)
                if self.ready_line is None and line.startswith(READY_PREFIX):
                    self.ready_line = line.rstrip("\n")
                    ready.set()
            ready.set()

        self._reader = threading.Thread(target=read_stdout, daemon=True)
        self._reader.start()
        if not ready.wait(READY_TIMEOUT_S) or self.ready_line is None:
            code = proc.poll()
            state = f"exited with code {code}" if code is not None else "still running"
            self._force_kill()
            pytest.fail(
                f"tessera did not print a '{READY_PREFIX}' line within {READY_TIMEOUT_S:.0f} s "
                f"({state}); command: {' '.join(cmd)}\n{self.describe()}",
                pytrace=False,
            )
        if str(self.port) not in self.ready_line:
            self._force_kill()
            pytest.fail(
                f"ready line does not name the listen address {self.address}: {self.ready_line!r}",
                pytrace=False,
            )
        return self

    def stop(self) -> int:
        """SIGTERM, wait up to 10 s, then SIGKILL. Returns the exit code (negative = signal)."""
        if self.proc is None:
            return 0
        proc = self.proc
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(STOP_GRACE_S)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        return self._reap(proc)

    def kill(self) -> int:
        """SIGKILL at once (a crash), for durability tests."""
        if self.proc is None:
            return 0
        proc = self.proc
        self._force_kill()
        return self._reap(proc)

    def restart(self, graceful: bool = True) -> int:
        """Stop (SIGTERM, or SIGKILL if not graceful) and start again on the same data dir and
        port. Returns the exit code of the stopped process."""
        code = self.stop() if graceful else self.kill()
        self.start()
        return code

    def _force_kill(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()

    def _reap(self, proc: subprocess.Popen) -> int:
        if self._reader is not None:
            self._reader.join(5)
        self.proc = None
        return proc.returncode


@pytest.fixture(scope="session")
def tessera(tmp_path_factory):
    base = tmp_path_factory.mktemp("tessera-session")
    server = TesseraServer(base / "data", base / "logs").start()
    yield server
    code = server.stop()
    if code != 0:
        print(f"warning: session tessera exited with code {code} on SIGTERM\n{server.describe()}")


@pytest.fixture
def tessera_factory(tmp_path):
    servers: list[TesseraServer] = []

    def start(extra_args: list[str] | None = None, env_credentials: bool = True) -> TesseraServer:
        base = tmp_path / f"tessera-{len(servers)}"
        server = TesseraServer(base / "data", base / "logs", extra_args, env_credentials)
        servers.append(server)
        return server.start()

    yield start
    for server in servers:
        server.stop()


def boto3_client(
    endpoint: Endpoint,
    secret_key: str | None = None,
    access_key: str | None = None,
    signature_version: str = "s3v4",
    verify: str | bool | None = None,
):
    import boto3
    from botocore.config import Config

    return boto3.session.Session().client(
        "s3",
        endpoint_url=endpoint.url,
        verify=verify,
        region_name=endpoint.region,
        aws_access_key_id=access_key or endpoint.access_key,
        aws_secret_access_key=secret_key or endpoint.secret_key,
        config=Config(
            signature_version=signature_version,
            s3={"addressing_style": "path"},
            retries={"max_attempts": 1, "mode": "standard"},
            connect_timeout=10,
            read_timeout=60,
        ),
    )


@pytest.fixture(scope="session")
def s3(tessera):
    return boto3_client(tessera.endpoint)


def unique_bucket_name(tag: str = "t") -> str:
    return f"{tag}-{uuid.uuid4().hex[:20]}"


def empty_and_delete_bucket(client, name: str) -> None:
    """Best-effort cleanup: abort uploads, delete every key, delete the bucket."""
    try:
        for up in client.list_multipart_uploads(Bucket=name).get("Uploads", []):
            client.abort_multipart_upload(Bucket=name, Key=up["Key"], UploadId=up["UploadId"])
        for page in client.get_paginator("list_objects_v2").paginate(Bucket=name):
            keys = [{"Key": o["Key"]} for o in page.get("Contents", [])]
            if keys:
                client.delete_objects(Bucket=name, Delete={"Objects": keys, "Quiet": True})
        client.delete_bucket(Bucket=name)
    except Exception:  # cleanup must not hide the test's own result
        pass


@pytest.fixture
def bucket(s3):
    name = unique_bucket_name()
    s3.create_bucket(Bucket=name)
    yield name
    empty_and_delete_bucket(s3, name)


def client_failure_hint(server: TesseraServer) -> str:
    """Text to append to an assertion so a failure shows what the server logged."""
    return "\n" + server.describe()


@pytest.hookimpl(tryfirst=True, hookwrapper=True)
def pytest_runtest_makereport(item, call):
    # On a failed test, attach the tail of the session server's stderr to the report.
    outcome = yield
    report = outcome.get_result()
    if report.failed and "tessera" in getattr(item, "funcargs", {}):
        server = item.funcargs["tessera"]
        report.sections.append(("tessera stderr (tail)", server.stderr_tail()[-3000:]))


def wait_until(predicate, timeout_s: float = 5.0, step_s: float = 0.05) -> bool:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(step_s)
    return predicate()


def require_tool(name: str, env_var: str, candidates: list[str]) -> str:
    """The first candidate that runs `--version` (pyenv shims may exist and be broken).

    Missing in CI (CI=true) is a failure; elsewhere the test is skipped with the reason."""
    import shutil

    tried = []
    configured = os.environ.get(env_var)
    paths = [configured] if configured else []
    paths += candidates
    found = shutil.which(name)
    if found:
        paths.append(found)
    for path in paths:
        if not path or not os.path.isfile(path) or not os.access(path, os.X_OK):
            continue
        try:
            out = subprocess.run(
                [path, "--version"], capture_output=True, timeout=60, stdin=subprocess.DEVNULL
            )
        except (OSError, subprocess.TimeoutExpired) as e:
            tried.append(f"{path}: {e}")
            continue
        if out.returncode == 0:
            return path
        tried.append(f"{path}: exit {out.returncode}: {out.stderr.decode(errors='replace')[:200]}")
    reason = f"{name} not found (set {env_var}; tried {tried or paths})"
    if os.environ.get("CI"):
        pytest.fail(reason, pytrace=False)
    pytest.skip(reason)


def make_tree(root: Path, files: dict[str, int], seed: int = 1) -> dict[str, bytes]:
    """Writes files (relative path -> size) of seeded random bytes; returns path -> bytes."""
    import random

    contents = {}
    for rel, size in files.items():
        data = random.Random(f"{seed}:{rel}:{size}").randbytes(size)
        path = root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)
        contents[rel] = data
    return contents


def read_tree(root: Path) -> dict[str, bytes]:
    """Every regular file under root as relative POSIX path -> bytes."""
    return {
        p.relative_to(root).as_posix(): p.read_bytes()
        for p in sorted(root.rglob("*"))
        if p.is_file()
    }


def tool_env(extra: dict[str, str]) -> dict[str, str]:
    """The environment for a client subprocess: ours, minus anything that could configure an AWS
    client or rclone behind the test's back, plus `extra`."""
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("AWS_", "RCLONE_", "PYTHON")) and k not in ("VIRTUAL_ENV",)
    }
    env.update(extra)
    return env


def run_tool(cmd: list[str], env: dict[str, str], timeout_s: float = 300, check: bool = True,
             cwd: Path | None = None) -> subprocess.CompletedProcess:
    """Runs a client command; on failure the assertion shows the command, exit code and output."""
    proc = subprocess.run(
        cmd, env=env, capture_output=True, text=True, timeout=timeout_s,
        stdin=subprocess.DEVNULL, cwd=cwd,
    )
    if check and proc.returncode != 0:
        pytest.fail(
            f"command failed (exit {proc.returncode}): {' '.join(cmd)}\n"
            f"--- stdout ---\n{proc.stdout[-6000:]}\n--- stderr ---\n{proc.stderr[-6000:]}",
            pytrace=False,
        )
    return proc
