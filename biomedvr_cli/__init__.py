"""biomedvr: adapt a frozen vision-language model to biomedical classes from a few images."""

__version__ = "0.1.0"
