"""The params schema: every problem in params.yaml reported at once, before any stage works."""

import copy

import pytest

from src.errors import PipelineError
from src.params import dataset_source, validate
from tests.conftest import base_params, set_param


def problems_of(**dotted_values) -> str:
    params = copy.deepcopy(base_params())
    for dotted, value in dotted_values.items():
        set_param(params, dotted, value)
    with pytest.raises(PipelineError) as error:
        validate(params)
    return str(error.value)


def test_repository_params_are_valid():
    assert validate(base_params())["data"]["dataset"] == "cifar10"


def test_every_problem_is_reported_at_once():
    message = problems_of(**{"data.dataset": "imagenet", "split.val_fraction": 1.5, "split.seed": "x",
                             "preprocess.normalization": "minmax", "train.elu3.epochs": 0})
    assert message.startswith("params.yaml has 5 problems")
    for fragment in ("`data.dataset` is 'imagenet'; expected one of cifar10, cifar100",
                     "`split.val_fraction` is 1.5; expected a value in (0, 1)",
                     "`split.seed` is 'x'; expected an integer",
                     "`preprocess.normalization` is 'minmax'",
                     "`train.elu3.epochs` is 0; expected a value in [1, ]"):
        assert fragment in message
    assert "\n" not in message


def test_missing_sections_and_keys():
    params = copy.deepcopy(base_params())
    del params["split"]
    del params["train"]["elu3"]["batch_size"]
    params["architectures"].append("nosuchnet")
    with pytest.raises(PipelineError) as error:
        validate(params)
    message = str(error.value)
    assert "`split` section is missing" in message
    assert "`train.elu3.batch_size` is missing" in message
    assert "`train.nosuchnet` section is missing" in message


@pytest.mark.parametrize(("dotted", "value", "fragment"), [
    ("split.val_fraction", 0, "`split.val_fraction` is 0"),
    ("split.val_fraction", True, "expected a number"),
    ("train.elu3.batch_size", -5, "`train.elu3.batch_size` is -5"),
    ("train.elu3.optimizer", "adagrad", "`train.elu3.optimizer` is 'adagrad'; expected one of adam"),
    ("train.elu3.schedule", "step", "`train.elu3.schedule` is 'step'"),
    ("train.elu3.learning_rate", "fast", "`train.elu3.learning_rate` is 'fast'"),
    ("train.elu3.augmentation", {"rotate": 10}, "unknown keys ['rotate']"),
    ("train.elu3.early_stopping", {"monitor": "loss", "patience": 3}, "`train.elu3.early_stopping.monitor`"),
    ("train.elu3.epochs", 2.5, "expected an integer"),
    ("data.md5", "xyz", "`data.md5` is 'xyz'"),
    ("architectures", [], "`architectures` is missing or empty"),
])
def test_bad_values(dotted, value, fragment):
    assert fragment in problems_of(**{dotted: value})


def test_null_source_means_the_official_archive():
    data = {"dataset": "cifar100", "source": None, "md5": None}
    assert dataset_source(data) == ("https://www.cs.toronto.edu/~kriz/cifar-100-python.tar.gz",
                                    "eb9058c3a382ffc7106e4002c42a8d85")
