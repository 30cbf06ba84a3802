"""The params schema: every problem in params.yaml reported at once, before any stage works."""

import copy
import subprocess
import sys

import pytest

from src import architectures
from src.core.config import dataset_source
from src.core.errors import PipelineError
from src.core.params import validate
from src.data.schema import Data
from tests.conftest import REPO, base_params, recipe, set_param


def problems_of(*removed: str, **dotted_values) -> str:
    params = copy.deepcopy(base_params())
    for dotted, value in dotted_values.items():
        set_param(params, dotted, value)
    for dotted in removed:
        *path, last = dotted.split(".")
        section = params
        for key in path:
            section = section[key]
        del section[last]
    with pytest.raises(PipelineError) as error:
        validate(params)
    message = str(error.value)
    assert "\n" not in message
    return message


def test_repository_params_are_valid():
    params = validate(base_params())
    assert params.data.dataset == "cifar10"
    assert params.seeds.reference["conv4"].dataset == "cifar100"
    assert params.seeds.continued == {"vgg6_bn_aug": "vgg6_bn"}


def test_a_recipe_names_its_net_which_defaults_to_its_key():
    params = validate(base_params())
    assert params.train["elu3"].net == "elu3" and params.seeds.train["vgg6_bn_aug"].net == "vgg6_bn"


def test_reference_figures_are_not_training_params():
    params = validate(base_params())
    assert not any(key.startswith("seed_") for recipe in params.train.values() for key in type(recipe).model_fields)
    assert problems_of(**{"train.elu3.seed_accuracy": 0.768}).count("seed_accuracy") == 1


def test_registry_is_the_architecture_modules_read_without_importing_keras():
    modules = {path.stem for path in (REPO / "src/architectures").glob("*.py")} - {"__init__", "blocks"}
    assert architectures.names() == sorted(modules)
    imported = subprocess.run([sys.executable, "-c", "import sys; from src.core.params import load_params; "
                               "load_params(); print(sorted(m for m in sys.modules "
                               "if m.split('.')[0] in ('keras', 'tensorflow')))"],
                              cwd=REPO, capture_output=True, text=True, check=True).stdout
    assert imported.strip() == "[]"
    assert ("unknown architecture 'elu5' in `architectures` (no `train.elu5` recipe); did you mean 'elu3'?"
            in problems_of(architectures=["elu5"]))


def test_lookahead_and_restoring_the_best_epoch_exclude_each_other():
    message = problems_of(**{"train.airbench.early_stopping": {"monitor": "val_accuracy", "patience": 3,
                                                               "restore_best_weights": True}})
    assert "`lookahead` and `early_stopping.restore_best_weights` exclude each other" in message


@pytest.mark.parametrize(("dotted", "value", "fragment"), [
    ("seeds.continued.vgg6_bn_aug", "vgg6", "`seeds.continued.vgg6_bn_aug` is 'vgg6' but "
                                            "`seeds.train.vgg6_bn_aug.init_from` is 'vgg6_bn'"),
    ("seeds.train.vgg6_bn_aug.init_from", "vgg5", "`seeds.train.vgg6_bn_aug.init_from` names 'vgg5'"),
    ("seeds.train.vgg6_bn_aug.normalization", "standardize", "must be its parent's (scale)"),
    ("seeds.train.vgg6.init_from", "elu3", "'vgg6' is not in `seeds.continued`"),
    ("train.vgg6.init_from", "elu3", "the default pipeline trains every net from scratch"),
    ("seeds.train.vgg6_bn_aug.net", "vgg6", "`seeds.train.vgg6_bn_aug.net` must be its parent's (vgg6_bn)"),
])
def test_continuations_are_declared_where_dvc_sees_them(dotted, value, fragment):
    assert fragment in problems_of(**{dotted: value})


def test_every_problem_is_reported_at_once():
    message = problems_of(**{"data.dataset": "imagenet", "split.val_fraction": 1.5, "split.seed": "x",
                             "train.elu3.normalization": "minmax", "train.elu3.epochs": 0})
    assert message.startswith("params.yaml has 5 problems")
    for fragment in ("`data.dataset` is 'imagenet': Input should be 'cifar10' or 'cifar100'",
                     "`split.val_fraction` is 1.5: Input should be less than 1",
                     "`split.seed` is 'x': Input should be a valid integer",
                     "`train.elu3.normalization` is 'minmax'",
                     "`train.elu3.epochs` is 0: Input should be greater than or equal to 1"):
        assert fragment in message


@pytest.mark.parametrize(("dotted", "fragment"), [
    ("restore_best_weight", "`train.vgg16_transfer.early_stopping.restore_best_weight` is not a known key; "
                            "did you mean `restore_best_weights`?"),
    ("architecture", "`architecture` is not a known key; did you mean `architectures`?"),
])
def test_unknown_keys_are_refused_with_the_closest_valid_one(dotted, fragment):
    full = {"restore_best_weight": "train.vgg16_transfer.early_stopping.restore_best_weight"}.get(dotted, dotted)
    assert fragment in problems_of(**{full: True})


@pytest.mark.parametrize("section", ["data", "split", "evaluate", "seeds", "seeds.reference.elu3", "train.elu3",
                                     "seeds.train.elu3", "train.resnet_fast.augmentation"])
def test_every_section_refuses_unknown_keys(section):
    assert f"`{section}.colour` is not a known key" in problems_of(**{f"{section}.colour": 1})


def test_missing_sections_and_keys():
    message = problems_of("split", "train.elu3.batch_size", "evaluate.batch_size")
    assert "`split` is missing" in message
    assert "`train.elu3.batch_size` is missing" in message and "`evaluate.batch_size` is missing" in message


def test_architectures_are_checked_against_the_registry():
    message = problems_of(architectures=["elu3", "elu3", "elu4"])
    assert "`architectures` lists 'elu3' twice" in message
    assert "unknown architecture 'elu4' in `architectures` (no `train.elu4` recipe); did you mean 'relu4'?" in message
    assert "unknown architecture 'vgg6' in `architectures` (no `train.vgg6` recipe)" in problems_of("train.vgg6")


@pytest.mark.parametrize(("dotted", "value", "fragment"), [
    ("train.elu3.net", "elu5", "unknown architecture 'elu5' in `train.elu3.net`: src/architectures/ has no elu5.py; "
                               "did you mean 'elu3'?"),
    ("train.elu3.net", "relu4", "`train.elu3.net: relu4`: a recipe the pipeline trains from scratch is named as its "
                                "net (its stage depends on src/architectures/elu3.py)"),
    ("seeds.train.elu3.net", "relu4", "`seeds.train.elu3.net: relu4`: a recipe the pipeline trains from scratch"),
    ("train.vgg16_transfer.net", "vgg6", "`train.vgg16_transfer.weights: imagenet`: the net vgg6 has no"),
])
def test_a_recipe_trains_a_registered_net_its_stage_depends_on(dotted, value, fragment):
    assert fragment in problems_of(**{dotted: value})


@pytest.mark.parametrize(("dotted", "value", "fragment"), [
    ("split.val_fraction", 0, "`split.val_fraction` is 0"),
    ("split.val_fraction", True, "`split.val_fraction` is True"),
    ("train.elu3.batch_size", -5, "`train.elu3.batch_size` is -5"),
    ("train.elu3.optimizer", "adagrad", "`train.elu3.optimizer` is 'adagrad': Input should be 'adam'"),
    ("train.elu3.schedule", "step", "`train.elu3.schedule` is 'step'"),
    ("train.elu3.learning_rate", "fast", "`train.elu3.learning_rate` is 'fast'"),
    ("train.elu3.learning_rate", "1e-3", "`train.elu3.learning_rate` is '1e-3'"),  # YAML 1.1 reads a string
    ("train.elu3.augmentation", {"rotate": 10}, "`train.elu3.augmentation.rotate` is not a known key"),
    ("train.elu3.augmentation", {"horizontal_flip": "yes"}, "`train.elu3.augmentation.horizontal_flip` is 'yes'"),
    ("train.elu3.early_stopping", {"monitor": "loss", "patience": 3}, "`train.elu3.early_stopping.monitor`"),
    ("train.elu3.epochs", 2.5, "`train.elu3.epochs` is 2.5"),
    ("train.elu3.momentum", 0.9, "`train.elu3`: `momentum` applies to sgd only, not adam"),
    ("train.elu3.decay", 0.1, "`decay` applies to `schedule: inverse_time` only"),
    ("train.elu3.weights", "imagenet", "`train.elu3.weights: imagenet`: the net elu3 has no such pretrained weights"),
    ("seeds.reference.elu3.accuracy", "76.8%",
     "`seeds.reference.elu3.accuracy` is '76.8%': Input should be a valid number"),
    ("data.md5", "xyz", "`data.md5` is 'xyz'"),
    ("architectures", [], "`architectures` is []"),
])
def test_bad_values(dotted, value, fragment):
    assert fragment in problems_of(**{dotted: value})


def test_inverse_time_needs_its_decay():
    assert "`train.relu4`: `schedule: inverse_time` needs `decay`" in problems_of("train.relu4.decay")


def test_null_source_means_the_official_archive():
    assert dataset_source(Data(dataset="cifar100")) == ("https://www.cs.toronto.edu/~kriz/cifar-100-python.tar.gz",
                                    "eb9058c3a382ffc7106e4002c42a8d85")


def test_weight_decay_zero_means_zero():
    from src.training import fit

    config = recipe(optimizer="adamw", weight_decay=0.0)
    assert fit.make_optimizer(config, 10).weight_decay == 0.0
    assert fit.make_optimizer(recipe(optimizer="adamw"), 10).weight_decay == pytest.approx(0.004)
