"""Experiment tracking beyond the CSV/PNG files (Aim). Tracking never stops training."""
