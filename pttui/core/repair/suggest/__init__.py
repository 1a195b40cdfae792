"""Suggestions: candidate recipe steps, each measured on the metadata."""
