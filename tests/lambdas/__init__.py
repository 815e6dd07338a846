"""Lambda logic tests."""
