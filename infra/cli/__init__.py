"""The `genloom` command."""
