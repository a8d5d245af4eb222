"""`jpegcompress`: JPEG at a quality drawn from a range (PIL's encoder, 4:2:0 as its default).
H.264 is in video.py. The original tool's steps that need the JM reference encoder are refused:
naming one is a one-line error when the pipeline is read, before anything is written."""
from __future__ import annotations

import io
import shutil
from typing import Any

import numpy as np
from PIL import Image

from .base import Operation
from .registry import DEGRADATIONS


@DEGRADATIONS.register("jpegcompress")
class JPEGCompress(Operation):
    name = "jpegcompress"
    defaults = {"random_compression": True, "compression_range": [30, 95], "quality": 60}
    columns = {"jpeg_quality": int}

    def check(self) -> None:
        self.bounds = {"jpeg_quality": self.range_option("compression_range", 1, 100)}
        if not all(isinstance(v, int) for v in self.options["compression_range"]):
            self.fail("compression_range", "expected integer qualities [low, high]")
        q = self.options["quality"]
        if not isinstance(q, int) or not 1 <= q <= 100:
            self.fail("quality", f"expected an integer in [1, 100], got {q!r}")

    def sample(self, rng: np.random.Generator) -> dict[str, Any]:
        if not self.options["random_compression"]:
            return {"jpeg_quality": self.options["quality"]}
        low, high = self.options["compression_range"]
        return {"jpeg_quality": int(rng.integers(low, high + 1))}

    def apply(self, img: np.ndarray, params: dict[str, Any]) -> np.ndarray:
        buffer = io.BytesIO()
        Image.fromarray(img).save(buffer, format="JPEG", quality=int(params["jpeg_quality"]))
        buffer.seek(0)
        with Image.open(buffer) as decoded:
            return np.asarray(decoded.convert("RGB"), dtype=np.uint8).copy()

    def ranges(self) -> dict[str, tuple[float, float]]:
        return dict(self.bounds)


# operation -> (the tool it needs, what to use instead)
EXTERNAL = {"jmcompress": ("the JM H.264 reference encoder (lencod)", "lencod"),
            "randomcompress": ("the JM H.264 reference encoder for half of its images", "lencod"),
            "bsrganblur": ("BSRGAN's kernel code (not ported)", None)}


def refusal(name: str) -> str | None:
    """Why an operation of the original tool cannot run here, or None when it can."""
    if name not in EXTERNAL:
        return None
    tool, binary = EXTERNAL[name]
    found = f" ({binary} is on PATH, but rumpy does not drive it)" if binary and shutil.which(
        binary) else ""
    return (f"'{name}' needs {tool}{found}, which rumpy degrade does not run; use "
            f"'jpegcompress' or 'ffmpegcompress' (H.264) for compression or 'realesrganblur' "
            f"for blur")
