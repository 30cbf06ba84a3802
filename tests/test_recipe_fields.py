"""Every field of a recipe (src/training/recipe.py) changes what the training code builds or does.

One check per field, each comparing what the code builds from two values of that field; the list of fields
comes from the schema, so a field added without a check fails `test_every_recipe_field_has_a_check`.
"""

from typing import get_args

import keras
import numpy as np
import pytest
import tensorflow as tf
from pydantic import BaseModel

from src.core.errors import PipelineError
from src.training import cpu, fit, models
from src.training.recipe import Optimizer, Schedule, Train
from tests.conftest import recipe

SCALE = {"mean": [0.0] * 3, "std": [255.0] * 3}
STEPS = 10


def schema_fields(model: type[BaseModel] = Train, prefix: str = "") -> list[str]:
    """Every field, a nested section's as `section.field`."""
    found = []
    for name, info in model.model_fields.items():
        nested = [t for t in (*get_args(info.annotation), info.annotation) if isinstance(t, type)
                  and issubclass(t, BaseModel)]
        found += schema_fields(nested[0], f"{prefix}{name}.") if nested else [prefix + name]
    return found


def images(count: int = 20, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    pictures = rng.integers(0, 256, (count, 32, 32, 3), dtype=np.uint8)
    pictures[:, 0, 0, 0] = np.arange(count)  # each image tagged with its index
    return pictures, np.eye(10, dtype=np.uint8)[rng.integers(0, 10, count)]


def batch_order(config: Train, batches: int = 4) -> list[list[int]]:
    dataset = fit.training_batches(config, *images())
    return [batch[0][:, 0, 0, 0].numpy().tolist() for batch in dataset.take(batches)]


def built(**fields) -> keras.Model:
    return models.build_model("elu3", 10, SCALE, recipe(**fields))


def optimizer(**fields) -> keras.optimizers.Optimizer:
    return fit.make_optimizer(recipe(**fields), STEPS)


def callbacks(**fields) -> list:
    return fit.recipe_callbacks(recipe(**fields), STEPS)


def translation(**augmentation) -> keras.layers.RandomTranslation:
    return next(layer for layer in built(augmentation=augmentation).layers
                if isinstance(layer, keras.layers.RandomTranslation))


def check_net():
    assert models.build_model("mine", 10, SCALE, recipe(net="strided2")).count_params() == 181_162
    assert models.build_model("mine", 10, SCALE, recipe(net="elu3")).count_params() == 553_514


def check_optimizer():
    assert set(fit.OPTIMIZERS) == set(get_args(Optimizer))
    for name in get_args(Optimizer):
        assert type(optimizer(optimizer=name)).__name__.lower() == name


def check_learning_rate():
    assert float(optimizer(learning_rate=0.0123).learning_rate) == pytest.approx(0.0123)


def check_momentum():
    assert optimizer(optimizer="sgd", momentum=0.9).momentum == 0.9
    assert optimizer(optimizer="sgd").momentum == 0.0


def check_nesterov():
    assert optimizer(optimizer="sgd", nesterov=True).nesterov and not optimizer(optimizer="sgd").nesterov


def check_schedule():
    assert set(fit.SCHEDULES) == set(get_args(Schedule))
    rates = {name: fit.learning_rate(recipe(learning_rate=0.1, schedule=name, decay=0.5 if name == "inverse_time"
                                            else None, epochs=4), STEPS) for name in get_args(Schedule)}
    assert rates["constant"] == 0.1
    at_step = {name: float(rate(5)) for name, rate in rates.items() if name != "constant"}
    assert len(set(at_step.values())) == len(at_step), at_step  # each its own curve


def check_decay():
    rates = [fit.learning_rate(recipe(learning_rate=0.1, schedule="inverse_time", decay=decay), STEPS)
             for decay in (0.5, 1.0)]
    assert float(rates[0](2)) == pytest.approx(0.1 / 2) and float(rates[1](2)) == pytest.approx(0.1 / 3)


def check_weight_decay():
    assert optimizer(weight_decay=0.01).weight_decay == 0.01 and optimizer().weight_decay is None


def check_label_smoothing():
    for smoothing in (0.0, 0.2):
        model = built()
        fit.compile_model(model, recipe(label_smoothing=smoothing), STEPS)
        assert model.loss.label_smoothing == smoothing


def check_batch_size():
    assert [len(batch) for batch in batch_order(recipe(batch_size=8), 3)] == [8, 8, 4]
    assert [len(batch) for batch in batch_order(recipe(batch_size=5), 3)] == [5, 5, 5]


def check_drop_remainder():
    assert [len(batch) for batch in batch_order(recipe(batch_size=8, drop_remainder=True), 3)] == [8, 8, 8]
    assert fit.steps_per_epoch("x", recipe(batch_size=8, drop_remainder=True), 20) == 2
    assert fit.steps_per_epoch("x", recipe(batch_size=8), 20) == 3


def check_epochs():
    pictures, labels = images(16)
    for epochs in (1, 2):
        config = recipe(batch_size=16, epochs=epochs)
        fit.make_deterministic(config.seed)
        model = models.build_model("strided2", 10, SCALE, config)
        assert len(fit.train(model, config, (pictures, labels), (pictures, labels)).history) == epochs


def check_lookahead():
    (lookahead,) = callbacks(lookahead=True, epochs=3)
    assert isinstance(lookahead, fit.Lookahead) and lookahead.total_steps == 3 * STEPS
    assert callbacks() == []


def check_augmentation_horizontal_flip():
    flips = [layer for layer in built(augmentation={"horizontal_flip": True}).layers
             if isinstance(layer, keras.layers.RandomFlip)]
    assert [flip.mode for flip in flips] == ["horizontal"]
    assert not any(isinstance(layer, keras.layers.RandomFlip) for layer in built(augmentation={}).layers)


def check_augmentation_shift():
    shift = translation(shift=0.1)
    assert (shift.height_factor, shift.width_factor, shift.fill_mode) == (0.1, 0.1, "nearest")


def check_augmentation_crop_padding():
    crop = translation(crop_padding=4)
    assert (crop.height_factor, crop.fill_mode) == (4.5 / 32, "reflect")


def early_stopping(**fields) -> keras.callbacks.EarlyStopping:
    (stopping,) = callbacks(early_stopping={"monitor": "val_loss", "patience": 3, **fields})
    return stopping


def check_early_stopping_monitor():
    assert early_stopping(monitor="val_accuracy").monitor == "val_accuracy"
    assert fit.monitor_of(recipe(early_stopping={"monitor": "val_loss", "patience": 3})) == "val_loss"


def check_early_stopping_patience():
    assert early_stopping(patience=7).patience == 7


def check_early_stopping_restore_best_weights():
    assert early_stopping(restore_best_weights=True).restore_best_weights
    assert not early_stopping().restore_best_weights


def check_weights(imagenet_unreachable):
    """ImageNet weights are fetched (here from a closed port: the error names the field), none are not."""
    models.build_model("vgg16_transfer", 10, SCALE, recipe())
    with pytest.raises(PipelineError, match=r"`train.vgg16_transfer.weights: null`"):
        models.build_model("vgg16_transfer", 10, SCALE, recipe(weights="imagenet"))


def check_normalization():
    pictures, _ = images(40)
    for mode, expected in (("scale", [0.0] * 3), ("per_channel", pictures.reshape(-1, 3).mean(axis=0))):
        model, normalization = models.initial_model("elu3", recipe(normalization=mode), pictures, 10)
        assert normalization["mode"] == mode
        np.testing.assert_allclose(keras.ops.convert_to_numpy(model.get_layer("normalization").mean).ravel(),
                                   expected, rtol=1e-5)


def check_init_from():
    pictures, _ = images(4)
    parent, _ = models.initial_model("vgg6", recipe(seed=1), pictures, 10)
    child, _ = models.initial_model("vgg6_more", recipe(net="vgg6", init_from="vgg6"), pictures, 10, parent)
    np.testing.assert_allclose(child.predict(pictures, verbose=0), parent.predict(pictures, verbose=0), atol=1e-6)
    fresh, _ = models.initial_model("vgg6_more", recipe(net="vgg6"), pictures, 10, parent)
    assert not np.allclose(fresh.predict(pictures, verbose=0), parent.predict(pictures, verbose=0))


def check_seed():
    pictures, _ = images(4)
    weights = [models.initial_model("elu3", recipe(seed=seed), pictures, 10)[0].get_weights()[0] for seed in (1, 2)]
    assert not np.array_equal(*weights)
    assert batch_order(recipe(seed=1, batch_size=20)) != batch_order(recipe(seed=2, batch_size=20))
    flip = [next(layer for layer in built(seed=seed, augmentation={"horizontal_flip": True}).layers
                 if isinstance(layer, keras.layers.RandomFlip)).seed for seed in (1, 2)]
    assert flip[0] != flip[1]


def check_precision(monkeypatch):
    # As on a CPU with bfloat16 instructions and a GPU: where either is missing the policy falls back to float32.
    monkeypatch.setattr(cpu, "has_bfloat16", lambda: True)
    monkeypatch.setattr(tf.config, "list_physical_devices", lambda kind=None: ["GPU:0"] if kind == "GPU" else [])
    # float32 last: the policy is global in Keras, and the next test builds with it.
    for precision, policy in (("bfloat16", "mixed_bfloat16"), ("float16", "mixed_float16"), ("float32", "float32")):
        assert built(precision=precision).dtype_policy.name == policy


CHECKS = {name.removeprefix("check_").replace("augmentation_", "augmentation.")
          .replace("early_stopping_", "early_stopping."): check
          for name, check in dict(globals()).items() if name.startswith("check_")}


def test_every_recipe_field_has_a_check():
    fields = schema_fields()
    assert not sorted(set(fields) - set(CHECKS)), "recipe fields without a check of their effect"
    assert not sorted(set(CHECKS) - set(fields)), "checks of fields the recipe no longer has"


@pytest.mark.parametrize("field", schema_fields())
def test_recipe_field_has_an_effect(field, request):
    check = CHECKS[field]
    check(**{name: request.getfixturevalue(name) for name in check.__code__.co_varnames[:check.__code__.co_argcount]})
