"""Incremental, idempotent ingest into a real Chroma store."""

from __future__ import annotations

import json

import pytest

from convrec.knowledge.loaders import ItemLoadError
from convrec.recommender import Recommender
from tests.conftest import write


def catalogue(path, *records):
    return write(path, "\n".join(json.dumps(r) for r in records))


P = [{"id": f"p{i}", "kind": "product", "title": t, "price": 10.0 * i}
     for i, t in enumerate(["Blue kettle", "Cast iron skillet", "Two-person tent"], start=1)]


@pytest.fixture()
def rec(tmp_path, encoder):
    r = Recommender(workspace=tmp_path / "ws", encoder=encoder)
    yield r
    r.close()


def test_add_change_remove_and_idempotent_reingest(rec, tmp_path):
    path = catalogue(tmp_path / "items.jsonl", *P)
    first = rec.ingest(path)
    assert (len(first.added), first.encoded) == (3, 3)

    again = rec.ingest(path)
    assert (again.added, again.updated, again.unchanged, again.encoded) == ([], [], 3, 0)

    changed = [{**P[0], "price": 99.0}, {**P[1], "title": "Enamelled skillet"}]
    report = rec.ingest(catalogue(path, *changed))
    assert sorted(report.updated) == ["p1", "p2"] and report.removed == ["p3"]
    assert report.encoded == 1 and report.cache_hits == 1  # a price change re-uses the vector
    assert rec.index.count() == 2
    assert rec.get_items(["p1"])[0].price == 99.0


def test_removal_only_touches_the_reread_path(rec, tmp_path):
    rec.ingest(catalogue(tmp_path / "a.jsonl", P[0]))
    rec.ingest(catalogue(tmp_path / "b.jsonl", P[1], P[2]))
    report = rec.ingest(catalogue(tmp_path / "b.jsonl", P[1]))
    assert report.removed == ["p3"]
    assert sorted(rec.index.fingerprints()) == ["p1", "p2"]


def test_deleted_markdown_file_is_removed_from_its_folder(rec, tmp_path):
    kb = tmp_path / "kb"
    write(kb / "late.md", "# Late parcels\nWhat to do.")
    gone = write(kb / "returns.md", "# Returns\n30 days.")
    rec.ingest(kb)
    gone.unlink()
    assert rec.ingest(kb).removed == ["returns"]


def test_bad_file_writes_nothing_and_keeps_what_is_stored(rec, tmp_path):
    rec.ingest(catalogue(tmp_path / "good.jsonl", P[0]))
    bad = write(tmp_path / "bad.jsonl", json.dumps(P[1]) + "\n{oops\n")
    with pytest.raises(ItemLoadError):
        rec.ingest(bad)
    assert sorted(rec.index.fingerprints()) == ["p1"]
    report = rec.ingest(bad, skip_invalid=True)
    assert report.added == ["p2"] and [r.line for r in report.rejected] == [2]


def test_tenants_ingest_separately(rec, tmp_path):
    path = catalogue(tmp_path / "items.jsonl", *P)
    rec.ingest(path, tenant="acme")
    rec.ingest(path, tenant="globex")
    assert rec.index.count("acme") == 3 and rec.index.count("globex") == 3
    result = rec.suggest("User: I need a new kettle", tenant="acme")
    assert result.suggestions and result.suggestions[0].id == "p1"
