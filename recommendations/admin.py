"""Admin of recommendations: registered here as its models arrive."""
