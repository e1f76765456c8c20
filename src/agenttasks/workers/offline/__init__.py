"""The offline engine: real work without a language model (extractive, never pretending)."""
