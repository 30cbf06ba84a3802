"""Working as a team, end to end with real servers (scripts/team_stack.py): a DVC remote on S3 object
storage (SeaweedFS) and an MLflow tracking server (basic-auth) on PostgreSQL, its artifacts in the same
bucket, every login per member. The clients run as hosts of their own: each in a network namespace
(`ip netns`, a veth pair on a bridge of this machine), reaching the servers by the bridge's address,
never 127.0.0.1. Clone A reproduces and pushes; clone B pulls, reproduces nothing, and evaluates into
A's run; two hosts split a sweep (`dvc exp run --queue`, `dvc queue start`, `dvc exp push`), one of
them SIGKILLed halfway, and a third clone `dvc exp pull`s all of it. Refusals: no login, a wrong
password, an unknown S3 key, a member without write permission. Faults: the tracking server
restarting during a training, unreachable at the start, the remote unreachable on `dvc push`. A sweep
on a Ray cluster of three hosts (`python -m src.sweep`): a wrong token refused, a worker killed mid-trial;
the seed table's rows on the same cluster, a continuation after its parent (`--seed-table`).
"""

import contextlib
import hashlib
import itertools
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pytest

from scripts import team_stack
from tests.conftest import REPO, Project, assert_one_error_line, stage_env
from tests.test_dvc_pipeline import edit_params, ran_stages, tiny_repo

RESTART_EPOCHS = 6
HISTORY_KEYS = ["loss", "accuracy", "val_loss", "val_accuracy", "learning_rate", "epoch_seconds"]
LOGIN_VARIABLES = ("MLFLOW_TRACKING_USERNAME", "MLFLOW_TRACKING_PASSWORD")
# Hosts: (namespace suffix, hostname, member). dave is a reader: READ in MLflow, read-only S3.
HOSTS = {"h1": "team-h1", "h2": "team-h2", "h3": "team-h3"}
MEMBERS = {"alice": False, "bob": False, "dave": True}  # name: reader
QUEUE_SECONDS = 900


class Lan:
    """A bridge on this machine carrying the servers' address, and one network namespace per host,
    each with a veth pair into the bridge: the hosts reach the servers by that address only (their
    127.0.0.1 is their own). Commands run in a host get its hostname too (a UTS namespace)."""

    def __init__(self):
        self.tag = f"{os.getpid() % 100000}"
        used = subprocess.run(["ip", "-o", "-4", "addr"], capture_output=True, text=True, check=True).stdout
        subnet = next(n for n in range(10, 250) if f" 10.200.{n}." not in used)
        self.bridge, self.server = f"tb{self.tag}", f"10.200.{subnet}.1"
        self.namespaces, self.addresses = {}, {}
        self._ip("link", "add", self.bridge, "type", "bridge")
        self._ip("addr", "add", f"{self.server}/24", "dev", self.bridge)
        self._ip("link", "set", self.bridge, "up")
        for number, host in enumerate(HOSTS, start=2):
            namespace, veth, address = f"team{self.tag}-{host}", f"tv{self.tag}{host}", f"10.200.{subnet}.{number}"
            self._ip("netns", "add", namespace)
            self.namespaces[host] = namespace
            self._ip("link", "add", veth, "type", "veth", "peer", "name", "eth0", "netns", namespace)
            self._ip("link", "set", veth, "master", self.bridge, "up")
            for command in (["addr", "add", f"{address}/24", "dev", "eth0"], ["link", "set", "eth0", "up"],
                            ["link", "set", "lo", "up"], ["route", "add", "default", "via", self.server]):
                self._ip("-n", namespace, *command)
            self.addresses[host] = address

    @staticmethod
    def _ip(*args: str) -> None:
        result = subprocess.run(["ip", *args], capture_output=True, text=True)
        if result.returncode != 0:
            raise OSError(f"`ip {' '.join(args)}` failed: {result.stderr.strip()}")

    def command(self, host: str, *command: str) -> list[str]:
        return ["ip", "netns", "exec", self.namespaces[host], "unshare", "--uts", "--", "sh", "-c",
                'hostname "$0" && exec nice -n 19 "$@"', HOSTS[host], *command]

    def pids(self, host: str) -> list[int]:
        found = subprocess.run(["ip", "netns", "pids", self.namespaces[host]], capture_output=True, text=True)
        return [int(pid) for pid in found.stdout.split()]

    def kill(self, host: str) -> int:
        """SIGKILL every process of the host (the machine losing power); how many there were."""
        pids = self.pids(host)
        for pid in pids:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        return len(pids)

    def close(self) -> None:
        for host, namespace in self.namespaces.items():
            self.kill(host)
            subprocess.run(["ip", "netns", "del", namespace], capture_output=True)
        subprocess.run(["ip", "link", "del", self.bridge], capture_output=True)


@pytest.fixture(scope="session")
def lan(request):
    """The hosts' network, or the reason there is none (then the multi-host tests skip)."""
    if os.geteuid() != 0 or not shutil.which("ip") or not shutil.which("unshare"):
        return f"network namespaces need root and iproute2's `ip` and `unshare` (euid {os.geteuid()})"
    try:
        network = Lan()
    except (OSError, subprocess.CalledProcessError, StopIteration) as error:
        with contextlib.suppress(NameError):
            network.close()
        return f"cannot create network namespaces here: {error}"
    request.addfinalizer(network.close)
    return network


def hosts(lan) -> "Lan":
    if isinstance(lan, str):
        print(f"skipping: {lan}")
        pytest.skip(lan)
    return lan


@pytest.fixture(scope="session")
def stack(request, lan):
    """The three servers, on free ports, on the bridge's address when there are hosts (else 127.0.0.1,
    for the tests that need none), with their data in one folder; members alice and bob (EDIT) and dave
    (READ). This process is the admin. Stopped and removed at the end."""
    if not team_stack.postgres_available():
        reason = f"PostgreSQL 15 is not installed ({team_stack.PG_BIN / 'pg_ctl'} missing)"
        print(f"skipping the team stack tests: {reason}")
        pytest.skip(reason)
    if isinstance(lan, str):
        print(f"team stack on 127.0.0.1, the clients on this host: {lan}")
    # Not under pytest's tmp folder: that is private to root, and PostgreSQL runs as `postgres`.
    folder = Path(tempfile.mkdtemp(prefix="team-stack-"))
    folder.chmod(0o711)
    started = {}

    def teardown():
        for variable in LOGIN_VARIABLES:
            os.environ.pop(variable, None)
        team_stack.stop(folder / "stack", started.get("stack"), grace=2)
        shutil.rmtree(folder, ignore_errors=True)

    request.addfinalizer(teardown)
    bind = None if isinstance(lan, str) else lan.server
    started["stack"] = stack = team_stack.start(folder / "stack", bind=bind)
    for name, reader in MEMBERS.items():
        team_stack.add_member(stack, name, reader=reader)
    # This process's own MLflow calls (the checks below) log in as the admin; stages never inherit it.
    os.environ.update(dict(zip(LOGIN_VARIABLES, (team_stack.ADMIN, stack.admin_password), strict=True)))
    return stack


def env_for(stack, member: str | None, **extra: str) -> dict:
    """A stage's environment as ``member`` has it (MLFLOW_TRACKING_URI and their login; None: the
    local store, no login), without the admin's login or AWS credentials: DVC must take its key from
    .dvc/config.local, and MLflow's clients need none (the server proxies the artifacts)."""
    env = {k: v for k, v in stage_env().items()
           if not k.startswith("AWS_") and k not in ("MLFLOW_S3_ENDPOINT_URL", *LOGIN_VARIABLES)}
    return {**env, **(stack.client_env(member) if member else {}), **extra}


def run(cwd, *command: str, env: dict, check: bool = True, host: str | None = None,
        lan=None, timeout: float | None = None) -> subprocess.CompletedProcess:
    """``command`` in ``cwd``, on ``host`` of ``lan`` when given (its namespace), else here."""
    argv = lan.command(host, *command) if host and not isinstance(lan, str) and lan else list(command)
    result = subprocess.run(argv, cwd=cwd, capture_output=True, text=True, env=env, timeout=timeout)
    if check:
        assert result.returncode == 0, f"{' '.join(command)} failed:\n{result.stdout}\n{result.stderr}"
    return result


def git(cwd, *args: str) -> str:
    return run(cwd, "git", "-c", "user.name=t", "-c", "user.email=t@t", *args, env=stage_env()).stdout


def configure_remote(root: Path, stack, member: str, shared: bool = True, **where) -> None:
    """What each team member runs once: the remote (committed, by one of them) and their S3 key."""
    commands = stack.dvc_remote_commands(member)
    for command in commands if shared else commands[2:]:
        run(root, *command, env=env_for(stack, member), **where)


def client(stack):
    import mlflow

    return mlflow.MlflowClient(tracking_uri=stack.tracking_uri)


@contextlib.contextmanager
def tracking_to(uri: str):
    """mlflow's global tracking URI (and the MLFLOW_TRACKING_URI it exports) set for a block only."""
    import mlflow
    from mlflow.tracking._tracking_service import utils

    saved_uri, saved_env = utils._tracking_uri, os.environ.get("MLFLOW_TRACKING_URI")
    mlflow.set_tracking_uri(uri)
    try:
        yield
    finally:
        mlflow.set_tracking_uri(saved_uri)
        os.environ.pop("MLFLOW_TRACKING_URI", None)
        if saved_env is not None:
            os.environ["MLFLOW_TRACKING_URI"] = saved_env


def workspace_digest(root: Path) -> dict[str, str]:
    skip = (".git", ".dvc/tmp", ".dvc/cache")
    return {str(p.relative_to(root)): hashlib.md5(p.read_bytes()).hexdigest() for p in sorted(root.rglob("*"))
            if p.is_file() and not str(p.relative_to(root)).startswith(skip)}


def accuracy_key(test_metrics: dict) -> str:
    """The test accuracy's name in reports/eval/NAME.json (`test_accuracy`, or with the views it used)."""
    return min((key for key in test_metrics if key.startswith("test_accuracy")), key=len)


def run_json(root: Path) -> dict:
    return json.loads((root / "models/elu3.run.json").read_text())


@pytest.fixture(scope="module")
def clone_a(stack, lan, tmp_path_factory, cifar10_archive):
    """Clone A, alice's on host h1: `dvc repro` tracked on the server, `dvc push` to the S3 remote,
    everything committed."""
    root = tiny_repo(tmp_path_factory.mktemp("team"), cifar10_archive, ["elu3"], folder="a")
    env, where = env_for(stack, "alice"), {"host": "h1", "lan": lan}
    configure_remote(root, stack, "alice", **where)
    repro = run(root, "dvc", "repro", env=env, **where).stdout
    started = time.perf_counter()
    push = run(root, "dvc", "push", env=env, **where).stdout
    print(f"clone A: dvc push {time.perf_counter() - started:.1f} s: {push.strip().splitlines()[-1]}")
    git(root, "add", "-A")
    git(root, "commit", "-qm", "reproduced")
    return root, repro, push


@pytest.fixture(scope="module")
def clone_b(stack, lan, clone_a, tmp_path_factory):
    """Clone B, bob's on host h2: a fresh `git clone` of A with his own S3 key, then `dvc pull`."""
    a, _, _ = clone_a
    root = tmp_path_factory.mktemp("team") / "b"
    run(a.parent, "git", "clone", "-q", str(a), str(root), env=stage_env())
    env, where = env_for(stack, "bob"), {"host": "h2", "lan": lan}
    configure_remote(root, stack, "bob", shared=False, **where)
    started = time.perf_counter()
    # The main pipeline's outputs: the seed table's (seeds/dvc.yaml) were never run in these clones.
    pull = run(root, "dvc", "pull", "dvc.yaml", env=env, **where).stdout
    print(f"clone B: dvc pull {time.perf_counter() - started:.1f} s")
    return root, pull


def test_clone_a_tracks_every_run_on_the_server_and_pushes_to_s3(stack, clone_a):
    root, repro, push = clone_a
    assert ran_stages(repro) == ["download", "evaluate@elu3", "preprocess", "report", "split", "train@elu3"]
    assert "pushed" in push
    # The remote in .dvc/config (committed), the credentials only in .dvc/config.local (never committed).
    config, local = (root / ".dvc/config").read_text(), (root / ".dvc/config.local").read_text()
    secret = stack.members["alice"].secret_key
    assert stack.dvc_url in config and stack.s3_endpoint in config and secret not in config
    assert secret in local and ".dvc/config.local" not in git(root, "ls-files")
    assert "are in sync" in run(root, "dvc", "status", "--cloud", "dvc.yaml", env=env_for(stack, None)).stdout

    trained = run_json(root)
    assert trained["tracking_uri"] == stack.tracking_uri
    mlflow_client = client(stack)
    experiment = mlflow_client.get_experiment_by_name("cifar10")
    runs = mlflow_client.search_runs([experiment.experiment_id])
    assert [r.info.run_id for r in runs] == [trained["run_id"]]  # evaluate logged into the training run
    tracked = runs[0]
    assert tracked.info.status == "FINISHED" and tracked.data.tags["dvc_stage"] == "train@elu3"
    test_metrics = json.loads((root / "reports/eval/elu3.json").read_text())
    key = accuracy_key(test_metrics)
    assert tracked.data.metrics[key] == pytest.approx(test_metrics[key])
    assert [m.step for m in mlflow_client.get_metric_history(trained["run_id"], "val_accuracy")] == [1]
    artifacts = {a.path for a in mlflow_client.list_artifacts(trained["run_id"], "evaluation")}
    assert "evaluation/confusion_matrix.png" in artifacts
    assert tracked.info.artifact_uri.startswith("mlflow-artifacts:")  # proxied by the server, stored in S3

    import mlflow

    images = np.load(root / "data/processed/test_images.npy")[:5]
    with tracking_to(stack.tracking_uri):
        predicted = mlflow.pyfunc.load_model(trained["model_uri"]).predict(images)
    import keras

    # The server holds the trained net itself (reports/predictions/ score it behind evaluate.tta's views).
    expected = keras.models.load_model(root / "models/elu3.keras").predict(images, verbose=0)
    np.testing.assert_allclose(np.asarray(predicted), expected, atol=1e-6)

    keys = [o["Key"] for o in team_stack.s3_client(stack).list_objects_v2(Bucket=team_stack.BUCKET)["Contents"]]
    assert any(k.startswith(f"{team_stack.DVC_PREFIX}/files/md5/") for k in keys)
    assert any(k.startswith(f"{team_stack.ARTIFACTS_PREFIX}/") and k.endswith("confusion_matrix.png") for k in keys)


def test_clone_b_pulls_and_reproduces_nothing(stack, clone_a, clone_b):
    a, b = clone_a[0], clone_b[0]
    env = env_for(stack, "bob")
    assert (b / "models/elu3.keras").read_bytes() == (a / "models/elu3.keras").read_bytes()
    assert "up to date" in run(b, "dvc", "status", "dvc.yaml", env=env).stdout
    repro = run(b, "dvc", "repro", env=env).stdout
    assert ran_stages(repro) == [], repro
    shown = {root: json.loads(run(root, "dvc", "metrics", "show", "--json", env=env).stdout) for root in (a, b)}
    assert shown[a] == shown[b] and "reports/eval/elu3.json" in json.dumps(shown[b])


def test_evaluating_in_b_logs_into_the_run_a_trained(stack, clone_b):
    b = clone_b[0]
    run_id = run_json(b)["run_id"]
    before = client(stack).get_run(run_id)
    edit_params(b, **{"evaluate.batch_size": 16})
    repro = run(b, "dvc", "repro", env=env_for(stack, "bob")).stdout
    stages = ran_stages(repro)
    print(f"clone B, evaluate.batch_size 16: ran {stages}")
    assert "evaluate@elu3" in stages and set(stages) <= {"evaluate@elu3", "report"}, repro
    after = client(stack).get_run(run_id)
    assert after.info.status == "FINISHED" and after.info.end_time == before.info.end_time
    test_metrics = json.loads((b / "reports/eval/elu3.json").read_text())
    key = accuracy_key(test_metrics)
    assert len(client(stack).get_metric_history(run_id, key)) == 2  # A's evaluation, then B's
    assert after.data.metrics[key] == pytest.approx(test_metrics[key])


def scratch_project(root: Path, archive: Path, clone: Path, **dotted) -> Project:
    """A stage folder (as DVC runs stages) holding clone's data stages' outputs."""
    root.mkdir()
    project = Project(root, archive).set(**dotted)
    for folder in ("data/processed", "data/split"):
        shutil.copytree(clone / folder, root / folder)
    return project


def test_training_survives_a_tracking_server_restart(stack, clone_a, cifar10_archive, tmp_path):
    project = scratch_project(tmp_path / "restart", cifar10_archive, clone_a[0],
                              **{"train.elu3.epochs": RESTART_EPOCHS, "train.elu3.batch_size": 50})
    command = [sys.executable, "-m", "src.stages.train", "elu3"]
    process = subprocess.Popen(command, cwd=project.root, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                               text=True, env=env_for(stack, "alice"))
    lines, stopped_at, restarted = [], None, None
    for line in process.stdout:
        lines.append((time.perf_counter(), line.rstrip()))
        if stopped_at is None and f"elu3 epoch 1/{RESTART_EPOCHS}" in line:
            stopped_at, started = time.time(), time.perf_counter()
            team_stack.stop_mlflow(stack)
            team_stack.start_mlflow(stack)  # same port, same PostgreSQL store
            restarted = time.perf_counter() - started
    output = "\n".join(text for _, text in lines)
    assert process.wait() == 0 and restarted is not None, output
    epochs = [t for t, text in lines if " epoch " in text]
    gaps = [round(later - earlier, 1) for earlier, later in itertools.pairwise(epochs)]
    print(f"tracking server down for {restarted:.1f} s; seconds between epoch lines: {gaps}")

    trained = run_json(project.root)
    mlflow_client = client(stack)
    tracked = mlflow_client.get_run(trained["run_id"])
    # The run went on through the restart: it started before the server stopped and ended after.
    assert tracked.info.status == "FINISHED"
    assert tracked.info.start_time / 1000 < stopped_at < tracked.info.end_time / 1000
    for key in HISTORY_KEYS:
        steps = sorted({m.step for m in mlflow_client.get_metric_history(trained["run_id"], key)})
        assert steps == list(range(1, RESTART_EPOCHS + 1)), (key, steps, output)
    history = (project.root / "reports/history/elu3.csv").read_text().splitlines()
    assert len(history) == RESTART_EPOCHS + 1


def test_unreachable_tracking_server_fails_at_once(clone_a, cifar10_archive, tmp_path):
    project = scratch_project(tmp_path / "down", cifar10_archive, clone_a[0])
    closed = team_stack.free_ports(1)[0]
    started = time.perf_counter()
    result = project.run("train", "elu3", check=False, env={"MLFLOW_TRACKING_URI": f"http://127.0.0.1:{closed}"})
    elapsed = time.perf_counter() - started
    assert_one_error_line(result, "MLFLOW_TRACKING_URI", f"127.0.0.1:{closed}")
    # The /health check, not MLflow's retries, which take minutes; generous, as this includes
    # importing TensorFlow on a loaded CI machine (36 s was seen beside three other test processes).
    assert elapsed < 120, elapsed
    assert project.files("models") == [] and project.files("reports") == []


def test_unreachable_remote_fails_push_and_keeps_the_workspace(stack, clone_a):
    root = clone_a[0]
    env = env_for(stack, "alice")
    (root / "notes.bin").write_bytes(os.urandom(100_000))  # something the remote does not have yet
    run(root, "dvc", "add", "notes.bin", env=env)
    before = workspace_digest(root)
    closed = team_stack.free_ports(1)[0]
    run(root, "dvc", "remote", "modify", "--local", team_stack.REMOTE, "endpointurl",
        f"http://127.0.0.1:{closed}", env=env)
    started = time.perf_counter()
    failed = run(root, "dvc", "push", env=env, check=False)
    elapsed = time.perf_counter() - started
    print(f"dvc push to a closed port: exit {failed.returncode} after {elapsed:.1f} s: {failed.stderr.strip()}")
    run(root, "dvc", "remote", "modify", "--local", "--unset", team_stack.REMOTE, "endpointurl", env=env)
    assert failed.returncode != 0 and "ERROR" in failed.stderr, (failed.stdout, failed.stderr)
    assert workspace_digest(root) == before
    assert "up to date" in run(root, "dvc", "status", "dvc.yaml", env=env).stdout
    pushed = run(root, "dvc", "push", env=env).stdout  # the remote is back: the same push goes through
    assert "1 file pushed" in pushed, pushed


# --- logins and permissions ---------------------------------------------------------------------

@contextlib.contextmanager
def logged_in_as(stack, member: str):
    """This process's MLflow calls made as ``member`` for a block (the admin's login restored after)."""
    saved = {variable: os.environ.get(variable) for variable in LOGIN_VARIABLES}
    os.environ.update(dict(zip(LOGIN_VARIABLES, (member, stack.members[member].password), strict=True)))
    try:
        yield
    finally:
        os.environ.update({k: v for k, v in saved.items() if v is not None})


def http_status(url: str, user: str | None = None, password: str | None = None, host: str | None = None) -> int:
    import base64
    import urllib.error
    import urllib.request

    request = urllib.request.Request(url)
    if user is not None:
        request.add_header("Authorization", "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode())
    if host is not None:
        request.add_header("Host", host)
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return response.status
    except urllib.error.HTTPError as error:
        return error.code


def test_servers_refuse_requests_without_a_valid_login(stack):
    import botocore
    from botocore import UNSIGNED
    from botocore.config import Config

    search = f"{stack.tracking_uri}/api/2.0/mlflow/experiments/search?max_results=1"
    alice = stack.members["alice"]
    assert http_status(search) == 401
    assert http_status(search, "alice", "wrong-password") == 401
    assert http_status(search, "mallory", alice.password) == 401
    assert http_status(search, "alice", alice.password) == 200
    # --allowed-hosts: a Host header naming something the stack does not serve is refused, even a
    # private address (which MLflow's default list would take).
    for forged in (f"10.9.9.9:{stack.mlflow_port}", f"evil.example:{stack.mlflow_port}"):
        assert http_status(search, "alice", alice.password, host=forged) == 403, forged

    def s3(**kwargs):
        import boto3

        return boto3.client("s3", endpoint_url=stack.s3_endpoint, region_name="us-east-1", **kwargs)

    def refused(client) -> str:
        with pytest.raises(botocore.exceptions.ClientError) as caught:
            client.list_objects_v2(Bucket=team_stack.BUCKET, MaxKeys=1)
        return caught.value.response["Error"]["Code"]

    assert refused(s3(config=Config(signature_version=UNSIGNED))) == "AccessDenied"  # anonymous
    assert refused(s3(aws_access_key_id="TEAM0000UNKNOWN0", aws_secret_access_key="x" * 40)) == "InvalidAccessKeyId"
    assert refused(s3(aws_access_key_id=alice.access_key, aws_secret_access_key="x" * 40)) == "SignatureDoesNotMatch"
    member = s3(aws_access_key_id=alice.access_key, aws_secret_access_key=alice.secret_key)
    member.put_object(Bucket=team_stack.BUCKET, Key="probe/alice", Body=b"ok")
    reader = s3(aws_access_key_id=stack.members["dave"].access_key,
                aws_secret_access_key=stack.members["dave"].secret_key)
    assert reader.get_object(Bucket=team_stack.BUCKET, Key="probe/alice")["Body"].read() == b"ok"
    with pytest.raises(botocore.exceptions.ClientError, match="AccessDenied"):
        reader.put_object(Bucket=team_stack.BUCKET, Key="probe/dave", Body=b"no")
    member.delete_object(Bucket=team_stack.BUCKET, Key="probe/alice")


def test_added_member_works_at_once_and_removed_member_is_refused(stack):
    member = team_stack.add_member(stack, "erin")
    search = f"{stack.tracking_uri}/api/2.0/mlflow/experiments/search?max_results=1"
    assert http_status(search, "erin", member.password) == 200
    assert team_stack._s3_accepts(stack, member.access_key, member.secret_key)
    commands = stack.member_commands("erin")
    assert f"export MLFLOW_TRACKING_PASSWORD={member.password}" in commands
    assert f"access_key_id {member.access_key}" in commands and f"endpointurl {stack.s3_endpoint}" in commands
    team_stack.remove_member(stack, "erin")
    assert http_status(search, "erin", member.password) == 401
    assert not team_stack._s3_accepts(stack, member.access_key, member.secret_key)


def stage_in(root: Path, env: dict, lan, host: str = "h1") -> subprocess.CompletedProcess:
    return run(root, sys.executable, "-m", "src.stages.train", "elu3", env=env, check=False, host=host, lan=lan)


@pytest.mark.parametrize("case, variable", [("no login", "MLFLOW_TRACKING_USERNAME"),
                                            ("wrong password", "MLFLOW_TRACKING_PASSWORD")])
def test_stage_without_a_valid_login_stops_before_training(stack, lan, clone_a, cifar10_archive, tmp_path,
                                                           case, variable):
    project = scratch_project(tmp_path / "login", cifar10_archive, clone_a[0])
    env = (env_for(stack, None, MLFLOW_TRACKING_URI=stack.tracking_uri) if case == "no login"
           else env_for(stack, "alice", MLFLOW_TRACKING_PASSWORD="not-alices-password"))
    result = stage_in(project.root, env, lan)
    line = assert_one_error_line(result, variable, "HTTP 401", stack.tracking_uri)
    print(line)
    assert " epoch " not in result.stdout + result.stderr
    assert project.files("models") == [] and project.files("reports") == []


def test_unknown_s3_key_stops_the_stage_before_training(stack, lan, clone_b):
    root = clone_b[0]
    models = {p.name: p.read_bytes() for p in (root / "models").iterdir()}
    env = env_for(stack, "bob")
    run(root, "dvc", "remote", "modify", "--local", team_stack.REMOTE, "access_key_id", "TEAM0000UNKNOWN0", env=env)
    try:
        result = stage_in(root, env, lan, host="h2")
    finally:
        run(root, "dvc", "remote", "modify", "--local", team_stack.REMOTE, "access_key_id",
            stack.members["bob"].access_key, env=env)
    line = assert_one_error_line(result, "TEAM0000UNKNOWN0", "access_key_id", "AWS_ACCESS_KEY_ID")
    print(line)
    assert " epoch " not in result.stdout + result.stderr
    assert {p.name: p.read_bytes() for p in (root / "models").iterdir()} == models


def test_member_without_write_permission_cannot_log_into_the_experiment(stack, lan, clone_a, cifar10_archive,
                                                                       tmp_path):
    import mlflow

    project = scratch_project(tmp_path / "reader", cifar10_archive, clone_a[0])
    result = stage_in(project.root, env_for(stack, "dave"), lan)
    line = assert_one_error_line(result, "MLFLOW_TRACKING_USERNAME=dave", "'cifar10'", "HTTP 403",
                                 "team_stack.py grant dave --experiment cifar10")
    print(line)
    assert project.files("models") == [] and project.files("reports") == []

    experiment = client(stack).get_experiment_by_name("cifar10").experiment_id
    alices_run = run_json(clone_a[0])["run_id"]
    before = client(stack).get_run(alices_run).data.metrics
    with logged_in_as(stack, "dave"):
        reader = client(stack)
        assert reader.get_run(alices_run).data.metrics == before  # READ: sees everything
        for write in (lambda: reader.create_run(experiment),
                      lambda: reader.log_metric(alices_run, "test_accuracy", 1.0),
                      lambda: reader.set_tag(alices_run, "dvc_exp_name", "forged"),
                      lambda: reader.delete_run(alices_run)):
            with pytest.raises(mlflow.exceptions.MlflowException, match="403"):
                write()
    after = client(stack).get_run(alices_run)
    assert after.data.metrics == before and after.info.lifecycle_stage == "active"
    assert "forged" not in after.data.tags.values()


# --- a sweep over two hosts ---------------------------------------------------------------------

# One experiment per host: a queue of several tasks is test_experiments's to test; here what
# matters is the split, the kill and the rerun, and each experiment costs a minute.
GRID = {"h1": {"h1-lr2": 0.002}, "h2": {"h2-lr4": 0.004}}
HOST_MEMBER = {"h1": "alice", "h2": "bob", "h3": "dave"}


def queue_share(root: Path, host: str, stack, lan, names: list[str] | None = None) -> None:
    """The host's share of the grid (only ``names`` if given): queued, then one local worker."""
    env = env_for(stack, HOST_MEMBER[host])
    for name, rate in GRID[host].items():
        if names is None or name in names:
            run(root, "dvc", "exp", "run", "--queue", "-n", name, "-S", f"train.elu3.learning_rate={rate}",
                env=env, host=host, lan=lan)
    # The worker `dvc queue start` leaves behind keeps its stdout and stderr: not pipes we would wait on.
    with (root / ".dvc/tmp/queue-start.log").open("a") as log:
        started = subprocess.run(lan.command(host, "dvc", "queue", "start", "-j", "1"), cwd=root, env=env,
                                 stdout=log, stderr=subprocess.STDOUT)
    assert started.returncode == 0, (root / ".dvc/tmp/queue-start.log").read_text()


def queue_status(root: Path, host: str, stack, lan) -> str:
    return run(root, "dvc", "queue", "status", env=env_for(stack, HOST_MEMBER[host]), host=host, lan=lan).stdout


def wait_for_queue(root: Path, host: str, stack, lan) -> str:
    deadline = time.monotonic() + QUEUE_SECONDS
    while time.monotonic() < deadline:
        status = queue_status(root, host, stack, lan)
        if not any(word in status for word in ("Queued", "Running")):
            return status
        time.sleep(3)
    raise AssertionError(f"{host}'s queue still busy after {QUEUE_SECONDS} s:\n{status}")


def experiments_shown(root: Path, env: dict, **where) -> dict[str, dict]:
    """`dvc exp show --json`: each experiment's name and its outputs' md5 (by path)."""
    shown = json.loads(run(root, "dvc", "exp", "show", "--json", env=env, **where).stdout)
    found = {}
    for baseline in shown:
        for experiment in baseline.get("experiments") or []:
            for revision in experiment.get("revs", []):
                data = revision.get("data") or {}
                if revision.get("name") and not revision.get("error"):
                    found[revision["name"]] = {path: out.get("hash") or out.get("md5")
                                               for path, out in (data.get("outs") or {}).items()}
    return found


def cached(root: Path, md5: str) -> Path:
    return root / ".dvc/cache/files/md5" / md5[:2] / md5[2:]


def secrets_of(stack) -> list[str]:
    return [stack.admin_password, stack.db_password, stack.secret_key, stack.server_secret_key,
            stack.flask_secret_key, *(m.password for m in stack.members.values()),
            *(m.secret_key for m in stack.members.values())]


def test_a_sweep_split_over_two_hosts_one_killed_halfway(stack, lan, clone_a, clone_b, tmp_path):
    """h1 (alice) and h2 (bob) each queue their half of a grid in their own clone and run it with a local
    worker; h2 is SIGKILLed during its first experiment. h1 `dvc exp push`es; h3 (dave, a reader)
    `dvc exp pull`s it; h2 reruns what it lacks and pushes; h3 pulls again and sees all four, each
    with exactly one FINISHED MLflow run tagged with its name, whose run id its models/elu3.run.json
    (from the S3 remote) names."""
    import mlflow

    network = hosts(lan)
    started = time.perf_counter()
    origin = tmp_path / "origin.git"  # the team's git remote (a bare repository)
    git(tmp_path, "clone", "-q", "--bare", str(clone_a[0]), str(origin))
    roots = {host: tmp_path / host for host in HOST_MEMBER}
    for host, root in roots.items():
        member = HOST_MEMBER[host]
        git(tmp_path, "clone", "-q", str(origin), str(root))
        configure_remote(root, stack, member, shared=False, host=host, lan=network)
        run(root, "dvc", "pull", "dvc.yaml", env=env_for(stack, member), host=host, lan=network)
    setup = time.perf_counter() - started

    for host in ("h1", "h2"):
        queue_share(roots[host], host, stack, network)
    mlflow_client = client(stack)
    experiment = mlflow_client.get_experiment_by_name("cifar10").experiment_id
    deadline = time.monotonic() + QUEUE_SECONDS
    while not mlflow_client.search_runs([experiment], "tags.host = 'team-h2' and attributes.status = 'RUNNING'"):
        assert time.monotonic() < deadline, queue_status(roots["h2"], "h2", stack, network)
        time.sleep(0.5)
    killed = network.kill("h2")
    print(f"h2 SIGKILLed ({killed} processes) {time.perf_counter() - started:.0f} s in; its queue then:\n"
          f"{queue_status(roots['h2'], 'h2', stack, network)}")

    status = wait_for_queue(roots["h1"], "h1", stack, network)
    assert "Failed" not in status, status
    alice = env_for(stack, "alice")
    pushed_at = time.perf_counter()
    run(roots["h1"], "dvc", "exp", "push", "origin", *GRID["h1"], env=alice, host="h1", lan=network)
    push_seconds = time.perf_counter() - pushed_at
    dave = env_for(stack, "dave")
    pulled_at = time.perf_counter()
    run(roots["h3"], "dvc", "exp", "pull", "origin", *GRID["h1"], env=dave, host="h3", lan=network)
    pull_seconds = time.perf_counter() - pulled_at
    assert set(experiments_shown(roots["h3"], dave, host="h3", lan=network)) == set(GRID["h1"])

    # h2 comes back: what it has not finished is queued again.
    bob = env_for(stack, "bob")
    done = set(run(roots["h2"], "dvc", "exp", "list", "--name-only", env=bob, host="h2", lan=network).stdout.split())
    missing = [name for name in GRID["h2"] if name not in done]
    print(f"h2 after the kill: finished {sorted(done)}, rerunning {missing}")
    assert missing, "h2 was killed after its share had finished"
    # The dead worker's task still reads Running: `dvc queue kill` marks it Failed, then the queue is emptied.
    stale = [line.split()[0] for line in queue_status(roots["h2"], "h2", stack, network).splitlines()
             if "Running" in line.split()]
    assert stale, "the SIGKILLed task is not listed as Running"
    run(roots["h2"], "dvc", "queue", "kill", *stale, env=bob, host="h2", lan=network)
    run(roots["h2"], "dvc", "queue", "remove", "--all", env=bob, host="h2", lan=network)
    queue_share(roots["h2"], "h2", stack, network, names=missing)
    status = wait_for_queue(roots["h2"], "h2", stack, network)
    assert "Failed" not in status, status
    run(roots["h2"], "dvc", "exp", "push", "origin", *GRID["h2"], env=bob, host="h2", lan=network)
    run(roots["h3"], "dvc", "exp", "pull", "origin", env=dave, host="h3", lan=network)
    shown = experiments_shown(roots["h3"], dave, host="h3", lan=network)
    names = {name for share in GRID.values() for name in share}
    assert set(shown) == names, shown

    # Runs and experiments match both ways: each experiment's run.json (from S3) names a run tagged with it.
    runs = mlflow_client.search_runs([experiment], "tags.dvc_stage = 'train@elu3'")
    tagged = {}
    for tracked in runs:
        tagged.setdefault(tracked.data.tags.get("dvc_exp_name"), []).append(tracked)
    assert not [r for r in runs if r.info.status == "RUNNING"], "a run SIGKILLed on h2 was left RUNNING"
    for name in names:
        finished = [r for r in tagged.get(name, []) if r.info.status == "FINISHED"]
        assert len(finished) == 1, (name, [(r.info.run_id, r.info.status) for r in tagged.get(name, [])])
        run_file = cached(roots["h3"], shown[name]["models/elu3.run.json"])
        assert json.loads(run_file.read_text())["run_id"] == finished[0].info.run_id, name
        assert finished[0].data.tags["host"] == f"team-{name[:2]}"
        assert finished[0].data.params["learning_rate"] == str(GRID[name[:2]][name])
    unfinished = [r.info.status for name in GRID["h2"] for r in tagged.get(name, []) if r.info.status != "FINISHED"]
    assert unfinished == ["KILLED"], unfinished  # the run the SIGKILL cut short, closed by h2's rerun
    with logged_in_as(stack, "dave"):
        assert len(mlflow.MlflowClient(stack.tracking_uri).search_runs([experiment])) == len(runs)

    # No password or secret key in any clone's tracked files, experiments included.
    clones = [*roots.values(), clone_a[0], clone_b[0], origin]
    for root in clones:
        refs = git(root, "for-each-ref", "--format=%(refname)").split()
        found = run(root, "git", "grep", "-I", "-F", *itertools.chain(*(("-e", s) for s in secrets_of(stack))),
                    *refs, env=stage_env(), check=False)
        assert found.returncode == 1 and not found.stdout, (root, found.stdout[:500])
        assert any(ref.startswith("refs/exps/") for ref in refs) or root in (clone_a[0], clone_b[0]), refs
    print(f"two-host sweep: {time.perf_counter() - started:.0f} s (clones and dvc pull {setup:.0f} s); "
          f"dvc exp push of h1's experiment {push_seconds:.1f} s, dvc exp pull of it {pull_seconds:.1f} s")


# --- a sweep on a Ray cluster (src/sweep.py) ------------------------------------------------------

RAY_HEAD, RAY_WORKERS = "h3", ("h1", "h2")
RAY_PORT = 6379  # each host is a namespace of its own: the default port is free in every one
# Four trials of one epoch each; learning_rate -1 fails the params check: that trial alone fails.
RAY_SWEEP = "train.elu3.learning_rate=0.002,0.003,0.004,-1"
RAY_SWEEP_SECONDS = 1500


class RayCluster:
    """A head (no CPUs for trials: it runs the driver) and two 1-CPU workers, each on its own host, with
    token authentication on, the token in the environment only, as docs/team.md starts them."""

    def __init__(self, lan: Lan, folder: Path):
        self.lan, self.token = lan, secrets_token()
        self.address = f"{lan.addresses[RAY_HEAD]}:{RAY_PORT}"
        self.env = {**stage_env(), "RAY_AUTH_MODE": "token", "RAY_AUTH_TOKEN": self.token}
        common = ["--disable-usage-stats", "--object-store-memory", str(100 * 2**20)]
        self._start(RAY_HEAD, "--head", "--port", str(RAY_PORT), "--num-cpus", "0", "--include-dashboard=false",
                    *common, folder=folder)
        for host in RAY_WORKERS:
            self._start(host, "--address", self.address, "--num-cpus", "1", *common, folder=folder)

    def _start(self, host: str, *options: str, folder: Path) -> None:
        # Ray's sockets live under --temp-dir: one per host, as on separate machines.
        started = subprocess.run(self.lan.command(host, "ray", "start", "--node-ip-address", self.lan.addresses[host],
                                                  "--temp-dir", str(folder / host), *options),
                                 env=self.env, capture_output=True, text=True, timeout=300)
        assert started.returncode == 0, f"ray start on {host}:\n{started.stdout}\n{started.stderr}"

    def close(self) -> None:
        for host in (*RAY_WORKERS, RAY_HEAD):
            self.lan.kill(host)


def secrets_token() -> str:
    import secrets

    return secrets.token_hex(32)


@pytest.fixture(scope="module")
def ray_cluster(lan, request):
    network = hosts(lan)
    folder = Path(tempfile.mkdtemp(prefix="ray-", dir="/tmp"))  # short: Unix socket paths are limited to 107 bytes
    cluster = None

    def teardown():
        if cluster is not None:
            cluster.close()
        shutil.rmtree(folder, ignore_errors=True)

    request.addfinalizer(teardown)
    cluster = RayCluster(network, folder)
    return cluster


def sweep_runs(stack, sweep_id: str) -> list:
    experiment = client(stack).get_experiment_by_name("cifar10").experiment_id
    return client(stack).search_runs([experiment], f"tags.sweep_id = '{sweep_id}'")


def test_a_sweep_on_a_ray_cluster_survives_a_killed_worker(stack, lan, clone_a, ray_cluster, tmp_path):
    """`python -m src.sweep` on the head (alice's login and key): a client with a wrong token is refused;
    the four trials run on two workers, one of which is SIGKILLed during its trial's training: that trial
    runs again on the other worker and finishes, its first run ends KILLED; the trial with a bad param
    fails alone with its `error:` line; each experiment is pushed once and all are ranked by validation
    accuracy; every trial's run is a child of the sweep's run. The same sweep again runs only what failed."""
    network = hosts(lan)
    origin, driver = tmp_path / "origin.git", tmp_path / "driver"
    git(tmp_path, "clone", "-q", "--bare", str(clone_a[0]), str(origin))
    git(tmp_path, "clone", "-q", str(origin), str(driver))
    configure_remote(driver, stack, "alice", shared=False, host=RAY_HEAD, lan=network)
    alice = env_for(stack, "alice", RAY_AUTH_MODE="token", RAY_AUTH_TOKEN=ray_cluster.token)
    sweep = ["python", "-m", "src.sweep", "--address", ray_cluster.address, "--cpus", "1", "-S", RAY_SWEEP]

    refused = run(driver, *sweep, env={**alice, "RAY_AUTH_TOKEN": "0" * 64}, check=False, host=RAY_HEAD, lan=network)
    print(assert_one_error_line(refused, ray_cluster.address, "refuses this client's token", "RAY_AUTH_TOKEN"))
    experiment = client(stack).get_experiment_by_name("cifar10").experiment_id
    assert not client(stack).search_runs([experiment], "tags.sweep_role = 'parent'"), "a refused sweep made a run"

    started = time.perf_counter()
    log = tmp_path / "sweep.log"
    with log.open("w") as output:
        process = subprocess.Popen(network.command(RAY_HEAD, *sweep), cwd=driver, env=alice, stdout=output,
                                   stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + RAY_SWEEP_SECONDS
        victim = []
        while not victim:
            assert process.poll() is None and time.monotonic() < deadline, log.read_text()
            victim = client(stack).search_runs([experiment], "tags.host = 'team-h2' and attributes.status = "
                                                             "'RUNNING' and tags.sweep_trial != ''")
            time.sleep(0.5)
        killed_trial = victim[0].data.tags["sweep_trial"]
        print(f"h2 SIGKILLed ({network.kill('h2')} processes) during {killed_trial}, "
              f"{time.perf_counter() - started:.0f} s in")
        process.wait(timeout=max(deadline - time.monotonic(), 1))
    finally:
        if process.poll() is None:
            process.kill()
    seconds = time.perf_counter() - started
    output = log.read_text()
    print(output[-3000:])
    assert process.returncode == 1, output  # one trial failed
    sweep_id = re.search(r"^(sweep-[0-9a-f]{8}): ", output, re.MULTILINE).group(1)
    names = [f"{sweep_id}-{n}" for n in (1, 2, 3)]
    bad = f"{sweep_id}-4"
    failed = [line for line in output.splitlines() if line.startswith(f"{bad} failed on team-h")]
    assert len(failed) == 1 and "error: " in failed[0] and "learning_rate" in failed[0], output
    ranking = [line.split()[1] for line in output.splitlines() if line.strip()[:1].isdigit() and sweep_id in line]
    assert sorted(ranking) == names, output

    runs = sweep_runs(stack, sweep_id)
    parents = [r for r in runs if r.data.tags.get("sweep_role") == "parent"]
    assert len(parents) == 1 and parents[0].info.status == "FAILED"
    children = [r for r in runs if r.data.tags.get("sweep_trial")]
    assert all(r.data.tags["mlflow.parentRunId"] == parents[0].info.run_id for r in children)
    for name in names:
        finished = [r for r in children if r.data.tags["sweep_trial"] == name and r.info.status == "FINISHED"]
        assert len(finished) == 1 and finished[0].data.tags["dvc_exp_name"] == name, name
    retried = [r for r in children if r.data.tags["sweep_trial"] == killed_trial]
    assert sorted(r.info.status for r in retried) == ["FINISHED", "KILLED"], [r.info.status for r in retried]
    assert next(r for r in retried if r.info.status == "FINISHED").data.tags["host"] == "team-h1"
    pushed = git(origin, "for-each-ref", "--format=%(refname)", "refs/exps").split()
    assert sorted(ref.rsplit("/", 1)[1] for ref in pushed) == names, pushed  # once each, the failed one never

    again = run(driver, *sweep, env=alice, check=False, host=RAY_HEAD, lan=network)
    assert again.returncode == 1 and "3 already pushed, 1 to run" in again.stdout, again.stdout + again.stderr
    assert len(sweep_runs(stack, sweep_id)) == len(runs)  # nothing retrained; the bad trial fails before its run
    print(f"Ray sweep, head + 2 workers (one killed): {seconds:.0f} s for 4 trials")


def test_the_seed_table_on_a_ray_cluster_a_continuation_after_its_parent(stack, lan, clone_a, ray_cluster, tmp_path):
    """`python -m src.sweep --seed-table` on the head: a table of two rows and a continuation of one of
    them. The rows train side by side on the two workers, the continuation after its parent and from its
    parent's model; the head then records every row as its experiment left it and writes the table,
    training nothing itself: `dvc status` finds every row recorded, and the same command again has
    nothing to train."""
    network = hosts(lan)
    origin, driver = tmp_path / "origin.git", tmp_path / "driver"
    git(tmp_path, "clone", "-q", "--bare", str(clone_a[0]), str(origin))
    git(tmp_path, "clone", "-q", str(origin), str(driver))
    edit_params(driver, **{"seeds.rows": ["elu3", "vgg6_bn"], "seeds.continued": {"vgg6_bn_aug": "vgg6_bn"}},
                **{f"seeds.train.{row}.{key}": value for row in ("elu3", "vgg6_bn", "vgg6_bn_aug")
                   for key, value in (("epochs", 1), ("batch_size", 50))})
    git(driver, "commit", "-qam", "a seed table of two rows and a continuation")
    git(driver, "push", "-q", "origin", "HEAD")
    configure_remote(driver, stack, "alice", shared=False, host=RAY_HEAD, lan=network)
    alice = env_for(stack, "alice", RAY_AUTH_MODE="token", RAY_AUTH_TOKEN=ray_cluster.token)
    table = ["python", "-m", "src.sweep", "--address", ray_cluster.address, "--cpus", "1", "--seed-table"]

    started = time.perf_counter()
    result = run(driver, *table, env=alice, check=False, host=RAY_HEAD, lan=network, timeout=RAY_SWEEP_SECONDS)
    seconds = time.perf_counter() - started
    print(result.stdout[-3000:])
    assert result.returncode == 0, result.stdout + result.stderr
    assert "3 rows of the seed table (elu3 vgg6_bn vgg6_bn_aug); 0 already pushed, 3 to run" in result.stdout
    assert "dvc repro seeds/dvc.yaml ran: seeds/dvc.yaml:table\n" in result.stdout, result.stdout  # no row trained here
    sweep_id = re.search(r"^(seeds-[0-9a-f]{8}): ", result.stdout, re.MULTILINE).group(1)

    runs = {r.data.tags["sweep_trial"].removeprefix(f"{sweep_id}-"): r
            for r in sweep_runs(stack, sweep_id) if r.data.tags.get("sweep_trial")}
    parent = next(r for r in sweep_runs(stack, sweep_id) if r.data.tags.get("sweep_role") == "parent")
    assert sorted(runs) == ["elu3", "vgg6_bn", "vgg6_bn_aug"] and parent.info.status == "FINISHED"
    assert all(r.info.status == "FINISHED" and r.data.tags["mlflow.parentRunId"] == parent.info.run_id
               for r in runs.values())
    child, its_parent = runs["vgg6_bn_aug"], runs["vgg6_bn"]
    assert child.data.tags["init_from_run_id"] == its_parent.info.run_id
    assert child.info.start_time > its_parent.info.end_time  # it waited for its parent
    for row, tracked in runs.items():  # the workspace holds what each row's experiment trained
        assert json.loads((driver / f"seeds/models/{row}.run.json").read_text())["run_id"] == tracked.info.run_id
    status = run(driver, "dvc", "status", "seeds/dvc.yaml", env=alice).stdout
    assert status.strip() == "Data and pipelines are up to date.", status
    written = (driver / "reports/seeds.md").read_text()
    assert "| vgg6_bn_aug | 004 |" in written and "continues vgg6_bn" in written
    pushed = git(origin, "for-each-ref", "--format=%(refname)", "refs/exps").split()
    assert sorted(ref.rsplit("/", 1)[1] for ref in pushed) == [f"{sweep_id}-{row}" for row in sorted(runs)]

    git(driver, "add", "-A")
    git(driver, "commit", "-qm", "the seed table, trained on the cluster")
    git(driver, "push", "-q", "origin", "HEAD")
    again = run(driver, *table, env=alice, host=RAY_HEAD, lan=network)
    assert "every row of the seed table is recorded for this commit: nothing to train" in again.stdout, again.stdout
    print(f"seed table on Ray, head + 2 workers: {seconds:.0f} s for 2 rows and a continuation")


def test_b11_ray_sweep_benchmark_smoke(lan, cifar10_archive, tmp_path):
    """B11 builds its own servers, hosts and cluster (benchmarks/b11_ray_sweep.py): one trial each way."""
    hosts(lan)
    if not team_stack.postgres_available():
        pytest.skip("PostgreSQL 15 is not installed")
    from tests import cifar_fixtures

    results = tmp_path / "B.md"
    result = subprocess.run([sys.executable, "benchmarks/b11_ray_sweep.py", "--archive", str(cifar10_archive),
                             "--md5", cifar_fixtures.md5_of(cifar10_archive), "--values", "0.002", "--epochs", "1"],
                            cwd=REPO, capture_output=True, text=True, env=stage_env({"BENCHMARKS_MD": str(results)}),
                            timeout=RAY_SWEEP_SECONDS)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    text = results.read_text()
    assert "### B11 a sweep on a Ray cluster" in text and "Ratio cluster / one host: **" in text, text
