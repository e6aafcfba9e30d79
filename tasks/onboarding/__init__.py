"""circhub: tasks — onboarding."""
