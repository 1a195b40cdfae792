"""Recipes: the repair ops, their arguments, and their renderings as code."""
