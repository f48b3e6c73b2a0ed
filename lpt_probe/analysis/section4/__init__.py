"""The paper's Section 4 for one task and model: sweep, mi, influence, and the verdicts.

- ``study``: ``run_section4`` and the claims table. Start here.
- ``verdicts``: each claim as paired contrasts between the paper's three prompt layers.
- ``contrasts``: the hierarchical bootstrap, p-values and Holm's correction behind them.
- ``tables``: a study's per-example files and the export of its tables.
"""
