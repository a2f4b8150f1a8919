"""Threshold rules: models, loading from YAML files, and pure evaluation."""
