"""Camera frames with OpenCV: a webcam (device index), a video file, an image file or an
image sequence (``img_%03d.jpg``), all through ``cv2.VideoCapture``.

A frame is taken when asked (at the end of speech), never stored continuously; it is shrunk
to ``max_side`` pixels and JPEG-encoded. ``capture`` is blocking: call it in a worker thread.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import sys
import threading
from abc import ABC, abstractmethod
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from heisenberg.core.config import CameraConfig
from heisenberg.core.errors import CameraError

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Frame:
    jpeg: bytes
    width: int
    """Pixels, after resizing."""
    height: int


class Camera(ABC):
    @abstractmethod
    def capture(self) -> Frame:
        """One current frame; raises ``CameraError`` when there is none."""

    def missing(self) -> str | None:
        """Why there cannot be a frame without even trying (no such device); None if there
        may be one."""
        return None

    def close(self) -> None:
        return None


@contextlib.contextmanager
def quiet_opencv(cv2: Any) -> Iterator[None]:
    """OpenCV's own warnings off (Heisenberg reports the failure in its words)."""
    level = cv2.utils.logging.getLogLevel()
    cv2.utils.logging.setLogLevel(cv2.utils.logging.LOG_LEVEL_ERROR)
    try:
        yield
    finally:
        cv2.utils.logging.setLogLevel(level)


class FrameGrabber:
    """Frames for questions, off the event loop; a failing camera is said once (and that it
    works again), and the question goes on without an image."""

    def __init__(self, camera: Camera | None) -> None:
        self.camera = camera
        self.failed = False

    @property
    def status(self) -> str:
        """For the health endpoint: disabled, ``missing: <why>``, failed or ok."""
        if self.camera is None:
            return "disabled"
        missing = self.camera.missing()
        if missing:
            return f"missing: {missing}"
        return "failed" if self.failed else "ok"

    async def grab(self) -> Frame | None:
        if self.camera is None:
            return None
        missing = self.camera.missing()
        if missing:
            if not self.failed:
                log.warning("camera: %s; questions go without an image (camera.enabled = "
                            "false turns this off)", missing)
                self.failed = True
            return None
        try:
            frame = await asyncio.to_thread(self.camera.capture)
        except CameraError as exc:
            if not self.failed:
                log.warning("%s; the question goes on without an image", exc)
                self.failed = True
            return None
        if self.failed:
            log.info("camera works again")
        self.failed = False
        return frame


def encode(image: Any, max_side: int, jpeg_quality: int) -> Frame:
    """Resize a BGR image so its longer side is at most ``max_side``, then JPEG-encode it."""
    import cv2

    height, width = image.shape[:2]
    scale = max_side / max(height, width)
    if scale < 1:
        image = cv2.resize(image, (max(1, round(width * scale)), max(1, round(height * scale))),
                           interpolation=cv2.INTER_AREA)
        height, width = image.shape[:2]
    ok, buffer = cv2.imencode(".jpg", image, [cv2.IMWRITE_JPEG_QUALITY, jpeg_quality])
    if not ok:
        raise CameraError("the frame could not be encoded as JPEG")
    return Frame(buffer.tobytes(), width, height)


class OpenCVCamera(Camera):
    def __init__(self, config: CameraConfig) -> None:
        self.config = config
        self.source = config.source
        self._capture: Any = None
        self._lock = threading.Lock()

    def missing(self) -> str | None:
        if self.source.isdigit() and Path("/dev").is_dir() and sys.platform == "linux":
            device = Path(f"/dev/video{self.source}")
            if not device.exists():
                return f"no webcam ({device} does not exist)"
        return None

    def _open(self) -> Any:
        try:
            import cv2
        except ImportError as exc:
            raise CameraError("the camera needs OpenCV: pip install 'heisenberg[vision]'") from exc

        source = self.source
        if not source.isdigit() and "%" not in source and not Path(source).expanduser().exists():
            raise CameraError(f"camera.source: {source!r} is neither a device index nor "
                              "an existing file")
        # OpenCV prints its own warnings for each backend that cannot open the source (every
        # turn, on a machine without a webcam); the failure is reported once, below.
        with quiet_opencv(cv2):
            if source.isdigit():
                capture = cv2.VideoCapture(int(source))
            elif "%" in source:
                capture = cv2.VideoCapture(source, cv2.CAP_IMAGES)
            else:
                capture = cv2.VideoCapture(str(Path(source).expanduser()))
        if not capture.isOpened():
            capture.release()
            raise CameraError(f"camera {source!r} could not be opened")
        return capture

    def capture(self) -> Frame:
        with self._lock:
            if self._capture is None:
                self._capture = self._open()
            if self.source.isdigit():
                # A webcam buffers a few frames: drop them so the frame is of now.
                for _ in range(3):
                    self._capture.grab()
            ok, image = self._capture.read()
            if not ok and not self.source.isdigit():
                # The end of a video, a sequence or a single image: start again.
                self._capture.release()
                self._capture = self._open()
                ok, image = self._capture.read()
            if not ok or image is None:
                self._capture.release()
                self._capture = None
                raise CameraError(f"camera {self.source!r} gave no frame")
        return encode(image, self.config.max_side, self.config.jpeg_quality)

    def close(self) -> None:
        with self._lock:
            if self._capture is not None:
                self._capture.release()
                self._capture = None


def load_image(path: str, config: CameraConfig) -> Frame:
    """An image file, resized and JPEG-encoded like a camera frame."""
    try:
        import cv2
    except ImportError as exc:
        raise CameraError("images need OpenCV: pip install 'heisenberg[vision]'") from exc
    with quiet_opencv(cv2):  # not its "[ WARN ] findDecoder" line: ours, below
        image = cv2.imread(str(Path(path).expanduser()))
    if image is None:
        raise CameraError(f"{path!r} is not a readable image file")
    return encode(image, config.max_side, config.jpeg_quality)
