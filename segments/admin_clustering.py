"""Admin of clustering runs and proposed cluster segments (imported by segments/admin.py)."""
