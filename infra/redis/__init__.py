"""Redis: a URL to an existing server, or a redis-server started on loopback."""
