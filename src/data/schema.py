"""The `data` and `split` params: which data set, from where, and how it is split."""

from typing import Annotated, Literal

from pydantic import Field, StringConstraints

from src.core.schema import Section

Dataset = Literal["cifar10", "cifar100"]


class Data(Section):
    dataset: Dataset
    source: Annotated[str, StringConstraints(min_length=1)] | None = None  # null: the official URL
    md5: Annotated[str, StringConstraints(pattern=r"^[0-9a-f]{32}$")] | None = None  # null: the official md5
    label_mode: Literal["fine", "coarse"] = "fine"  # CIFAR-100's 100 classes or 20 superclasses


class Split(Section):
    val_fraction: float = Field(gt=0, lt=1)
    seed: int = Field(ge=0)
