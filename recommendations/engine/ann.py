"""Approximate nearest neighbours for the ALS stage: an hnswlib index over the item factors.

ALS scores are inner products of a person's factors with the items'; the index answers "the N
items with the largest inner product" in well under a millisecond for 50,000 items, where the
exact answer multiplies the person's factors with every item's. It is built once per trained model
(the final one, the one served) and stored in the artifact in hnswlib's own binary format.
"""

from __future__ import annotations

import os
import tempfile

import numpy as np

EF_SEARCH = 200  # candidates explored per query (recall vs time); the query asks for at most this many


class ItemIndex:
    """hnswlib inner-product index of item vectors (labels = item indexes)."""

    __artifact__ = "hnsw"

    def __init__(self, index, dim: int, count: int) -> None:
        self.index, self.dim, self.count = index, dim, count

    @classmethod
    def build(cls, vectors: np.ndarray, *, m: int = 16, ef_construction: int = 100, threads: int = 1, seed: int = 7):
        import hnswlib

        vectors = np.ascontiguousarray(vectors, dtype=np.float32)
        # items whose factors are all zero (no interaction in the data: e.g. in a label window's past)
        # score 0 for everyone; in the graph they are thousands of identical points that cut it apart
        labels = np.flatnonzero(np.abs(vectors).sum(axis=1) > 0)
        index = hnswlib.Index(space="ip", dim=vectors.shape[1])
        index.init_index(max_elements=max(len(labels), 1), ef_construction=ef_construction, M=m, random_seed=seed)
        if len(labels):
            index.add_items(vectors[labels], labels, num_threads=threads)
        index.set_ef(EF_SEARCH)
        index.set_num_threads(1)
        return cls(index, vectors.shape[1], len(labels))

    def query(self, vectors: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray] | None:
        """(item indexes, inner products), each (len(vectors), k), best first; None when the graph
        cannot answer (the caller then computes the exact top)."""
        k = min(k, self.count)
        if k <= 0:
            return np.empty((len(vectors), 0), np.int64), np.empty((len(vectors), 0), np.float32)
        vectors = np.ascontiguousarray(vectors, dtype=np.float32)
        try:
            labels, distances = self.index.knn_query(vectors, k=k, num_threads=1)
        except RuntimeError:  # the graph could not reach k items for some row (e.g. a zero vector)
            if len(vectors) == 1:
                return None  # None = the caller asks exactly
            rows = [self.query(v[None, :], k) for v in vectors]
            if any(r is None for r in rows):
                return None
            return np.vstack([r[0] for r in rows]), np.vstack([r[1] for r in rows])
        return labels.astype(np.int64), (1.0 - distances).astype(np.float32)

    # --- artifact storage (hnswlib's own format, no pickle) ---------------------------------------

    def meta(self) -> dict:
        return {"dim": self.dim, "count": self.count}

    def to_array(self) -> np.ndarray:
        fd, path = tempfile.mkstemp(prefix="cdp-recs-hnsw-")
        os.close(fd)
        try:
            self.index.save_index(path)
            with open(path, "rb") as fh:
                return np.frombuffer(fh.read(), dtype=np.uint8)
        finally:
            os.unlink(path)

    @classmethod
    def from_array(cls, data: np.ndarray, meta: dict) -> ItemIndex:
        import hnswlib

        dim, count = int(meta["dim"]), int(meta["count"])
        fd, path = tempfile.mkstemp(prefix="cdp-recs-hnsw-")
        try:
            with os.fdopen(fd, "wb") as fh:
                fh.write(np.asarray(data, dtype=np.uint8).tobytes())
            index = hnswlib.Index(space="ip", dim=dim)
            index.load_index(path, max_elements=max(count, 1))
        finally:
            os.unlink(path)
        index.set_ef(EF_SEARCH)
        index.set_num_threads(1)
        return cls(index, dim, count)
