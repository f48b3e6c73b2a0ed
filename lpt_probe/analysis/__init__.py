"""Analyses of trained models: per-layer representations, I(h;y), projections, influence.

Two levels (``tests/unit/test_cli.py`` checks that the lower never imports the upper):

- ``engine/``: what runs any study (the declared ``Study`` and its phases, the executors,
  probe pieces, stored representations);
- the analyses, one folder each: ``mi/`` (I(h;y), the paper's Figure 2 right),
  ``influence/``, ``section4/`` (the paper's claims), ``projection/`` (Figure 6).

Beside them, read by both: ``config`` (no torch: ``StudyConfig``, ``MIConfig``,
``InfluenceConfig``, ``Section4Config`` and the choices their flags list) and ``results``
(no torch: what the studies return); ``plan``: what ``--plan`` prints for each study.
"""
