"""Where the environment comes from, in order of precedence.

1. The process environment (production, CI, a developer's shell).
2. ``.env`` at the repository root: a developer's own overrides (not committed).
3. ``.cdp/env``: written by ``python -m cdp.devservices up`` with the URLs of the services it
   found or started, so that every process of a dev session talks to the same PostgreSQL/Redis.

Nothing here overrides a variable that is already set.
"""

from __future__ import annotations

import os
import re
from pathlib import Path

BASE_DIR = Path(__file__).resolve().parent.parent
STATE_DIR = Path(os.environ.get("CDP_STATE_DIR", BASE_DIR / ".cdp"))
SERVICES_ENV_FILE = STATE_DIR / "env"


def parse_env_file(path: Path) -> dict[str, str]:
    values: dict[str, str] = {}
    if not path.is_file():
        return values
    for raw in path.read_text().splitlines():
        line = raw.strip()
        if not line or line.startswith("#") or "=" not in line:
            continue
        key, _, value = line.partition("=")
        value = re.split(r"\s+#", value, maxsplit=1)[0].strip().strip("'\"")
        if value:  # an empty value means "use the default", as in .env.example
            values[key.strip()] = value
    return values


def load_env_files() -> None:
    for path in (BASE_DIR / ".env", SERVICES_ENV_FILE):
        for key, value in parse_env_file(path).items():
            os.environ.setdefault(key, value)
