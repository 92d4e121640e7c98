"""Real processes for tests: the harness's (harness/procs.py), under the names the
tests import. A child starts from a whitelisted environment, never the caller's
shell."""
from harness.procs import ROOT, Proc, child_env, children, cmdline, descendants, free_port, poll, python

__all__ = ["ROOT", "Proc", "child_env", "children", "cmdline", "descendants", "free_port", "poll", "python"]
