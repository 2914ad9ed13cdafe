"""Admin of consent: registered here as its models arrive."""
