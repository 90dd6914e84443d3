"""The vector index on a Weaviate server (weaviate-client v4, async), for production.

One collection holds every memory; each genloom (tenant, user) is a Weaviate tenant of it (multi-
tenancy), not a filter on shared data. Why: a Weaviate tenant is a shard of its own with its own
vector index, so a query cannot reach another user's vectors even if a filter were wrong (the same
structural scoping as the embedded index's partition per user); an HNSW search filtered down to one
user among thousands loses recall or falls back to a scan (bench/vector_store.py measured both on
hnswlib and faiss); and erasing a user is dropping their tenant, not a delete-by-filter over the
shared index. Tenant names are hashes of (tenant, user): Weaviate allows only [A-Za-z0-9_-], 64 long.
The properties still carry tenant and user, so an operator can read the data.

Vectors are ours (no vectorizer); the distance is cosine, so a score is 1 - distance. Object ids are
UUIDv5 of the record id, which makes a batch insert an upsert by id.
"""

from __future__ import annotations

import hashlib

import numpy as np

from .base import VectorHit, VectorRecord
from .partition import normalised

#: properties returned with a hit (the vector itself never comes back)
_RETURNED = ["record_id", "kind", "created_at"]
#: objects deleted per call of a sweep's delete_many (the server caps one call's matches, 10k by default)
_SWEEP_BATCH = 10_000


def tenant_name(tenant: str, user: str) -> str:
    """The Weaviate tenant of one genloom user: a hash, so any tenant and user id fit its alphabet."""
    return "u" + hashlib.sha256(f"{tenant}\x00{user}".encode()).hexdigest()[:40]


class WeaviateVectorIndex:
    """The VectorIndex contract on Weaviate. `client` is a weaviate.WeaviateAsyncClient, not yet connected."""

    def __init__(self, client, dims: int, collection: str = "GenloomMemory") -> None:
        self.client = client
        self.dims = dims
        self.collection_name = collection
        self._collection = None

    @classmethod
    def from_url(cls, url: str, grpc_port: int, dims: int, collection: str = "GenloomMemory") -> WeaviateVectorIndex:
        try:
            import weaviate
            from weaviate.connect import ConnectionParams
        except ImportError as e:
            raise RuntimeError("GENLOOM_MEMORY_VECTORS=weaviate needs weaviate-client: "
                               "pip install 'genloom[weaviate]'") from e

        return cls(weaviate.WeaviateAsyncClient(connection_params=ConnectionParams.from_url(url, grpc_port)),
                   dims, collection)

    async def start(self) -> None:
        from weaviate.classes.config import Configure, DataType, Property, VectorDistances

        await self.client.connect()
        if not await self.client.collections.exists(self.collection_name):
            await self.client.collections.create(
                self.collection_name,
                properties=[
                    Property(name="tenant", data_type=DataType.TEXT),
                    Property(name="user", data_type=DataType.TEXT),
                    Property(name="record_id", data_type=DataType.TEXT),
                    Property(name="kind", data_type=DataType.TEXT),
                    Property(name="created_at", data_type=DataType.NUMBER),
                    Property(name="expires_at", data_type=DataType.NUMBER),
                ],
                vector_config=Configure.Vectors.self_provided(
                    vector_index_config=Configure.VectorIndex.hnsw(distance_metric=VectorDistances.COSINE)),
                multi_tenancy_config=Configure.multi_tenancy(enabled=True, auto_tenant_creation=True,
                                                             auto_tenant_activation=True),
            )
        self._collection = self.client.collections.get(self.collection_name)

    async def close(self) -> None:
        await self.client.close()

    async def health(self) -> bool:
        return await self.client.is_ready()

    def _of(self, tenant: str, user: str):
        if self._collection is None:
            raise RuntimeError("WeaviateVectorIndex used before start()")
        return self._collection.with_tenant(tenant_name(tenant, user))

    async def _exists(self, tenant: str, user: str) -> bool:
        return await self._collection.tenants.exists(tenant_name(tenant, user))

    async def upsert(self, tenant: str, user: str, records: list[VectorRecord]) -> None:
        from weaviate.classes.data import DataObject
        from weaviate.util import generate_uuid5

        if not records:
            return
        objects = [
            DataObject(
                uuid=generate_uuid5(r.id),
                vector=normalised(r.vector, self.dims).tolist(),
                # no expires_at at all for a record kept forever: a missing number never matches the sweep
                properties={"tenant": tenant, "user": user, "record_id": r.id, "kind": r.kind,
                            "created_at": r.created_at,
                            **({} if r.expires_at is None else {"expires_at": r.expires_at})},
            )
            for r in records
        ]
        result = await self._of(tenant, user).data.insert_many(objects)
        if result.has_errors:
            first = next(iter(result.errors.values()))
            raise RuntimeError(f"Weaviate refused {len(result.errors)} of {len(objects)} vectors: {first.message}")

    async def query(self, tenant: str, user: str, vector: np.ndarray, k: int,
                    kinds: tuple[str, ...] | None = None) -> list[VectorHit]:
        from weaviate.classes.query import Filter, MetadataQuery
        from weaviate.exceptions import WeaviateBaseError

        q = normalised(vector, self.dims)
        if k < 1 or (kinds is not None and not kinds):
            return []
        where = Filter.by_property("kind").contains_any(list(kinds)) if kinds else None
        try:
            found = await self._of(tenant, user).query.near_vector(
                near_vector=q.tolist(), limit=k, filters=where, return_properties=_RETURNED,
                return_metadata=MetadataQuery(distance=True))
        except WeaviateBaseError:
            if not await self._exists(tenant, user):  # a user with nothing stored yet has no tenant
                return []
            raise
        return [VectorHit(id=o.properties["record_id"], kind=o.properties["kind"],
                          score=1.0 - float(o.metadata.distance), created_at=float(o.properties["created_at"]))
                for o in found.objects]

    async def delete(self, tenant: str, user: str, ids: list[str]) -> int:
        from weaviate.classes.query import Filter
        from weaviate.util import generate_uuid5

        if not ids or not await self._exists(tenant, user):
            return 0
        result = await self._of(tenant, user).data.delete_many(
            where=Filter.by_id().contains_any([generate_uuid5(i) for i in dict.fromkeys(ids)]))
        return int(result.successful)

    async def erase(self, tenant: str, user: str) -> int:
        if not await self._exists(tenant, user):
            return 0
        n = await self.count(tenant, user)
        await self._collection.tenants.remove([tenant_name(tenant, user)])
        return n

    async def sweep(self, now: float) -> int:
        from weaviate.classes.query import Filter

        total = 0
        for name in await self._collection.tenants.get():
            while True:  # objects without expires_at never match
                result = await self._collection.with_tenant(name).data.delete_many(
                    where=Filter.by_property("expires_at").less_or_equal(now))
                total += int(result.successful)
                if result.matches < _SWEEP_BATCH:
                    break
        return total

    async def count(self, tenant: str, user: str) -> int:
        if not await self._exists(tenant, user):
            return 0
        result = await self._of(tenant, user).aggregate.over_all(total_count=True)
        return int(result.total_count or 0)
