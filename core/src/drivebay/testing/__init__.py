"""Helpers for testing drivers: shared by driver authors, core's tests and the conformance suite."""
