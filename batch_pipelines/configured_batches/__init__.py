"""Configured and preference-driven batches: status by user, tenant or feature type."""
