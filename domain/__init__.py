"""Domain model of the circulation hub: pure types and functions, no I/O."""
