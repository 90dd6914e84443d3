"""The preparation processor: the stages chained on `genloom.requests`, then routing to the workers."""
