"""The architecture zoo: every net builds for 10 and 100 classes, seed parameter counts hold."""

import socket

import numpy as np
import pytest

from src import models, training
from src.errors import PipelineError
from tests.conftest import base_params

SCALE = {"mean": [0.0] * 3, "std": [255.0] * 3}
SEED_PARAMETER_COUNTS = {  # as printed by model.summary() in the seed documents
    ("elu3", 10): 553_514,
    ("strided2", 10): 181_162,
    ("strided4", 10): 252_378,
    ("conv4", 100): 964_516,
    ("vgg6", 10): 558_186,
}
ALL = sorted(models.ARCHITECTURES)


def test_registry_holds_every_architecture_of_the_issue():
    assert set(ALL) == {"elu3", "relu4", "relu6", "strided2", "strided4", "conv4", "vgg6", "vgg6_dropout",
                        "vgg6_bn", "vgg6_bn_aug", "vgg16_transfer", "vgg16_transfer_aug", "resnet_fast"}
    assert set(ALL) <= set(base_params()["train"])
    for name, function in models.ARCHITECTURES.items():
        assert "seed" in function.__doc__.lower() or name == "resnet_fast", name


@pytest.mark.parametrize(("name", "classes"), sorted(SEED_PARAMETER_COUNTS))
def test_parameter_counts_equal_the_seeds(name, classes):
    model = models.build_model(name, classes, SCALE)
    assert model.count_params() == SEED_PARAMETER_COUNTS[(name, classes)]


@pytest.mark.parametrize("name", ALL)
def test_builds_for_10_and_100_classes_and_trains_one_step(name):
    config = {**base_params()["train"][name], "weights": None, "epochs": 1, "batch_size": 8}
    rng = np.random.default_rng(0)
    for classes in (100, 10):
        training.make_deterministic(0)
        model = models.build_model(name, classes, SCALE, config)
        assert model.output_shape == (None, classes)
    images = rng.integers(0, 256, (8, 32, 32, 3), dtype=np.uint8)
    labels = np.eye(10, dtype=np.uint8)[rng.integers(0, 10, 8)]
    result = training.train(model, config, (images, labels), (images, labels))
    assert len(result.history) == 1 and np.isfinite(result.history["loss"]).all()
    predictions = model.predict(images, verbose=0)
    assert predictions.shape == (8, 10) and np.allclose(predictions.sum(axis=1), 1, atol=1e-4)


def test_augmentation_is_active_in_training_only():
    config = {"augmentation": {"horizontal_flip": True, "shift": 0.1, "crop_padding": 4}}
    images = np.random.default_rng(1).random((4, 32, 32, 3)).astype("float32")
    trained, inferred = images, images
    for layer in models._augmentation(config, seed=1):
        trained, inferred = layer(trained, training=True), layer(inferred, training=False)
    assert np.array_equal(np.asarray(inferred), images)
    assert not np.allclose(np.asarray(trained), images)


def test_unknown_architecture():
    with pytest.raises(PipelineError, match=r"unknown architecture 'vgg19'.*choose from conv4, elu3"):
        models.build_model("vgg19", 10, SCALE)


def test_imagenet_weights_offline_fail_fast_with_the_fix(monkeypatch, tmp_path):
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    name, _, md5 = models.VGG16_NOTOP
    monkeypatch.setattr(models, "VGG16_NOTOP", (name, f"http://127.0.0.1:{port}/{name}", md5))
    monkeypatch.setenv("KERAS_HOME", str(tmp_path))  # no cached weights
    with pytest.raises(PipelineError, match=r"set `train.vgg16_transfer.weights: null`"):
        models.build_model("vgg16_transfer", 10, SCALE, {"weights": "imagenet"})
