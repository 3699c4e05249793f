"""Images sent to the API: decoding with clear errors, and the /process-frame scene cache.

The cache keys frames by a 64-bit perceptual hash (pHash: the signs of the low frequencies of
a 32x32 DCT, against their median), so a frame that only changed by noise, compression or a
small shift finds the description of the scene it shows without asking the model again (seed
001's "cache and fewer API calls"). It is a few lines of OpenCV, so no library is added for it.
OpenCV is imported where it is used: it comes with the ``vision`` extra.
"""

from __future__ import annotations

import base64
import binascii
import io
import time
from collections import OrderedDict
from dataclasses import dataclass

import numpy as np

from heisenberg.core.config import CameraConfig
from heisenberg.core.errors import BadImageError
from heisenberg.vision.camera import Frame, encode

#: What an uploaded image may be; Pillow reads their headers, OpenCV decodes them.
IMAGE_FORMATS = ("JPEG", "PNG", "WEBP", "BMP", "GIF", "TIFF")


def image_size(raw: bytes, max_pixels: int) -> tuple[int, int]:
    """(width, height) from the image's header, without decoding it; over ``max_pixels``
    raises, so that a small file claiming a huge picture costs nothing."""
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(io.BytesIO(raw), formats=IMAGE_FORMATS) as image:
            width, height = image.size
    except Image.DecompressionBombError as exc:  # Pillow's own limit, far above ours
        raise BadImageError(f"image: {exc.args[0].split('exceeds')[0].strip()} is more "
                            f"than the {max_pixels:,} pixel limit "
                            "(api.max_image_pixels)") from None
    except (UnidentifiedImageError, OSError, ValueError, SyntaxError):
        raise BadImageError("image: not a decodable image (JPEG, PNG, WebP, BMP, GIF, "
                            "TIFF)") from None
    if width * height > max_pixels:
        raise BadImageError(f"image: {width}x{height} pixels is more than the "
                            f"{max_pixels:,} pixel limit (api.max_image_pixels)")
    return width, height


def decode_image(data: str, max_bytes: int, camera: CameraConfig,
                 max_pixels: int) -> tuple[Frame, np.ndarray]:
    """A data URI or plain base64 string -> (JPEG frame for the model, decoded BGR image).

    Checked before any decoding: the base64 text's length against ``max_bytes``
    (``api.max_image_mb``), then the pixel count in the header against ``max_pixels``."""
    if not isinstance(data, str) or not data:
        raise BadImageError("image: expected a data URI or a base64 string")

    payload = data.split(",", 1)[1] if data.startswith("data:") and "," in data else data
    if len(payload) * 3 // 4 > max_bytes:
        raise BadImageError(f"image: larger than the {max_bytes / 1_000_000:g} MB limit "
                            "(api.max_image_mb)")
    try:
        raw = base64.b64decode(payload, validate=True)
    except (binascii.Error, ValueError):
        raise BadImageError("image: not valid base64") from None
    return decode_bytes(raw, max_bytes, camera, max_pixels)


def decode_bytes(raw: bytes, max_bytes: int, camera: CameraConfig,
                 max_pixels: int) -> tuple[Frame, np.ndarray]:
    """An image file's bytes -> (JPEG frame for the model, decoded BGR image), with the same
    checks as ``decode_image``."""
    import cv2

    if len(raw) > max_bytes:
        raise BadImageError(f"image: larger than the {max_bytes / 1_000_000:g} MB limit "
                            "(api.max_image_mb)")
    width, height = image_size(raw, max_pixels)
    try:
        image = cv2.imdecode(np.frombuffer(raw, np.uint8), cv2.IMREAD_COLOR)
    except cv2.error:
        image = None
    if image is None or image.shape[0] * image.shape[1] > max_pixels:
        raise BadImageError(f"image: a {width}x{height} image that could not be decoded")
    return encode(image, camera.max_side, camera.jpeg_quality), image


def phash(image: np.ndarray) -> int:
    import cv2

    gray = image if image.ndim == 2 else cv2.cvtColor(image, cv2.COLOR_BGR2GRAY)
    small = cv2.resize(gray, (32, 32), interpolation=cv2.INTER_AREA).astype(np.float32)
    low = cv2.dct(small)[:8, :8].flatten()
    bits = np.concatenate([[False], low[1:] > np.median(low[1:])])  # DC: only "how bright"
    return int.from_bytes(np.packbits(bits).tobytes(), "big")


@dataclass
class _Entry:
    description: str
    created_s: float


class FrameCache:
    def __init__(self, max_entries: int, ttl_s: float, max_distance: int) -> None:
        self.max_entries = max_entries
        self.ttl_s = ttl_s
        self.max_distance = max_distance
        self._entries: OrderedDict[int, _Entry] = OrderedDict()
        self.hits = 0
        self.misses = 0

    def get(self, key: int, now_s: float | None = None) -> str | None:
        now_s = time.monotonic() if now_s is None else now_s
        self.expire(now_s)
        best = min(self._entries, key=lambda k: bin(k ^ key).count("1"), default=None)
        if best is not None and bin(best ^ key).count("1") <= self.max_distance:
            self._entries.move_to_end(best)
            self.hits += 1
            return self._entries[best].description
        self.misses += 1
        return None

    def put(self, key: int, description: str, now_s: float | None = None) -> None:
        now_s = time.monotonic() if now_s is None else now_s
        self._entries[key] = _Entry(description, now_s)
        self._entries.move_to_end(key)
        while len(self._entries) > self.max_entries:
            self._entries.popitem(last=False)

    def expire(self, now_s: float | None = None) -> int:
        """Drop entries older than the TTL; returns how many."""
        now_s = time.monotonic() if now_s is None else now_s
        old = [k for k, e in self._entries.items() if now_s - e.created_s > self.ttl_s]
        for key in old:
            del self._entries[key]
        return len(old)

    def __len__(self) -> int:
        return len(self._entries)
