"""Processes started the way a user starts them, for the tests, the chaos suite and
the benchmarks (one harness; none of them imports another's):

    procs.py  one child process: a whitelisted environment, its own process group,
              output to a file, waits that poll for a state, a stop by group
    stack.py  the demo stack: the environment `make demo` gives it, started through
              stack.py (as `make demo` does) or as separate supervisor and gateway
              processes (the chaos suite stops and starts each one)
"""
