"""CCNet on MNIST: bundled data, knobs, model, a checkpointed trainable, evaluation and calibration.

`mnist.reading` reads people's digits with a trained model; `hpo` wraps the trainable in Ray Tune.
This package never imports ray, optuna or hpo, and its training core never imports `mnist.reading`.
"""
