"""Admin of segments: registered here as its models arrive."""

from segments import admin_clustering  # noqa: F401  (clustering runs and proposals)
