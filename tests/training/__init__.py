"""Tests of the training code (CPU, offline, tiny models)."""
