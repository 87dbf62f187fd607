"""The gallery stage: one HTML page that shows every paper figure with its caption.

``nsp gallery --figures <png>... --out <folder>/index.html`` writes a page with each figure (its PNG, linked
to its PDF) and the caption its figure job wrote beside it (``<name>.caption.md``). The page refers to the
figures by name, so it is written into their folder and the folder can be moved or published as it is.
Captions are the small Markdown nsp writes (paragraphs, ``**bold**``, ``- `` list items); everything else
in them is shown as text.
"""

from __future__ import annotations

import html
import os
import re
from pathlib import Path

from nsp.errors import InputError
from nsp.pipeline.stages import Stage, option
from nsp.pipeline.stages.common import log, require_files
from nsp.storage.files import atomic_output

STYLE = ("body{font-family:sans-serif;max-width:52em;margin:2em auto;padding:0 1em;color:#222}"
         "figure{margin:0 0 3em 0}img{max-width:100%;border:1px solid #ddd}"
         "figcaption{margin-top:.6em;line-height:1.4}")


def caption_html(markdown: str) -> str:
    """The captions' Markdown as HTML: paragraphs, ``**bold**`` and ``- `` list items; all text escaped."""
    out, items = [], []
    for block in re.split(r"\n\s*\n", markdown.strip()):
        for line in block.splitlines():
            text = re.sub(r"\*\*(.+?)\*\*", r"<strong>\1</strong>", html.escape(line.strip()))
            if line.lstrip().startswith("- "):
                items.append(f"<li>{text[2:]}</li>")
                continue
            if items:
                out.append("<ul>" + "".join(items) + "</ul>")
                items = []
            if text:
                out.append(f"<p>{text}</p>")
        if items:
            out.append("<ul>" + "".join(items) + "</ul>")
            items = []
    return "\n".join(out)


def page(figures: list[Path], folder: Path) -> str:
    """The gallery of ``figures`` (PNG paths), referred to relative to ``folder``."""
    parts = ["<!DOCTYPE html>", '<html lang="en"><head><meta charset="utf-8">',
             "<title>Paper figures</title>", f"<style>{STYLE}</style></head><body>", "<h1>Paper figures</h1>"]
    for png in figures:
        name = png.stem
        caption = png.with_name(f"{name}.caption.md")
        text = caption.read_text(encoding="utf-8") if caption.is_file() else f"**{name}** (no caption)"
        link = html.escape(os.path.relpath(png.with_suffix(".pdf"), folder))
        image = html.escape(os.path.relpath(png, folder))
        parts.append(f'<figure id="{html.escape(name)}"><a href="{link}"><img src="{image}" '
                     f'alt="{html.escape(name)}"></a>\n<figcaption>{caption_html(text)}</figcaption></figure>')
    parts.append("</body></html>")
    return "\n".join(parts) + "\n"


def gallery(args, cfg) -> None:
    """Write the HTML page that shows each paper figure with its caption."""
    figures = [Path(p) for p in args.figures]
    for png in figures:
        if png.suffix != ".png":
            raise InputError(f"--figures {png}: a figure's PNG (its caption, <name>.caption.md, is read beside it)")
    require_files(figures=args.figures)
    out = Path(args.out)
    if out.suffix != ".html":
        raise InputError(f"--out {out}: the gallery page (a name ending in .html)")
    with atomic_output(out) as tmp:
        Path(tmp).write_text(page(figures, out.parent), encoding="utf-8")
    log(args, f"gallery of {len(figures)} figures: {out}")


GALLERY = Stage("gallery", gallery, "an HTML page of the paper figures, each with its caption", (
    option("--figures", nargs="+", required=True, help="the figures' PNGs (captions are read beside them)"),
    option("--out", required=True, help="the page (HTML), best in the figures' folder")), config="none")
