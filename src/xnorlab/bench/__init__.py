"""xnorlab.bench."""
