"""Per-layer I(h;y) with and without a late prompt (the paper's Figure 2, right).

- ``study``: ``MIRun`` (the mi study) and ``run_mi``; ``summary_table``. Start here.
- ``store``: what an mi run keeps on disk: representations and probe pieces.
- ``compare``: differences between conditions with paired bootstrap intervals.
"""
