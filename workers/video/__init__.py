"""Text-to-video: a pure diffusers engine for long-running jobs, validation, MP4 encoding."""
