"""A recipe: one `train.NAME` (or `seeds.train.NAME`) section of params.yaml, each default given once here."""

from typing import Annotated, Literal

from pydantic import Field, model_validator

from src.core.schema import Section

Fraction = Annotated[float, Field(ge=0, lt=1)]
# Each set of choices, once: src/training/fit.py builds one Keras object per name, a test checks it covers these.
Optimizer = Literal["adam", "adamw", "sgd", "rmsprop"]
Schedule = Literal["constant", "inverse_time", "cosine", "onecycle"]
Precision = Literal["float32", "bfloat16", "float16"]
Normalization = Literal["scale", "standardize", "per_channel"]


class Augmentation(Section):
    horizontal_flip: bool = False
    shift: float = Field(0.0, ge=0, le=0.5)
    crop_padding: int = Field(0, ge=0, le=16)


class EarlyStopping(Section):
    monitor: Literal["val_loss", "val_accuracy"]
    patience: int = Field(ge=1)
    restore_best_weights: bool = False


class Train(Section):
    # The net it trains (src/architectures/NET.py); null: the net named as the recipe. A continuation
    # (`init_from`) may be named otherwise: it trains its parent's net on.
    net: str | None = None
    optimizer: Optimizer
    learning_rate: float = Field(gt=0)
    momentum: Fraction | None = None  # sgd only
    nesterov: bool | None = None  # sgd only
    schedule: Schedule = "constant"
    decay: float | None = Field(None, ge=0)  # inverse_time only: Keras 2's `decay`
    weight_decay: float | None = Field(None, ge=0)  # null: the optimizer's default (AdamW 0.004, else none)
    label_smoothing: Fraction = 0.0
    batch_size: int = Field(ge=1)
    # Leave out each epoch's last, partial batch (tf.data's drop_remainder, PyTorch's drop_last).
    drop_remainder: bool = False
    epochs: int = Field(ge=1)
    # Airbench's Lookahead: training ends on an average of its last steps' weights (src/training/fit.py).
    lookahead: bool = False
    augmentation: Augmentation | None = None
    early_stopping: EarlyStopping | None = None
    weights: Literal["imagenet"] | None = None  # a net declaring PRETRAINED_WEIGHTS only; null: from scratch
    # scale: /255 (seeds 001-004); standardize: one mean and std over all pixels (seed 000); per_channel.
    # Statistics from the training images of the split only, applied inside the model.
    normalization: Normalization = "scale"
    # Start from this train section's trained model instead of random weights (seed 004's cifar_cnn_4 is
    # cifar_cnn_3 trained on with augmentation): the same net, the same normalization.
    init_from: str | None = None
    seed: int = Field(ge=0)
    # Keras' mixed_bfloat16 / mixed_float16 policy. bfloat16: float32 where the CPU lacks bfloat16
    # instructions; float16 is for GPUs and trains in float32 on a CPU.
    precision: Precision = "float32"

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
