"""Tune's saved state of a search, checked before a resume starts Ray: a removed or garbled file is one line.

Left unchecked, Tune meets a damaged folder in its own way: without its experiment state it starts the search over
after a long silence (a second trial_001, with trial 2's values from the searcher's study); with a garbled
searcher state it fails with the error only in search.log; with a checkpoint cut short the trial starts again
from its first epoch. Each is found here, from the files alone (nothing is unpickled), and named with what can be
done. Tune's files: experiment_state-<time>.json (its trials), search_gen_state-<time>.json (a pickle, whatever
its name says) and searcher-state-<time>.pkl (the searcher's), tuner.pkl, and trial_*/checkpoint_*/ per trial.
"""
from __future__ import annotations

import io
import json
import pickletools
import zipfile

from hpo.storage import ExperimentStore
from mnist.errors import UserError, shell_path
from mnist.layout import TRIAL_CHECKPOINT

EXPERIMENT_STATE, SEARCHER_STATE, SEARCH_GEN_STATE = "experiment_state-", "searcher-state-", "search_gen_state-"
TUNER_PKL = "tuner.pkl"  # the Tuner itself: what Tune's can_restore looks for


def check_saved_state(store: ExperimentStore) -> None:
    """Refuse, in one line naming the file, a search whose saved state Tune could not resume as it was."""
    files = store.files()
    results = f"its finished trials stay readable (python hpo/best.py --search {shell_path(str(store))})"
    newest = {prefix: max((name for name in files if name.startswith(prefix)), default=None)
              for prefix in (EXPERIMENT_STATE, SEARCHER_STATE, SEARCH_GEN_STATE)}
    if newest[EXPERIMENT_STATE] is None:
        raise UserError(f"{store}: Tune's experiment state (experiment_state-*.json) is missing, so the search "
                        f"cannot continue as it was (Tune would start it over); {results}, or start a new search "
                        "(another --name)")
    newest[TUNER_PKL] = TUNER_PKL if TUNER_PKL in files else None
    for prefix, kind in ((EXPERIMENT_STATE, "JSON"), (SEARCH_GEN_STATE, "pickle"), (SEARCHER_STATE, "pickle"),
                         (TUNER_PKL, "pickle")):
        if newest[prefix] is not None:
            problem = damage(store.read(newest[prefix]), kind)
            if problem:
                raise UserError(f"{store.location}/{newest[prefix]}: {problem}; Tune cannot resume the search "
                                f"from it; {results}, or start a new search (another --name)")
    for trial in (name for name in store.folders("") if name.startswith("trial_")):
        checkpoint = last_reported_checkpoint(store, trial)
        if checkpoint:
            check_checkpoint(store, f"{trial}/{checkpoint}/{TRIAL_CHECKPOINT}", results)


def last_reported_checkpoint(store: ExperimentStore, trial: str) -> str | None:
    """The checkpoint folder of the trial's last whole report (result.json's last line), which is the one its resume
    starts from. A newer folder that no report names was cut off by the stop itself (the trial was writing it):
    Tune never uses it, and writes it again."""
    if "result.json" not in store.files(trial):
        return None
    for line in reversed(store.read(f"{trial}/result.json").decode("utf-8", "replace").splitlines()):
        try:
            return json.loads(line).get("checkpoint_dir_name") or None
        except json.JSONDecodeError:  # a line cut by the stop itself: the one before it is whole
            continue
    return None


def damage(content: bytes, kind: str) -> str | None:
    """What is wrong with a saved JSON or pickle file (None: it is whole)."""
    if not content:
        return "empty"
    if kind == "JSON":
        try:
            json.loads(content)
        except (json.JSONDecodeError, UnicodeDecodeError) as error:
            return f"not valid JSON ({error})"
        return None
    try:  # walks the pickle's opcodes to its STOP without running any of them
        for _ in pickletools.genops(io.BytesIO(content)):
            pass
    except Exception as error:  # pickletools raises ValueError and others on a garbled or cut stream
        return f"not a whole pickle ({str(error).splitlines()[0][:120] or type(error).__name__})"
    return None


def check_checkpoint(store: ExperimentStore, relative: str, results: str) -> None:
    """A trial's newest checkpoint, the one its resume starts from, must be a whole torch file (a zip archive)."""
    if not store.exists(relative):
        return
    try:
        with zipfile.ZipFile(io.BytesIO(store.read(relative))) as archive:
            broken = archive.testzip()
    except zipfile.BadZipFile as error:
        broken = str(error)
    if broken:
        raise UserError(f"{store.location}/{relative}: cut short or damaged ({broken}); its trial cannot continue "
                        f"from it (it would start over from its first epoch); {results}, or start a new search "
                        "(another --name)")
