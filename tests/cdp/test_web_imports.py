"""A web process does not import the training libraries: scikit-learn, pandas, statsmodels and
implicit are about 110 MB of every gunicorn worker's memory, and a worker serves requests only.
Run in a fresh interpreter, so that what the test process has imported does not count."""

from __future__ import annotations

import json
import subprocess
import sys

from tests.conftest import REPO, worker_env

TRAINING_LIBRARIES = ("sklearn", "pandas", "statsmodels", "implicit")

BOOT = """
import json, sys
import cdp.wsgi  # what gunicorn loads: django.setup(), every app's admin
from django.urls import get_resolver, reverse
def walk(patterns):
    for p in patterns:
        walk(getattr(p, "url_patterns", ()))
walk(get_resolver().url_patterns)  # every URL module, the admin's and the API's included
reverse("admin:index")
print(json.dumps(sorted(m for m in sys.modules if m.split(".")[0] in %r)))
"""


def test_a_web_process_imports_no_training_library(db):
    env = worker_env()
    done = subprocess.run(
        [sys.executable, "-c", BOOT % (TRAINING_LIBRARIES,)],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    loaded = json.loads(done.stdout.strip().splitlines()[-1])
    assert loaded == [], f"a web process imported {sorted({m.split('.')[0] for m in loaded})}"
