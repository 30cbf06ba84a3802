"""The team's shared services, with a login on each: S3 object storage (SeaweedFS) for the DVC remote
and MLflow's artifacts, and an MLflow tracking server (basic-auth) on PostgreSQL.

    python scripts/team_stack.py start  [--dir .stack] [--bind ADDR] [--public-host NAME]
                                        [--s3-port N] [--mlflow-port N] [--postgres-port N]
    python scripts/team_stack.py add-member NAME [--reader]   # an MLflow account and an S3 key
    python scripts/team_stack.py member NAME                  # print NAME's commands again
    python scripts/team_stack.py remove-member NAME
    python scripts/team_stack.py grant NAME (--experiment E | --model M) [--permission EDIT]
    python scripts/team_stack.py status [--dir .stack]
    python scripts/team_stack.py stop   [--dir .stack]

Clients reach two ports: S3 (--s3-port) and MLflow (--mlflow-port), on --bind (127.0.0.1 unless given;
0.0.0.0 for every interface) under the name --public-host (the bind address unless given; required
with 0.0.0.0), which is also what MLflow's --allowed-hosts accepts. PostgreSQL and SeaweedFS's
internal servers listen on 127.0.0.1 only.

Logins: MLflow runs its basic-auth app (`--app-name basic-auth`), its users and permissions in a
second PostgreSQL database (`mlflow_auth`); `admin` is the stack's administrator. New experiments
and models default to READ for everybody but their creator; `add-member` grants EDIT on the team's
experiments (`cifar10`, `cifar100`), `--reader` leaves the member at READ. S3 has one identity per
member (read, write, list on the bucket; readers read and list), one for the MLflow server's artifact
proxy and one admin identity; there is no anonymous access. Adding a member reloads SeaweedFS's
identities in place (SIGHUP); removing one restarts SeaweedFS (about 20 s), which otherwise keeps
honouring the removed key.

Everything lives under --dir: `postgres/` (the PostgreSQL 15 cluster, owned by the `postgres` user
when run as root), `seaweedfs/` (volumes, filer, `s3.json` identities), `mlflow-auth.ini`,
`stack.json` (ports, passwords, keys and process ids) and one log per server; the files holding
secrets are mode 0600. A second `start` with the same --dir reuses its ports, credentials and data.
Needs `pip install -r requirements.txt -r requirements-dev.txt` (weed, psycopg, boto3) and PostgreSQL
15 (`apt-get install postgresql-15`).

Importable: tests start, restart and stop the same servers through start(), start_mlflow(),
stop_mlflow(), add_member() and stop().
"""

import argparse
import base64
import contextlib
import dataclasses
import json
import os
import secrets
import shlex
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path

LOOPBACK = "127.0.0.1"
ANY = "0.0.0.0"
PG_BIN = Path(os.environ.get("TEAM_STACK_PG_BIN", "/usr/lib/postgresql/15/bin"))
BUCKET = "team"
DVC_PREFIX = "dvc"
ARTIFACTS_PREFIX = "mlflow-artifacts"
REMOTE = "team"
ADMIN = "admin"
AUTH_DATABASE = "mlflow_auth"
# READ: every member sees every experiment, run and model (comparing them is what the shared server
# is for), but writes only where granted: nobody logs into, renames or deletes another member's
# experiment, and only the `champion` alias's owner (or the admin) moves it. Creators get MANAGE.
DEFAULT_PERMISSION = "READ"
TEAM_EXPERIMENTS = ("cifar10", "cifar100")  # the stages' experiments: one per data set (src/core/tracking.py)
MEMBER_S3_ACTIONS = {"editor": ["Read", "Write", "List", "Tagging"], "reader": ["Read", "List"]}
# SeaweedFS serves gRPC on its own ports (given explicitly below; by default HTTP port + 10000).
MAX_PORT = 55535
# Volumes are not preallocated: these only cap growth. With the defaults (8 volumes of 30 GB) the
# first `dvc push` fails with "No writable volumes".
WEED_VOLUME_MAX = 64
WEED_VOLUME_SIZE_MB = 256
WEED_INTERNAL = ["master", "master_grpc", "volume", "volume_grpc", "filer", "filer_grpc", "s3_grpc"]
START_SECONDS = {"postgres": 60, "seaweedfs": 60, "mlflow": 180, "s3_reload": 30}
STOP_SECONDS = 30


class StackError(RuntimeError):
    """A server would not start or stop, or an admin command cannot be done; the message names the fix."""


@dataclasses.dataclass
class Member:
    password: str      # MLflow
    access_key: str    # S3
    secret_key: str
    role: str = "editor"


@dataclasses.dataclass
class Stack:
    dir: Path
    s3_port: int
    mlflow_port: int
    postgres_port: int
    weed_ports: dict[str, int]
    access_key: str    # the S3 admin identity (this script's own checks)
    secret_key: str
    db_password: str
    pids: dict[str, int] = dataclasses.field(default_factory=dict)
    bind: str = LOOPBACK
    public_host: str = ""
    admin_password: str = ""
    server_access_key: str = ""    # the MLflow server's S3 identity (its artifact proxy)
    server_secret_key: str = ""
    flask_secret_key: str = ""     # signs the auth app's CSRF tokens; the same across restarts
    members: dict[str, Member] = dataclasses.field(default_factory=dict)

    @property
    def host(self) -> str:
        """The name clients use for the servers."""
        return self.public_host or self.bind

    @property
    def local_host(self) -> str:
        """The address this script itself reaches the servers by."""
        return LOOPBACK if self.bind in (ANY, LOOPBACK) else self.bind

    @property
    def s3_endpoint(self) -> str:
        return f"http://{self.host}:{self.s3_port}"

    @property
    def tracking_uri(self) -> str:
        return f"http://{self.host}:{self.mlflow_port}"

    @property
    def local_s3_endpoint(self) -> str:
        return f"http://{self.local_host}:{self.s3_port}"

    @property
    def local_tracking_uri(self) -> str:
        return f"http://{self.local_host}:{self.mlflow_port}"

    @property
    def allowed_hosts(self) -> list[str]:
        """MLflow's --allowed-hosts: the Host headers of requests for what this stack serves."""
        names = {self.host, self.local_host} | ({"localhost"} if self.local_host == LOOPBACK else set())
        return sorted({*names, *(f"{name}:{self.mlflow_port}" for name in names)})

    @property
    def dvc_url(self) -> str:
        return f"s3://{BUCKET}/{DVC_PREFIX}"

    @property
    def artifacts_destination(self) -> str:
        return f"s3://{BUCKET}/{ARTIFACTS_PREFIX}"

    @property
    def backend_store_uri(self) -> str:
        # `+psycopg`: psycopg 3 whatever SQLAlchemy's default PostgreSQL driver (psycopg2 before 2.1).
        return self._database_uri("mlflow")

    @property
    def auth_database_uri(self) -> str:
        return self._database_uri(AUTH_DATABASE)

    def _database_uri(self, database: str) -> str:
        return f"postgresql+psycopg://mlflow:{self.db_password}@{LOOPBACK}:{self.postgres_port}/{database}"

    def path(self, *parts: str) -> Path:
        return self.dir.joinpath(*parts)

    def save(self) -> None:
        state = {k: v for k, v in dataclasses.asdict(self).items() if k != "dir"}
        write_secret(self.path("stack.json"), json.dumps(state, indent=2) + "\n")

    def member(self, name: str) -> Member:
        if name not in self.members:
            known = ", ".join(sorted(self.members)) or "none yet"
            raise StackError(f"no member {name!r} (members: {known}); add one with "
                             f"`python scripts/team_stack.py add-member {name} --dir {self.dir}`")
        return self.members[name]

    def dvc_remote_commands(self, name: str) -> list[list[str]]:
        """`dvc remote` commands for member ``name``'s clone: the first two go to .dvc/config (committed,
        the same for everybody), the credentials to .dvc/config.local (git-ignored by DVC)."""
        member = self.member(name)
        return [["dvc", "remote", "add", "-d", "-f", REMOTE, self.dvc_url],
                ["dvc", "remote", "modify", REMOTE, "endpointurl", self.s3_endpoint],
                ["dvc", "remote", "modify", "--local", REMOTE, "access_key_id", member.access_key],
                ["dvc", "remote", "modify", "--local", REMOTE, "secret_access_key", member.secret_key]]

    def client_env(self, name: str) -> dict[str, str]:
        """The variables member ``name``'s shells need to run stages against the tracking server."""
        return {"MLFLOW_TRACKING_URI": self.tracking_uri, "MLFLOW_TRACKING_USERNAME": name,
                "MLFLOW_TRACKING_PASSWORD": self.member(name).password}

    def member_commands(self, name: str) -> str:
        member = self.member(name)
        dvc = [shlex.join(command) for command in self.dvc_remote_commands(name)]
        role = ("EDIT on the experiments " + ", ".join(TEAM_EXPERIMENTS) if member.role == "editor"
                else f"{DEFAULT_PERMISSION} only (a reader)")
        return "\n".join([
            f"# For {name} ({role}; S3 {', '.join(MEMBER_S3_ACTIONS[member.role])}). Send it privately: it holds "
            "their password and secret key; none of it belongs in a tracked file.",
            "# In every shell that runs stages (dvc repro, dvc exp run, dvc queue start), e.g. from ~/.bashrc:",
            *(f"export {key}={shlex.quote(value)}" for key, value in self.client_env(name).items()),
            "# Once per clone, from its root: the remote (.dvc/config, committed once by one of you)...",
            *dvc[:2],
            "# ...and the S3 key (.dvc/config.local, which git ignores):",
            *dvc[2:],
        ])

    def summary(self) -> str:
        members = ", ".join(f"{n} ({m.role})" for n, m in sorted(self.members.items())) or "none yet"
        return "\n".join([
            f"# Team stack in {self.dir}",
            f"#   MLflow {self.tracking_uri} (basic-auth; runs in PostgreSQL on {LOOPBACK}:{self.postgres_port}, "
            f"artifacts proxied into {self.artifacts_destination})",
            f"#   S3     {self.s3_endpoint} (bucket {BUCKET}; DVC remote {self.dvc_url})",
            f"#   listening on {self.bind}: open TCP {self.mlflow_port} (MLflow) and {self.s3_port} (S3) to the "
            "team, nothing else",
            f"#   --allowed-hosts {','.join(self.allowed_hosts)}",
            f"#   members: {members}",
            f"#   admin login: `{ADMIN}`, password in {self.path('stack.json')} (admin_password)",
            f"# Add one: python scripts/team_stack.py add-member NAME --dir {shlex.quote(str(self.dir))}",
        ])


def write_secret(file: Path, text: str) -> None:
    """Write a file only its owner can read (created so, never briefly world-readable)."""
    descriptor = os.open(file, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(descriptor, "w") as out:
        os.fchmod(out.fileno(), 0o600)
        out.write(text)


def load(folder: Path) -> Stack | None:
    file = Path(folder) / "stack.json"
    if not file.exists():
        return None
    state = json.loads(file.read_text())
    state["members"] = {name: Member(**member) for name, member in state.get("members", {}).items()}
    return Stack(dir=Path(folder).resolve(), **state)


# --- ports and processes -----------------------------------------------------------------------

def port_free(port: int) -> bool:
    with socket.socket() as probe:
        try:
            probe.bind((LOOPBACK, port))
        except OSError:
            return False
    return True


def free_ports(count: int) -> list[int]:
    """``count`` distinct free ports on 127.0.0.1, below MAX_PORT, each with port + 10000 free too."""
    held, ports = [], []
    try:
        while len(ports) < count:
            probe = socket.socket()
            probe.bind((LOOPBACK, 0))
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
    return subprocess.run([str(PG_BIN / "pg_isready"), "-q", "-h", LOOPBACK, "-p", str(stack.postgres_port)],
                          capture_output=True).returncode == 0


def _psql(stack: Stack, sql: str) -> str:
    env = {**os.environ, "PGPASSWORD": stack.db_password}
    result = subprocess.run([str(PG_BIN / "psql"), "-h", LOOPBACK, "-p", str(stack.postgres_port), "-U", "postgres",
                             "-d", "postgres", "-v", "ON_ERROR_STOP=1", "-qtAc", sql],
                            capture_output=True, text=True, env=env)
    if result.returncode != 0:
        raise StackError(f"psql failed: {result.stderr.strip()}")
    return result.stdout.strip()


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
    # TCP on 127.0.0.1 only (its one client, the MLflow server, runs here), and no Unix socket: nothing
    # outside --dir, no socket path length limit.
    options = f"-c listen_addresses={LOOPBACK} -p {stack.postgres_port} -c unix_socket_directories=''"
    result = _as_postgres([str(PG_BIN / "pg_ctl"), "-D", str(data), "-l", str(log), "-o", options, "-w",
                           "-t", str(START_SECONDS["postgres"]), "start"])
    if result.returncode != 0:
        raise StackError(f"PostgreSQL did not start ({result.stdout.strip()}); its log {log} ends:\n"
                         f"{_log_tail(log)}")
    _wait(lambda: _pg_ready(stack), START_SECONDS["postgres"], "PostgreSQL", log)
    if fresh:
        _psql(stack, f"CREATE ROLE mlflow LOGIN PASSWORD '{stack.db_password}'")
        _psql(stack, "CREATE DATABASE mlflow OWNER mlflow")
    # MLflow's users and permissions: a database of its own (both stores keep an `alembic_version` table).
    if not _psql(stack, f"SELECT 1 FROM pg_database WHERE datname = '{AUTH_DATABASE}'"):
        _psql(stack, f"CREATE DATABASE {AUTH_DATABASE} OWNER mlflow")
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

def s3_client(stack: Stack, access_key: str | None = None, secret_key: str | None = None):
    """A boto3 S3 client of the admin identity, or of the given key."""
    import boto3
    from botocore.config import Config

    return boto3.client("s3", endpoint_url=stack.local_s3_endpoint, aws_access_key_id=access_key or stack.access_key,
                        aws_secret_access_key=secret_key or stack.secret_key, region_name="us-east-1",
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


def _s3_accepts(stack: Stack, access_key: str, secret_key: str) -> bool:
    try:
        s3_client(stack, access_key, secret_key).list_objects_v2(Bucket=BUCKET, MaxKeys=1)
        return True
    except Exception:
        return False


def _weed_sockets(stack: Stack) -> list[Path]:
    """The Unix sockets SeaweedFS leaves in /tmp for this stack's ports (not all are configurable)."""
    ports = {*stack.weed_ports.values(), stack.s3_port}
    return [p for p in Path("/tmp").glob("seaweedfs-*.sock") if p.stem.rsplit("-", 1)[-1] in {str(x) for x in ports}]


def s3_identities(stack: Stack) -> dict:
    """SeaweedFS's `-s3.config`: admin, the MLflow server, one identity per member. No identity is
    named `anonymous`, so a request without a valid key is refused (403)."""
    def identity(name, access_key, secret_key, actions):
        return {"name": name, "credentials": [{"accessKey": access_key, "secretKey": secret_key}], "actions": actions}

    on_bucket = [f"{action}:{BUCKET}" for action in MEMBER_S3_ACTIONS["editor"]]
    return {"identities": [
        identity(ADMIN, stack.access_key, stack.secret_key, ["Admin", "Read", "Write", "List", "Tagging"]),
        identity("mlflow-server", stack.server_access_key, stack.server_secret_key, on_bucket),
        *(identity(f"member-{name}", m.access_key, m.secret_key, [f"{a}:{BUCKET}" for a in MEMBER_S3_ACTIONS[m.role]])
          for name, m in sorted(stack.members.items())),
    ]}


def write_s3_identities(stack: Stack) -> Path:
    file = stack.path("seaweedfs", "s3.json")
    write_secret(file, json.dumps(s3_identities(stack), indent=2) + "\n")
    return file


def reload_s3_identities(stack: Stack, expect: tuple[str, str] | None = None,
                         gone: tuple[str, str] | None = None) -> None:
    """Rewrite `s3.json` and have the running SeaweedFS reread it; wait until the key ``expect`` is
    accepted and ``gone`` refused. SIGHUP adds identities in place, but SeaweedFS 4.48 keeps serving
    one removed from the file: removing a key restarts SeaweedFS (about 20 s without S3)."""
    write_s3_identities(stack)
    pid = stack.pids.get("seaweedfs")
    if not (pid and _alive(pid) and _is_ours(pid, "weed")):
        return  # read at the next start
    if gone is not None:
        stop_seaweedfs(stack)
        start_seaweedfs(stack)
        stack.save()
        pid = stack.pids["seaweedfs"]
    else:
        os.kill(pid, signal.SIGHUP)
    log = stack.path("seaweedfs.log")
    _wait(lambda: (expect is None or _s3_accepts(stack, *expect)) and (gone is None or not _s3_accepts(stack, *gone)),
          START_SECONDS["s3_reload"], "SeaweedFS reloading its identities", log, pid)


def start_seaweedfs(stack: Stack) -> None:
    folder = stack.path("seaweedfs")
    (folder / "data").mkdir(parents=True, exist_ok=True)
    identities = write_s3_identities(stack)
    if stack.pids.get("seaweedfs") and _alive(stack.pids["seaweedfs"]) and _s3_writable(stack):
        return
    for stale in _weed_sockets(stack):
        stale.unlink(missing_ok=True)
    p = stack.weed_ports
    # Master, volume and filer on 127.0.0.1 only; the S3 gateway (which streams every object itself)
    # on the bind address.
    command = [_tool("weed"), "server", f"-ip={LOOPBACK}", f"-ip.bind={LOOPBACK}", f"-dir={folder / 'data'}",
               f"-master.port={p['master']}", f"-master.port.grpc={p['master_grpc']}", "-master.telemetry=false",
               "-master.electionTimeout=1s", f"-master.volumeSizeLimitMB={WEED_VOLUME_SIZE_MB}",
               f"-volume.port={p['volume']}", f"-volume.port.grpc={p['volume_grpc']}",
               f"-volume.max={WEED_VOLUME_MAX}", "-volume.preStopSeconds=1",
               "-filer", f"-filer.port={p['filer']}", f"-filer.port.grpc={p['filer_grpc']}",
               "-s3", f"-s3.port={stack.s3_port}", f"-s3.port.grpc={p['s3_grpc']}", f"-s3.ip.bind={stack.bind}",
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


def write_auth_config(stack: Stack) -> Path:
    """MLflow's auth config (MLFLOW_AUTH_CONFIG_PATH): users and permissions in PostgreSQL, the
    default permission, and the admin's password (used once, to create the admin in an empty store)."""
    file = stack.path("mlflow-auth.ini")
    write_secret(file, "\n".join([
        "[mlflow]",
        f"default_permission = {DEFAULT_PERMISSION}",
        f"database_uri = {stack.auth_database_uri}",
        f"admin_username = {ADMIN}",
        f"admin_password = {stack.admin_password}",
        "authorization_function = mlflow.server.auth:authenticate_request_basic_auth",
        "",
    ]))
    return file


def server_env(stack: Stack) -> dict:
    """The tracking server's environment: its own S3 key for the artifact proxy (clients need none),
    the backend store and the auth config (the passwords stay off the command line)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("MLFLOW_", "AWS_"))}
    return {**env, "MLFLOW_S3_ENDPOINT_URL": f"http://{LOOPBACK if stack.bind == ANY else stack.bind}:{stack.s3_port}",
            "AWS_ACCESS_KEY_ID": stack.server_access_key, "AWS_SECRET_ACCESS_KEY": stack.server_secret_key,
            "AWS_DEFAULT_REGION": "us-east-1", "MLFLOW_BACKEND_STORE_URI": stack.backend_store_uri,
            "MLFLOW_AUTH_CONFIG_PATH": str(write_auth_config(stack)),
            "MLFLOW_FLASK_SERVER_SECRET_KEY": stack.flask_secret_key,
            # MLflow 3 otherwise starts a job runner and seven huey consumers (GenAI jobs; ~800 MB, slower start).
            "MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false"}


def start_mlflow(stack: Stack) -> None:
    if mlflow_healthy(stack.local_tracking_uri):
        return
    command = [sys.executable, "-m", "mlflow", "server", "--app-name", "basic-auth",
               "--artifacts-destination", stack.artifacts_destination, "--host", stack.bind,
               "--port", str(stack.mlflow_port), "--allowed-hosts", ",".join(stack.allowed_hosts), "--workers", "1"]
    log = stack.path("mlflow.log")
    stack.pids["mlflow"] = _spawn(command, log, env=server_env(stack))
    _wait(lambda: mlflow_healthy(stack.local_tracking_uri), START_SECONDS["mlflow"], "MLflow server", log,
          stack.pids["mlflow"])
    stack.save()


def stop_mlflow(stack: Stack, grace: float = STOP_SECONDS) -> None:
    pid = stack.pids.pop("mlflow", None)
    if pid and _alive(pid) and _is_ours(pid, "mlflow"):
        kill_group(pid, grace)
    stack.save()


def api(stack: Stack, method: str, path: str, payload: dict | None = None, user: str = ADMIN,
        password: str | None = None) -> dict:
    """One MLflow REST call, as the admin unless told; an HTTP error is a StackError naming it."""
    password = stack.admin_password if user == ADMIN and password is None else password
    url = f"{stack.local_tracking_uri}{path}"
    data = None
    if method == "GET" and payload:
        url += "?" + urllib.parse.urlencode(payload)
    elif payload is not None:
        data = json.dumps(payload).encode()
    request = urllib.request.Request(url, data=data, method=method, headers={
        "Content-Type": "application/json",
        "Authorization": "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()})
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            body = response.read()
    except urllib.error.HTTPError as error:
        detail = error.read().decode(errors="replace").strip()
        raise StackError(f"MLflow refused {method} {path} as {user}: HTTP {error.code} {detail}") from None
    except (urllib.error.URLError, OSError) as error:
        raise StackError(f"MLflow server {stack.local_tracking_uri} unreachable ({error}); "
                         f"`python scripts/team_stack.py start --dir {stack.dir}`") from None
    return json.loads(body) if body else {}


def experiment_ids(stack: Stack) -> dict[str, str]:
    """The team's experiments, created by the admin where missing (so members get EDIT, not MANAGE)."""
    found = {}
    for name in TEAM_EXPERIMENTS:
        try:
            found[name] = api(stack, "GET", "/api/2.0/mlflow/experiments/get-by-name",
                              {"experiment_name": name})["experiment"]["experiment_id"]
        except StackError as error:
            if "RESOURCE_DOES_NOT_EXIST" not in str(error):
                raise
            found[name] = api(stack, "POST", "/api/2.0/mlflow/experiments/create", {"name": name})["experiment_id"]
    return found


def grant(stack: Stack, user: str, permission: str, experiment: str | None = None, model: str | None = None) -> None:
    """Give ``user`` ``permission`` (READ, USE, EDIT, MANAGE, DENY) on an experiment or registered model."""
    if experiment is not None:
        try:
            resource = api(stack, "GET", "/api/2.0/mlflow/experiments/get-by-name",
                           {"experiment_name": experiment})["experiment"]["experiment_id"]
        except StackError as error:
            raise StackError(f"no experiment {experiment!r} on {stack.tracking_uri} ({error})") from None
        kind = "experiment"
    else:
        resource, kind = model, "registered_model"
    api(stack, "POST", "/api/3.0/mlflow/users/permissions/grant",
        {"username": user, "resource_type": kind, "resource_id": resource, "permission": permission})


# --- members ------------------------------------------------------------------------------------

MEMBER_NAME = set("abcdefghijklmnopqrstuvwxyz0123456789-_.")


def add_member(stack: Stack, name: str, reader: bool = False) -> Member:
    """An MLflow account (EDIT on the team's experiments unless ``reader``) and an S3 key for ``name``."""
    if not name or set(name) - MEMBER_NAME or name == ADMIN:
        raise StackError(f"member name {name!r}: use lower-case letters, digits, '-', '_' or '.', not {ADMIN!r}")
    if name in stack.members:
        raise StackError(f"{name} is a member already; `python scripts/team_stack.py member {name} --dir "
                         f"{stack.dir}` prints their commands, `remove-member {name}` removes them")
    member = Member(password=secrets.token_hex(16), access_key="TEAM" + secrets.token_hex(8).upper(),
                    secret_key=secrets.token_hex(20), role="reader" if reader else "editor")
    api(stack, "POST", "/api/2.0/mlflow/users/create", {"username": name, "password": member.password})
    stack.members[name] = member
    stack.save()
    if not reader:
        for experiment in experiment_ids(stack):
            grant(stack, name, "EDIT", experiment=experiment)
    reload_s3_identities(stack, expect=(member.access_key, member.secret_key))
    return member


def remove_member(stack: Stack, name: str) -> None:
    member = stack.member(name)
    with contextlib.suppress(StackError):  # already gone from MLflow
        api(stack, "DELETE", "/api/2.0/mlflow/users/delete", {"username": name})
    del stack.members[name]
    stack.save()
    reload_s3_identities(stack, gone=(member.access_key, member.secret_key))


# --- the whole stack ----------------------------------------------------------------------------

def _check_bind(bind: str, public_host: str) -> None:
    if bind == ANY and not public_host:
        raise StackError(f"--bind {ANY} listens on every interface: give --public-host, the name or address "
                         "teammates reach this machine by (it is in every URL printed, and MLflow refuses others)")
    if bind != ANY:
        with socket.socket() as probe:
            try:
                probe.bind((bind, 0))
            except OSError as error:
                raise StackError(f"--bind {bind}: not an address of this machine ({error.strerror}); "
                                 "`ip -brief address` lists them, 0.0.0.0 is all") from None


def start(folder: Path, s3_port: int | None = None, mlflow_port: int | None = None,
          postgres_port: int | None = None, bind: str | None = None, public_host: str | None = None) -> Stack:
    """Start (or find running) the three servers with their data under ``folder``; return the stack."""
    folder = Path(folder).resolve()
    folder.mkdir(parents=True, exist_ok=True)
    stack = load(folder)
    if stack is None:
        ports = free_ports(3 + len(WEED_INTERNAL))
        stack = Stack(dir=folder, s3_port=ports[0], mlflow_port=ports[1], postgres_port=ports[2],
                      weed_ports=dict(zip(WEED_INTERNAL, ports[3:], strict=True)),
                      access_key="ADMIN" + secrets.token_hex(8).upper(), secret_key=secrets.token_hex(20),
                      db_password=secrets.token_hex(16))
    if not stack.admin_password:  # a stack from before the logins
        stack.admin_password, stack.flask_secret_key = secrets.token_hex(16), secrets.token_hex(32)
        stack.server_access_key, stack.server_secret_key = "MLFLOW" + secrets.token_hex(8).upper(), \
            secrets.token_hex(20)
    given = {"s3_port": s3_port, "mlflow_port": mlflow_port, "postgres_port": postgres_port, "bind": bind,
             "public_host": public_host}
    for name, value in given.items():
        if value is not None:
            setattr(stack, name, value)
    stack.save()
    try:
        _check_bind(stack.bind, stack.public_host)
        for name, port in given.items():
            if name.endswith("_port") and port is not None and port >= MAX_PORT:
                raise StackError(f"--{name.replace('_', '-')} {port}: use a port below {MAX_PORT}")
        start_postgres(stack)
        stack.save()
        start_seaweedfs(stack)
        stack.save()
        start_mlflow(stack)
        experiment_ids(stack)
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
            "mlflow": mlflow_healthy(stack.local_tracking_uri)}


def _running(folder: Path) -> Stack:
    stack = load(folder)
    if stack is None:
        raise StackError(f"no stack in {folder.resolve()}; run `python scripts/team_stack.py start --dir {folder}`")
    if not mlflow_healthy(stack.local_tracking_uri):
        raise StackError(f"the stack in {stack.dir} is not running; "
                         f"`python scripts/team_stack.py start --dir {folder}`")
    return stack


class DefaultsHelpFormatter(argparse.ArgumentDefaultsHelpFormatter):
    """Each option's help ends with its default, except where that is None: the help says what happens then."""

    def _get_help_string(self, action):
        return action.help if action.default is None else super()._get_help_string(action)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=DefaultsHelpFormatter)
    parser.add_argument("command", choices=["start", "stop", "status", "add-member", "member", "remove-member",
                                            "grant"], help="what to do")
    parser.add_argument("name", nargs="?", help="the member (add-member, member, remove-member, grant)")
    parser.add_argument("--dir", type=Path, default=Path(".stack"), help="where the servers keep their data")
    parser.add_argument("--bind", help=f"the address S3 and MLflow listen on ({ANY}: all) (default: {LOOPBACK})")
    parser.add_argument("--public-host", help="the name or address clients use (default: the bind address)")
    parser.add_argument("--s3-port", type=int, help="start: S3's port (default: a free one)")
    parser.add_argument("--mlflow-port", type=int, help="start: the MLflow server's port (default: a free one)")
    parser.add_argument("--postgres-port", type=int, help="start: PostgreSQL's port (default: a free one)")
    parser.add_argument("--reader", action="store_true", help="add-member: READ only in MLflow, read-only S3")
    parser.add_argument("--experiment", help="grant: on this experiment (grant: this or --model required)")
    parser.add_argument("--model", help="grant: on this registered model (grant: this or --experiment required)")
    parser.add_argument("--permission", default="EDIT", choices=["READ", "USE", "EDIT", "MANAGE", "DENY"],
                        help="grant: the permission")
    args = parser.parse_args(argv)
    needs_name = {"add-member", "member", "remove-member", "grant"}
    if (args.command in needs_name) != bool(args.name):
        parser.error(f"{args.command} {'needs' if args.command in needs_name else 'takes no'} member NAME")
    if args.command == "grant" and (args.experiment is None) == (args.model is None):
        parser.error("grant needs exactly one of --experiment NAME and --model NAME")
    try:
        if args.command == "start":
            stack = start(args.dir, args.s3_port, args.mlflow_port, args.postgres_port, args.bind, args.public_host)
            print(stack.summary())
            return 0
        if args.command == "add-member":
            stack = _running(args.dir)
            add_member(stack, args.name, args.reader)
            print(stack.member_commands(args.name))
            return 0
        if args.command == "member":
            stack = load(args.dir) or _running(args.dir)
            print(stack.member_commands(args.name))
            return 0
        if args.command == "remove-member":
            stack = _running(args.dir)
            remove_member(stack, args.name)
            print(f"removed {args.name}: their MLflow login and S3 key no longer work")
            return 0
        if args.command == "grant":
            stack = _running(args.dir)
            grant(stack, args.name, args.permission, args.experiment, args.model)
            print(f"{args.name}: {args.permission} on {args.experiment or args.model}")
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
            print(stack.summary())
        return 0 if all(up.values()) else 1
    except StackError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
