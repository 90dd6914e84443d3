"""Validate requests and send each job to its modality's topic: the last step of the preparation chain
(streams/prepare), which runs it on every polled message."""
