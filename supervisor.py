"""The supervisor: the model container's entrypoint.

    python supervisor.py                  # supervises llava_server.py (same Python)
    python supervisor.py -- CMD ARGS...   # supervises any command serving /health
                                          # and /health/live on MODEL_PORT

Settings come from the environment (`--help` lists them). SIGTERM / SIGINT: stop
the child gracefully and exit 0. SIGHUP: restart the child. Exit codes:
llava_common/exit_codes.py (3 = bad settings, 4 = FATAL: the child cannot be kept up).
"""
from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

from llava_common import logs
from llava_common.settings import describe, load_or_exit

MODEL_SERVER = Path(__file__).resolve().parent / "llava_server.py"


def parse_args(argv: list[str]) -> argparse.Namespace:
    from llava_supervisor.settings import SupervisorSettings

    rows = "\n".join(f"  {row.env:34} {row.default:>10}  {row.help} ({row.accepts})"
                     for row in describe(SupervisorSettings))
    parser = argparse.ArgumentParser(
        prog="supervisor.py", formatter_class=argparse.RawDescriptionHelpFormatter,
        description="Spawn, health-poll, restart and stop the model process.",
        epilog=f"settings (environment variables, default):\n{rows}")
    parser.add_argument("command", nargs="*", help="command to supervise, after `--` (default: llava_server.py)")
    return parser.parse_args(argv)


def _name_of(command: list[str]) -> str:
    """The output prefix: the script's name for `python script.py`, else the program's."""
    program = os.path.basename(command[0])
    if program.startswith("python") and len(command) > 1 and command[1].endswith(".py"):
        return Path(command[1]).stem
    return program


def main(argv: list[str] | None = None) -> int:
    args = parse_args(sys.argv[1:] if argv is None else argv)
    from llava_supervisor.runner import Supervisor
    from llava_supervisor.settings import SupervisorSettings

    settings = load_or_exit(SupervisorSettings, "supervisor")
    logs.configure("supervisor", settings.log_level)
    if args.command:
        command, name = args.command, _name_of(args.command)
    else:
        command, name = [sys.executable, str(MODEL_SERVER)], "model"
    return Supervisor(settings, command, name).run()


if __name__ == "__main__":
    sys.exit(main())
