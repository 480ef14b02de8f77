"""The drawings set of our own: as varied in pen, size and place as it says (seeded and split: test_notebook.py)."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from mnist.reading.drawings import PAD, drawing
from mnist.reading.handwriting import write_labels
from mnist.reading.preprocess import to_grayscale


def ink_box(image: Image.Image) -> tuple[float, float, float]:
    """(height of the ink's box, its centre's distance from the pad's centre, ink share) in shares of the pad."""
    ink = to_grayscale(image) < 128
    rows, columns = np.nonzero(ink)
    side = image.size[0]
    centre = np.hypot(rows.mean() / side - 0.5, columns.mean() / side - 0.5)
    return np.ptp(rows) / side, centre, ink.mean()


def test_the_drawings_vary_in_size_place_pen_and_format() -> None:
    rng = np.random.default_rng(0)
    images = [drawing(index % 10, rng) for index in range(200)]
    heights, centres, shares = np.array([ink_box(image) for image in images]).T
    assert heights.min() < 0.3 and heights.max() > 0.85  # small and large
    assert centres.max() > 0.2  # some far from the centre
    assert shares.max() / shares.min() > 10  # thin and thick pens
    assert {image.mode for image in images} == {"RGB", "RGBA"}  # paint programs' transparent pads too
    assert PAD in {image.size[0] for image in images} and len({image.size for image in images}) > 2


@pytest.mark.slow
def test_sets_an_older_maker_wrote_are_written_again_and_a_users_own_are_left(tmp_path: Path, monkeypatch) -> None:
    """set_folders: a generated set without today's version stamp is written again (its stroke paths changed);
    a set of the user's own under the same name (files no maker here writes) is read as it is, never deleted."""
    from mnist.reading import sets as sets_module

    def fake_writer(prefix: str, extension: str):
        def write(out: Path) -> dict[str, int]:
            for half in ("tune", "report"):
                (out / half).mkdir(parents=True, exist_ok=True)
                (out / half / f"{prefix}_0000.{extension}").write_bytes(b"new")
                write_labels(out / half, {f"{prefix}_0000.{extension}": 1})
            return {"tune": 1, "report": 1}
        return write
    monkeypatch.setattr(sets_module, "write_scan_set", fake_writer("scan", "jpg"))
    monkeypatch.setattr(sets_module, "write_notebook_set", fake_writer("notebook", "jpg"))
    monkeypatch.setattr(sets_module, "write_drawings_set", fake_writer("drawing", "png"))
    folder = tmp_path / "sets"
    for half in ("tune", "report"):  # an old generated notebook set (no stamp) and a user's own drawings
        (folder / "notebook" / half).mkdir(parents=True)
        (folder / "notebook" / half / "notebook_0007.jpg").write_bytes(b"old")
        write_labels(folder / "notebook" / half, {"notebook_0007.jpg": 7})
        (folder / "drawings" / half).mkdir(parents=True)
        (folder / "drawings" / half / "mine.png").write_bytes(b"mine")
        write_labels(folder / "drawings" / half, {"mine.png": 4})
    sets_module.set_folders(folder)
    assert sorted(path.name for path in (folder / "notebook" / "report").iterdir()) == ["labels.csv", "notebook_0000.jpg"]
    assert (folder / "notebook" / "version.txt").read_text().strip() == str(sets_module.SETS_VERSION)
    assert (folder / "drawings" / "report" / "mine.png").read_bytes() == b"mine"  # the user's, untouched
    assert (folder / "scans" / "report" / "scan_0000.jpg").exists()  # missing: written
    stamped = (folder / "notebook" / "report" / "notebook_0000.jpg").stat().st_mtime_ns
    sets_module.set_folders(folder)  # today's version: read as it is
    assert (folder / "notebook" / "report" / "notebook_0000.jpg").stat().st_mtime_ns == stamped
