"""Text-to-image: a pure diffusers engine, its validation, loading and PNG encoding."""
