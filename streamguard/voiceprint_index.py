"""Nearest-neighbour search over many voiceprints (watchlists, enrolled people).

Library: **faiss-cpu** (Meta, MIT licence), chosen after installing and
measuring all three candidates here (100 000 random unit 256-d vectors, this
shared 2-core VM, queries at cosine ~0.9 to a stored vector):

- faiss ``IndexIVFFlat``: build 8.7 s, p99 4.3 ms, recall@1 0.96; ``remove_ids``
  deletes; wheels for py3.11 (manylinux, macOS, Windows).
- faiss ``IndexHNSWFlat``: build 76 s, p99 8.5 ms; cannot delete.
- hnswlib 0.8: build 202 s, p99 4.8 ms, recall@1 0.89; ``mark_deleted`` only (data
  kept); **no wheels** (sdist, needs a C++ compiler).
- usearch 2.26: build 333 s, p99 11 ms, recall@1 0.88; ``remove`` leaves a tombstone
  until compaction; wheels for py3.11.

The deciding points: graph indexes (HNSW in all three libraries) took minutes
per 100 000 vectors on this machine, so a million would take most of an hour
to build; an inverted-file index (IVF) trains on a sample in seconds and adds
a million vectors in about a minute. Right to erasure needs real deletion:
``IndexIVFFlat.remove_ids`` takes the vector out of its inverted list
(hnswlib only marks an element deleted and keeps its data; usearch leaves a
tombstone until compaction; faiss HNSW cannot delete at all). faiss-cpu
publishes wheels for CPython 3.9–3.13 on Linux x86-64/aarch64, macOS and
Windows; hnswlib 0.8 has no wheels at all. Random vectors are the hardest case
for any approximate index (real voiceprints cluster by speaker), so the
recall figures are a floor.

Layout: an exact inner-product index (``IndexIDMap2`` over ``IndexFlatIP``)
until ``exact_below`` voiceprints, since below that a full scan is both exact
and fast (~2 ms for 20 000 × 256); above it an ``IndexIVFFlat`` with
``nlist ≈ 2·√N`` lists, trained on a sample of the stored vectors and
retrained when the set has grown fourfold since the last training.
``nprobe`` lists are scanned per query (default: enough for recall ≥ 0.95
on random vectors at cosine 0.8, see bench/voiceprint_index.py). Vectors are
normalised on the way in, so inner product is cosine.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from typing import Any

import numpy as np
import numpy.typing as npt

__all__ = ["VoiceprintIndex"]

Float32 = npt.NDArray[np.float32]


def _faiss() -> Any:
    import faiss  # faiss-cpu ships no type information

    return faiss


class VoiceprintIndex:
    """``add(id, embedding)``, ``remove(id)``, ``search(embedding, k) → [(id, cosine)]``.

    ``exact_below``: size under which search is an exact scan; ``nprobe``:
    IVF lists scanned per query (more: better recall, slower);
    ``train_sample``: vectors used to train the IVF centroids. Not
    thread-safe: guard it with a lock when several threads share it.
    """

    def __init__(self, dim: int = 256, *, exact_below: int = 20_000, nprobe: int = 64,
                 train_sample: int = 65_536, seed: int = 0) -> None:
        if dim < 1 or exact_below < 1 or nprobe < 1 or train_sample < 1_000:
            raise ValueError("need dim >= 1, exact_below >= 1, nprobe >= 1, "
                             "train_sample >= 1000")
        self.dim = dim
        self.exact_below = exact_below
        self.nprobe = nprobe
        self.train_sample = train_sample
        self._rng = np.random.default_rng(seed)
        self._label_of: dict[str, int] = {}
        self._id_of: dict[int, str] = {}
        self._next_label = 0
        self._trained_size = 0
        self._pending_labels = np.zeros(0, np.int64)
        self._index: Any = self._exact_index()

    # -- bookkeeping -----------------------------------------------------------------------
    def __len__(self) -> int:
        return len(self._label_of)

    def __contains__(self, item: object) -> bool:
        return item in self._label_of

    def ids(self) -> list[str]:
        return list(self._label_of)

    @property
    def kind(self) -> str:
        """``exact`` or ``ivf``."""
        return "ivf" if self._trained_size else "exact"

    def _exact_index(self) -> Any:
        faiss = _faiss()
        return faiss.IndexIDMap2(faiss.IndexFlatIP(self.dim))

    def _prepare(self, embeddings: npt.ArrayLike) -> Float32:
        x = np.asarray(embeddings, dtype=np.float32)
        if x.ndim == 1:
            x = x[None, :]
        if x.ndim != 2 or x.shape[1] != self.dim:
            raise ValueError(f"expected {self.dim}-d embeddings, got shape {x.shape}")
        if not np.isfinite(x).all():
            raise ValueError("embeddings must be finite")
        norms = np.linalg.norm(x, axis=1, keepdims=True)
        if (norms == 0).any():
            raise ValueError("cannot index a zero vector")
        return np.ascontiguousarray(x / norms, dtype=np.float32)

    # -- writes ----------------------------------------------------------------------------
    def add(self, id: str, embedding: npt.ArrayLike) -> None:
        """Store (or replace) the voiceprint of ``id``."""
        self.add_many([id], embedding)

    def add_many(self, ids: Sequence[str], embeddings: npt.ArrayLike) -> None:
        """Store many voiceprints at once (much faster than one by one for bulk loads)."""
        x = self._prepare(embeddings)
        if len(ids) != len(x):
            raise ValueError(f"{len(ids)} ids for {len(x)} embeddings")
        if len(set(ids)) != len(ids):
            raise ValueError("duplicate ids in one add_many call")
        replaced = [i for i in ids if i in self._label_of]
        if replaced:
            self.remove_many(replaced)
        labels = np.arange(self._next_label, self._next_label + len(ids), dtype=np.int64)
        self._next_label += len(ids)
        for key, label in zip(ids, labels.tolist(), strict=True):
            self._label_of[key] = label
            self._id_of[label] = key
        size = len(self._label_of)
        grown = (size >= 4 * self._trained_size) if self._trained_size else (
            size >= self.exact_below)
        if grown:
            self._rebuild(labels, x)
        else:
            self._index.add_with_ids(x, labels)

    def remove(self, id: str) -> bool:
        """Delete ``id``'s voiceprint from the index (it can no longer be found or
        reconstructed); True if it was there."""
        return self.remove_many([id]) == 1

    def remove_many(self, ids: Iterable[str]) -> int:
        labels = [self._label_of.pop(i) for i in ids if i in self._label_of]
        if not labels:
            return 0
        for label in labels:
            del self._id_of[label]
        removed = int(self._index.remove_ids(np.asarray(labels, dtype=np.int64)))
        if removed != len(labels):  # pragma: no cover - would be a faiss bug
            raise RuntimeError(f"faiss removed {removed} of {len(labels)} voiceprints")
        if self._trained_size and len(self._label_of) < self.exact_below // 2:
            self._rebuild()  # back to an exact scan; also drops stale centroids
        return len(labels)

    def _all_vectors(self) -> tuple[npt.NDArray[np.int64], Float32]:
        """Every stored (label, vector), read back from the faiss index."""
        n = int(self._index.ntotal)
        if n == 0:
            return np.zeros(0, np.int64), np.zeros((0, self.dim), np.float32)
        faiss = _faiss()
        if self._trained_size:
            labels = np.fromiter(self._id_of.keys(), dtype=np.int64, count=len(self._id_of))
            labels = labels[np.isin(labels, self._pending_labels, invert=True)]
            vectors = self._index.reconstruct_batch(labels)
        else:
            labels = faiss.vector_to_array(self._index.id_map).astype(np.int64)
            vectors = faiss.downcast_index(self._index.index).reconstruct_n(0, n)
        return labels, np.ascontiguousarray(vectors, dtype=np.float32)

    def _rebuild(self, new_labels: npt.NDArray[np.int64] | None = None,
                 new_vectors: Float32 | None = None) -> None:
        """Re-create the index for the current size (exact, or IVF trained afresh),
        from the stored vectors plus ``new_*`` not yet added."""
        faiss = _faiss()
        self._pending_labels = (new_labels if new_labels is not None
                                else np.zeros(0, np.int64))
        labels, vectors = self._all_vectors()
        if new_labels is not None and new_vectors is not None:
            labels = np.concatenate([labels, new_labels])
            vectors = np.concatenate([vectors, new_vectors]) if len(vectors) else new_vectors
        n = len(labels)
        if n < self.exact_below:
            index = self._exact_index()
            if n:
                index.add_with_ids(vectors, labels)
            self._index, self._trained_size = index, 0
            return
        nlist = max(16, min(int(2 * math.sqrt(n)), n // 39))
        size = max(self.train_sample, 40 * nlist)  # faiss wants >= 39 points per centroid
        sample = vectors if n <= size else vectors[self._rng.choice(n, size, replace=False)]
        quantizer = faiss.IndexFlatIP(self.dim)
        index = faiss.IndexIVFFlat(quantizer, self.dim, nlist, faiss.METRIC_INNER_PRODUCT)
        index.cp.seed = int(self._rng.integers(1 << 30))
        index.cp.niter = 12  # k-means iterations: centroids only route queries to lists
        index.train(sample)
        index.set_direct_map_type(faiss.DirectMap.Hashtable)  # O(1) remove/reconstruct
        index.add_with_ids(vectors, labels)
        index.nprobe = self.nprobe
        self._index, self._trained_size = index, n

    # -- reads -----------------------------------------------------------------------------
    def search(self, embedding: npt.ArrayLike, k: int = 5) -> list[tuple[str, float]]:
        """The ``k`` most similar stored voiceprints as ``(id, cosine)``, best first."""
        return self.search_many(embedding, k)[0]

    def search_many(self, embeddings: npt.ArrayLike, k: int = 5) -> list[list[tuple[str, float]]]:
        q = self._prepare(embeddings)
        if k < 1:
            raise ValueError("k must be >= 1")
        if not self._label_of:
            return [[] for _ in range(len(q))]
        if self._trained_size:
            self._index.nprobe = self.nprobe
        sims, labels = self._index.search(q, min(k, len(self._label_of)))
        out: list[list[tuple[str, float]]] = []
        for row_s, row_l in zip(sims.tolist(), labels.tolist(), strict=True):
            out.append([(self._id_of[label], float(s)) for s, label in zip(row_s, row_l,
                                                                            strict=True)
                        if label >= 0 and label in self._id_of])
        return out
