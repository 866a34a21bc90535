"""Network drivers."""
