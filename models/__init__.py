"""Estimators, calibration, metrics, explanations and strategy rules (no I/O)."""
