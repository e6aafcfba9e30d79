"""circhub: tasks — loads."""
