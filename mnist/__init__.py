"""CCNet on MNIST: bundled data, model, a checkpointed trainable, evaluation.

This package never imports ray or optuna: `hpo` wraps it for the search.
"""
