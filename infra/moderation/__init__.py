"""Content moderation shared by the prompt stage (streams), the output gate (workers) and
`POST /v1/moderations` (gateway): category scores for text, and the tenant policies that decide."""
