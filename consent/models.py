"""Models of consent arrive with its issue; the app is installed from the start (ARCHITECTURE.md)."""
