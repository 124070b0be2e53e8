"""The work behind the KFP components (``components/``): plain functions on a run directory.

Each component is a thin wrapper that imports one of these inside its body and calls it, so the
steps run and are tested without KFP, and a component's code in the compiled pipeline is a few
lines. Modules: :mod:`~kftune.steps.rundir` (the layout), :mod:`~kftune.steps.tune`,
:mod:`~kftune.steps.retrain` (retrain + evaluate), :mod:`~kftune.steps.compare`,
:mod:`~kftune.steps.publish` (start, prepare, register, report).
"""
