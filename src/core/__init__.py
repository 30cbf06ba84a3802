"""Plumbing every stage shares and no output's numbers depend on: paths, errors, atomic file writes,
reading the data arrays, MLflow tracking, validating params.yaml, stage arguments.

No stage lists this folder in its DVC deps, so editing it stales nothing: a change here is proven to
leave every result unchanged with `python -m src.prove_unchanged` and recorded with `dvc commit`
(docs/pipeline.md, "Changing code"). Code that computes an output belongs in that output's package.
"""
