"""Amazon's DynamoDB Local on 127.0.0.1, for the integration tests.

The emulator (DynamoDB Local 1.25.1, a Java server) ships inside the npm package
amplify-dynamodb-simulator@2.9.30 as emulator/DynamoDBLocal.jar and emulator/DynamoDBLocal_lib/.
On first use `npm pack` fetches that package and the emulator is unpacked into CACHE_DIR; later
runs need no network. Nothing is written into the repository.

`started_server` is the entry point for tests: it skips outside CI when a tool is missing, so a
machine without Java still runs the rest of the suite, and fails in CI (CI=true) instead.

DynamoDB Local's own launcher binds every interface and has no host option. A small Java class,
compiled here with javac, builds the server from the same command-line arguments, sets its Jetty
connector's host to 127.0.0.1 and then starts it.
"""

import contextlib
import os
import shutil
import socket
import subprocess
import tarfile
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import boto3
import pytest
from botocore.client import BaseClient
from botocore.config import Config
from botocore.exceptions import BotoCoreError, ClientError

from tests.support.stack import free_port

NPM_PACKAGE = "amplify-dynamodb-simulator@2.9.30"
CACHE_DIR = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "expense-categoriser" / "dynamodb-local"
EMULATOR_DIR = CACHE_DIR / "amplify-dynamodb-simulator-2.9.30"
LAUNCHER_CLASS = "LoopbackDynamoDBLocal"
HOST = "127.0.0.1"
# DynamoDB Local accepts any region and any credentials whose access key id has only letters
# and digits: 1.25.1 rejects "dynamodb-local" with UnrecognizedClientException. Fake credentials
# keep boto3 from looking for real ones.
FAKE_ACCESS_KEY_ID = "dynamodblocal"
FAKE_SECRET_ACCESS_KEY = "dynamodblocal"
DEFAULT_REGION = "eu-west-2"

NPM_PACK_TIMEOUT_SECONDS = 300
JAVAC_TIMEOUT_SECONDS = 120
START_TIMEOUT_SECONDS = 30
STOP_TIMEOUT_SECONDS = 10

LAUNCHER_SOURCE = """\
import com.amazonaws.services.dynamodbv2.local.main.ServerRunner;
import com.amazonaws.services.dynamodbv2.local.server.DynamoDBProxyServer;
import java.lang.reflect.Field;
import org.eclipse.jetty.server.Connector;
import org.eclipse.jetty.server.Server;
import org.eclipse.jetty.server.ServerConnector;

/** Starts DynamoDB Local with its Jetty connector bound to 127.0.0.1 only. */
public final class LoopbackDynamoDBLocal {
    public static void main(String[] args) throws Exception {
        DynamoDBProxyServer proxy = ServerRunner.createServerFromCommandLineArgs(args);
        // DynamoDBProxyServer keeps its Jetty server in a private field and exposes no host setting.
        Field field = DynamoDBProxyServer.class.getDeclaredField("server");
        field.setAccessible(true);
        Server server = (Server) field.get(proxy);
        for (Connector connector : server.getConnectors()) {
            ((ServerConnector) connector).setHost("127.0.0.1");
        }
        proxy.start();
        proxy.join();
    }
}
"""


class DynamoDBLocalUnavailable(RuntimeError):
    """Java, javac or npm is missing, so DynamoDB Local cannot be installed or started."""


def missing_tools() -> list[str]:
    """Return the programs this module needs that are not on PATH (npm only until cached)."""
    needed = ["java", "javac"]
    if not (EMULATOR_DIR / "DynamoDBLocal.jar").is_file():
        needed.append("npm")
    return [tool for tool in needed if shutil.which(tool) is None]


def install() -> Path:
    """Unpack the emulator into CACHE_DIR unless it is there already; return its folder."""
    if (EMULATOR_DIR / "DynamoDBLocal.jar").is_file():
        return EMULATOR_DIR
    if shutil.which("npm") is None:
        raise DynamoDBLocalUnavailable(f"npm is missing, so {NPM_PACKAGE} cannot be fetched into {CACHE_DIR}.")

    CACHE_DIR.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=CACHE_DIR) as scratch:
        subprocess.run(
            ["npm", "pack", NPM_PACKAGE, "--pack-destination", scratch, "--silent"],
            check=True,
            timeout=NPM_PACK_TIMEOUT_SECONDS,
            capture_output=True,
        )
        tarball = next(Path(scratch).glob("*.tgz"))
        unpacked = Path(scratch) / "unpacked"
        with tarfile.open(tarball) as archive:
            members = [member for member in archive.getmembers() if member.name.startswith("package/emulator/")]
            archive.extractall(unpacked, members=members, filter="data")
        # A rename is atomic, so a concurrent run finds either no emulator or a whole one.
        try:
            (unpacked / "package" / "emulator").rename(EMULATOR_DIR)
        except OSError:
            if not (EMULATOR_DIR / "DynamoDBLocal.jar").is_file():
                raise
    return EMULATOR_DIR


def compile_launcher(emulator_dir: Path) -> Path:
    """Compile the loopback launcher next to the emulator unless done; return its class folder."""
    classes = emulator_dir.parent / f"{emulator_dir.name}-launcher"
    if (classes / f"{LAUNCHER_CLASS}.class").is_file():
        return classes
    if shutil.which("javac") is None:
        raise DynamoDBLocalUnavailable("javac is missing, so the DynamoDB Local launcher cannot be compiled.")

    with tempfile.TemporaryDirectory(dir=emulator_dir.parent) as scratch:
        source = Path(scratch) / f"{LAUNCHER_CLASS}.java"
        source.write_text(LAUNCHER_SOURCE)
        classpath = f"{emulator_dir / 'DynamoDBLocal.jar'}{os.pathsep}{emulator_dir / 'DynamoDBLocal_lib' / '*'}"
        output = Path(scratch) / "classes"
        subprocess.run(
            ["javac", "-cp", classpath, "-d", str(output), str(source)],
            check=True,
            timeout=JAVAC_TIMEOUT_SECONDS,
            capture_output=True,
        )
        try:
            output.rename(classes)
        except OSError:
            if not (classes / f"{LAUNCHER_CLASS}.class").is_file():
                raise
    return classes


class DynamoDBLocalServer:
    """One in-memory DynamoDB Local process on a free loopback port; stop() ends it by PID."""

    def __init__(self, log_path: Path):
        self.log_path = log_path
        self.process: subprocess.Popen | None = None
        self.port: int | None = None

    @property
    def endpoint_url(self) -> str:
        return f"http://{HOST}:{self.port}"

    def client_env(self, *, region: str = DEFAULT_REGION) -> dict[str, str]:
        """Return environment variables that point a process's boto3 DynamoDB client at this server.

        The credentials are fake and instance-metadata lookups are off, so a client that missed
        the endpoint fails instead of finding real credentials.
        """
        return {
            "AWS_REGION": region,
            "AWS_DEFAULT_REGION": region,
            "AWS_ENDPOINT_URL_DYNAMODB": self.endpoint_url,
            "AWS_ACCESS_KEY_ID": FAKE_ACCESS_KEY_ID,
            "AWS_SECRET_ACCESS_KEY": FAKE_SECRET_ACCESS_KEY,
            "AWS_EC2_METADATA_DISABLED": "true",
        }

    def start(self) -> None:
        missing = missing_tools()
        if missing:
            raise DynamoDBLocalUnavailable(f"DynamoDB Local needs {', '.join(missing)} on PATH.")
        emulator_dir = install()
        launcher = compile_launcher(emulator_dir)

        self.port = free_port()
        command = [
            "java",
            # An IPv4 socket, so the listener shows as 127.0.0.1 rather than ::ffff:127.0.0.1.
            "-Djava.net.preferIPv4Stack=true",
            f"-Djava.library.path={emulator_dir / 'DynamoDBLocal_lib'}",
            "-cp",
            f"{launcher}{os.pathsep}{emulator_dir / 'DynamoDBLocal.jar'}",
            LAUNCHER_CLASS,
            "-inMemory",
            "-sharedDb",
            "-disableTelemetry",
            "-port",
            str(self.port),
        ]
        with self.log_path.open("wb") as log:
            self.process = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, cwd=emulator_dir)
        self._wait_until_ready()

    def _wait_until_ready(self) -> None:
        client = local_client(self.endpoint_url, read_timeout=2)
        deadline = time.monotonic() + START_TIMEOUT_SECONDS
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"DynamoDB Local exited with {self.process.returncode}: {self._log_tail()}")
            try:
                client.list_tables(Limit=1)
                return
            except BotoCoreError:
                time.sleep(0.2)
            except ClientError as exc:
                # The server is up but rejects the request (bad credentials, for one), so waiting won't help.
                self.stop()
                raise RuntimeError(f"DynamoDB Local rejected ListTables: {exc}") from exc
        self.stop()
        raise RuntimeError(f"DynamoDB Local did not answer within {START_TIMEOUT_SECONDS} s: {self._log_tail()}")

    def stop(self) -> None:
        if self.process is None or self.process.poll() is not None:
            return
        self.process.terminate()
        try:
            self.process.wait(timeout=STOP_TIMEOUT_SECONDS)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait(timeout=STOP_TIMEOUT_SECONDS)

    def _log_tail(self) -> str:
        return self.log_path.read_text(errors="replace")[-2000:]


def local_client(endpoint_url: str, *, region: str = DEFAULT_REGION, read_timeout: float = 10.0) -> BaseClient:
    """Build a boto3 DynamoDB client for a DynamoDB Local endpoint: fake credentials, one attempt per call."""
    return boto3.session.Session().client(
        "dynamodb",
        endpoint_url=endpoint_url,
        region_name=region,
        aws_access_key_id=FAKE_ACCESS_KEY_ID,
        aws_secret_access_key=FAKE_SECRET_ACCESS_KEY,
        config=Config(connect_timeout=1, read_timeout=read_timeout, retries={"max_attempts": 1}),
    )


@contextlib.contextmanager
def started_server(log_path: Path) -> Iterator[DynamoDBLocalServer]:
    """Start DynamoDB Local for a test, yield it, then stop it.

    Outside CI, a missing java, javac or npm skips the test. With CI=true it fails the test, so
    a CI image without Java cannot pass by skipping.
    """
    missing = missing_tools()
    if missing and os.environ.get("CI") != "true":
        pytest.skip(f"DynamoDB Local needs {', '.join(missing)} on PATH")
    server = DynamoDBLocalServer(log_path)
    try:
        server.start()
    except DynamoDBLocalUnavailable as exc:
        pytest.fail(f"DynamoDB Local could not start in CI: {exc}")
    try:
        yield server
    finally:
        server.stop()


def listening_addresses(port: int) -> set[str]:
    """Return the local addresses with a socket listening on this TCP port, from /proc/net."""
    addresses = set()
    for table, decode in (("/proc/net/tcp", _ipv4), ("/proc/net/tcp6", _ipv6)):
        if not os.path.exists(table):
            continue
        with open(table) as rows:
            next(rows)
            for row in rows:
                local, state = row.split()[1], row.split()[3]
                address, port_hex = local.rsplit(":", 1)
                if state == "0A" and int(port_hex, 16) == port:  # 0A is TCP_LISTEN
                    addresses.add(decode(address))
    return addresses


def _ipv4(hex_address: str) -> str:
    return socket.inet_ntop(socket.AF_INET, bytes.fromhex(hex_address)[::-1])


def _ipv6(hex_address: str) -> str:
    # /proc prints an IPv6 address as four 32-bit words, each in host (little-endian) byte order.
    raw = bytes.fromhex(hex_address)
    return socket.inet_ntop(socket.AF_INET6, b"".join(raw[i : i + 4][::-1] for i in range(0, 16, 4)))
