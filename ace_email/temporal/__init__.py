"""Talking to Temporal the same way everywhere: the client (pydantic payloads, encrypted when
configured, a clear line when Temporal cannot be reached), the payload codec, and the calls
more than one layer makes (timeouts, asking a busy workflow again, starting an agent)."""
