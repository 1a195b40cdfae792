"""Real torch.load attempts in a child process: policy, failures, the child."""
