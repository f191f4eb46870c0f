"""rollrisk: roll-to-default risk scoring for collections."""

__version__ = "0.1.0"
