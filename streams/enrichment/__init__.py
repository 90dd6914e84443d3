"""Context enrichment: the user's relevant memories into each job's prompt (logic.py decides, engine.py reads
the stores, stage.py bounds it in time)."""
