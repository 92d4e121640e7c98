"""One log format for every process role: one line per event, role-tagged."""
import logging
import sys

LEVELS = ("debug", "info", "warning", "error")


def configure(role: str, level: str = "info") -> None:
    logging.basicConfig(
        level=getattr(logging, level.upper()),
        stream=sys.stderr,
        format=f"%(asctime)s %(levelname)s {role} %(name)s: %(message)s",
        force=True,
    )
