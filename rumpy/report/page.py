"""The report as one HTML file: the collected data as JSON inside the page, with the CSS and
the script that draws it (report.css, report.js beside this file) inlined, so the file needs
no server and no network."""
from __future__ import annotations

import json
import time
from pathlib import Path

from ..utils.atomic import atomic_write_text
from .collect import collect

_HERE = Path(__file__).parent

_PAGE = """<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>{title} · rumpy report</title>
<link rel="icon" href="data:,">
<style>
{css}
</style>
</head>
<body>
<header><h1>{title}</h1><p id="summary"></p></header>
<main>
<section class="controls">
  <input type="search" id="node-filter" placeholder="filter nodes (name or state)" aria-label="filter nodes">
  <label class="metric"><input type="checkbox" id="show-inherited" checked> inherited curves</label>
  <div id="metric-pick"></div>
</section>
<section><h2>Result tree</h2><div class="scroll" id="tree"></div></section>
<section><h2>Curves</h2><div id="legend"></div><div id="curves"></div></section>
<section><h2>Nodes</h2><div class="scroll" id="nodes"></div></section>
<section><h2>Sweeps (mean &plusmn; std over seeds)</h2><div class="scroll" id="sweeps"></div></section>
<section><h2>Eval results</h2><div class="scroll" id="eval"></div></section>
<section><h2>Samples <select id="image-pick" aria-label="image"></select></h2><div id="samples"></div></section>
</main>
<script type="application/json" id="rumpy-data">{data}</script>
<script>
{js}
</script>
</body>
</html>
"""


def _escape(text: str) -> str:
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def render(data: dict) -> str:
    # '</' inside the JSON would end its script element early.
    payload = json.dumps(data, default=str, separators=(",", ":")).replace("</", "<\\/")
    return _PAGE.format(title=_escape(data["title"]), css=(_HERE / "report.css").read_text(),
                        js=(_HERE / "report.js").read_text(), data=payload)


def write_report(folder: Path, out: Path, images: list[str] | None = None,
                 samples: bool = True) -> dict:
    """Collects `folder` and writes the page to `out` atomically; returns the data."""
    data = collect(folder, images, samples)
    data["created"] = time.strftime("%Y-%m-%d %H:%M")
    out.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_text(out, render(data))
    return data
