"""`python -m src.sweep` without a cluster: its grid, its names, and the one `error:` line for each
problem found before any trial runs; which seed-table rows train, and in what order. The sweep and the
seed table themselves, on a Ray cluster of three hosts with a worker killed, are tests/test_team.py's."""

import socket
import subprocess
import sys

import pytest

from src.cluster import grid, seed_table
from src.cluster.trial import error_line
from src.core.errors import PipelineError
from src.sweep import seed_rows
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


# --- the seed table's rows as trials (--seed-table) ------------------------------------------------

def test_a_row_is_to_train_when_dvc_would_run_it_not_when_its_files_are_only_absent():
    absent = [{"changed outs": {"seeds/models/elu3.keras": "not in cache", "seeds/models/elu3.run.json": "deleted"}},
              {"changed deps": {"seeds/models/vgg6_bn.keras": "deleted"}}]
    assert not seed_table.changed(absent) and not seed_table.changed([])
    assert seed_table.changed([{"changed deps": {"src/training": "modified"}}])
    assert seed_table.changed([{"changed params": {"params.yaml": {"seeds.train.elu3.epochs": "modified"}}}])
    assert seed_table.changed([{"changed command": True}])
    assert seed_table.changed(["always changed"])
    assert seed_table.changed([*absent, {"changed outs": {"seeds/models/elu3.keras": "modified"}}])


def test_a_continuation_of_a_row_trained_here_starts_from_its_experiment():
    made = seed_table.trials("seeds-x", ["elu3", "vgg6_bn", "vgg6_bn_aug"], {"vgg6_bn_aug": "vgg6_bn"})
    assert [(t.name, t.targets, t.starts_from) for t in made] == [
        ("seeds-x-elu3", ("seeds/dvc.yaml:evaluate@elu3",), None),
        ("seeds-x-vgg6_bn", ("seeds/dvc.yaml:evaluate@vgg6_bn",), None),
        ("seeds-x-vgg6_bn_aug", ("seeds/dvc.yaml:evaluate_continued@vgg6_bn_aug",), "seeds-x-vgg6_bn")]
    alone = seed_table.trials("seeds-x", ["vgg6_bn_aug"], {"vgg6_bn_aug": "vgg6_bn"})
    assert alone[0].starts_from is None  # its parent is recorded: `dvc exp run --pull` pulls its model


def test_rows_named_are_taken_in_the_tables_order_and_an_unknown_row_is_refused():
    from src.core.params import load_params

    seeds = load_params().seeds
    assert seed_rows(["vgg6_bn_aug", "elu3"], seeds) == ["elu3", "vgg6_bn_aug"]
    with pytest.raises(PipelineError, match="'vgg7', not a row of the seed table; its rows are elu3, "):
        seed_rows(["vgg7"], seeds)


def test_seed_table_and_target_together_are_refused():
    result = sweep("--address", "127.0.0.1:1", "--seed-table", "--target", "train@elu3")
    assert result.returncode == 2 and "--target goes with -S" in result.stderr, result.stderr
