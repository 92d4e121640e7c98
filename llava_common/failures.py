"""Which failed model calls are a request's own, written once: the model process
answers them, the gateway's circuit breaker does not count them (issue 25).

A breaker opens when a replica looks unhealthy. A refusal of one request's input
(every 4xx) says nothing about the replica, and neither do the 5xx codes here: the
process is fine and serves the next request. Counting them let one tenant open the
breaker for every other one: 32 schemas that failed inside the grammar engine (then
a 500) sent every key's requests to FALLBACK for 15 s.
"""
from __future__ import annotations

# The model process's error codes (llava_runtime/errors.py) that are a 5xx and yet
# one request's own: this request needed more GPU memory than was free just then.
REQUEST_OWN_CODES = frozenset({"out_of_memory"})
