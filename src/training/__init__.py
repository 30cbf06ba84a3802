"""What a train stage computes: the model around a net (models), the fit (fit), where and in which
precision it runs (device, cpu), the normalization statistics, and the schema of a recipe (recipe)."""
