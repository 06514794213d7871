"""Multimodal items: a tiny random CLIP built locally, real PIL images, a real Chroma index.

The CLIP weights are random, so no test relies on what a text *means*; each check is exact
instead: a vector equals the one the documented rule produces from its parts, an image-only
product is found by its own image at cosine 1, a path-like text gets the text tower's vector.
"""

from __future__ import annotations

import io
import json
import socket
import warnings

import numpy as np
import pytest
from PIL import Image

from convrec.knowledge.cache import EmbeddingCache
from convrec.knowledge.encoder import (
    ContentEncoder,
    EncoderIdentity,
    EncoderMismatchError,
    ImagesSkippedWarning,
    fuse,
)
from convrec.knowledge.images import (
    ImageFetchDisabledError,
    ImageLoadError,
    read_image_bytes,
    ref_kind,
    to_data_uri,
)
from convrec.knowledge.index import ItemFilter, persistent_index
from convrec.knowledge.ingest import ingest_items
from convrec.knowledge.items import Product, parse_item
from tests.clip_fixture import TINY_CLIP_DIM, build_tiny_clip

RED, BLUE, GREEN = (220, 20, 20), (20, 20, 220), (20, 200, 20)
PATH_LIKE_TEXTS = ["photos/kettle.png", "https://x.example/a.jpg"]


def square(colour: tuple[int, int, int], size: int = 40) -> bytes:
    """A solid square as PNG bytes."""
    out = io.BytesIO()
    Image.new("RGB", (size, size), colour).save(out, format="PNG")
    return out.getvalue()


@pytest.fixture(scope="session")
def tiny_clip(tmp_path_factory) -> ContentEncoder:
    """The tiny random CLIP, built and loaded once; tests take copies with their own cache."""
    folder = build_tiny_clip(tmp_path_factory.mktemp("tiny-clip"))
    encoder = ContentEncoder(folder, name="tiny-clip")
    _ = encoder.model
    return encoder


@pytest.fixture()
def clip(tiny_clip) -> ContentEncoder:
    return tiny_clip.with_cache(EmbeddingCache())


@pytest.fixture()
def no_network(monkeypatch):
    """Fail any attempt to open a connection."""
    def refuse(*args, **kwargs):
        raise AssertionError(f"network access attempted: {args}")

    monkeypatch.setattr(socket.socket, "connect", refuse)
    monkeypatch.setattr(socket, "create_connection", refuse)


@pytest.fixture()
def opened_images(monkeypatch) -> list[object]:
    """Every PIL.Image.open call, recorded (the encoder's own decoding included)."""
    calls: list[object] = []
    real_open = Image.open

    def spy(fp, *args, **kwargs):
        calls.append(fp)
        return real_open(fp, *args, **kwargs)

    monkeypatch.setattr(Image, "open", spy)
    return calls


def product(pid: str, title: str, **fields) -> Product:
    return Product(id=pid, title=title, **fields)


# -- one space ---------------------------------------------------------------------------------
def test_text_and_images_land_in_one_space(clip, tmp_path):
    (tmp_path / "blue.png").write_bytes(square(BLUE))
    items = [product("red", "Red kettle", image=square(RED)),
             product("blue", "Blue kettle", image=str(tmp_path / "blue.png")),
             product("plain", "Grey mug"),
             parse_item({"id": "a", "kind": "article", "title": "Returns"})]
    assert clip.supports_images and clip.dim == TINY_CLIP_DIM
    for vectors in (clip.encode_items(items), clip.encode_queries(["a red kettle please"]),
                    clip.encode_images([square(RED), str(tmp_path / "blue.png")])):
        assert vectors.shape[1] == TINY_CLIP_DIM and vectors.dtype == np.float32
        assert np.allclose(np.linalg.norm(vectors, axis=1), 1, atol=1e-5)
    assert clip.stats.encoded_images == 2 and clip.stats.encoded_items == 4


def test_item_vector_is_the_documented_fusion_of_text_and_image(tiny_clip):
    item = product("red", "Red kettle", image=square(RED), image_alt="a red enamel kettle")
    text = tiny_clip.encode_queries([item.encoding_text()])[0]
    image = tiny_clip.encode_images([square(RED)])[0]
    for weight in (0.0, 0.3, 0.5, 1.0):
        encoder = tiny_clip.replace(image_weight=weight, cache=EmbeddingCache())
        mixed = (1 - weight) * text + weight * image
        expected = mixed / np.linalg.norm(mixed)
        assert np.allclose(encoder.encode_items([item])[0], expected, atol=1e-5)
    assert np.allclose(fuse(text, None, 0.5), text) and np.allclose(fuse(None, image, 0.5), image)
    with pytest.raises(ValueError, match="image_weight"):
        ContentEncoder(image_weight=1.5)


# -- retrieval through a real Chroma index -----------------------------------------------------
def test_image_only_product_is_retrieved_by_its_image_from_chroma(clip, tmp_path):
    (tmp_path / "blue.png").write_bytes(square(BLUE))
    items = [product("red-only", "-", image=square(RED)),  # no words: image only
             product("blue-kettle", "Blue enamel kettle", image=str(tmp_path / "blue.png")),
             product("green-mug", "Green mug", description="A stoneware mug"),
             parse_item({"id": "returns", "kind": "article", "title": "Returning an item"})]
    index = persistent_index(tmp_path / "chroma")
    report = ingest_items(items, index, clip)
    assert report.encoded == 4 and index.count() == 4

    red = clip.encode_images([square(RED)])[0]
    hits = index.query(red, 4, ItemFilter())
    assert hits[0].item.id == "red-only" and hits[0].score == pytest.approx(1.0, abs=1e-4)
    assert np.allclose(hits[0].vector, red, atol=1e-5)  # stored vector == image vector
    assert hits[0].item.image == to_data_uri(square(RED))  # the record round-trips as JSON

    blue = clip.encode_images([str(tmp_path / "blue.png")])[0]
    stored = index.get(["blue-kettle"])[0].vector
    text = clip.encode_queries([items[1].encoding_text()])[0]
    assert np.allclose(stored, fuse(text, blue, clip.image_weight), atol=1e-5)


def test_a_conversation_turn_is_scored_against_item_images(clip, tmp_path):
    """Turns go through the same model, so an image-only item competes on its image alone."""
    items = [product(f"img-{i}", "-", image=square(colour))
             for i, colour in enumerate((RED, BLUE, GREEN))]
    index = persistent_index(tmp_path / "chroma")
    ingest_items(items, index, clip)
    turn = clip.encode_queries(["do you have a kettle in red?"])[0]
    images = clip.encode_images([square(c) for c in (RED, BLUE, GREEN)])
    hits = index.query(turn, 3, ItemFilter())
    expected = sorted(range(3), key=lambda i: -float(images[i] @ turn))
    assert [h.item.id for h in hits] == [f"img-{i}" for i in expected]
    assert [h.score for h in hits] == pytest.approx([float(images[i] @ turn) for i in expected],
                                                    abs=1e-4)


def test_recommender_suggests_an_image_only_product_from_a_turn(clip, tmp_path):
    from convrec.recommender import Recommender
    from convrec.settings import Settings, SuggestSettings

    settings = Settings(workspace=tmp_path / "ws",
                        suggest=SuggestSettings(threshold=0.0, min_item_relevance=0.0))
    rec = Recommender(settings, encoder=clip)
    try:
        rec.ingest([product("red-only", "-", image=square(RED))])
        result = rec.suggest("User: I'd like the red one", k=1)
        assert [s.id for s in result.suggestions] == ["red-only"]
    finally:
        rec.close()


# -- text stays text ---------------------------------------------------------------------------
def test_text_that_looks_like_a_path_or_url_stays_text(clip, tmp_path, monkeypatch,
                                                        no_network, opened_images):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "photos").mkdir()
    (tmp_path / "photos" / "kettle.png").write_bytes(square(RED))
    text_tower = clip.model.encode([{"text": t} for t in PATH_LIKE_TEXTS],
                                   normalize_embeddings=True)
    assert opened_images == []

    queries = clip.encode_queries(PATH_LIKE_TEXTS)
    items = clip.encode_items([product("p", t) for t in PATH_LIKE_TEXTS[:1]]
                              + [product("u", t) for t in PATH_LIKE_TEXTS[1:]])
    assert opened_images == []  # no file was opened, no URL fetched (no_network)
    assert np.allclose(queries, text_tower, atol=1e-5)
    item_texts = [product("x", t).encoding_text() for t in PATH_LIKE_TEXTS]
    assert np.allclose(items, clip.model.encode([{"text": t} for t in item_texts],
                                                normalize_embeddings=True), atol=1e-5)
    # The trap is real: the bare string is read as the image file it names.
    as_image = clip.model.encode(["photos/kettle.png"], normalize_embeddings=True)[0]
    assert not np.allclose(as_image, queries[0], atol=1e-3)
    assert np.allclose(as_image, clip.encode_images([square(RED)])[0], atol=1e-5)


# -- cache -------------------------------------------------------------------------------------
def test_cache_keys_on_image_bytes(clip, tmp_path):
    photo = tmp_path / "kettle.png"
    photo.write_bytes(square(RED))
    item = product("k", "Kettle", image=str(photo))
    first = clip.encode_items([item])
    clip.encode_items([item.model_copy(update={"price": 12.0})])
    assert (clip.stats.encoded_items, clip.stats.cached_items, clip.stats.encoded_images) \
        == (1, 1, 1)

    photo.write_bytes(square(BLUE))  # same path and text, new bytes
    second = clip.encode_items([item])
    assert (clip.stats.encoded_items, clip.stats.encoded_images) == (2, 2)
    assert not np.allclose(first, second)

    heavier = clip.replace(image_weight=0.8)
    assert heavier.item_key(item) != clip.item_key(item)
    text_only = product("k", "Kettle")
    assert clip.item_key(text_only) != clip.item_key(item)


def test_reingest_of_unchanged_image_items_encodes_nothing(clip, tmp_path):
    index = persistent_index(tmp_path / "chroma")
    items = [product("red", "Red kettle", image=square(RED)),
             product("blue", "-", image=square(BLUE))]
    assert ingest_items(items, index, clip).encoded == 2
    again = ingest_items(items, index, clip)
    assert again.encoded == 0 and again.unchanged == 2
    changed = [items[0].model_copy(update={"image": to_data_uri(square(GREEN))}), items[1]]
    report = ingest_items(changed, index, clip)
    assert report.updated == ["red"] and report.encoded == 1


def test_bytes_image_is_stored_as_a_data_uri():
    item = product("k", "Kettle", image=square(RED))
    assert item.image.startswith("data:image/png;base64,")
    assert parse_item(json.loads(item.model_dump_json())) == item
    assert read_image_bytes(item.image) == square(RED)
    assert product("k", "Kettle", image=square(BLUE)).content_hash() != item.content_hash()
    assert product("k", "Kettle", image=b"").image is None


# -- identity ----------------------------------------------------------------------------------
def test_encoder_identity_and_mismatch(clip, minilm):
    identity = clip.identity()
    assert identity == EncoderIdentity("tiny-clip", TINY_CLIP_DIM, ("text", "image"), 0.5)
    recorded = json.loads(json.dumps(identity.to_dict()))
    clip.check_compatible(recorded)
    clip.check_compatible("tiny-clip")  # older checkpoints recorded only the name
    assert minilm.identity() == EncoderIdentity(minilm.name, 384, ("text",), None)

    with pytest.raises(EncoderMismatchError) as error:
        clip.check_compatible(minilm.identity().to_dict())
    message = str(error.value)
    assert minilm.name in message and "tiny-clip" in message and "384 != 16" in message

    reweighted = clip.replace(image_weight=0.2)
    with pytest.raises(EncoderMismatchError, match="image_weight 0.5 != 0.2"):
        reweighted.check_compatible(recorded)


# -- images skipped ----------------------------------------------------------------------------
def test_text_only_model_skips_images_with_one_notice(encoder, tmp_path):
    (tmp_path / "k.png").write_bytes(square(RED))
    with_images = [product(f"p{i}", "Red kettle", image=str(tmp_path / "k.png"),
                           image_alt="a red enamel kettle on a stove") for i in range(3)]
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        vectors = encoder.encode_items(with_images)
        encoder.encode_items([with_images[0].model_copy(update={"id": "again"})])
    notices = [w for w in caught if issubclass(w.category, ImagesSkippedWarning)]
    assert len(notices) == 1 and "text only" in str(notices[0].message)
    assert encoder.stats.encoded_images == 0

    without_image = product("p0", "Red kettle", image_alt="a red enamel kettle on a stove")
    assert np.allclose(vectors[0], encoder.encode_items([without_image])[0])
    assert "a red enamel kettle on a stove" in without_image.encoding_text()
    no_alt = encoder.encode_items([product("p0", "Red kettle")])[0]
    assert not np.allclose(vectors[0], no_alt, atol=1e-3)


def test_url_images_need_opt_in(clip, monkeypatch, no_network):
    url_item = product("u", "Kettle", image="https://shop.example/kettle.jpg")
    with pytest.warns(ImagesSkippedWarning, match="fetch_image_urls=True"):
        vector = clip.encode_items([url_item])[0]
    assert np.allclose(vector, clip.encode_queries([url_item.encoding_text()])[0], atol=1e-5)
    assert clip.stats.skipped_images == 1
    with pytest.raises(ImageFetchDisabledError):
        read_image_bytes(url_item.image)

    fetched: list[str] = []

    def fake_fetch(url: str, **kwargs) -> bytes:
        fetched.append(url)
        return square(RED)

    monkeypatch.setattr("convrec.knowledge.images._fetch", fake_fetch)
    opted_in = clip.replace(fetch_image_urls=True, cache=EmbeddingCache())
    fused = opted_in.encode_items([url_item])[0]
    assert fetched == [url_item.image]
    image = clip.encode_images([square(RED)])[0]
    assert np.allclose(fused, fuse(vector, image, 0.5), atol=1e-5)


def test_unreadable_images_warn_or_raise(clip, tmp_path):
    (tmp_path / "broken.png").write_bytes(b"not a png at all")
    items = [product("gone", "Kettle", image=str(tmp_path / "missing.png")),
             product("broken", "Mug", image=str(tmp_path / "broken.png"))]
    with pytest.warns(ImagesSkippedWarning, match="2 product image") as caught:
        vectors = clip.encode_items(items)
    # `caught` holds every warning of the block, e.g. a ResourceWarning the garbage collector
    # happened to raise then; the notice is the ImagesSkippedWarning.
    (notice,) = [w for w in caught if issubclass(w.category, ImagesSkippedWarning)]
    assert "no such image file" in str(notice.message)
    texts = clip.encode_queries([i.encoding_text() for i in items])
    assert np.allclose(vectors, texts, atol=1e-5)

    strict = clip.replace(image_errors="raise", cache=EmbeddingCache())
    with pytest.raises(ImageLoadError, match="'gone'"):
        strict.encode_items(items[:1])


def test_image_references(tmp_path):
    (tmp_path / "a.png").write_bytes(square(RED))
    assert [ref_kind(r) for r in ("data:image/png;base64,AA==", "https://x/a.png", "a.png",
                                  "C:/photos/a.png", "file:///a.png")] \
        == ["data", "url", "file", "file", "file"]
    assert read_image_bytes("a.png", root=tmp_path) == square(RED)
    assert read_image_bytes((tmp_path / "a.png").as_uri()) == square(RED)
    assert read_image_bytes(to_data_uri(square(BLUE))) == square(BLUE)
    with pytest.raises(ImageLoadError, match="invalid base64"):
        read_image_bytes("data:image/png;base64,@@@")


def test_reingest_notices_a_replaced_image_file(clip, tmp_path):
    """The record (path, text) is unchanged, but the picture at the path is new."""
    from convrec.recommender import Recommender

    photo = tmp_path / "kettle.png"
    photo.write_bytes(square(BLUE))
    clip = clip.replace(image_root=tmp_path)
    rec = Recommender(workspace=tmp_path / "ws", encoder=clip)
    item = product("kettle", "Kettle", image="kettle.png")
    assert rec.ingest([item]).encoded == 1
    assert rec.ingest([item]).unchanged == 1
    photo.write_bytes(square(RED))
    report = rec.ingest([item])
    assert report.updated == ["kettle"] and report.encoded == 1
