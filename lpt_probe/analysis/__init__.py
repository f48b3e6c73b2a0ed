"""Analyses of trained models: per-layer representations, I(h;y), projections, influence.

- ``config`` (no torch): ``StudyConfig``, ``MIConfig``, ``InfluenceConfig``,
  ``Section4Config`` and the choices their flags list (re-exported where they ran before).
- ``representations``: vectors and sequences of every hidden state (shared frozen pass).
- ``mi``: ``MIConfig`` and ``run_mi``, the paper's Figure 2 (right) with controls.
- ``projection`` (no torch) and ``prompt_projection``: the paper's Figure 6.
"""
