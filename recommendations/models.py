"""Models of recommendations arrive with its issue; the app is installed from the start (ARCHITECTURE.md)."""
