"""The jobs: simulate, validate, build training sets, train, evaluate, score (they read, write and log)."""
