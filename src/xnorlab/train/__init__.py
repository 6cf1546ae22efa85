"""xnorlab.train."""
