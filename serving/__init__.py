"""The online scoring API: the same features/ and models/ code behind FastAPI."""
