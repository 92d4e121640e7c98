"""Islands in hand-written pages, refilled from other files:

    ## Admission
    <!-- include bench/results/admission.md -->
    (the file, as `make docs` last copied it)
    <!-- end include -->

`PATH#anchor` takes one section of the file (a table of docs/reference/codes.md, say).
The file's (or the section's) own title is dropped, since the page's heading above the
island names it; its headings go one level below that heading, and its relative links
are rewritten to resolve from the page. A file not written yet leaves a line saying so.
"""
from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Mapping

from .markdown import HEADING, headings

ISLAND = re.compile(r"(<!-- include (?P<path>\S+) -->\n)(?P<body>.*?)(<!-- end include -->)", re.S)
LINK = re.compile(r"(\]\()(?P<target>[^)\s]+)(\))")
ABSOLUTE = ("http://", "https://", "mailto:", "#", "/")


def expand(page: Path, text: str, root: Path, fresh: Mapping[Path, str]) -> str:
    """`text` (the page at `page`) with every island refilled; a file in `fresh` is read
    as it is about to be written (a reference page), any other from the disk."""
    def refill(match: re.Match) -> str:
        name, _, anchor = match["path"].partition("#")
        source = root / name
        if source in fresh or source.exists():
            whole = fresh[source] if source in fresh else source.read_text()
            body = _embed(_section(whole, anchor, match["path"]), source, match["path"], page,
                          _level_above(text, match.start()))
        else:
            body = (f"*Not measured yet: `{name}` does not exist; once it does, `make docs` brings it here.*\n")
        return match.group(1) + body + match.group(4)
    return ISLAND.sub(refill, text)


def _section(text: str, anchor: str, where: str) -> str:
    """The section under heading `anchor` (to the next heading of its level or above),
    or all of `text` without an anchor."""
    if not anchor:
        return text
    lines = text.split("\n")
    found = headings(text)
    for position, (level, name, start) in enumerate(found):
        if name == anchor:
            end = next((index for lvl, _, index in found[position + 1:] if lvl <= level), len(lines))
            return "\n".join(lines[start:end])
    raise ValueError(f"include {where}: no heading with that anchor")


def _embed(text: str, source: Path, shown: str, page: Path, level: int) -> str:
    lines = text.rstrip("\n").split("\n")
    while lines and (not lines[0].strip() or lines[0].startswith("<!--")):
        lines.pop(0)
    if lines and HEADING.match(lines[0]):
        lines.pop(0)  # its title: the page's heading names it
        while lines and not lines[0].strip():
            lines.pop(0)
    levels = [lvl for lvl, _, _ in headings("\n".join(lines))]
    shift = level + 1 - min(levels, default=level + 1)
    out, fenced = [], False
    for line in lines:
        if line.startswith("```"):
            fenced = not fenced
        elif not fenced:
            line = HEADING.sub(lambda m: "#" * (len(m[1]) + shift) + " ", line)
            line = LINK.sub(lambda m: m[1] + _relink(m["target"], source, page) + m[3], line)
        out.append(line)
    name, _, anchor = shown.partition("#")
    link = _rel(source, page.parent) + ("#" + anchor if anchor else "")
    note = f"*From [`{name}`]({link}), brought here by `make docs`.*"
    return "\n".join([note, "", *out]).strip("\n") + "\n"


def _relink(target: str, source: Path, page: Path) -> str:
    if target.startswith(ABSOLUTE):
        return target
    path, _, anchor = target.partition("#")
    return _rel(source.parent / path, page.parent) + ("#" + anchor if anchor else "")


def _rel(path: Path, start: Path) -> str:
    return os.path.relpath(os.path.normpath(path), start)


def _level_above(text: str, offset: int) -> int:
    """The level of the last heading before `offset` (0 when there is none)."""
    levels = [level for level, _, _ in headings(text[:offset])]
    return levels[-1] if levels else 0
