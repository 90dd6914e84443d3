"""Validate requests and send each job to its modality's topic."""
