"""B6: how close each default net trains to this CPU's limit, in float32 and bfloat16.

The limit is the sustained throughput of oneDNN's own kernels in a tight loop: a chain of square
matmuls and a chain of 3x3 convolutions, in float32 and in bfloat16 (GFLOP/s, best of the two
kinds per precision). Each net's training FLOPs per image are counted by TensorFlow's profiler on
the graph of one training step (forward, loss and gradients of a batch of one). Its images per
second come from the pipeline's own training code (src.training.train on real split images, same
augmentation, optimizer and batch as params.yaml), alternating float32 / bfloat16 fits of a few
thousand images, median of the later epochs of each. The same table is the side-by-side speed of
the two precisions (issue 15).

Usage: python benchmarks/b6_distance_to_limit.py [--rounds 2] [--images 4096] [--limit-seconds 5]
       [--split data/split] [--architectures elu3 ...]
       (run `dvc repro split` first; the default architectures are params.yaml's)
"""

import argparse
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import src  # noqa: F401  (switches oneDNN on, as in every stage)
from benchmarks.common import REPO, append_result, median
from src.core.arrays import load_array
from src.core.cli import DefaultsHelpFormatter
from src.core.params import load_params
from src.training import fit, models
from src.training.normalization import normalization_stats

PRECISIONS = ("float32", "bfloat16")  # train.NAME.precision values, also TensorFlow dtype names


def kernel_limit(dtype: str, seconds: float = 5.0) -> dict[str, float]:
    """GFLOP/s of a chain of 2048^2 matmuls and of 3x3 convs (64 x 16 x 16 x 256 -> 256)."""
    import tensorflow as tf

    rng = tf.random.Generator.from_seed(0)
    n = 2048
    a = tf.cast(rng.normal((n, n)) / n**0.5, dtype)
    kernel = tf.cast(rng.normal((3, 3, 256, 256)) / 48.0, dtype)
    images = tf.cast(rng.normal((64, 16, 16, 256)), dtype)
    chain = 8

    @tf.function
    def matmuls(x):
        for _ in range(chain):
            x = tf.matmul(x, a)
        return x

    @tf.function
    def convs(x):
        for _ in range(chain):
            x = tf.nn.conv2d(x, kernel, 1, "SAME")
        return x

    work = {"matmul": (matmuls, a, 2 * n**3 * chain),
            "conv": (convs, images, 2 * 64 * 16 * 16 * 9 * 256 * 256 * chain)}
    result = {}
    for kind, (function, x, flops) in work.items():
        function(x).numpy()  # trace and warm up
        calls, started = 0, time.perf_counter()
        while time.perf_counter() - started < seconds:
            function(x).numpy()
            calls += 1
        result[kind] = flops * calls / (time.perf_counter() - started) / 1e9
    return result


def training_flops_per_image(name: str, config, num_classes: int, normalization: dict) -> float:
    """FLOPs of one training step on one image, as TensorFlow's profiler counts the step's graph."""
    import keras
    import tensorflow as tf
    from tensorflow.python.profiler import model_analyzer, option_builder

    model = models.build_model(name, num_classes, normalization, config)
    loss = keras.losses.CategoricalCrossentropy()

    @tf.function
    def step(images, labels):
        with tf.GradientTape() as tape:
            value = loss(labels, model(images, training=True))
        return tape.gradient(value, model.trainable_variables)

    graph = step.get_concrete_function(tf.TensorSpec((1, 32, 32, 3), tf.uint8),
                                       tf.TensorSpec((1, num_classes), tf.float32)).graph
    options = option_builder.ProfileOptionBuilder.float_operation()
    options["output"] = "none"
    return float(model_analyzer.profile(graph, options=options).total_float_ops)


def images_per_second(name: str, config, precision: str, data: tuple, normalization: dict,
                      images: int) -> float:
    """Training images per second of the pipeline's fit, epochs 2-3 of 3 (the first traces and warms up)."""
    config = config.model_copy(update={"precision": precision, "epochs": 3, "early_stopping": None})
    train_images, train_labels = data
    count = max(config.batch_size, images // config.batch_size * config.batch_size)
    fit.make_deterministic(config.seed)
    model = models.build_model(name, train_labels.shape[1], normalization, config,
                               train_images=train_images)
    small_val = (train_images[:500], train_labels[:500])
    result = fit.train(model, config, (train_images[:count], train_labels[:count]), small_val)
    validation_per_epoch = result.validation_seconds / len(result.history)
    return count / median(result.history["epoch_seconds"].iloc[1:] - validation_per_epoch)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0], formatter_class=DefaultsHelpFormatter)
    parser.add_argument("--rounds", type=int, default=2, help="alternated rounds of every net and precision")
    parser.add_argument("--images", type=int, default=4096, help="training images per timed epoch")
    parser.add_argument("--split", type=Path, default=REPO / "data/split", help="the split data (`dvc repro split`)")
    parser.add_argument("--architectures", nargs="*", help="the nets to time (default: params.yaml's `architectures`)")
    parser.add_argument("--limit-seconds", type=float, default=5.0, help="per kernel loop and precision")
    args = parser.parse_args()

    import keras

    keras.utils.disable_interactive_logging()
    params = load_params(REPO / "params.yaml")
    names = args.architectures or params.architectures
    fix = "run `dvc repro split` first"
    data = (load_array(args.split, "train_images", fix), load_array(args.split, "train_labels", fix))
    stats = {name: normalization_stats(data[0], params.train[name].normalization) for name in names}
    limits = {precision: kernel_limit(precision, args.limit_seconds) for precision in PRECISIONS}
    best = {precision: max(kinds.values()) for precision, kinds in limits.items()}
    speeds = {(name, precision): [] for name in names for precision in PRECISIONS}
    for _ in range(args.rounds):
        for name in names:
            for precision in PRECISIONS:  # alternated: float32, bfloat16, float32, ...
                speeds[name, precision].append(images_per_second(name, params.train[name], precision, data,
                                                                 stats[name], args.images))
    rows = []
    for name in names:
        flops = training_flops_per_image(name, params.train[name].model_copy(
            update={"augmentation": None, "precision": "float32", "weights": None}),
                                         data[1].shape[1], stats[name])
        per_precision = {p: median(speeds[name, p]) for p in PRECISIONS}
        cells = [f"{per_precision[p]:,.0f} img/s, {per_precision[p] * flops / 1e9:,.0f} GFLOP/s, "
                 f"**{100 * per_precision[p] * flops / 1e9 / best[p]:.0f} %**" for p in PRECISIONS]
        rows.append(f"| {name} | {flops / 1e6:,.1f} | {cells[0]} | {cells[1]} | "
                    f"{per_precision['bfloat16'] / per_precision['float32']:.2f}x |")
    command = (f"python benchmarks/b6_distance_to_limit.py --rounds {args.rounds} --images {args.images}"
               + (f" --architectures {' '.join(args.architectures)}" if args.architectures else ""))
    append_result("B6 distance to the limit", command, [
        "| kernel loop | float32 GFLOP/s | bfloat16 GFLOP/s |",
        "|---|---:|---:|",
        *[f"| {kind} | {limits['float32'][kind]:,.0f} | {limits['bfloat16'][kind]:,.0f} |"
          for kind in ("matmul", "conv")],
        f"| **limit** (best) | **{best['float32']:,.0f}** | **{best['bfloat16']:,.0f}** |",
        "",
        f"Training throughput, median of {args.rounds} alternated float32 / bfloat16 fits of {args.images:,} "
        "images (params.yaml's batch, optimizer and augmentation), and the fraction of the limit in that precision:",
        "",
        "| net | training MFLOP / image | float32 | bfloat16 | bfloat16 / float32 speed |",
        "|---|---:|---|---|---:|",
        *rows,
    ])


if __name__ == "__main__":
    main()
