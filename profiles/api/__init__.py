"""HTTP API of the profiles app: tracking (/v1/*, write key) and read (/api/v1/*, secret key)."""
