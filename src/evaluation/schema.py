"""The `evaluate` params."""

from typing import Literal

from pydantic import Field

from src.core.schema import Section

# Test-time augmentation's modes, once (src/evaluation/tta.py builds them).
TtaMode = Literal["none", "flip", "flip_shift"]


class Evaluate(Section):
    batch_size: int = Field(ge=1)
    # Test-time augmentation of the `*_tta` test metrics, of the model promote registers and of predict
    # (src/evaluation/tta.py); none: one prediction per image.
    tta: TtaMode = "none"
