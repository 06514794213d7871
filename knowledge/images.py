"""Product images: from a reference (local path, ``data:`` URI, opt-in URL) to bytes to pixels.

An item's ``image`` is a string, so it survives the JSON the index stores:

- a local path (``photos/kettle.png``, resolved against ``root`` when relative) or a
  ``file://`` URL;
- a ``data:`` URI holding the bytes themselves (``Product(image=b"...")`` stores bytes this way);
- an ``http(s)://`` URL, fetched only when the caller opts in (``fetch_urls=True``): a
  catalogue must not make the library talk to the network behind the user's back.

Bytes, not decoded pixels, are what the embedding cache hashes, so a changed image re-encodes
and an unchanged one never does. Pillow is imported only when pixels are needed.
"""

from __future__ import annotations

import base64
import binascii
import io
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Literal
from urllib.parse import unquote, urlparse

if TYPE_CHECKING:
    from PIL.Image import Image

#: Refuse bigger images: a product photo is well under this, a mistake is often far over it.
MAX_IMAGE_BYTES = 20 * 1024 * 1024

RefKind = Literal["data", "url", "file"]

_MAGIC: tuple[tuple[bytes, str], ...] = (
    (b"\x89PNG\r\n\x1a\n", "image/png"),
    (b"\xff\xd8\xff", "image/jpeg"),
    (b"GIF87a", "image/gif"),
    (b"GIF89a", "image/gif"),
    (b"BM", "image/bmp"),
    (b"II*\x00", "image/tiff"),
    (b"MM\x00*", "image/tiff"),
)


class ImageLoadError(ValueError):
    """An image reference could not be turned into a decodable image."""


class ImageFetchDisabledError(ImageLoadError):
    """The image is a URL and fetching URLs was not enabled."""


@dataclass(frozen=True)
class LoadedImage:
    """The raw bytes of an item's image, what the cache keys on."""

    ref: str
    data: bytes

    def decode(self) -> Image:
        """The pixels, as an RGB PIL image."""
        return decode_image(self.data, self.ref)


def sniff_mime(data: bytes) -> str:
    """The MIME type of image bytes, from their first bytes (``image/*`` when unknown)."""
    for magic, mime in _MAGIC:
        if data.startswith(magic):
            return mime
    if data[:4] == b"RIFF" and data[8:12] == b"WEBP":
        return "image/webp"
    return "image/*"


def to_data_uri(data: bytes) -> str:
    """Bytes as a ``data:<mime>;base64,...`` URI: JSON-safe and self-describing."""
    return f"data:{sniff_mime(data)};base64,{base64.b64encode(data).decode('ascii')}"


def ref_kind(ref: str) -> RefKind:
    """Whether a reference holds its bytes (``data``), names a URL or names a local file."""
    scheme = urlparse(ref).scheme.lower() if ":" in ref[:12] else ""
    if scheme == "data":
        return "data"
    if scheme in ("http", "https"):
        return "url"
    return "file"


def read_image_bytes(
    ref: str,
    *,
    root: str | Path | None = None,
    fetch_urls: bool = False,
    timeout: float = 10.0,
    max_bytes: int = MAX_IMAGE_BYTES,
) -> bytes:
    """The bytes ``ref`` points to (see the module docstring for the accepted forms).

    Raises ``ImageFetchDisabledError`` for a URL unless ``fetch_urls``, and
    ``ImageLoadError`` when the bytes cannot be had.
    """
    kind = ref_kind(ref)
    if kind == "data":
        data = _data_uri_bytes(ref)
    elif kind == "url":
        if not fetch_urls:
            raise ImageFetchDisabledError(
                f"{_short(ref)} is a URL; enable fetching (fetch_image_urls=True) to use it"
            )
        data = _fetch(ref, timeout=timeout, max_bytes=max_bytes)
    else:
        data = _read_file(_local_path(ref, root), max_bytes)
    if len(data) > max_bytes:
        raise ImageLoadError(f"{_short(ref)}: {len(data)} bytes, more than {max_bytes}")
    if not data:
        raise ImageLoadError(f"{_short(ref)}: empty image")
    return data


def decode_image(data: bytes, ref: str = "<bytes>") -> Image:
    """Decode image bytes into an RGB PIL image (CLIP processors expect three channels)."""
    try:
        from PIL import Image as PILImage
        from PIL import UnidentifiedImageError
    except ImportError as exc:  # pragma: no cover - part of the clip extra
        raise ImportError("Encoding images needs Pillow: pip install 'convrec[clip]'") from exc
    try:
        with PILImage.open(io.BytesIO(data)) as image:
            return image.convert("RGB")
    except (UnidentifiedImageError, OSError, ValueError) as exc:
        raise ImageLoadError(f"{_short(ref)}: not a readable image ({exc})") from exc


def _data_uri_bytes(ref: str) -> bytes:
    header, sep, payload = ref.partition(",")
    if not sep:
        raise ImageLoadError(f"{_short(ref)}: a data URI needs a comma before its payload")
    if header.endswith(";base64"):
        try:
            return base64.b64decode(payload, validate=True)
        except (binascii.Error, ValueError) as exc:
            raise ImageLoadError(f"{_short(ref)}: invalid base64 ({exc})") from exc
    return unquote(payload).encode("latin-1")


def _local_path(ref: str, root: str | Path | None) -> Path:
    if ref.lower().startswith("file://"):
        path = Path(unquote(urlparse(ref).path))
    else:
        path = Path(ref).expanduser()
    if not path.is_absolute() and root is not None:
        path = Path(root) / path
    return path


def _read_file(path: Path, max_bytes: int) -> bytes:
    try:
        size = path.stat().st_size
        if size > max_bytes:
            raise ImageLoadError(f"{path}: {size} bytes, more than {max_bytes}")
        return path.read_bytes()
    except FileNotFoundError as exc:
        raise ImageLoadError(f"{path}: no such image file") from exc
    except OSError as exc:
        raise ImageLoadError(f"{path}: cannot read ({exc})") from exc


def _fetch(url: str, *, timeout: float, max_bytes: int) -> bytes:
    from urllib.error import URLError
    from urllib.request import Request, urlopen

    request = Request(url, headers={"User-Agent": "convrec (product image encoder)"})
    try:
        with urlopen(request, timeout=timeout) as response:  # ref_kind checked: http(s) only
            return response.read(max_bytes + 1)
    except (URLError, OSError, ValueError) as exc:
        raise ImageLoadError(f"{_short(url)}: fetch failed ({exc})") from exc


def _short(ref: str, chars: int = 80) -> str:
    """A reference fit for an error message (data URIs can be megabytes long)."""
    return ref if len(ref) <= chars else ref[: chars - 1] + "…"
