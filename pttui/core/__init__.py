"""The engine: reading, comparing, repairing. No Textual, no prompt_toolkit, torch only lazily."""
