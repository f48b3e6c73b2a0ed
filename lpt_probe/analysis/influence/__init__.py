"""The prompt's influence on the text and the label signal reaching it, per hidden state.

- ``study``: ``InfluenceRun`` (the influence study) and ``run_influence``; every quantity
  is defined in its docstring. Start here.
- ``measures``: the measurements on one batch and their bootstrap summaries.
"""
