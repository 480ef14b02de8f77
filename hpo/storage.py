"""Where an experiment lives: a local folder, or any URI pyarrow's filesystems take (s3://, gs://, file://, ...).

Ray Tune writes trial results and checkpoints straight to the storage, from whichever node
ran the trial. The driver's own files (experiment.json, optuna.db, trials.csv, plots,
TensorBoard events) are written to a local folder first, because SQLite and atomic renames
need a real filesystem; for a URI that folder is a mirror, copied to the storage when the
search (or best.py) ends and copied back from it to resume.
"""
from __future__ import annotations

import posixpath
from pathlib import Path
from typing import ContextManager
from urllib.parse import urlsplit, urlunsplit

import pyarrow.fs

from mnist.atomic import read_json
from mnist.errors import UserError
from mnist.folder_lock import hold_folder, is_held, lock_file_of
from mnist.layout import BEST_JSON, DRIVER_FILES, EXPERIMENT_JSON, RESULTS

def is_uri(storage: str) -> bool:
    return "://" in storage


def join_uri(base: str, name: str) -> str:
    """`base`/`name`, keeping a query (s3://bucket/dir?region=x) after the path."""
    parts = urlsplit(base)
    return urlunsplit(parts._replace(path=posixpath.join(parts.path, name)))


def split_experiment(location: str) -> tuple[str, str]:
    """(storage, name) of an experiment folder or URI: its parent and its last path element."""
    if is_uri(location):
        parts = urlsplit(location)
        parent, name = posixpath.split(parts.path.rstrip("/"))
        return urlunsplit(parts._replace(path=parent)), name
    path = Path(location)
    return str(path.parent), path.name


class ExperimentStore:
    """One experiment's folder: `local` for the driver's files, `fs`/`fs_path` for what Tune writes."""

    def __init__(self, storage: str, name: str, local_root: str | Path = RESULTS) -> None:
        self.remote = is_uri(storage)
        self.name = name
        if self.remote:
            self.location = join_uri(storage, name)
            # Tune appends the experiment name to storage_path itself.
            self.tune_storage_path = storage
            self.local = Path(local_root) / name
            try:
                self.fs, self.fs_path = pyarrow.fs.FileSystem.from_uri(self.location)
            except (pyarrow.ArrowInvalid, OSError) as error:
                raise UserError(f"{storage}: not a storage pyarrow can open ({str(error).splitlines()[0]})") from None
        else:
            self.local = Path(storage) / name
            self.location = str(self.local)
            self.tune_storage_path = str(Path(storage).resolve())
            self.fs, self.fs_path = pyarrow.fs.LocalFileSystem(), str(self.local.resolve())

    def __str__(self) -> str:
        return self.location

    @property
    def lock_file(self) -> Path:
        """Beside the experiment folder, keyed by its real path (mnist.folder_lock)."""
        return lock_file_of(self.local)

    @property
    def ray_session_file(self) -> Path:
        """Beside the lock: the session folder of the private Ray cluster the running driver started."""
        return self.lock_file.with_name(self.lock_file.name.removesuffix(".lock") + ".ray-session")

    def leftover_ray_sessions(self) -> list[Path]:
        """Records of private Ray clusters beside this experiment whose driver is gone (its lock is free):
        killed drivers' clusters, for the next driver to end."""
        return [record for record in sorted(self.lock_file.parent.glob(".*.ray-session"))
                if not is_held(record.with_name(record.name.removesuffix(".ray-session") + ".lock"))]

    def lock(self, what: str) -> ContextManager[None]:
        """Hold the experiment for one driver (`what`: "search.py", "best.py") for the whole block; a second
        driver, also one that names the folder through a symlink, is refused in one line naming the first."""
        return hold_folder(self.local, what, shown_as=str(self), other="another --name")

    def whereabouts(self) -> dict[str, str]:
        """Where this experiment is, absolutely: Ray's and Optuna's saved state name these places."""
        return {"location": self.location if self.remote else self.fs_path, "local": str(self.local.resolve())}

    def check_not_moved(self, saved: dict[str, str] | None) -> None:
        """Refuse to resume a search folder that was moved or copied since it started.

        Ray's experiment state and the pickled Optuna searcher keep absolute paths: resumed from
        elsewhere, trials would write into the old folder (or fail on it), and the summary would
        miss their results. Reading the folder (best.py, TensorBoard, trials.csv) works anywhere.
        """
        if saved is None:  # searches from before this check: nothing to compare with
            return
        now = self.whereabouts()
        for key, what in (("location", "started in"), ("local", "kept its driver files in")):
            if saved.get(key) and saved[key] != now[key]:
                raise UserError(f"{self}: this search {what} {saved[key]} and was moved or copied since; Ray and "
                                "Optuna keep absolute paths inside it, so it resumes only from there (its results "
                                f"can be read from anywhere: python hpo/best.py --search {self})")

    @property
    def tune_path(self) -> str:
        """The experiment as Tune's restore wants it: the URI, or the folder's absolute path."""
        return self.location if self.remote else self.fs_path

    def exists(self, relative: str = "") -> bool:
        """Whether `relative` (a file or folder inside the experiment; "" = the experiment) is on the storage."""
        path = posixpath.join(self.fs_path, relative) if relative else self.fs_path
        try:
            return self.fs.get_file_info(path).type != pyarrow.fs.FileType.NotFound
        except OSError as error:
            raise UserError(f"{self.location}: cannot read the storage ({str(error).splitlines()[0]})") from None

    def push(self, relative: str = "") -> None:
        """Copy the local mirror (or `relative` inside it) to the storage; nothing to do for a local folder."""
        if not self.remote or not (self.local / relative).exists():
            return
        source = (self.local / relative).resolve()
        target = posixpath.join(self.fs_path, relative) if relative else self.fs_path
        if source.is_dir():
            self.fs.create_dir(target, recursive=True)
        pyarrow.fs.copy_files(str(source), target, source_filesystem=pyarrow.fs.LocalFileSystem(),
                              destination_filesystem=self.fs)

    def pull(self, names: tuple[str, ...] = DRIVER_FILES) -> None:
        """Copy the driver's files that the storage has and the local mirror lacks into the mirror."""
        if not self.remote:
            return
        self.local.mkdir(parents=True, exist_ok=True)
        for name in names:
            if not (self.local / name).exists() and self.exists(name):
                pyarrow.fs.copy_files(posixpath.join(self.fs_path, name), str((self.local / name).resolve()),
                                      source_filesystem=self.fs, destination_filesystem=pyarrow.fs.LocalFileSystem())

    def folders(self, relative: str) -> list[str]:
        """Names of the sub-folders of `relative` on the storage (checkpoint_000003, ...)."""
        selector = pyarrow.fs.FileSelector(posixpath.join(self.fs_path, relative), allow_not_found=True)
        return sorted(info.base_name for info in self.fs.get_file_info(selector)
                      if info.type == pyarrow.fs.FileType.Directory)

    def files(self, relative: str = "") -> list[str]:
        """Names of the files directly in `relative` on the storage."""
        selector = pyarrow.fs.FileSelector(posixpath.join(self.fs_path, relative), allow_not_found=True)
        return sorted(info.base_name for info in self.fs.get_file_info(selector)
                      if info.type == pyarrow.fs.FileType.File)

    def read(self, relative: str) -> bytes:
        with self.fs.open_input_stream(posixpath.join(self.fs_path, relative)) as stream:
            return stream.read()

    def delete(self, relative: str) -> None:
        self.fs.delete_dir(posixpath.join(self.fs_path, relative))

    def disk_usage(self) -> int:
        """Bytes the experiment takes on its storage (and in the local mirror, for a URI)."""
        selector = pyarrow.fs.FileSelector(self.fs_path, recursive=True, allow_not_found=True)
        stored = sum(info.size or 0 for info in self.fs.get_file_info(selector)
                     if info.type == pyarrow.fs.FileType.File)
        mirror = sum(path.stat().st_size for path in self.local.rglob("*") if path.is_file()) if self.remote else 0
        return stored + mirror


def read_experiment_file(folder: Path) -> dict:
    """The one reader of a search folder's experiment.json: {"experiment": settings, argv, git_commit, whereabouts};
    UserError naming the file when it is missing or unreadable."""
    path = folder / EXPERIMENT_JSON
    if not path.exists():
        raise UserError(f"{path}: missing; is {folder} an hpo/search.py experiment?")
    saved = read_json(path)
    if not isinstance(saved, dict) or not isinstance(saved.get("experiment"), dict):
        raise UserError(f"{path}: unreadable (no experiment settings in it)")
    return saved


def newest_experiment(storage: Path, finished: bool = False) -> Path:
    """The newest search folder under a local `storage`: the newest started (its experiment.json), or with
    `finished` the newest whose search finished (its best.json)."""
    marker = BEST_JSON if finished else EXPERIMENT_JSON
    folders = sorted((path.parent for path in storage.glob(f"*/{marker}")), key=lambda path: path.stat().st_mtime)
    if not folders:
        what = "finished search (no */best.json); run hpo/search.py first" if finished else "experiment to resume"
        raise UserError(f"{storage}: no {what}")
    return folders[-1]
