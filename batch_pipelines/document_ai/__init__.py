"""Document AI: multi-phase model pipelines over batches of documents (seed 002)."""
