"""The degradation operations a pipeline step names (`pipeline = [["realesrganblur", "b"], ...]`),
found by name as models and losses are. Each family registers its operations in its own module."""
from __future__ import annotations

from ...registry import Registry

DEGRADATIONS: Registry = Registry("degradation")

# short names of the `--pipeline blur-downsample-noise-compress` form
ALIASES = {"blur": "realesrganblur", "noise": "realesrgannoise", "compress": "jpegcompress"}
