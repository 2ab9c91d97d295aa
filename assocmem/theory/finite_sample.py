"""Placeholder: filled in by the chapter that owns it."""
