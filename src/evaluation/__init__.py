"""What an evaluate stage computes: scores (scoring), test-time augmentation (tta), its confusion
heatmap (figures) and the schema of the `evaluate` params."""
