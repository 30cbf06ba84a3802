"""The base of every params.yaml section's schema."""

from pydantic import BaseModel, ConfigDict


class Section(BaseModel):
    # strict: `true` is not the number 1, "0.5" is not 0.5, and `1e-3` (a string in YAML 1.1) is refused.
    # frozen: the validated params reach the code that uses them and cannot drift from what was checked.
    model_config = ConfigDict(extra="forbid", strict=True, frozen=True)
