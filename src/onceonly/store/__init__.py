"""store domain."""
