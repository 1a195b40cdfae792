"""What a checkpoint is compared with: models built on the meta device, reference checkpoints, factories."""
