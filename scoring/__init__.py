"""The scoring core shared by the batch, Spark and the service: features -> probability -> reasons -> segment -> decision."""
