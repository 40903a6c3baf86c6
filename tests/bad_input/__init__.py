"""The bad-input suite: tables of (id, call, expected error, argument named in the message)."""
