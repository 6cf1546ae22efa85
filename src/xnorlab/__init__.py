"""xnorlab: experiments on binarized neural networks."""

__version__ = "0.1.0"
