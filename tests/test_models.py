"""The architecture zoo: every net builds for 10 and 100 classes, seed parameter counts hold."""


import keras
import numpy as np
import pytest
import tensorflow as tf

from src import architectures
from src.architectures import airbench
from src.core.errors import PipelineError
from src.evaluation import tta
from src.training import cpu, fit, models
from src.training.recipe import Augmentation, Train
from tests.conftest import MINIMAL_RECIPE, base_params, recipe, repository_recipe

SCALE = {"mean": [0.0] * 3, "std": [255.0] * 3}
SEED_PARAMETER_COUNTS = {  # as printed by model.summary() in the seed documents
    ("elu3", 10): 553_514,
    ("strided2", 10): 181_162,
    ("strided4", 10): 252_378,
    ("conv4", 100): 964_516,
    ("vgg6", 10): 558_186,
}
ALL = architectures.names()


def test_registry_holds_every_architecture_of_the_issue():
    assert set(ALL) >= {"elu3", "relu4", "relu6", "strided2", "strided4", "conv4", "vgg6", "vgg6_dropout",
                        "vgg6_bn", "vgg16_transfer", "resnet_fast", "airbench"}
    assert [name for name in ALL if architectures.pretrained_weights(name)] == ["vgg16_transfer"]
    for name in ALL:  # one module per net, its function named as the file, saying where the net comes from
        assert architectures.get(name).__doc__.startswith(("Seed 00", "Ours:")), name


@pytest.mark.parametrize(("name", "classes"), sorted(SEED_PARAMETER_COUNTS))
def test_parameter_counts_equal_the_seeds(name, classes):
    model = models.build_model(name, classes, SCALE, recipe())
    assert model.count_params() == SEED_PARAMETER_COUNTS[(name, classes)]


@pytest.mark.parametrize("name", ALL)
def test_builds_for_10_and_100_classes_and_trains_one_step(name):
    config = Train.model_validate({**base_params()["train"].get(name, MINIMAL_RECIPE), "weights": None, "epochs": 1,
                                   "batch_size": 8})
    rng = np.random.default_rng(0)
    for classes in (100, 10):
        fit.make_deterministic(0)
        model = models.build_model(name, classes, SCALE, config)
        assert model.output_shape == (None, classes)
    images = rng.integers(0, 256, (8, 32, 32, 3), dtype=np.uint8)
    labels = np.eye(10, dtype=np.uint8)[rng.integers(0, 10, 8)]
    result = fit.train(model, config, (images, labels), (images, labels))
    assert len(result.history) == 1 and np.isfinite(result.history["loss"]).all()
    predictions = model.predict(images, verbose=0)
    assert predictions.shape == (8, 10) and np.allclose(predictions.sum(axis=1), 1, atol=1e-4)


def test_augmentation_is_active_in_training_only():
    config = Augmentation(horizontal_flip=True, shift=0.1, crop_padding=4)
    images = np.random.default_rng(1).random((4, 32, 32, 3)).astype("float32")
    trained, inferred = images, images
    for layer in models.augmentation_layers(config, seed=1):
        trained, inferred = layer(trained, training=True), layer(inferred, training=False)
    assert np.array_equal(np.asarray(inferred), images)
    assert not np.allclose(np.asarray(trained), images)


def test_each_augmentation_draws_its_own_random_numbers():
    # Seeded alike, the flip and the shift drew the same numbers: the flip decided the vertical shift.
    flip, shift = models.augmentation_layers(Augmentation(horizontal_flip=True, crop_padding=4), seed=1)
    marked = np.zeros((512, 32, 32, 1), "float32")
    marked[:, 16, 0] = 1  # left edge: on the right once flipped
    flipped = np.asarray(flip(marked, training=True))[:, 16, -1, 0] == 1
    marked[:, 16, 0], marked[:, 16, 16] = 0, 1  # centre: follows the shift
    rows = np.asarray(shift(marked, training=True))[..., 0].max(axis=2).argmax(axis=1) - 16
    assert 0.35 < flipped[rows < 0].mean() < 0.65 and 0.35 < flipped[rows > 0].mean() < 0.65


def test_pad_and_crop_shifts_to_each_crop_equally_often():
    (shift,) = models.augmentation_layers(Augmentation(crop_padding=2), seed=0)
    marked = np.zeros((2000, 32, 32, 1), "float32")
    marked[:, 16, 16] = 1
    shifted = np.asarray(shift(marked, training=True))[..., 0]
    assert np.array_equal(shifted.sum(axis=(1, 2)), np.ones(2000))  # whole pixels: no interpolation
    rows, columns = np.unravel_index(shifted.reshape(2000, -1).argmax(axis=1), (32, 32))
    for offsets in (rows - 16, columns - 16):
        assert set(offsets) == {-2, -1, 0, 1, 2}
        assert np.all(np.abs(np.bincount(offsets + 2) / 2000 - 0.2) < 0.035)  # uniform: 0.2 each


def test_shifted_images_have_reflected_not_blank_borders():
    (shift,) = models.augmentation_layers(Augmentation(crop_padding=4), seed=0)
    shifted = np.asarray(shift(np.ones((64, 32, 32, 3), "float32"), training=True))
    assert np.array_equal(shifted, np.ones_like(shifted))


def test_unknown_architecture():
    with pytest.raises(PipelineError, match=r"unknown architecture 'vgg19'.*choose from airbench, conv4, elu3"):
        models.build_model("vgg19", 10, SCALE, recipe())


def test_imagenet_weights_offline_fail_fast_with_the_fix(imagenet_unreachable):
    with pytest.raises(PipelineError, match=r"set `train.vgg16_transfer.weights: null`"):
        models.build_model("vgg16_transfer", 10, SCALE, recipe(weights="imagenet"))


def _generated_images(count=64, seed=0):
    return np.random.default_rng(seed).integers(0, 256, (count, 32, 32, 3), dtype=np.uint8)


def test_airbench_shape_parameters_and_frozen_whitening():
    fit.make_deterministic(0)
    images = _generated_images()
    model = models.build_model("airbench", 10, SCALE, recipe(), train_images=images)
    assert model.output_shape == (None, 10)
    assert model.count_params() == 1_975_096
    whitening = model.get_layer(airbench.WHITENING_LAYER)
    assert not whitening.trainable and whitening.kernel.shape == (2, 2, 3, 24)
    # The first 12 filters whiten the training images' 2x2 patches: zero mean, unit variance,
    # uncorrelated (the next 12 are their negatives).
    patches = keras.ops.convert_to_numpy(whitening(images.astype("float32") / 255)).reshape(-1, 24)
    assert np.allclose(patches.mean(axis=0), 0, atol=0.05)
    assert np.allclose(np.cov(patches[:, :12], rowvar=False), np.eye(12), atol=0.2)
    assert np.allclose(patches[:, 12:], -patches[:, :12])
    # BatchNorm: only the shifts train (6 convs, 6 shifts and the head); the scales stay at 1/8.
    norms = [layer for layer in model.layers if isinstance(layer, keras.layers.BatchNormalization)]
    assert len(model.trainable_weights) == 13 and all(not norm.gamma.trainable for norm in norms)
    assert all(np.allclose(keras.ops.convert_to_numpy(norm.gamma), 1 / 8) for norm in norms)
    # Dirac init: every conv's first filters copy their input channels.
    conv = next(layer for layer in model.layers if isinstance(layer, keras.layers.Conv2D) and layer.trainable)
    kernel = keras.ops.convert_to_numpy(conv.kernel)
    assert np.array_equal(kernel[1, 1, :, :24], np.eye(24)) and not kernel[0, 0, :, :24].any()
    # The other filters and the head start as PyTorch's default: uniform within 1/sqrt(fan_in).
    dense = next(layer for layer in model.layers if isinstance(layer, keras.layers.Dense))
    head = keras.ops.convert_to_numpy(dense.kernel)
    for weights, fan_in in ((kernel[..., 24:], 3 * 3 * 24), (head, 256)):
        assert 0.9 / fan_in**0.5 < np.abs(weights).max() <= 1 / fan_in**0.5
    # Running statistics keep 0.6 of themselves each step, as airbench's `batchnorm_momentum: 0.6`.
    assert all(norm.momentum == 0.6 for norm in norms)


@pytest.mark.skipif(not cpu.has_bfloat16(), reason="this CPU has no bfloat16 instructions")
def test_bfloat16_computes_in_bfloat16_with_float32_weights_and_outputs():
    config = repository_recipe("elu3", precision="bfloat16", epochs=1, batch_size=8,
                               augmentation={"horizontal_flip": True, "crop_padding": 2})
    model = models.build_model("elu3", 10, SCALE, config)
    conv = next(layer for layer in model.layers if isinstance(layer, keras.layers.Conv2D))
    assert (model.dtype_policy.name, conv.compute_dtype, conv.variable_dtype) == ("mixed_bfloat16", "bfloat16",
                                                                                  "float32")
    # The images stay float32 up to the first conv: under bfloat16 the augmentation rounded them again.
    kept = [layer for layer in model.layers if isinstance(layer, (keras.layers.Normalization, keras.layers.RandomFlip,
                                                                  keras.layers.RandomTranslation))]
    assert len(kept) == 3 and all(layer.compute_dtype == "float32" for layer in kept)
    images = _generated_images(8)
    labels = np.eye(10, dtype=np.uint8)[np.arange(8)]
    result = fit.train(model, config, (images, labels), (images, labels))
    assert np.isfinite(result.history["loss"]).all()
    assert model.predict(images, verbose=0).dtype == np.float32
    # The next model built without a precision is float32 again: the global policy does not leak.
    assert models.build_model("elu3", 10, SCALE, recipe()).dtype_policy.name == "float32"


def test_bfloat16_falls_back_to_float32_with_one_warning_without_the_cpu_flag(monkeypatch, capsys):
    monkeypatch.setattr(cpu, "flags", lambda: ["avx2"])
    monkeypatch.setattr(tf.config, "list_physical_devices", lambda kind=None: [])
    model = models.build_model("elu3", 10, SCALE, recipe(precision="bfloat16"))
    assert model.dtype_policy.name == "float32"
    assert all(layer.compute_dtype == "float32" for layer in model.layers)
    warning = capsys.readouterr().err.strip().splitlines()
    assert len(warning) == 1 and warning[0].startswith("warning: train.elu3.precision is bfloat16")
    assert "avx512_bf16" in warning[0] and "float32" in warning[0]


def test_tta_averages_the_logits_over_airbench_views_and_saves_as_a_plain_keras_model(tmp_path):
    fit.make_deterministic(0)
    model = models.build_model("strided2", 10, SCALE, recipe())
    images = _generated_images(6)
    logits = keras.Model(model.inputs, model.get_layer("probabilities").input)

    def mirrored(x):
        return (logits.predict(x, verbose=0) + logits.predict(x[:, :, ::-1], verbose=0)) / 2

    padded = np.pad(images, ((0, 0), (1, 1), (1, 1), (0, 0)), mode="reflect")
    expected = {"flip": mirrored(images),
                "flip_shift": mirrored(images) / 2 + (mirrored(padded[:, :32, :32]) + mirrored(padded[:, 2:, 2:])) / 4}
    assert tta.with_tta(model, "none") is model
    for mode, averaged in expected.items():
        wrapped = tta.with_tta(model, mode)
        probabilities = wrapped.predict(images, verbose=0)
        np.testing.assert_allclose(probabilities, keras.ops.convert_to_numpy(keras.ops.softmax(averaged)), atol=1e-6)
        assert wrapped.name == "strided2" and probabilities.dtype == np.float32
        wrapped.save(tmp_path / f"{mode}.keras")
        reloaded = keras.models.load_model(tmp_path / f"{mode}.keras")  # no custom objects needed
        np.testing.assert_array_equal(reloaded.predict(images, verbose=0), probabilities)
    with pytest.raises(ValueError, match="unknown test-time augmentation 'mirror'"):
        tta.with_tta(model, "mirror")


def test_float16_falls_back_to_float32_with_one_warning_without_a_gpu(monkeypatch, capsys):
    monkeypatch.setattr(tf.config, "list_physical_devices", lambda kind=None: [])
    model = models.build_model("elu3", 10, SCALE, recipe(precision="float16"))
    assert model.dtype_policy.name == "float32"
    warning = capsys.readouterr().err.strip().splitlines()
    assert len(warning) == 1 and warning[0].startswith("warning: train.elu3.precision is float16, which needs a GPU")


def test_float16_on_a_gpu_is_keras_mixed_float16_with_loss_scaling(monkeypatch):
    # The GPU path, run on the CPU: Keras computes float16 there too, only slowly.
    monkeypatch.setattr(tf.config, "list_physical_devices", lambda kind=None: ["GPU:0"] if kind == "GPU" else [])
    config = repository_recipe("elu3", precision="float16", epochs=1, batch_size=8)
    model = models.build_model("elu3", 10, SCALE, config)
    conv = next(layer for layer in model.layers if isinstance(layer, keras.layers.Conv2D))
    assert (model.dtype_policy.name, conv.compute_dtype, conv.variable_dtype) == ("mixed_float16", "float16",
                                                                                  "float32")
    monkeypatch.undo()
    images = _generated_images(8)
    labels = np.eye(10, dtype=np.uint8)[np.arange(8)]
    result = fit.train(model, config, (images, labels), (images, labels))
    assert isinstance(model.optimizer, keras.optimizers.LossScaleOptimizer)  # Keras scales the loss itself
    assert np.isfinite(result.history["loss"]).all() and model.predict(images, verbose=0).dtype == np.float32
    assert models.build_model("elu3", 10, SCALE, recipe()).dtype_policy.name == "float32"


def test_continuation_starts_from_the_parents_trained_weights():
    fit.make_deterministic(0)
    parent = models.build_model("vgg6_bn", 10, SCALE, recipe())
    for variable in parent.weights:  # stands for training: every weight moves
        variable.assign(variable + 0.5)
    fit.make_deterministic(1)
    child = models.build_model("vgg6_bn_aug", 10, SCALE,
                               recipe(net="vgg6_bn", augmentation={"horizontal_flip": True, "shift": 0.1}))
    models.continue_from(child, parent, "vgg6_bn")
    images = _generated_images(4)
    np.testing.assert_allclose(child.predict(images, verbose=0), parent.predict(images, verbose=0), atol=1e-6)
    with pytest.raises(PipelineError, match="`init_from: vgg6`: vgg6_bn_aug is not the same net as vgg6"):
        models.continue_from(child, models.build_model("vgg6", 10, SCALE, recipe()), "vgg6")
