"""Generation parameters: names, defaults and ranges, written once for the gateway
and the model process (both validate them; neither may drift from the other)."""
from __future__ import annotations

MAX_TOKENS_DEFAULT = 512
MAX_TOKENS_RANGE = (1, 1024)              # the model process may lower the top with MAX_NEW_TOKENS_LIMIT
ANALYZE_TEMPERATURE_DEFAULT = 0.2         # the seed's default for /analyze
CHAT_TEMPERATURE_DEFAULT = 1.0            # OpenAI's default for chat completions
TEMPERATURE_RANGE = (0.0, 2.0)            # 0 = greedy
TOP_P_DEFAULT = 1.0                       # (0, 1]
TOP_K_DEFAULT = 0                         # 0 (or -1, as vLLM spells it) = no top-k cut
TOP_K_RANGE = (-1, 100_000)
SEED_RANGE = (-(2 ** 63), 2 ** 63 - 1)    # OpenAI's seed is a 64-bit integer
MAX_STOP_SEQUENCES = 4                    # OpenAI's limit
MAX_STOP_CHARS = 256                      # per stop string
