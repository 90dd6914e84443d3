"""Vector indexes of users' memories: an embedded default on disk and a Weaviate adapter, one contract
(infra/vectors/base.py)."""
