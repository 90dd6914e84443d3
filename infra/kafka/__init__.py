"""Kafka backbone: topic catalogue, codec, client factories, dead letters, the local broker."""
