"""Admin of segments: registered here as its models arrive."""
