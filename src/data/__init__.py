"""The data stages' code (download, preprocess, split) and the schema of their params."""
