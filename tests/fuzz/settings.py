"""How much the fuzz tests generate: a bounded run by default (CI), more when asked.

``GENLOOM_FUZZ_REQUESTS``: HTTP requests the API fuzz sends in all (default 300; the acceptance run
uses 2000 or more). ``GENLOOM_FUZZ_EXAMPLES``: examples per schema property (default 200).
``GENLOOM_FUZZ_SEED``: the seed (default 0, so a CI run is repeatable; ``random`` for a fresh one).
"""

from __future__ import annotations

import os
import random

API_REQUESTS = int(os.environ.get("GENLOOM_FUZZ_REQUESTS", "300"))
SCHEMA_EXAMPLES = int(os.environ.get("GENLOOM_FUZZ_EXAMPLES", "200"))
_seed = os.environ.get("GENLOOM_FUZZ_SEED", "0")
SEED = random.randrange(2**32) if _seed == "random" else int(_seed)
