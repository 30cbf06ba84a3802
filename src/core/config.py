"""The pipeline's paths, in one place. dvc.yaml names the same files; stages run from the repository root.

Relative on purpose: DVC runs every stage with the working directory at the root of the repository
(or of the temporary copy a queued or `--temp` experiment runs in), so outputs land beside dvc.yaml.
"""

import os
from dataclasses import dataclass
from pathlib import Path

PARAMS_FILE = Path("params.yaml")

# Where each data set comes from when `data.source` and `data.md5` are null.
DATASETS = {
    "cifar10": {
        "url": "https://www.cs.toronto.edu/~kriz/cifar-10-python.tar.gz",
        "md5": "c58f30108f718f92721af3b95e74349a",
        "archive": "cifar-10-python.tar.gz",
    },
    "cifar100": {
        "url": "https://www.cs.toronto.edu/~kriz/cifar-100-python.tar.gz",
        "md5": "eb9058c3a382ffc7106e4002c42a8d85",
        "archive": "cifar-100-python.tar.gz",
    },
}

DATA_DIR = Path("data")
RAW_DIR = DATA_DIR / "raw"
PROCESSED_DIR = DATA_DIR / "processed"
SPLIT_DIR = DATA_DIR / "split"
SPLIT_FILES = ["train_images", "train_labels", "val_images", "val_labels"]

MODELS_DIR = Path("models")

REPORTS_DIR = Path("reports")
TRAIN_METRICS_DIR = REPORTS_DIR / "train"
HISTORY_DIR = REPORTS_DIR / "history"
EVAL_DIR = REPORTS_DIR / "eval"
PREDICTIONS_DIR = REPORTS_DIR / "predictions"
DETAILS_DIR = REPORTS_DIR / "details"
FIGURES_DIR = REPORTS_DIR / "figures"
# Where train and evaluate write one NAME.* file (or NAME/ folder) per architecture.
PER_ARCHITECTURE_DIRS = [TRAIN_METRICS_DIR, HISTORY_DIR, EVAL_DIR, PREDICTIONS_DIR, DETAILS_DIR]
REPORT_FILE = REPORTS_DIR / "report.md"

# The seed table (seeds/dvc.yaml) keeps its models and per-row results under seeds/, laid out as the
# default pipeline's, so neither pipeline's outputs or report dependencies touch the other's.
SEEDS_DIR = Path("seeds")
SEEDS_TABLE_FILE = REPORTS_DIR / "seeds.md"
SEEDS_FIGURES_DIR = SEEDS_DIR / "figures"
NOTEBOOK_RESULTS_DIR = SEEDS_DIR / "notebooks"  # the notebooks' own code on the same archive

# Set it to keep training backups outside the work tree, so a new checkout resumes (docs/pipeline.md).
BACKUP_DIR_VARIABLE = "TRAINING_BACKUP_DIR"

# MLflow's embedded store, anchored at the project root (see src/core/tracking.py).
MLFLOW_DB = "mlflow.db"
MLFLOW_ARTIFACTS = "mlruns"


def model_file(name: str) -> Path:
    return MODELS_DIR / f"{name}.keras"


def run_file(name: str) -> Path:
    """The MLflow run that trained models/NAME.keras: written by train, read by evaluate, report, promote."""
    return MODELS_DIR / f"{name}.run.json"


@dataclass(frozen=True)
class Table:
    """A pipeline that trains nets and writes one result per net: the default pipeline (dvc.yaml, recipes in
    `train`, outputs at the root: models/, reports/...) or the seed table (seeds/dvc.yaml, recipes in
    `seeds.train`, outputs under seeds/, laid out alike so neither touches the other's files)."""

    name: str  # as the stages' `--table` option and the MLflow tag `table` say it
    root: Path
    dvc_file: str  # how `dvc repro` names its stages: ``train@NAME`` or ``seeds/dvc.yaml:train@NAME``
    recipes_key: str  # where its recipes are in params.yaml
    run_suffix: str  # after the net's name in the MLflow run name
    title: str  # what it is, in a sentence

    def stage(self, stage: str, name: str) -> str:
        """The stage as `dvc repro` takes it, e.g. ``seeds/dvc.yaml:train@elu3``."""
        return f"{self.dvc_file}:{stage}@{name}" if self.dvc_file else f"{stage}@{name}"

    @property
    def models_dir(self) -> Path:
        return self.root / MODELS_DIR

    @property
    def train_metrics_dir(self) -> Path:
        return self.root / TRAIN_METRICS_DIR

    @property
    def history_dir(self) -> Path:
        return self.root / HISTORY_DIR

    @property
    def eval_dir(self) -> Path:
        return self.root / EVAL_DIR

    @property
    def predictions_dir(self) -> Path:
        return self.root / PREDICTIONS_DIR

    @property
    def details_dir(self) -> Path:
        return self.root / DETAILS_DIR

    def model_file(self, name: str) -> Path:
        return self.root / model_file(name)

    def run_file(self, name: str) -> Path:
        return self.root / run_file(name)

    def backup_dir(self, name: str) -> Path:
        """Where a killed training's state waits for its rerun: models/backup/NAME/ in the work tree, or
        $TRAINING_BACKUP_DIR/NAME/ (seeds/NAME/ for the seed table) on a disk that outlives the checkout."""
        shared = os.environ.get(BACKUP_DIR_VARIABLE)
        return Path(shared) / self.root / name if shared else self.models_dir / "backup" / name


DEFAULT_TABLE = Table("default", Path("."), "", "train", "", "the default pipeline (dvc.yaml)")
SEED_TABLE = Table("seeds", SEEDS_DIR, "seeds/dvc.yaml", "seeds.train", " (seed table)",
                   "the seed table (seeds/dvc.yaml): a seed notebook's experiment as its notebook trains it")
TABLES = {table.name: table for table in (DEFAULT_TABLE, SEED_TABLE)}


def dataset_source(data) -> tuple[str, str]:
    """The source and md5 to download for the `data` params: ``null`` means the official ones."""
    official = DATASETS[data.dataset]
    return data.source or official["url"], data.md5 or official["md5"]
