"""`make docs`: write the generated docs; `--check`: exit 1 naming the stale ones."""
from __future__ import annotations

import sys

from .build import ROOT, stale, write


def main(argv: list[str]) -> int:
    if "--check" in argv:
        old = stale()
        for path in old:
            print(f"{path.relative_to(ROOT)} is out of date: run make docs", file=sys.stderr)
        return 1 if old else 0
    written = write()
    for path in written:
        print(f"wrote {path.relative_to(ROOT)}")
    if not written:
        print("the generated docs are current")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
