"""Library behind the CIFAR DVC pipeline: one module per concern, stages in src/stages."""

import os

# Under tf.config.experimental.enable_op_determinism() TensorFlow silently drops its oneDNN
# CPU kernels unless they are asked for explicitly, which makes training ~2x slower here.
# Determinism with them on is checked by tests/test_training.py.
os.environ.setdefault("TF_ENABLE_ONEDNN_OPTS", "1")
# With independent ops run side by side, oneDNN's bfloat16 kernels gave airbench a different first epoch
# on every run; one op at a time makes it repeat bit for bit (docs/reproducibility.md, BENCHMARKS.md's
# cost). Set, not defaulted: a value from the shell would silently undo the determinism every result
# relies on. TensorFlow reads it once, when its runtime starts.
os.environ["TF_NUM_INTEROP_THREADS"] = "1"
# Keep TensorFlow's C++ start-up chatter out of `dvc repro` logs.
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
