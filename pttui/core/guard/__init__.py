"""Running the reader in a guarded child: deadlines, memory, signals."""
