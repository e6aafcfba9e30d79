"""circhub: tasks."""
