"""params.yaml: one declarative schema (pydantic), checked as a whole before any stage works.

Every stage calls :func:`load_params` first, so a bad value anywhere in the file stops the
pipeline before any stage does work, with one line listing every problem found. Every section
refuses unknown keys and suggests the closest valid one.
"""

import difflib
from pathlib import Path
from typing import Annotated, Any

import yaml
from pydantic import BaseModel, Field, ValidationError, model_validator

from src import architectures
from src.core.config import PARAMS_FILE, Table
from src.core.errors import PipelineError
from src.core.schema import Section
from src.data.schema import Data, Split
from src.evaluation.schema import Evaluate
from src.reporting.schema import Reference
from src.training.recipe import Train


def _choose(name: str, known: list[str]) -> str:
    close = difflib.get_close_matches(name, known, n=1)
    return (f"did you mean {close[0]!r}? " if close else "") + f"choose from {', '.join(known)}"


def _listed(names: list[str], recipes: dict[str, Train], where: str, recipes_key: str) -> list[str]:
    problems = [f"`{where}` lists {name!r} twice" for name in dict.fromkeys(names) if names.count(name) > 1]
    return problems + [f"unknown architecture {name!r} in `{where}` (no `{recipes_key}.{name}` recipe); "
                       + _choose(name, list(recipes)) for name in dict.fromkeys(names) if name not in recipes]


def _recipe_problems(recipes: dict[str, Train], prefix: str, trained: list[str]) -> list[str]:
    """Each recipe's net exists and takes its `weights`; a continuation continues the same net; a recipe a
    pipeline trains (``trained``) is its net's namesake, as dvc.yaml names the net's module after it."""
    nets, problems = architectures.names(), []
    for name, config in recipes.items():
        net = config.net or name
        if net not in nets:
            named = f"`{prefix}.{name}.net`" if config.net else f"`{prefix}.{name}` (no `net:`: its own name)"
            problems.append(f"unknown architecture {net!r} in {named}: src/architectures/ has no {net}.py; "
                            + _choose(net, nets))
            continue
        if config.weights and config.weights not in architectures.pretrained_weights(net):
            problems.append(f"`{prefix}.{name}.weights: {config.weights}`: the net {net} has no such pretrained "
                            f"weights ({', '.join(architectures.pretrained_weights(net)) or 'none'}); remove it")
        parent = recipes.get(config.init_from) if config.init_from else None
        if config.init_from and (parent is None or config.init_from == name):
            problems.append(f"`{prefix}.{name}.init_from` names {config.init_from!r}, which is not another "
                            f"section of `{prefix}`")
        elif parent and (parent.net or config.init_from) != net:
            problems.append(f"`{prefix}.{name}.net` must be its parent's ({parent.net or config.init_from}): it "
                            f"continues {config.init_from}'s trained model")
        elif parent and parent.normalization != config.normalization:
            problems.append(f"`{prefix}.{name}.normalization` must be its parent's ({parent.normalization}): "
                            f"it continues {config.init_from}'s trained model")
        elif name in trained and net != name:
            problems.append(f"`{prefix}.{name}.net: {net}`: a recipe the pipeline trains from scratch is named as "
                            f"its net (its stage depends on src/architectures/{name}.py); rename the recipe "
                            f"{net}, or continue a {net} recipe (`init_from`)")
    return problems


class Seeds(Section):
    """The seed notebooks' own experiments, each as its notebook runs it: seeds/dvc.yaml trains them, apart
    from the default `dvc repro`. `rows` train from scratch; `continued` maps a row to the row whose
    trained model it starts from (its `init_from`), so DVC retrains it when its parent changes."""

    rows: Annotated[list[str], Field(min_length=1)]
    continued: dict[str, str] = Field(default_factory=dict)
    train: dict[str, Train]
    reference: dict[str, Reference] = Field(default_factory=dict)

    @model_validator(mode="after")
    def rows_have_sections(self) -> "Seeds":
        problems = _listed([*self.rows, *self.continued], self.train, "seeds.rows", "seeds.train")
        problems += [f"`seeds.continued` names {child!r}, also in `seeds.rows`: a row trains once"
                     for child in self.continued if child in self.rows]
        problems += [f"`seeds.continued.{child}` is {parent!r} but `seeds.train.{child}.init_from` is "
                     f"{self.train[child].init_from!r}; make them the same"
                     for child, parent in self.continued.items()
                     if child in self.train and self.train[child].init_from != parent]
        problems += [f"`seeds.train.{name}.init_from` is set but {name!r} is not in `seeds.continued`; add "
                     f"`{name}: {self.train[name].init_from}` there so DVC knows what it continues"
                     for name in self.rows if name in self.train and self.train[name].init_from]
        problems += _recipe_problems(self.train, "seeds.train", self.rows)
        if problems:
            raise ValueError("; ".join(problems))
        return self


class Params(Section):
    data: Data
    split: Split
    architectures: Annotated[list[str], Field(min_length=1)]
    train: dict[str, Train]
    evaluate: Evaluate
    seeds: Seeds | None = None

    @model_validator(mode="after")
    def sections_exist(self) -> "Params":
        problems = _listed(self.architectures, self.train, "architectures", "train")
        problems += [f"`train.{name}.init_from`: the default pipeline trains every net from scratch; a "
                     "continuation is a row of the seed table (`seeds.continued`)"
                     for name, config in self.train.items() if config.init_from]
        problems += _recipe_problems(self.train, "train", self.architectures)
        if problems:
            raise ValueError("; ".join(problems))
        return self

    @model_validator(mode="after")
    def nets_named(self) -> "Params":
        """`net:` defaults to the recipe's key: filled in here, so every recipe downstream names its net."""
        for recipes in (self.train, self.seeds.train if self.seeds else {}):
            for name, config in recipes.items():
                recipes[name] = config.model_copy(update={"net": config.net or name})
        return self

    def recipes(self, table: Table) -> dict[str, Train]:
        """The recipes a table's stages read: `train` (the default pipeline) or `seeds.train`."""
        if table.recipes_key == "train":
            return self.train
        if self.seeds is None:
            raise PipelineError(f"{PARAMS_FILE} has no `seeds` section; restore it from git to run the seed table")
        return self.seeds.train

    def recipe(self, name: str, table: Table) -> Train:
        recipes = self.recipes(table)
        if name not in recipes:
            raise PipelineError(f"no `{table.recipes_key}.{name}` section in {PARAMS_FILE}; add one (see "
                                f"{table.recipes_key}.elu3)")
        return recipes[name]


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


def validate(params: Any) -> Params:
    """The params, validated and typed, or one PipelineError listing every problem."""
    if not isinstance(params, dict):
        raise PipelineError(f"{PARAMS_FILE} is not a mapping of sections; restore it from git")
    try:
        checked = Params.model_validate(params)
    except ValidationError as error:
        problems = [_describe(e) for e in error.errors(include_url=False)]
        count = len(problems)
        raise PipelineError(f"{PARAMS_FILE} has {count} problem{'s' if count > 1 else ''}: "
                            + "; ".join(problems)) from None
    return checked


def load_params(path: Path | str = PARAMS_FILE) -> Params:
    """Read and validate params.yaml (the whole file, whichever stage asks)."""
    path = Path(path)
    try:
        params = yaml.safe_load(path.read_text())
    except FileNotFoundError:
        raise PipelineError(f"{path} is missing; run from the repository root") from None
    except yaml.YAMLError as error:
        raise PipelineError(f"{path} is not valid YAML: {' '.join(str(error).split())}") from None
    return validate(params)
