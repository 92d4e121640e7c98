"""The docs: generated pages current, every setting documented, links that resolve, and a
README a newcomer reads in minutes."""
import dataclasses
import re
from pathlib import Path

import pytest

from docgen import build, includes, markdown
from docgen.settings_page import ROLES, settings_classes
from tests.procs import ROOT

README = ROOT / "README.md"
SETTINGS_PAGE = ROOT / "docs" / "reference" / "settings.md"


def test_generated_docs_are_current():
    stale = [str(path.relative_to(ROOT)) for path in build.stale()]
    assert not stale, f"out of date: {stale}; run `make docs`"


@pytest.mark.parametrize("cls", [cls for _, module in ROLES for cls in settings_classes(module)],
                         ids=lambda c: c.__name__)
def test_every_setting_is_in_the_settings_reference(cls):
    page = SETTINGS_PAGE.read_text()
    missing = [f.metadata["env"] for f in dataclasses.fields(cls) if f"| `{f.metadata['env']}` |" not in page]
    assert not missing, f"docs/reference/settings.md does not document {missing}: run `make docs`"


def test_an_island_is_refilled_with_its_source_headings_shifted_and_links_rewritten(tmp_path):
    (tmp_path / "results").mkdir()
    (tmp_path / "results" / "run.md").write_text("# Run\n\nDate: today\n\n## Speed\n\n![plot](plot.png) 2x\n")
    page = tmp_path / "docs" / "bench.md"
    text = "# Bench\n\n## CPU\n\n<!-- include results/run.md -->\nold figures\n<!-- end include -->\n"
    assert includes.expand(page, text, tmp_path, {}) == (
        "# Bench\n\n## CPU\n\n<!-- include results/run.md -->\n"
        "*From [`results/run.md`](../results/run.md), brought here by `make docs`.*\n\n"
        "Date: today\n\n### Speed\n\n![plot](../results/plot.png) 2x\n<!-- end include -->\n")
    missing = text.replace("results/run.md", "results/gpu.md")
    assert "Not measured yet: `results/gpu.md` does not exist" in includes.expand(page, missing, tmp_path, {})


def test_an_island_takes_one_section_of_a_page():
    codes = (ROOT / "docs" / "reference" / "codes.md").read_text()
    page = ROOT / "docs" / "x.md"
    text = "## States\n<!-- include docs/reference/codes.md#supervisor-states -->\n<!-- end include -->\n"
    body = includes.expand(page, text, ROOT, {ROOT / "docs" / "reference" / "codes.md": codes})
    assert "| `FATAL` |" in body and "| `BOOT_ERROR` |" not in body and "## Supervisor states" not in body
    with pytest.raises(ValueError, match="no heading with that anchor"):
        includes.expand(page, text.replace("supervisor-states", "nowhere"), ROOT, {})


def doc_pages() -> list[Path]:
    return [README, *sorted((ROOT / "docs").rglob("*.md"))]


def links(page: Path):
    text = re.sub(r"```.*?```", "", page.read_text(), flags=re.S)  # code blocks hold no links
    for target in re.findall(r"\]\(([^)\s]+)\)", text):
        if not target.startswith(("http://", "https://", "mailto:")):
            yield target


@pytest.mark.parametrize("page", doc_pages(), ids=lambda p: str(p.relative_to(ROOT)))
def test_every_link_between_the_pages_resolves(page):
    broken = []
    for target in links(page):
        path, _, anchor = target.partition("#")
        resolved = (page.parent / path).resolve() if path else page
        if not resolved.exists():
            broken.append(target)
        elif anchor and resolved.suffix == ".md":
            if anchor not in {name for _, name, _ in markdown.headings(resolved.read_text())}:
                broken.append(target)
    assert not broken, f"{page.relative_to(ROOT)}: links to nothing: {broken}"


def test_readme_shows_the_pinned_commands():
    readme = README.read_text()
    for command in ("make test", "make install", "make bench", "make demo", "make run", "docker compose up"):
        assert command in readme


def test_readme_is_read_in_minutes():
    """At most ~300 lines; install, run, a first request and the map of the docs on the
    first screen and a half."""
    lines = README.read_text().split("\n")
    assert len(lines) <= 300
    first = "\n".join(lines[:110])
    for what in ("make install", "make demo", "make test", "curl -F image=@", "OpenAI(base_url=",
                 "docs/native-api.md", "docs/openai.md", "docs/operations.md"):
        assert what in first, f"{what!r} is not near the top of the README"
