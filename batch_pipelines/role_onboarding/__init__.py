"""Role onboarding batches: submit, status, retry failed roles."""
