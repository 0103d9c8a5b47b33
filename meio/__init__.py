"""meio package."""
