"""The pure core: wire formats, config, checks, placement, steering and the decision. No I/O here."""
