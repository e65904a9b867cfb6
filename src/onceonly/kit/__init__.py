"""Small shared helpers used by several domains."""
