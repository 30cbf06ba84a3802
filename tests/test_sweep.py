"""`python -m src.sweep` without a cluster: its grid, its names, and the one `error:` line for each
problem found before any trial runs. The sweep itself, on a Ray cluster of three hosts with a worker
killed, is tests/test_team.py's."""

import socket
import subprocess
import sys

import pytest

from src.cluster import grid
from src.cluster.trial import error_line
from tests.conftest import REPO, assert_one_error_line, stage_env


def sweep(*args: str, **env: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "src.sweep", *args], cwd=REPO, capture_output=True, text=True,
                          env=stage_env({"RAY_AUTH_TOKEN": "t" * 64, "MLFLOW_TRACKING_URI": "http://127.0.0.1:9",
                                         **env}))


def closed_port() -> int:
    with socket.socket() as free:
        free.bind(("127.0.0.1", 0))
        return free.getsockname()[1]


def test_the_grid_is_every_combination_in_order():
    settings = grid.parse_settings(["train.elu3.learning_rate=0.001,0.002", "train.elu3.epochs=5, 10"])
    made = grid.trials("sweep-x", ["train@elu3"], settings)
    rate, epochs = "train.elu3.learning_rate", "train.elu3.epochs"
    assert [t.params for t in made] == [(f"{rate}=0.001", f"{epochs}=5"), (f"{rate}=0.001", f"{epochs}=10"),
                                        (f"{rate}=0.002", f"{epochs}=5"), (f"{rate}=0.002", f"{epochs}=10")]
    assert [t.name for t in made] == ["sweep-x-1", "sweep-x-2", "sweep-x-3", "sweep-x-4"]
    assert grid.nets_swept(settings) == ["elu3"]


def test_the_same_sweep_has_the_same_id_and_another_does_not():
    settings = grid.parse_settings(["train.elu3.learning_rate=0.001,0.002"])
    same = grid.sweep_id("c0ffee", ["train@elu3"], settings)
    assert same == grid.sweep_id("c0ffee", ["train@elu3"], list(settings))
    assert same != grid.sweep_id("c0ffee", ["evaluate@elu3"], settings)
    assert same != grid.sweep_id("decade", ["train@elu3"], settings)
    assert same != grid.sweep_id("c0ffee", ["train@elu3"], grid.parse_settings(["train.elu3.learning_rate=0.001"]))


@pytest.mark.parametrize("setting", ["train.elu3.learning_rate", "=0.1", "train.elu3.epochs=5,,6"])
def test_a_setting_that_is_not_key_equals_values_is_refused(setting):
    with pytest.raises(Exception, match="is not KEY=VALUE"):
        grid.parse_settings([setting])


def test_the_trial_shows_the_stages_own_error_line_before_dvcs():
    output = ("Running stage 'train@elu3':\nerror: params.yaml: train.elu3.learning_rate: must be > 0\n"
              "ERROR: failed to reproduce 'train@elu3': exited with 2\n")
    assert error_line(output) == "error: params.yaml: train.elu3.learning_rate: must be > 0"
    assert error_line("Traceback …\nValueError: boom\n") == "ValueError: boom"


def test_an_unreachable_head_is_one_error_line_naming_its_address():
    address = f"127.0.0.1:{closed_port()}"
    result = sweep("--address", address, "-S", "train.elu3.learning_rate=0.001")
    print(assert_one_error_line(result, f"--address {address}", "ray start --head"))


def test_no_token_is_one_error_line_before_connecting(tmp_path):
    with socket.socket() as listening:  # something answers at the address: the token is checked next
        listening.bind(("127.0.0.1", 0))
        listening.listen()
        address = f"127.0.0.1:{listening.getsockname()[1]}"
        result = sweep("--address", address, "-S", "train.elu3.learning_rate=0.001", RAY_AUTH_TOKEN="",
                       RAY_AUTH_TOKEN_PATH=str(tmp_path / "none"))
    print(assert_one_error_line(result, "no Ray token", "RAY_AUTH_TOKEN"))


def test_a_local_tracking_store_is_refused():
    with socket.socket() as listening:
        listening.bind(("127.0.0.1", 0))
        listening.listen()
        result = sweep("--address", f"127.0.0.1:{listening.getsockname()[1]}", "-S", "train.elu3.epochs=1",
                       MLFLOW_TRACKING_URI="")
    print(assert_one_error_line(result, "MLFLOW_TRACKING_URI", "docs/team.md"))
