"""Estimators, calibration, baselines, metrics and explanations (no I/O)."""
