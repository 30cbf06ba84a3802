"""The team's shared services, run locally to try them: S3 object storage (SeaweedFS) for the DVC
remote and MLflow's artifacts, and an MLflow tracking server on PostgreSQL.

    python scripts/team_stack.py start  [--dir .stack] [--s3-port N] [--mlflow-port N] [--postgres-port N]
    python scripts/team_stack.py status [--dir .stack]
    python scripts/team_stack.py stop   [--dir .stack]

`start` prints what a clone needs (MLFLOW_TRACKING_URI, the `dvc remote` commands and the credentials
for `.dvc/config.local`); `status` prints it again. Every server listens on 127.0.0.1 only, on free
ports unless given, and keeps all its data under --dir: `postgres/` (the PostgreSQL 15 cluster, owned
by the `postgres` user when run as root), `seaweedfs/` (volumes, filer, S3 identities), `stack.json`
(ports, credentials and process ids, mode 0600) and one log per server. A second `start` with the same
--dir reuses its ports, credentials and data. Needs `pip install -r requirements.txt -r
requirements-dev.txt` (weed, psycopg, boto3) and PostgreSQL 15 (`apt-get install postgresql-15`).

Importable: tests start, restart and stop the same servers through start(), start_mlflow(),
stop_mlflow() and stop().
"""

import argparse
import contextlib
import dataclasses
import json
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

HOST = "127.0.0.1"
PG_BIN = Path(os.environ.get("TEAM_STACK_PG_BIN", "/usr/lib/postgresql/15/bin"))
BUCKET = "team"
DVC_PREFIX = "dvc"
ARTIFACTS_PREFIX = "mlflow-artifacts"
REMOTE = "team"
# SeaweedFS serves gRPC on its own ports (given explicitly below; by default HTTP port + 10000).
MAX_PORT = 55535
# Volumes are not preallocated: these only cap growth. With the defaults (8 volumes of 30 GB) the
# first `dvc push` fails with "No writable volumes".
WEED_VOLUME_MAX = 64
WEED_VOLUME_SIZE_MB = 256
WEED_INTERNAL = ["master", "master_grpc", "volume", "volume_grpc", "filer", "filer_grpc", "s3_grpc"]
START_SECONDS = {"postgres": 60, "seaweedfs": 60, "mlflow": 180}
STOP_SECONDS = 30


class StackError(RuntimeError):
    """A server would not start or stop; the message names it, its log and the fix."""


@dataclasses.dataclass
class Stack:
    dir: Path
    s3_port: int
    mlflow_port: int
    postgres_port: int
    weed_ports: dict[str, int]
    access_key: str
    secret_key: str
    db_password: str
    pids: dict[str, int] = dataclasses.field(default_factory=dict)

    @property
    def s3_endpoint(self) -> str:
        return f"http://{HOST}:{self.s3_port}"

    @property
    def tracking_uri(self) -> str:
        return f"http://{HOST}:{self.mlflow_port}"

    @property
    def dvc_url(self) -> str:
        return f"s3://{BUCKET}/{DVC_PREFIX}"

    @property
    def artifacts_destination(self) -> str:
        return f"s3://{BUCKET}/{ARTIFACTS_PREFIX}"

    @property
    def backend_store_uri(self) -> str:
        # `+psycopg`: psycopg 3 whatever SQLAlchemy's default PostgreSQL driver (psycopg2 before 2.1).
        return f"postgresql+psycopg://mlflow:{self.db_password}@{HOST}:{self.postgres_port}/mlflow"

    def path(self, *parts: str) -> Path:
        return self.dir.joinpath(*parts)

    def save(self) -> None:
        state = {k: v for k, v in dataclasses.asdict(self).items() if k != "dir"}
        file = self.path("stack.json")
        file.touch(mode=0o600, exist_ok=True)
        file.chmod(0o600)
        file.write_text(json.dumps(state, indent=2) + "\n")

    def dvc_remote_commands(self) -> list[list[str]]:
        """`dvc remote` commands for a clone: the first two go to .dvc/config (committed), the
        credentials to .dvc/config.local (git-ignored by DVC)."""
        return [["dvc", "remote", "add", "-d", "-f", REMOTE, self.dvc_url],
                ["dvc", "remote", "modify", REMOTE, "endpointurl", self.s3_endpoint],
                ["dvc", "remote", "modify", "--local", REMOTE, "access_key_id", self.access_key],
                ["dvc", "remote", "modify", "--local", REMOTE, "secret_access_key", self.secret_key]]

    def exports(self) -> str:
        dvc = [" ".join(command) for command in self.dvc_remote_commands()]
        return "\n".join([
            f"# Team stack in {self.dir}: S3 {self.s3_endpoint} (bucket {BUCKET}), MLflow {self.tracking_uri} "
            f"(PostgreSQL on {HOST}:{self.postgres_port}, artifacts in {self.artifacts_destination})",
            "# Every shell that runs stages (dvc repro, python -m src.stages...):",
            f"export MLFLOW_TRACKING_URI={self.tracking_uri}",
            "# Once per clone, from its root: the remote (.dvc/config, committed once by one of you)...",
            *dvc[:2],
            "# ...and the credentials (.dvc/config.local, never committed):",
            *dvc[2:],
        ])


def load(folder: Path) -> Stack | None:
    file = Path(folder) / "stack.json"
    if not file.exists():
        return None
    return Stack(dir=Path(folder).resolve(), **json.loads(file.read_text()))


# --- ports and processes -----------------------------------------------------------------------

def port_free(port: int) -> bool:
    with socket.socket() as probe:
        try:
            probe.bind((HOST, port))
        except OSError:
            return False
    return True


def free_ports(count: int) -> list[int]:
    """``count`` distinct free ports on 127.0.0.1, below MAX_PORT, each with port + 10000 free too."""
    held, ports = [], []
    try:
        while len(ports) < count:
            probe = socket.socket()
            probe.bind((HOST, 0))
            held.append(probe)
            port = probe.getsockname()[1]
            if port < MAX_PORT and port_free(port + 10000) and port + 10000 not in ports:
                ports.append(port)
    finally:
        for probe in held:
            probe.close()
    return ports


def _alive(pid: int | None) -> bool:
    if not pid:
        return False
    with contextlib.suppress(ChildProcessError):
        done, _ = os.waitpid(pid, os.WNOHANG)  # reap our own child, so that it does not linger as a zombie
        if done:
            return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _is_ours(pid: int, marker: str) -> bool:
    """The pid still runs the program we started (not a recycled id)."""
    try:
        return marker in Path(f"/proc/{pid}/cmdline").read_bytes().decode(errors="replace")
    except OSError:
        return False


def _group_alive(pgid: int) -> bool:
    _alive(pgid)  # reaps the leader if it is our child
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def kill_group(pgid: int, seconds: float = STOP_SECONDS) -> None:
    """SIGTERM the process group (each server runs in its own session), then SIGKILL what is left."""
    for sig in (signal.SIGTERM, signal.SIGKILL):
        with contextlib.suppress(ProcessLookupError):
            os.killpg(pgid, sig)
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            if not _group_alive(pgid):
                return
            time.sleep(0.1)


def _spawn(command: list[str], log: Path, env: dict | None = None) -> int:
    with log.open("ab") as out:
        process = subprocess.Popen(command, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                   env=env, start_new_session=True, cwd=log.parent)
    return process.pid


def _log_tail(log: Path, lines: int = 15) -> str:
    try:
        return "\n".join(log.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return "(no log)"


def _wait(check, seconds: float, what: str, log: Path, pid: int | None = None) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if check():
            return
        if pid is not None and not _alive(pid):
            raise StackError(f"{what} exited while starting; its log {log} ends:\n{_log_tail(log)}")
        time.sleep(0.25)
    raise StackError(f"{what} not ready after {seconds:.0f} s; its log {log} ends:\n{_log_tail(log)}")


def _tool(name: str) -> str:
    """A console script of this Python's environment, even when that environment is not activated."""
    beside = Path(sys.executable).parent / name
    found = str(beside) if beside.exists() else shutil.which(name)
    if not found:
        raise StackError(f"`{name}` not found; run `pip install -r requirements.txt -r requirements-dev.txt`")
    return found


# --- PostgreSQL ---------------------------------------------------------------------------------

def postgres_available() -> bool:
    return (PG_BIN / "pg_ctl").exists()


def _as_postgres(command: list[str], **kwargs) -> subprocess.CompletedProcess:
    """PostgreSQL refuses to run as root: as root, run its tools as the `postgres` user."""
    prefix = ["runuser", "-u", "postgres", "--"] if os.geteuid() == 0 else []
    return subprocess.run(prefix + command, capture_output=True, text=True, **kwargs)


def _pg_ready(stack: Stack) -> bool:
    return subprocess.run([str(PG_BIN / "pg_isready"), "-q", "-h", HOST, "-p", str(stack.postgres_port)],
                          capture_output=True).returncode == 0


def _psql(stack: Stack, sql: str) -> None:
    env = {**os.environ, "PGPASSWORD": stack.db_password}
    result = subprocess.run([str(PG_BIN / "psql"), "-h", HOST, "-p", str(stack.postgres_port), "-U", "postgres",
                             "-d", "postgres", "-v", "ON_ERROR_STOP=1", "-qc", sql],
                            capture_output=True, text=True, env=env)
    if result.returncode != 0:
        raise StackError(f"psql failed: {result.stderr.strip()}")


def start_postgres(stack: Stack) -> None:
    if not postgres_available():
        raise StackError(f"PostgreSQL 15 not found in {PG_BIN}; `apt-get install postgresql-15`")
    folder, data, log = stack.path("postgres"), stack.path("postgres", "data"), stack.path("postgres", "postgres.log")
    if (data / "postmaster.pid").exists() and _pg_ready(stack):
        return
    fresh = not (data / "PG_VERSION").exists()
    data.mkdir(parents=True, exist_ok=True)
    if os.geteuid() == 0:
        shutil.chown(folder, "postgres", "postgres")
        for path in folder.rglob("*"):
            shutil.chown(path, "postgres", "postgres")
        if _as_postgres(["test", "-w", str(data)]).returncode != 0:
            raise StackError(f"the `postgres` user cannot write {data}: every folder above it must be "
                             "searchable by others (chmod o+x), or use another --dir")
    data.chmod(0o700)
    if fresh:
        password_file = folder / "initdb.pw"
        password_file.write_text(stack.db_password + "\n")
        password_file.chmod(0o600)
        if os.geteuid() == 0:
            shutil.chown(password_file, "postgres", "postgres")
        try:
            result = _as_postgres([str(PG_BIN / "initdb"), "-D", str(data), "-U", "postgres", "-E", "UTF8",
                                   "--auth-local=peer", "--auth-host=scram-sha-256", f"--pwfile={password_file}",
                                   "--no-instructions"])
        finally:
            password_file.unlink()
        if result.returncode != 0:
            raise StackError(f"initdb failed:\n{result.stdout}\n{result.stderr}")
    # TCP on 127.0.0.1 only, and no Unix socket: nothing outside --dir, no socket path length limit.
    options = f"-c listen_addresses={HOST} -p {stack.postgres_port} -c unix_socket_directories=''"
    result = _as_postgres([str(PG_BIN / "pg_ctl"), "-D", str(data), "-l", str(log), "-o", options, "-w",
                           "-t", str(START_SECONDS["postgres"]), "start"])
    if result.returncode != 0:
        raise StackError(f"PostgreSQL did not start ({result.stdout.strip()}); its log {log} ends:\n"
                         f"{_log_tail(log)}")
    _wait(lambda: _pg_ready(stack), START_SECONDS["postgres"], "PostgreSQL", log)
    if fresh:
        _psql(stack, f"CREATE ROLE mlflow LOGIN PASSWORD '{stack.db_password}'")
        _psql(stack, "CREATE DATABASE mlflow OWNER mlflow")
    with contextlib.suppress(OSError, ValueError, IndexError):
        stack.pids["postgres"] = int((data / "postmaster.pid").read_text().split()[0])


def stop_postgres(stack: Stack, grace: float = STOP_SECONDS) -> None:
    data = stack.path("postgres", "data")
    if (data / "postmaster.pid").exists():
        _as_postgres([str(PG_BIN / "pg_ctl"), "-D", str(data), "-m", "fast", "-w", "-t", str(max(1, round(grace))),
                      "stop"])
    pid = stack.pids.pop("postgres", None)
    for sig in (signal.SIGQUIT, signal.SIGKILL):  # pg_ctl could not stop it: immediate shutdown, then kill
        if not (pid and _alive(pid) and _is_ours(pid, "postgres")):
            break
        os.kill(pid, sig)
        deadline = time.monotonic() + grace
        while _alive(pid) and time.monotonic() < deadline:
            time.sleep(0.1)


# --- SeaweedFS ----------------------------------------------------------------------------------

def s3_client(stack: Stack):
    import boto3
    from botocore.config import Config

    return boto3.client("s3", endpoint_url=stack.s3_endpoint, aws_access_key_id=stack.access_key,
                        aws_secret_access_key=stack.secret_key, region_name="us-east-1",
                        config=Config(retries={"max_attempts": 1}, connect_timeout=2, read_timeout=10))


def _s3_writable(stack: Stack) -> bool:
    """The bucket exists and takes an object (the volume servers have registered)."""
    try:
        client = s3_client(stack)
        if BUCKET not in {b["Name"] for b in client.list_buckets().get("Buckets", [])}:
            client.create_bucket(Bucket=BUCKET)
        client.put_object(Bucket=BUCKET, Key=".team-stack-probe", Body=b"ok")
        client.delete_object(Bucket=BUCKET, Key=".team-stack-probe")
        return True
    except Exception:
        return False


def _weed_sockets(stack: Stack) -> list[Path]:
    """The Unix sockets SeaweedFS leaves in /tmp for this stack's ports (not all are configurable)."""
    ports = {*stack.weed_ports.values(), stack.s3_port}
    return [p for p in Path("/tmp").glob("seaweedfs-*.sock") if p.stem.rsplit("-", 1)[-1] in {str(x) for x in ports}]


def start_seaweedfs(stack: Stack) -> None:
    folder = stack.path("seaweedfs")
    (folder / "data").mkdir(parents=True, exist_ok=True)
    identities = folder / "s3.json"
    identities.touch(mode=0o600, exist_ok=True)
    identities.write_text(json.dumps({"identities": [{
        "name": "team", "credentials": [{"accessKey": stack.access_key, "secretKey": stack.secret_key}],
        "actions": ["Admin", "Read", "Write", "List", "Tagging"]}]}, indent=2))
    if stack.pids.get("seaweedfs") and _alive(stack.pids["seaweedfs"]) and _s3_writable(stack):
        return
    for stale in _weed_sockets(stack):
        stale.unlink(missing_ok=True)
    p = stack.weed_ports
    command = [_tool("weed"), "server", f"-ip={HOST}", f"-ip.bind={HOST}", f"-dir={folder / 'data'}",
               f"-master.port={p['master']}", f"-master.port.grpc={p['master_grpc']}", "-master.telemetry=false",
               "-master.electionTimeout=1s", f"-master.volumeSizeLimitMB={WEED_VOLUME_SIZE_MB}",
               f"-volume.port={p['volume']}", f"-volume.port.grpc={p['volume_grpc']}",
               f"-volume.max={WEED_VOLUME_MAX}", "-volume.preStopSeconds=1",
               "-filer", f"-filer.port={p['filer']}", f"-filer.port.grpc={p['filer_grpc']}",
               "-s3", f"-s3.port={stack.s3_port}", f"-s3.port.grpc={p['s3_grpc']}",
               "-s3.port.iceberg=0", "-s3.port.lance=0", f"-s3.config={identities}"]
    log = stack.path("seaweedfs.log")
    stack.pids["seaweedfs"] = _spawn(command, log)
    _wait(lambda: _s3_writable(stack), START_SECONDS["seaweedfs"], "SeaweedFS", log, stack.pids["seaweedfs"])


def stop_seaweedfs(stack: Stack, grace: float = STOP_SECONDS) -> None:
    pid = stack.pids.pop("seaweedfs", None)
    if pid and _alive(pid) and _is_ours(pid, "weed"):
        kill_group(pid, grace)
    for stale in _weed_sockets(stack):
        stale.unlink(missing_ok=True)


# --- MLflow -------------------------------------------------------------------------------------

def mlflow_healthy(uri: str, timeout: float = 2) -> bool:
    try:
        with urllib.request.urlopen(f"{uri}/health", timeout=timeout) as response:
            return response.status == 200
    except (urllib.error.URLError, OSError):
        return False


def server_env(stack: Stack) -> dict:
    """The tracking server's environment: S3 credentials for the artifact proxy (clients need none)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("MLFLOW_", "AWS_"))}
    return {**env, "MLFLOW_S3_ENDPOINT_URL": stack.s3_endpoint, "AWS_ACCESS_KEY_ID": stack.access_key,
            "AWS_SECRET_ACCESS_KEY": stack.secret_key, "AWS_DEFAULT_REGION": "us-east-1",
            "MLFLOW_BACKEND_STORE_URI": stack.backend_store_uri,
            # MLflow 3 otherwise starts a job runner and seven huey consumers (GenAI jobs; ~800 MB, slower start).
            "MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false"}


def start_mlflow(stack: Stack) -> None:
    if mlflow_healthy(stack.tracking_uri):
        return
    # The backend URI (with the database password) goes through the environment, not the command line.
    command = [sys.executable, "-m", "mlflow", "server", "--artifacts-destination", stack.artifacts_destination,
               "--host", HOST, "--port", str(stack.mlflow_port), "--workers", "1"]
    log = stack.path("mlflow.log")
    stack.pids["mlflow"] = _spawn(command, log, env=server_env(stack))
    _wait(lambda: mlflow_healthy(stack.tracking_uri), START_SECONDS["mlflow"], "MLflow server", log,
          stack.pids["mlflow"])
    stack.save()


def stop_mlflow(stack: Stack, grace: float = STOP_SECONDS) -> None:
    pid = stack.pids.pop("mlflow", None)
    if pid and _alive(pid) and _is_ours(pid, "mlflow"):
        kill_group(pid, grace)
    stack.save()


# --- the whole stack ----------------------------------------------------------------------------

def start(folder: Path, s3_port: int | None = None, mlflow_port: int | None = None,
          postgres_port: int | None = None) -> Stack:
    """Start (or find running) the three servers with their data under ``folder``; return the stack."""
    folder = Path(folder).resolve()
    folder.mkdir(parents=True, exist_ok=True)
    stack = load(folder)
    if stack is None:
        ports = free_ports(3 + len(WEED_INTERNAL))
        stack = Stack(dir=folder, s3_port=ports[0], mlflow_port=ports[1], postgres_port=ports[2],
                      weed_ports=dict(zip(WEED_INTERNAL, ports[3:], strict=True)),
                      access_key="team" + secrets.token_hex(8), secret_key=secrets.token_hex(20),
                      db_password=secrets.token_hex(16))
    given = {"s3_port": s3_port, "mlflow_port": mlflow_port, "postgres_port": postgres_port}
    for name, port in given.items():
        if port is not None:
            setattr(stack, name, port)
    stack.save()
    try:
        for name, port in given.items():
            if port is not None and port >= MAX_PORT:
                raise StackError(f"--{name.replace('_', '-')} {port}: use a port below {MAX_PORT}")
        start_postgres(stack)
        stack.save()
        start_seaweedfs(stack)
        stack.save()
        start_mlflow(stack)
    except BaseException:
        stop(folder, stack)
        raise
    return stack


def stop(folder: Path, stack: Stack | None = None, grace: float = STOP_SECONDS) -> None:
    """Stop every server of the stack in ``folder`` (their data stays). Each gets ``grace`` seconds to
    stop after SIGTERM (SeaweedFS takes ~18 s: its filer waits 15 s for gRPC streams) before SIGKILL."""
    stack = stack or load(folder)
    if stack is None:
        return
    stop_mlflow(stack, grace)
    stop_seaweedfs(stack, grace)
    stop_postgres(stack, grace)
    stack.save()


def status(stack: Stack) -> dict[str, bool]:
    return {"postgres": _pg_ready(stack), "seaweedfs": _s3_writable(stack),
            "mlflow": mlflow_healthy(stack.tracking_uri)}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("command", choices=["start", "stop", "status"])
    parser.add_argument("--dir", type=Path, default=Path(".stack"), help="where the servers keep their data")
    parser.add_argument("--s3-port", type=int)
    parser.add_argument("--mlflow-port", type=int)
    parser.add_argument("--postgres-port", type=int)
    args = parser.parse_args(argv)
    try:
        if args.command == "start":
            stack = start(args.dir, args.s3_port, args.mlflow_port, args.postgres_port)
            print(stack.exports())
            return 0
        stack = load(args.dir)
        if stack is None:
            print(f"no stack in {args.dir.resolve()}; run `python scripts/team_stack.py start --dir {args.dir}`")
            return 1 if args.command == "status" else 0
        if args.command == "stop":
            stop(args.dir, stack)
            print(f"stopped the servers of {stack.dir} (data kept; `start` resumes them)")
            return 0
        up = status(stack)
        for name, running in up.items():
            print(f"{name}: {'up' if running else 'DOWN'}")
        if all(up.values()):
            print(stack.exports())
        return 0 if all(up.values()) else 1
    except StackError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
