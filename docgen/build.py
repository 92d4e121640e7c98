"""What `make docs` writes: the reference pages whole, and the islands of every
hand-written page (README.md, docs/**/*.md)."""
from __future__ import annotations

from pathlib import Path
from typing import Callable

from . import codes_page, includes, metrics_page, settings_page

ROOT = Path(__file__).resolve().parent.parent
REFERENCE = ROOT / "docs" / "reference"
GENERATED: dict[Path, Callable[[], str]] = {
    REFERENCE / "settings.md": settings_page.render,
    REFERENCE / "metrics.md": metrics_page.render,
    REFERENCE / "codes.md": codes_page.render,
}


def hand_written() -> list[Path]:
    pages = [ROOT / "README.md", *sorted((ROOT / "docs").rglob("*.md"))]
    return [page for page in pages if page not in GENERATED]


def expected() -> dict[Path, str]:
    """Every generated page and every page with an island, as `make docs` would write it."""
    pages = {path: render() for path, render in GENERATED.items()}
    for page in hand_written():
        text = page.read_text()
        refilled = includes.expand(page, text, ROOT, pages)
        if refilled != text:
            pages[page] = refilled
    return pages


def stale(pages: dict[Path, str] | None = None) -> list[Path]:
    pages = expected() if pages is None else pages
    return [path for path, text in pages.items() if not path.exists() or path.read_text() != text]


def write() -> list[Path]:
    pages = expected()
    changed = stale(pages)
    for path in changed:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(pages[path])
    return changed
