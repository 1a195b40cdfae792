"""Reading checkpoints without running them: formats, zips, tensors, folders."""
