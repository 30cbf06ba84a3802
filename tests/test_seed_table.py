"""The seed table (seeds/dvc.yaml) in a temporary git copy of the repository: a pipeline of its own beside
the default one, a continuation that follows its parent, and a table regenerated from committed files."""

import json
import re
import shutil

import yaml

from tests.conftest import kill_once_backed_up, start_train_stage
from tests.test_dvc_pipeline import PNG_MAGIC, edit_params, ran_stages, sh, tiny_repo


def seeds_output_stages(output: str) -> list[str]:
    return sorted(name.removeprefix("seeds/dvc.yaml:") for name in ran_stages(output))


def kill_after_a_backup(root, row: str):
    """Train ``row`` of the seed table outside DVC and SIGKILL it once an epoch is backed up."""
    backup = root / "seeds/models/backup" / row
    process = start_train_stage(root, row, "--table", "seeds")
    assert 1 <= kill_once_backed_up(process, backup) < 3, (root / "train.log").read_text()
    return backup


def test_seed_table_is_its_own_pipeline_and_a_continuation_follows_its_parent(tmp_path, cifar10_archive):
    root = tiny_repo(tmp_path, cifar10_archive, ["elu3"])
    params = yaml.safe_load((root / "params.yaml").read_text())
    params["seeds"]["rows"] = ["elu3", "vgg6_bn"]
    for name in ("elu3", "vgg6_bn", "vgg6_bn_aug"):
        params["seeds"]["train"][name].update(epochs=1, batch_size=50)
    params["seeds"]["train"]["vgg6_bn_aug"]["epochs"] = 3  # room for a backup between epochs, below
    (root / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    sh(root, "git", "-c", "user.name=t", "-c", "user.email=t@t", "commit", "-qam", "tiny seeds")
    # The default `dvc repro` never trains the table's rows.
    assert not [stage for stage in ran_stages(sh(root, "dvc", "repro")) if stage.startswith("seeds/")]
    first = seeds_output_stages(sh(root, "dvc", "repro", "seeds/dvc.yaml"))
    assert first == ["continue@vgg6_bn_aug", "evaluate@elu3", "evaluate@vgg6_bn", "evaluate_continued@vgg6_bn_aug",
                     "table", "train@elu3", "train@vgg6_bn"]
    table = (root / "reports/seeds.md").read_text()
    assert "| vgg6_bn_aug | 004 |" in table and "continues vgg6_bn" in table and "| relu4 | 001 |" in table
    assert (root / "seeds/figures/augmented_vgg6_bn_aug.png").read_bytes().startswith(PNG_MAGIC)
    assert "Model summaries: [elu3](../seeds/reports/details/elu3/summary.txt)" in table
    assert "Total params" in (root / "seeds/reports/details/elu3/summary.txt").read_text()
    assert re.search(r"elu3: accuracy on its own training images in inference mode \d+\.\d\d %", table)
    assert re.search(r"\| elu3 \| pipeline \| CPU: .*, family/model \d+/\d+ \|", table)
    # The continuation starts from its parent's trained model, and MLflow says which run that was.
    import mlflow

    client = mlflow.MlflowClient(tracking_uri=f"sqlite:///{root / 'mlflow.db'}")
    parent = json.loads((root / "seeds/models/vgg6_bn.run.json").read_text())["run_id"]
    child = client.get_run(json.loads((root / "seeds/models/vgg6_bn_aug.run.json").read_text())["run_id"])
    assert child.data.tags["init_from_run_id"] == parent and child.data.tags["table"] == "seeds"
    # A continuation killed after an epoch leaves a backup of training on top of this parent.
    backup = kill_after_a_backup(root, "vgg6_bn_aug")
    # Retraining the parent retrains the child and nothing else; the default pipeline stays as it is.
    edit_params(root, **{"seeds.train.vgg6_bn.learning_rate": 0.002})
    retrain = sh(root, "dvc", "repro", "seeds/dvc.yaml")
    assert seeds_output_stages(retrain) == [
        "continue@vgg6_bn_aug", "evaluate@vgg6_bn", "evaluate_continued@vgg6_bn_aug", "table", "train@vgg6_bn"]
    assert "resuming" not in retrain and not backup.exists()  # its backup was of the old parent
    assert "up to date" in sh(root, "dvc", "status", "dvc.yaml")
    # The commit a row names is the one its training started from (its MLflow run's tag), not where HEAD
    # stood when a long training ended (what NAME.run.json records).
    retrained = json.loads((root / "seeds/models/vgg6_bn.run.json").read_text())["run_id"]
    client.set_tag(retrained, "git_commit", "0" * 40)
    sh(root, "dvc", "repro", "--force", "--single-item", "seeds/dvc.yaml:evaluate@vgg6_bn")
    provenance = json.loads((root / "seeds/reports/details/vgg6_bn/training_run.json").read_text())
    assert provenance["run_id"] == retrained and provenance["git_commit"] == "0" * 40
    assert provenance["cpu_family_model"] == client.get_run(retrained).data.tags["cpu_family_model"]
    sh(root, "dvc", "repro", "--single-item", "seeds/dvc.yaml:table")
    # The table reads committed files only: a clone without the models or the DVC cache regenerates it.
    table = (root / "reports/seeds.md").read_text()
    shutil.rmtree(root / "seeds/models")
    shutil.rmtree(root / ".dvc/cache")
    sh(root, "dvc", "repro", "--single-item", "--force", "seeds/dvc.yaml:table")
    assert (root / "reports/seeds.md").read_text() == table
