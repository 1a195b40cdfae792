"""Writing the corrected state_dict: streamed, verified, never partial."""
