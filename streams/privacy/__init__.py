"""Find personal data in every prompt field and replace it with typed, per-job placeholders."""
