"""What an `X-Request-ID` may hold, written once for the gateway (which replaces an
id outside the rule with a new one) and the model process (which keeps only the
allowed characters): ids reach log lines, so nothing else may forge one."""
from __future__ import annotations

import re

MAX_LENGTH = 128
_CHARS = "A-Za-z0-9._:-"
VALID = re.compile(rf"^[{_CHARS}]{{1,{MAX_LENGTH}}}$")
UNSAFE = re.compile(rf"[^{_CHARS}]")
