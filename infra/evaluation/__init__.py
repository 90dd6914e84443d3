"""Evaluation of the served models (`genloom eval`): metrics and the report under docs/eval/."""
