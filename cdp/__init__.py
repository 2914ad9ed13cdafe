"""cdp: the project package (settings, urls, Celery app, API auth, health, dev services)."""

import os

# implicit (and the BLAS under numpy/scipy) is fastest single-threaded per process; it warns
# otherwise. Every cdp process imports this package first, so the default is set here. OpenMP
# (implicit's and scikit-learn's predictions) likewise: threaded predictions were slower in serving.
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
os.environ.setdefault("OMP_NUM_THREADS", "1")

from .celery import app as celery_app

__all__ = ("celery_app",)
