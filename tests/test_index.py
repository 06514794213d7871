"""VectorIndex contract, shared by every implementation, and Chroma's filters checked
against the plain-Python reference."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from convrec.knowledge.index import ItemFilter, MemoryIndex, VectorIndex, persistent_index
from convrec.knowledge.items import parse_item

DIM = 8


def make_items(n: int, tenant: str = "default"):
    rng = np.random.default_rng(0)
    items = []
    for i in range(n):
        if i % 3 == 0:
            items.append(parse_item({"id": f"a{i}", "kind": "article", "title": f"A {i}",
                                     "locale": "en" if i % 2 else "de", "tenant": tenant,
                                     "tags": ["t1"] if i % 4 == 0 else []}))
        else:
            items.append(parse_item({"id": f"p{i}", "kind": "product", "title": f"P {i}",
                                     "price": float(i * 10), "in_stock": i % 2 == 0,
                                     "category": "c1" if i % 4 < 2 else "c2",
                                     "tenant": tenant, "tags": ["t2"] if i % 5 else ["t1"]}))
    vectors = rng.normal(size=(n, DIM)).astype(np.float32)
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    return items, vectors


class IndexContract:
    """Every VectorIndex must pass these."""

    def make_index(self, tmp_path) -> VectorIndex:
        raise NotImplementedError

    def test_is_a_vector_index(self, tmp_path):
        assert isinstance(self.make_index(tmp_path), VectorIndex)

    def test_upsert_get_delete_count(self, tmp_path):
        index = self.make_index(tmp_path)
        items, vectors = make_items(6)
        index.upsert(items, vectors)
        assert index.count() == 6
        (stored,) = index.get(["p1"])
        assert stored.item == items[1]
        assert np.allclose(stored.vector, vectors[1], atol=1e-6)
        index.delete(["p1", "a0"])
        assert index.count() == 4 and index.get(["p1"]) == []

    def test_upsert_replaces(self, tmp_path):
        index = self.make_index(tmp_path)
        items, vectors = make_items(3)
        index.upsert(items, vectors)
        changed = items[1].model_copy(update={"title": "Renamed"})
        index.upsert([changed], vectors[1:2])
        assert index.count() == 3 and index.get(["p1"])[0].item.title == "Renamed"

    def test_query_ranks_by_cosine(self, tmp_path):
        index = self.make_index(tmp_path)
        items, vectors = make_items(12)
        index.upsert(items, vectors)
        hits = index.query(vectors[4], 3, ItemFilter())
        assert hits[0].item.id == items[4].id and hits[0].score == pytest.approx(1, abs=1e-4)
        assert [h.score for h in hits] == sorted([h.score for h in hits], reverse=True)

    def test_tenants_are_kept_apart(self, tmp_path):
        index = self.make_index(tmp_path)
        a_items, vectors = make_items(4, tenant="a")
        b_items, _ = make_items(4, tenant="b")
        index.upsert(a_items, vectors)
        index.upsert(b_items, vectors)
        assert {h.item.tenant for h in index.query(vectors[0], 10, ItemFilter(tenant="b"))} \
            == {"b"}
        index.delete(["a0"], tenant="b")
        assert index.count("a") == 4 and index.count("b") == 3
        assert set(index.fingerprints("a")) == {i.id for i in a_items}

    def test_exclude_ids(self, tmp_path):
        index = self.make_index(tmp_path)
        items, vectors = make_items(5)
        index.upsert(items, vectors)
        hits = index.query(vectors[2], 5, ItemFilter(exclude_ids=[items[2].id]))
        assert items[2].id not in {h.item.id for h in hits} and len(hits) == 4


class TestMemoryIndex(IndexContract):
    def make_index(self, tmp_path):
        return MemoryIndex()


class TestChromaIndex(IndexContract):
    def make_index(self, tmp_path):
        return persistent_index(tmp_path / "chroma", collection=f"t-{tmp_path.name}"[:60])

    def test_persists_across_clients(self, tmp_path):
        items, vectors = make_items(4)
        persistent_index(tmp_path / "db").upsert(items, vectors)
        assert persistent_index(tmp_path / "db").count() == 4


filters = st.builds(
    ItemFilter,
    kinds=st.none() | st.sampled_from([["article"], ["product"], ["article", "product"]]),
    in_stock=st.none() | st.booleans(),
    locale=st.none() | st.sampled_from(["en", "de"]),
    category=st.none() | st.sampled_from(["c1", "c2", "c3"]),
    price_min=st.none() | st.floats(0, 200),
    price_max=st.none() | st.floats(0, 200),
    tags_any=st.none() | st.sampled_from([["t1"], ["t2"], ["t1", "t2"], ["t3"]]),
)


@pytest.fixture(scope="module")
def both_indexes(tmp_path_factory):
    items, vectors = make_items(30)
    chroma = persistent_index(tmp_path_factory.mktemp("prop"), collection="property")
    memory = MemoryIndex()
    for index in (chroma, memory):
        index.upsert(items, vectors)
    return chroma, memory, vectors


@settings(max_examples=60, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(where=filters, row=st.integers(0, 29))
def test_chroma_filters_match_the_reference(both_indexes, where, row):
    chroma, memory, vectors = both_indexes
    expected = {h.item.id for h in memory.query(vectors[row], 30, where)}
    got = {h.item.id for h in chroma.query(vectors[row], 30, where)}
    assert got == expected
