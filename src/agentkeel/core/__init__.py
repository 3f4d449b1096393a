"""The pure core: messages, events, the run state fold and the engine's decisions. No I/O lives here."""
