"""params.yaml: one declarative schema (pydantic), checked as a whole before any stage works.

Every stage calls :func:`load_params` first, so a bad value anywhere in the file stops the
pipeline before any stage does work, with one line listing every problem found. Every section
refuses unknown keys and suggests the closest valid one.
"""

import difflib
from pathlib import Path
from typing import Annotated, Any, Literal

import yaml
from pydantic import AfterValidator, BaseModel, ConfigDict, Field, StringConstraints, ValidationError, model_validator

from src import architectures
from src.config import PARAMS_FILE
from src.errors import PipelineError

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

Dataset = Literal["cifar10", "cifar100"]
Fraction = Annotated[float, Field(ge=0, lt=1)]


class Section(BaseModel):
    # strict: `true` is not the number 1, "0.5" is not 0.5, and `1e-3` (a string in YAML 1.1) is refused.
    model_config = ConfigDict(extra="forbid", strict=True)


class Data(Section):
    dataset: Dataset
    source: Annotated[str, StringConstraints(min_length=1)] | None = None  # null: the official URL
    md5: Annotated[str, StringConstraints(pattern=r"^[0-9a-f]{32}$")] | None = None  # null: the official md5
    label_mode: Literal["fine", "coarse"] = "fine"  # CIFAR-100's 100 classes or 20 superclasses


class Split(Section):
    val_fraction: float = Field(gt=0, lt=1)
    seed: int = Field(ge=0)


class Augmentation(Section):
    horizontal_flip: bool = False
    shift: float = Field(0.0, ge=0, le=0.5)
    crop_padding: int = Field(0, ge=0, le=16)


class EarlyStopping(Section):
    monitor: Literal["val_loss", "val_accuracy"]
    patience: int = Field(ge=1)
    restore_best_weights: bool = False


class Train(Section):
    optimizer: Literal["adam", "adamw", "sgd", "rmsprop"]
    learning_rate: float = Field(gt=0)
    momentum: Fraction | None = None  # sgd only
    nesterov: bool | None = None  # sgd only
    schedule: Literal["constant", "inverse_time", "cosine", "onecycle"] = "constant"
    decay: float | None = Field(None, ge=0)  # inverse_time only: Keras 2's `decay`
    weight_decay: float | None = Field(None, ge=0)  # null: the optimizer's default (AdamW 0.004, else none)
    label_smoothing: Fraction = 0.0
    batch_size: int = Field(ge=1)
    # Leave out each epoch's last, partial batch (tf.data's drop_remainder, PyTorch's drop_last).
    drop_remainder: bool = False
    epochs: int = Field(ge=1)
    # Airbench's Lookahead: training ends on an average of its last steps' weights (src/training.py).
    lookahead: bool = False
    augmentation: Augmentation | None = None
    early_stopping: EarlyStopping | None = None
    weights: Literal["imagenet"] | None = None  # vgg16_* only; null trains from scratch
    # scale: /255 (seeds 001-004); standardize: one mean and std over all pixels (seed 000); per_channel.
    # Statistics from the training images of the split only, applied inside the model.
    normalization: Literal["scale", "standardize", "per_channel"] = "scale"
    # Start from this train section's trained model instead of random weights (seed 004's cifar_cnn_4 is
    # cifar_cnn_3 trained on with augmentation): the same net, the same normalization.
    init_from: str | None = None
    seed: int = Field(ge=0)
    jit_compile: bool = False
    # Keras' mixed_bfloat16 / mixed_float16 policy. bfloat16: float32 where the CPU lacks bfloat16
    # instructions; float16 is for GPUs and trains in float32 on a CPU.
    precision: Literal["float32", "bfloat16", "float16"] = "float32"

    @model_validator(mode="after")
    def keys_that_apply(self) -> "Train":
        problems = []
        if self.optimizer != "sgd":
            problems += [f"`{key}` applies to sgd only, not {self.optimizer}; remove it"
                         for key in ("momentum", "nesterov") if getattr(self, key) is not None]
        if self.schedule == "inverse_time" and self.decay is None:
            problems.append("`schedule: inverse_time` needs `decay`")
        if self.schedule != "inverse_time" and self.decay is not None:
            problems.append(f"`decay` applies to `schedule: inverse_time` only, not {self.schedule}; remove it")
        if self.lookahead and self.early_stopping and self.early_stopping.restore_best_weights:
            # Lookahead ends training on its slow weights, which no epoch validated; restoring the best
            # epoch after it would silently throw that average away.
            problems.append("`lookahead` and `early_stopping.restore_best_weights` exclude each other: the "
                            "restored epoch would discard Lookahead's final average; drop one of them")
        if problems:
            raise ValueError("; ".join(problems))
        return self


class Reference(Section):
    """The seed notebook's own figures for a row of the seed table: read by the table only, never by training."""

    seed: Annotated[str, StringConstraints(pattern=r"^\d{3}$")]  # the notebook in ../shared/seeds/
    epochs: int | None = Field(None, ge=1)
    accuracy: float | None = Field(None, ge=0, le=1)
    dataset: Dataset = "cifar10"
    label_mode: Literal["fine", "coarse"] = "fine"
    note: str | None = None  # what differs from the notebook, or why the row cannot run here


class Evaluate(Section):
    batch_size: int = Field(ge=1)
    # Test-time augmentation of the `*_tta` test metrics, of the model promote registers and of predict
    # (src/tta.py); none: one prediction per image.
    tta: Literal["none", "flip", "flip_shift"] = "none"


def _registered(names: list[str]) -> list[str]:
    known, problems = architecture_names(), []
    for name in dict.fromkeys(names):
        if names.count(name) > 1:
            problems.append(f"lists {name!r} twice")
        if name not in known:
            close = difflib.get_close_matches(name, known, n=1)
            hint = f"did you mean {close[0]!r}? " if close else ""
            problems.append(f"unknown architecture {name!r}; {hint}choose from {', '.join(known)}")
    if problems:
        raise ValueError("; ".join(problems))
    return names


def _train_problems(train: dict[str, Train], prefix: str) -> list[str]:
    problems = [f"`{prefix}.{name}.weights` applies to vgg16_* only; remove it"
                for name, config in train.items() if config.weights and not name.startswith("vgg16")]
    for name, config in train.items():
        parent = train.get(config.init_from) if config.init_from else None
        if config.init_from and (parent is None or config.init_from == name):
            problems.append(f"`{prefix}.{name}.init_from` names {config.init_from!r}, which is not another "
                            f"section of `{prefix}`")
        elif parent and parent.normalization != config.normalization:
            problems.append(f"`{prefix}.{name}.normalization` must be its parent's ({parent.normalization}): "
                            f"it continues {config.init_from}'s trained model")
    return problems


class Seeds(Section):
    """The seed notebooks' own experiments, each as its notebook runs it: seeds/dvc.yaml trains them, apart
    from the default `dvc repro`. `rows` train from scratch; `continued` maps a row to the row whose
    trained model it starts from (its `init_from`), so DVC retrains it when its parent changes."""

    rows: Annotated[list[str], Field(min_length=1), AfterValidator(_registered)]
    continued: dict[str, str] = {}
    train: dict[str, Train]
    reference: dict[str, Reference] = {}

    @model_validator(mode="after")
    def rows_have_sections(self) -> "Seeds":
        problems = [f"`seeds.train.{name}` section is missing; every row needs one"
                    for name in [*self.rows, *self.continued] if name not in self.train]
        problems += [f"`seeds.continued` names {child!r}, also in `seeds.rows`: a row trains once"
                     for child in self.continued if child in self.rows]
        problems += [f"`seeds.continued.{child}` is {parent!r} but `seeds.train.{child}.init_from` is "
                     f"{self.train[child].init_from!r}; make them the same"
                     for child, parent in self.continued.items()
                     if child in self.train and self.train[child].init_from != parent]
        problems += [f"`seeds.train.{name}.init_from` is set but {name!r} is not in `seeds.continued`; add "
                     f"`{name}: {self.train[name].init_from}` there so DVC knows what it continues"
                     for name in self.rows if name in self.train and self.train[name].init_from]
        problems += _train_problems(self.train, "seeds.train")
        if problems:
            raise ValueError("; ".join(problems))
        return self


class Params(Section):
    data: Data
    split: Split
    architectures: Annotated[list[str], Field(min_length=1), AfterValidator(_registered)]
    train: dict[str, Train]
    evaluate: Evaluate
    seeds: Seeds | None = None

    @model_validator(mode="after")
    def sections_exist(self) -> "Params":
        problems = [f"`train.{name}` section is missing; every name in `architectures` needs one"
                    for name in dict.fromkeys(self.architectures) if name not in self.train]
        problems += [f"`train.{name}.init_from`: the default pipeline trains every net from scratch; a "
                     "continuation is a row of the seed table (`seeds.continued`)"
                     for name, config in self.train.items() if config.init_from]
        problems += _train_problems(self.train, "train")
        if problems:
            raise ValueError("; ".join(problems))
        return self


def architecture_names() -> list[str]:
    return architectures.names()


def _allowed_keys(location: tuple) -> list[str]:
    """The keys the schema accepts at the mapping that holds ``location``'s last key."""
    model: Any = Params
    for key in location[:-1]:
        field = model.model_fields.get(key) if isinstance(key, str) and hasattr(model, "model_fields") else None
        if field is None:  # a key of a dict[str, Model]: same model for every name
            continue
        annotation = field.annotation
        for candidate in (*getattr(annotation, "__args__", ()), annotation):
            if isinstance(candidate, type) and issubclass(candidate, BaseModel):
                model = candidate
                break
    return list(model.model_fields) if hasattr(model, "model_fields") else []


def _describe(error: dict) -> str:
    location = tuple(error["loc"])
    # pydantic names the union member or the validator it tried ("function-after[...]"): not the user's key.
    path = ".".join(str(key) for key in location if not str(key).startswith(("function-", "constrained-")))
    kind = error["type"]
    if kind == "missing":
        return f"`{path}` is missing"
    if kind == "extra_forbidden":
        allowed = _allowed_keys(location)
        close = difflib.get_close_matches(str(location[-1]), allowed, n=1)
        hint = f"did you mean `{close[0]}`? " if close else ""
        return f"`{path}` is not a known key; {hint}allowed: {', '.join(allowed)}"
    message = error["msg"].removeprefix("Value error, ")
    if kind == "value_error":
        return f"`{path}`: {message}" if path else message
    return f"`{path}` is {error['input']!r}: {message}"


def validate(params: Any) -> dict:
    """The params as plain dicts (nulls dropped), or one PipelineError listing every problem."""
    if not isinstance(params, dict):
        raise PipelineError(f"{PARAMS_FILE} is not a mapping of sections; restore it from git")
    try:
        checked = Params.model_validate(params)
    except ValidationError as error:
        problems = [_describe(e) for e in error.errors(include_url=False)]
        count = len(problems)
        raise PipelineError(f"{PARAMS_FILE} has {count} problem{'s' if count > 1 else ''}: "
                            + "; ".join(problems)) from None
    return checked.model_dump(exclude_none=True)


def load_params(path: Path | str = PARAMS_FILE) -> dict:
    """Read and validate params.yaml (the whole file, whichever stage asks)."""
    path = Path(path)
    try:
        params = yaml.safe_load(path.read_text())
    except FileNotFoundError:
        raise PipelineError(f"{path} is missing; run from the repository root") from None
    except yaml.YAMLError as error:
        raise PipelineError(f"{path} is not valid YAML: {' '.join(str(error).split())}") from None
    return validate(params)


def dataset_source(data: dict) -> tuple[str, str]:
    """The source and md5 to download: ``null`` in params means the official ones."""
    official = DATASETS[data["dataset"]]
    return data.get("source") or official["url"], data.get("md5") or official["md5"]


def train_sections(params: dict, table: str) -> dict[str, dict]:
    """The train sections a table's stages read: `train` (the default pipeline) or `seeds.train`."""
    if table == "seeds":
        if "seeds" not in params:
            raise PipelineError(f"{PARAMS_FILE} has no `seeds` section; restore it from git to run the seed table")
        return params["seeds"]["train"]
    return params["train"]
