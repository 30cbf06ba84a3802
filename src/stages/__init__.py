"""One thin script per DVC stage; dvc.yaml runs each as ``python -m src.stages.<name>``."""
