"""The notebook-photo set of our own (and the drawings set): seeded, labelled, split in halves, and showing every
case it is meant to."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from mnist.reading.drawings import write_drawings_set
from mnist.reading.handwriting import read_labels
from mnist.reading.notebook import PAPERS, notebook_photo, write_notebook_set


@pytest.mark.parametrize("write", [write_notebook_set, write_drawings_set], ids=["notebook", "drawings"])
def test_the_set_is_seeded_labelled_and_split_in_halves(tmp_path: Path, write) -> None:
    counts = write(tmp_path / "a", per_digit=4, seed=3)
    write(tmp_path / "b", per_digit=4, seed=3)
    assert counts == {"tune": 20, "report": 20}
    for half in ("tune", "report"):
        labels = read_labels(tmp_path / "a" / half / "labels.csv")
        assert len(labels) == 20 and set(labels.values()) <= set(range(10))
        for file in labels:  # the same seed, the same photos
            assert (tmp_path / "a" / half / file).read_bytes() == (tmp_path / "b" / half / file).read_bytes()
    tune, report = (set(read_labels(tmp_path / "a" / half / "labels.csv")) for half in ("tune", "report"))
    assert not tune & report
    digits = [digit for half in ("tune", "report") for digit in read_labels(tmp_path / "a" / half / "labels.csv").values()]
    assert np.bincount(digits, minlength=10).tolist() == [4] * 10  # per_digit of each


def test_the_photos_show_every_case_the_set_is_for() -> None:
    rng = np.random.default_rng(0)
    shown = [notebook_photo(digit % 10, rng)[1] for digit in range(120)]
    assert {show["paper"] for show in shown} == set(PAPERS)
    for case in ("box", "neighbour", "underline", "dim"):
        assert any(show[case] for show in shown), case
    assert {show["ink"].split()[0] for show in shown} == {"ballpoint", "felt"}
