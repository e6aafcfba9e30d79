"""circhub: tasks — readers."""
