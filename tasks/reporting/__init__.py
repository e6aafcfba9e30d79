"""circhub: tasks — reporting."""
