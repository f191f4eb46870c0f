"""Everything that reads or writes outside memory: the portfolio loader, atomic result folders, configuration files, MLflow tracking and the model registry."""
