"""The architecture zoo: one module per net, each a short function named as its file.

``NAME(x, num_classes)`` maps the normalized (and, in training, augmented) image tensor to class
logits; :func:`src.training.models.build_model` adds what every net shares. A train stage depends on its own
net's module and on blocks.py (dvc.yaml), so editing one net reruns only that net's stages.
"""

import ast
import importlib
from collections.abc import Callable
from pathlib import Path

SHARED_MODULES = {"__init__", "blocks"}


def names() -> list[str]:
    """Every architecture: the modules of this folder, listed without importing Keras (seconds)."""
    return sorted(path.stem for path in Path(__file__).parent.glob("*.py") if path.stem not in SHARED_MODULES)


def get(name: str) -> Callable:
    return getattr(importlib.import_module(f"{__name__}.{name}"), name)


def data_initializer(name: str) -> Callable | None:
    """The net's ``init_from_data(model, images)``, if its layers are set from the training images."""
    return getattr(importlib.import_module(f"{__name__}.{name}"), "init_from_data", None)


def pretrained_weights(name: str) -> tuple[str, ...]:
    """The pretrained weights a net can start from (`weights` in its recipe): its module's
    ``PRETRAINED_WEIGHTS``, read from the source without importing Keras; none if it declares none."""
    tree = ast.parse((Path(__file__).parent / f"{name}.py").read_text())
    for node in tree.body:
        if isinstance(node, ast.Assign) and [getattr(t, "id", None) for t in node.targets] == ["PRETRAINED_WEIGHTS"]:
            return tuple(ast.literal_eval(node.value))
    return ()
