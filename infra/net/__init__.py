"""Outbound HTTP to addresses users choose: the SSRF guard (`ssrf.py`) and callback signatures (`signing.py`)."""
