"""Long-term memory of users: the facts and preferences found in what they say (facts.py), and writing
interactions and facts into the stores (ingest.py)."""
