"""The router learner: featurizer, per-candidate score models, decisions, metrics and artifacts.

Pure Python/numpy (no Django): ``training.services`` and ``bench.router`` drive it, and
``training.predictor`` loads its artifacts for serving.
"""
