"""`ffmpegcompress`: H.264 intra coding of the image at a quantisation parameter (QP, 0-51)
drawn from a range, recorded as the `qpi` metadata column (the original tool's div2k_compressed
sets and its `qrcan_qpi` configs). libx264 through PyAV (the `video` extra: its wheels bundle
FFmpeg and x264, so no external binary is needed); one thread, so the same QP gives the same
bytes on every run. The image is coded as one yuv420p frame, padded by edge replication to even
sides and cropped back."""
from __future__ import annotations

from fractions import Fraction
from typing import Any

import numpy as np

from .base import Operation
from .registry import DEGRADATIONS

PRESETS = ("ultrafast", "superfast", "veryfast", "faster", "fast", "medium", "slow", "slower",
           "veryslow", "placebo")


def _av():
    try:
        import av
    except ImportError:
        return None
    return av


@DEGRADATIONS.register("ffmpegcompress")
class H264Compress(Operation):
    name = "ffmpegcompress"
    defaults = {"random_compression": True, "compression_range": [20, 40], "qpi": 28,
                "preset": "medium"}
    columns = {"qpi": int}

    def check(self) -> None:
        self.bounds = {"qpi": self.range_option("compression_range", 0, 51)}
        if not all(isinstance(v, int) for v in self.options["compression_range"]):
            self.fail("compression_range", "expected integer QPs [low, high]")
        q = self.options["qpi"]
        if not isinstance(q, int) or not 0 <= q <= 51:
            self.fail("qpi", f"expected an integer QP in [0, 51], got {q!r}")
        if self.options["preset"] not in PRESETS:
            self.fail("preset", f"expected one of {', '.join(PRESETS)}, got "
                                f"{self.options['preset']!r}")
        av = _av()
        if av is None:
            self.fail("", "needs PyAV (H.264 through its bundled libx264): pip install "
                          "'rumpy[video]' (or pip install av)")
        if "libx264" not in av.codecs_available:
            self.fail("", "this PyAV build has no libx264 encoder; install PyAV's wheel "
                          "(pip install --force-reinstall av)")

    def sample(self, rng: np.random.Generator) -> dict[str, Any]:
        if not self.options["random_compression"]:
            return {"qpi": self.options["qpi"]}
        low, high = self.options["compression_range"]
        return {"qpi": int(rng.integers(low, high + 1))}

    def apply(self, img: np.ndarray, params: dict[str, Any]) -> np.ndarray:
        av = _av()
        h, w = img.shape[:2]
        padded = np.ascontiguousarray(np.pad(img, ((0, h % 2), (0, w % 2), (0, 0)), mode="edge"))
        encoder = av.CodecContext.create("libx264", "w")
        encoder.width, encoder.height = padded.shape[1], padded.shape[0]
        encoder.pix_fmt = "yuv420p"
        encoder.time_base = Fraction(1, 25)
        encoder.options = {"qp": str(int(params["qpi"])), "preset": self.options["preset"],
                           "threads": "1"}
        frame = av.VideoFrame.from_ndarray(padded, format="rgb24").reformat(format="yuv420p")
        packets = list(encoder.encode(frame)) + list(encoder.encode(None))
        decoder = av.CodecContext.create("h264", "r")
        frames = [f for packet in packets for f in decoder.decode(packet)]
        frames += decoder.decode(None)
        return frames[0].to_ndarray(format="rgb24")[:h, :w].copy()

    def ranges(self) -> dict[str, tuple[float, float]]:
        return dict(self.bounds)
