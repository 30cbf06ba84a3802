"""What a sweep runs: the grid of `-S` lists (as `dvc exp run -S` takes them), each combination a trial
named after the sweep, and the sweep's id, the same for the same commit, targets and grid (so running a
sweep again finds its finished trials)."""

import hashlib
import itertools
import json

from src.cluster.trial import Trial
from src.core.errors import PipelineError


def parse_settings(settings: list[str]) -> list[tuple[str, list[str]]]:
    """``['train.elu3.learning_rate=0.001,0.002', 'train.elu3.epochs=5']`` -> each key with its values."""
    parsed = []
    for setting in settings:
        key, sep, values = setting.partition("=")
        choices = [value.strip() for value in values.split(",")]
        if not sep or not key.strip() or "" in choices:
            raise PipelineError(f"-S {setting!r} is not KEY=VALUE[,VALUE…]; write it as `dvc exp run -S` takes "
                                "it, e.g. -S 'train.elu3.learning_rate=0.0005,0.001'")
        parsed.append((key.strip(), choices))
    keys = [key for key, _ in parsed]
    if len(set(keys)) != len(keys):
        raise PipelineError(f"-S names {sorted(k for k in keys if keys.count(k) > 1)[0]} twice; give its "
                            "values in one -S, separated by commas")
    return parsed


def sweep_id(commit: str, targets: list[str], settings: list[tuple[str, list[str]]], prefix: str = "sweep") -> str:
    identity = json.dumps([commit, sorted(targets), sorted(settings)])
    return f"{prefix}-" + hashlib.sha256(identity.encode()).hexdigest()[:8]


def trials(sweep: str, targets: list[str], settings: list[tuple[str, list[str]]]) -> list[Trial]:
    """One trial per combination, in the grid's order, named SWEEP-1, SWEEP-2, …"""
    keys = [key for key, _ in settings]
    combinations = itertools.product(*(values for _, values in settings))
    return [Trial(f"{sweep}-{number}", tuple(f"{k}={v}" for k, v in zip(keys, values, strict=True)), tuple(targets))
            for number, values in enumerate(combinations, start=1)]


def nets_swept(settings: list[tuple[str, list[str]]]) -> list[str]:
    """The recipes (`train` sections) the -S keys change: their validation accuracy ranks the trials."""
    return sorted({key.split(".")[1] for key, _ in settings if key.startswith("train.") and key.count(".") >= 2})
