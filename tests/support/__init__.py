"""Helpers shared by the tests: builders of data, twins of released models, tiny parts (not tests themselves)."""
