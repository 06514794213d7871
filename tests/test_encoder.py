"""The content encoder and its cache (real MiniLM)."""

from __future__ import annotations

import numpy as np

from convrec.knowledge.cache import EmbeddingCache
from convrec.knowledge.items import parse_item

KETTLE = {"id": "k", "kind": "product", "title": "Blue enamel kettle", "price": 50}


def test_vectors_are_normalised_and_meaningful(encoder):
    items = [parse_item(KETTLE),
             parse_item({"id": "a", "kind": "article", "title": "Resetting your password"})]
    vectors = encoder.encode_items(items)
    assert vectors.shape == (2, 384) and vectors.dtype == np.float32
    assert np.allclose(np.linalg.norm(vectors, axis=1), 1, atol=1e-5)
    query = encoder.encode_queries(["I forgot my password"])[0]
    assert query @ vectors[1] > query @ vectors[0]


def test_cache_skips_unchanged_content(encoder):
    items = [parse_item(KETTLE)]
    first = encoder.encode_items(items)
    assert (encoder.stats.encoded_items, encoder.stats.cached_items) == (1, 0)
    again = encoder.encode_items([parse_item({**KETTLE, "price": 99})])  # same text
    assert (encoder.stats.encoded_items, encoder.stats.cached_items) == (1, 1)
    assert np.array_equal(first, again)
    encoder.encode_items([parse_item({**KETTLE, "title": "Red enamel kettle"})])
    assert encoder.stats.encoded_items == 2


def test_cache_persists_and_keys_on_the_model_name(minilm, tmp_path):
    path = tmp_path / "cache.sqlite"
    first = minilm.with_cache(EmbeddingCache(path))
    first.encode_items([parse_item(KETTLE)])
    first.cache.close()
    reopened = minilm.with_cache(EmbeddingCache(path))
    reopened.encode_items([parse_item(KETTLE)])
    assert reopened.stats.encoded_items == 0
    other = reopened.with_cache(reopened.cache)
    other.name = "another/model"
    assert other.item_key(parse_item(KETTLE)) != reopened.item_key(parse_item(KETTLE))


def test_article_title_and_body_are_embedded_apart_and_mixed(encoder):
    article = parse_item({"id": "a", "kind": "article", "title": "Shipping delays",
                          "tags": ["late parcel"], "body": "Parcels arrive in 3-5 days. " * 50})
    title, body = encoder.item_texts(article)
    assert title == "Shipping delays. late parcel" and body.startswith("Parcels arrive")
    assert encoder.item_texts(parse_item(KETTLE)) == [parse_item(KETTLE).encoding_text()]
    t, b = encoder.encode_queries([title, body])
    mixed = (0.5 * t + 0.5 * b) / np.linalg.norm(0.5 * t + 0.5 * b)
    assert np.allclose(encoder.encode_items([article])[0], mixed, atol=1e-5)
    one_text = encoder.replace(title_weight=None)
    assert one_text.item_texts(article) == [article.encoding_text()]


def test_turns_already_seen_are_not_encoded_again(encoder):
    first = encoder.encode_queries(["my parcel is late", "hello"])
    assert encoder.stats.encoded_texts == 2
    again = encoder.encode_queries(["hello", "my parcel is late", "thanks"])
    assert encoder.stats.encoded_texts == 3
    assert np.array_equal(again[:2], first[::-1])
