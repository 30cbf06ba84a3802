"""The pipeline's paths, in one place. dvc.yaml names the same files; stages run from the repository root.

Relative on purpose: DVC runs every stage with the working directory at the root of the repository
(or of the temporary copy a queued or `--temp` experiment runs in), so outputs land beside dvc.yaml.
"""

from pathlib import Path

PARAMS_FILE = Path("params.yaml")

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

# MLflow's embedded store, anchored at the project root (see src/tracking.py).
MLFLOW_DB = "mlflow.db"
MLFLOW_ARTIFACTS = "mlruns"


def model_file(name: str) -> Path:
    return MODELS_DIR / f"{name}.keras"


def run_file(name: str) -> Path:
    """The MLflow run that trained models/NAME.keras: written by train, read by evaluate, report, promote."""
    return MODELS_DIR / f"{name}.run.json"
