"""A seed notebook's own figures for a row of the seed table (`seeds.reference`)."""

from typing import Annotated, Literal

from pydantic import Field, StringConstraints

from src.core.schema import Section
from src.data.schema import Dataset


class Reference(Section):
    """The seed notebook's own figures for a row of the seed table: read by the table only, never by training."""

    seed: Annotated[str, StringConstraints(pattern=r"^\d{3}$")]  # the notebook in ../shared/seeds/
    epochs: int | None = Field(None, ge=1)
    accuracy: float | None = Field(None, ge=0, le=1)
    dataset: Dataset = "cifar10"
    label_mode: Literal["fine", "coarse"] = "fine"
    note: str | None = None  # what differs from the notebook, or why the row cannot run here
