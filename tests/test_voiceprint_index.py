"""Voiceprint nearest-neighbour index: finds the right id, and removal really removes."""

from __future__ import annotations

import numpy as np
import pytest

from streamguard.voiceprint_index import VoiceprintIndex


def unit(rng: np.random.Generator, n: int, dim: int = 256) -> np.ndarray:
    x = rng.standard_normal((n, dim)).astype(np.float32)
    return x / np.linalg.norm(x, axis=1, keepdims=True)


def near(rng: np.random.Generator, v: np.ndarray, cosine: float = 0.8) -> np.ndarray:
    noise = rng.standard_normal(v.shape)
    noise -= (noise @ v) * v
    noise /= np.linalg.norm(noise)
    return (cosine * v + np.sqrt(1 - cosine ** 2) * noise).astype(np.float32)


def test_exact_search_finds_the_right_id_and_removal_removes() -> None:
    rng = np.random.default_rng(0)
    x = unit(rng, 300)
    index = VoiceprintIndex()
    for i, v in enumerate(x):
        index.add(f"person-{i}", v * 3.0)  # normalised on the way in
    assert index.kind == "exact" and len(index) == 300
    for i in (0, 17, 299):
        (best, sim), *_ = index.search(near(rng, x[i]), k=3)
        assert best == f"person-{i}" and sim == pytest.approx(0.8, abs=1e-4)
    assert index.remove("person-17")
    assert not index.remove("person-17")
    assert "person-17" not in index and len(index) == 299
    hits = index.search(x[17], k=299)
    assert len(hits) == 299 and all(key != "person-17" for key, _ in hits)
    assert max(sim for _, sim in hits) < 0.5
    # Re-enrolling an id replaces its voiceprint.
    index.add("person-0", x[1])
    assert index.search(x[0], k=1)[0][0] != "person-0"
    assert len(index) == 299


def test_ivf_mode_search_and_erasure() -> None:
    rng = np.random.default_rng(1)
    x = unit(rng, 3000)
    ids = [f"v{i}" for i in range(3000)]
    index = VoiceprintIndex(exact_below=1000, nprobe=16)
    index.add_many(ids[:2000], x[:2000])
    assert index.kind == "ivf"
    for i in range(2000, 2100):  # one by one after training
        index.add(ids[i], x[i])
    index.add_many(ids[2100:], x[2100:])
    assert index.kind == "ivf" and len(index) == 3000
    queries = [int(i) for i in rng.choice(3000, 100, replace=False)]
    found = [index.search(near(rng, x[i]), k=1)[0][0] for i in queries]
    assert np.mean([f == ids[i] for f, i in zip(found, queries, strict=True)]) >= 0.95
    gone = [ids[i] for i in queries[:50]]
    assert index.remove_many(gone) == 50
    for i in queries[:50]:
        assert all(key != ids[i] for key, _ in index.search(x[i], k=20))
        assert ids[i] not in index
    # Shrinking far below the threshold goes back to an exact scan, keeping the rest.
    index.remove_many(ids[:2800])
    assert index.kind == "exact" and len(index) == len(set(ids[2800:]) - set(gone))
    keep = next(i for i in range(2800, 3000) if ids[i] not in gone)
    assert index.search(x[keep], k=1)[0] == (ids[keep], pytest.approx(1.0, abs=1e-5))


def test_bad_input() -> None:
    index = VoiceprintIndex()
    assert index.search(np.ones(256), k=3) == []
    with pytest.raises(ValueError, match="256-d"):
        index.add("a", np.ones(128))
    with pytest.raises(ValueError, match="zero"):
        index.add("a", np.zeros(256))
    with pytest.raises(ValueError, match="finite"):
        index.add("a", np.full(256, np.nan))
    with pytest.raises(ValueError, match="duplicate"):
        index.add_many(["a", "a"], np.ones((2, 256)))
    index.add("a", np.ones(256))
    with pytest.raises(ValueError, match="k must"):
        index.search(np.ones(256), k=0)
