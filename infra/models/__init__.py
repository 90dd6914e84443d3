"""The served models: their settings, the catalogue the gateway, the workers and the CLI read, the
context-length check, and what builds or loads them (loader.py, tiny.py; these need the model
extras and are imported only where a model is loaded or prepared)."""
