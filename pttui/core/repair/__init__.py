"""From a comparison to advice: diagnosis, suggestions, the guided fix, autofix."""
