"""Strategy rules: segments, the policy, compliance and the YAML files that declare them (no I/O beyond reading those files)."""
