"""A user's working state (source, target, recipe, undo) and its export."""
