"""OpenAI-compatible endpoints on top of the job API: the same jobs, OpenAI's shapes."""
