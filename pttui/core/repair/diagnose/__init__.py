"""Diagnosis: what went wrong between a file and its model, in words."""
