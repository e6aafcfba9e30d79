"""circhub: tasks — circulation."""
