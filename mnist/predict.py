"""Moved to mnist.reading.predict (the reading sub-package): `python -m mnist.predict` still runs it, after one line
naming the new command. Goes in ccnet-hpo 0.3.0."""
from mnist.errors import run_moved

if __name__ == "__main__":
    run_moved("mnist.predict", "mnist.reading.predict")
