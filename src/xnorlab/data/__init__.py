"""xnorlab.data."""
