"""The semantic cache: answer a job with a stored answer to a prompt of the same meaning."""
