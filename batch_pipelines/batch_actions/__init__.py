"""Actions people take by hand on any family's batch, launched from the UI with typed config."""
