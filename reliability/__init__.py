"""The reliability suite (``make reliability``) and the private servers its checks and tests use."""
