"""Shared fixtures: the real MiniLM encoder loaded once per session, tiny item sets, and a
Recommender on the example world in a temporary workspace."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")


@pytest.fixture(scope="session")
def minilm():
    """The packaged all-MiniLM-L6-v2, loaded once; tests take copies with their own cache."""
    from convrec.knowledge.encoder import ContentEncoder

    encoder = ContentEncoder()
    _ = encoder.model
    return encoder


@pytest.fixture()
def encoder(minilm):
    from convrec.knowledge.cache import EmbeddingCache

    return minilm.with_cache(EmbeddingCache())


@pytest.fixture(scope="session")
def world_workspace(tmp_path_factory, minilm):
    """A workspace with the example world ingested once (tests copy it before writing)."""
    from convrec.knowledge.cache import EmbeddingCache
    from convrec.recommender import Recommender
    from convrec.world import item_paths

    root = tmp_path_factory.mktemp("world")
    rec = Recommender(workspace=root,
                      encoder=minilm.with_cache(EmbeddingCache(root / "embeddings.sqlite")))
    rec.ingest(item_paths())
    rec.close()
    return root


@pytest.fixture()
def world(world_workspace, tmp_path, minilm):
    """A Recommender on a private copy of the ingested example world."""
    import shutil

    from convrec.knowledge.cache import EmbeddingCache
    from convrec.recommender import Recommender

    root = tmp_path / "ws"
    shutil.copytree(world_workspace, root)
    rec = Recommender(workspace=root,
                      encoder=minilm.with_cache(EmbeddingCache(root / "embeddings.sqlite")))
    yield rec
    rec.close()


def write(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")
    return path
