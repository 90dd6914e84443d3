"""The moderation gate between `genloom.events.raw` and `genloom.events`."""
