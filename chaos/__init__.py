"""The load and fault suite: `make chaos` (full) and `tests/test_chaos.py` (short).

It starts the stack on free loopback ports (supervisor.py running the model
process on the demo model, and the gunicorn gateway, as two separate process
groups so that each can be signalled and started again on its own), drives a
closed-loop load against the native analyze API, injects one fault per phase
and checks that every request got an answer the design allows. The processes
(start, signal, status, memory) are harness/stack.py's, shared with the tests.

    load.py    the load: worker threads, one record per request, classification
    phases.py  the faults, one function each, and the phase loop
    report.py  counts, latency percentiles, recovery, the markdown table
    run.py     `python -m chaos.run [--short]`
"""
