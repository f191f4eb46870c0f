"""Borrower history -> point-in-time features and labels: schemas and pure functions (no I/O)."""
