"""Exit codes of every command: 0 fine, 1 something would be denied (`check`, `scan`), 2 bad input."""

EXIT_ALLOWED, EXIT_DENIED, EXIT_BAD_INPUT = 0, 1, 2
