"""The paper's Figure 6: sentence representations beside generated prompts, in 2-D.

- ``compute`` (no torch): ``projection_table`` and ``save_projection``.
- ``run``: ``project_run``, the two spaces of one trained run.
"""
