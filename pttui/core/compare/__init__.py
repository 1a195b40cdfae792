"""A checkpoint against a target (the strict-load report), and two checkpoints against each other."""
