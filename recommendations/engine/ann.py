"""Approximate nearest neighbours for the ALS stage: an hnswlib index over the item factors.

ALS scores are inner products of a person's factors with the items'; the index answers "the N
items with the largest inner product" in well under a millisecond for 50,000 items, where the
exact answer multiplies the person's factors with every item's. It is built once per trained model
(the final one, the one served, and each label window's) and stored in the artifact in hnswlib's
own binary format.

Largest inner product is reduced to nearest neighbour in Euclidean space (Bachrach et al., 2014):
each item vector ``x`` gets one more coordinate ``sqrt(M^2 - |x|^2)`` (``M`` the largest item norm),
each query ``q`` a 0, so ``|q' - x'|^2 = |q|^2 + M^2 - 2 q.x``: the nearest items are those of
largest ``q.x``. hnswlib's own inner-product space left searches of 100 items unanswered ("cannot
return the results") on real ALS factors, whose norms differ a lot; the L2 graph answers them
(recall of the exact top 100 about 0.99 at 50,000 items).
"""

from __future__ import annotations

import os
import tempfile

import numpy as np

EF_SEARCH = 200  # candidates explored per query (recall vs time); the query asks for at most this many
SPACE = "l2-mips"


class ItemIndex:
    """hnswlib index of item vectors (labels = item indexes) answering largest inner products."""

    __artifact__ = "hnsw"

    def __init__(self, index, dim: int, count: int, max_norm: float | None = None) -> None:
        self.index, self.dim, self.count = index, dim, count
        self.max_norm = max_norm  # None: an index of hnswlib's inner-product space (older artifacts)

    @classmethod
    def build(
        cls,
        vectors: np.ndarray,
        *,
        items: np.ndarray | None = None,
        m: int = 16,
        ef_construction: int = 100,
        threads: int = 1,
        seed: int = 7,
    ):
        """An index of ``vectors`` (of the item indexes ``items`` only, when given: items without any
        interaction in the data, e.g. in a label window's past, have no meaningful factors)."""
        import hnswlib

        vectors = np.ascontiguousarray(vectors, dtype=np.float32)
        labels = np.flatnonzero(np.abs(vectors).sum(axis=1) > 0)
        if items is not None:
            labels = np.intersect1d(labels, np.asarray(items, dtype=np.int64))
        norms = np.linalg.norm(vectors[labels], axis=1) if len(labels) else np.zeros(0, np.float32)
        max_norm = float(norms.max()) if len(norms) else 0.0
        extra = np.sqrt(np.maximum(max_norm**2 - norms**2, 0.0)).astype(np.float32)
        index = hnswlib.Index(space="l2", dim=vectors.shape[1] + 1)
        index.init_index(max_elements=max(len(labels), 1), ef_construction=ef_construction, M=m, random_seed=seed)
        if len(labels):
            index.add_items(np.hstack([vectors[labels], extra[:, None]]), labels, num_threads=threads)
        index.set_ef(EF_SEARCH)
        index.set_num_threads(1)
        return cls(index, vectors.shape[1], len(labels), max_norm)

    def query(self, vectors: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray] | None:
        """(item indexes, inner products), each (len(vectors), k), best first; rows the graph cannot
        answer have item -1 (the caller computes them exactly); None when no row could be answered."""
        k = min(k, self.count)
        if k <= 0:
            return np.empty((len(vectors), 0), np.int64), np.empty((len(vectors), 0), np.float32)
        q = np.ascontiguousarray(vectors, dtype=np.float32)
        scale = np.ones((len(q), 1), dtype=np.float32)
        if self.max_norm is not None:
            # a query scaled to the items' sphere finds its way through the graph better (the order
            # of q.x does not change with the length of q); the scores are scaled back
            norms = np.linalg.norm(q, axis=1, keepdims=True)
            scale = np.where(norms > 0, self.max_norm / np.maximum(norms, 1e-12), 1.0).astype(np.float32)
            q = np.hstack([q * scale, np.zeros((len(q), 1), dtype=np.float32)])
        try:
            labels, distances = self.index.knn_query(q, k=k, num_threads=1)
        except RuntimeError:  # the graph could not reach k items for some row
            if len(q) == 1:
                return None
            labels = np.full((len(q), k), -1, dtype=np.int64)
            scores = np.zeros((len(q), k), dtype=np.float32)
            for n in range(len(q)):
                found = self.query(vectors[n : n + 1], k)
                if found is not None:
                    labels[n], scores[n] = found[0][0], found[1][0]
            return labels, scores
        return labels.astype(np.int64), self._scores(q, distances, scale)

    def _scores(self, q: np.ndarray, distances: np.ndarray, scale: np.ndarray) -> np.ndarray:
        if self.max_norm is None:  # inner-product space: distance = 1 - q.x
            return (1.0 - distances).astype(np.float32)
        squared = np.einsum("ij,ij->i", q, q)[:, None]
        return ((squared + self.max_norm**2 - distances) / 2.0 / scale).astype(np.float32)

    # --- artifact storage (hnswlib's own format, no pickle) ---------------------------------------

    def meta(self) -> dict:
        meta = {"dim": self.dim, "count": self.count}
        if self.max_norm is not None:
            meta.update(space=SPACE, max_norm=self.max_norm)
        return meta

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
        mips = meta.get("space") == SPACE
        fd, path = tempfile.mkstemp(prefix="cdp-recs-hnsw-")
        try:
            with os.fdopen(fd, "wb") as fh:
                fh.write(np.asarray(data, dtype=np.uint8).tobytes())
            index = hnswlib.Index(space="l2" if mips else "ip", dim=dim + 1 if mips else dim)
            index.load_index(path, max_elements=max(count, 1))
        finally:
            os.unlink(path)
        index.set_ef(EF_SEARCH)
        index.set_num_threads(1)
        return cls(index, dim, count, float(meta["max_norm"]) if mips else None)
