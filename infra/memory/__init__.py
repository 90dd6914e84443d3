"""Long-term memory of a user: profiles, preferences, feedback, interactions and the knowledge graph
of what the user has said (infra/memory/base.py), behind one store interface with an embedded
SQLite default and a Cassandra backend for production."""
