"""The HTTP edge: the job API, SSE and WebSocket event streams, artifacts, health."""
