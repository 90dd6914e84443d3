"""The prompt moderation stage: prompts checked before any worker sees them."""
