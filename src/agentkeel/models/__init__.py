"""Models: the protocol and its providers."""
