"""The analyses: one script per finding of arXiv 2502.20580 (and the demo), each with a frozen
``Config``, ``run``, ``plot`` and ``main(argv)``. Run them as ``bioplastic analysis NAME``; the
library (``bioplastic``) never imports this folder."""
