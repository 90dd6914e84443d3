"""Embed each job's prompt (in batches) for the cache and the later stages."""
