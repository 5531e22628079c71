"""Cached pipeline stages: a rerun skips what is finished, a changed knob reruns that stage and its dependents.

Each stage owns one folder ``<root>/<name>/``. Its *fingerprint* is the SHA-256 of its knobs (a JSON-able
dict: everything its outputs depend on besides its inputs) and of the fingerprints of the stages it reads
(``after``), so a change upstream changes every fingerprint downstream and nothing else.

Markers, each written atomically (temporary name, then rename):

* ``stage.json`` at the start: the fingerprint being built. A stage marked ``resumable`` (training: the
  runtime resumes from its checkpoints) whose folder holds the same pending fingerprint is continued in
  place; any other folder holding something else is deleted first.
* ``done.json`` last: fingerprint, knobs, upstream fingerprints, the stage's outputs (JSON) and its
  seconds. A folder counts as finished only with a ``done.json`` of the expected fingerprint whose
  listed ``paths`` still exist; otherwise the stage runs again.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
import os
import shutil
import time
from collections.abc import Callable

from keras_distil.errors import KerasDistilError
from keras_distil.files import atomic_write_json, try_read_json

logger = logging.getLogger("keras_distil.quickstart")

DONE, PENDING = "done.json", "stage.json"
FORMAT = "keras-distil-quickstart-stage"


@dataclasses.dataclass
class Stage:
    """One step of a pipeline.

    ``run(folder, inputs)`` does the work in ``folder`` (created, empty or holding a resumable partial
    run) and returns JSON-able outputs; ``inputs`` maps each name in ``after`` to that stage's outputs.
    Output values under the key ``paths`` (a dict of name -> path) are checked for existence on reuse.
    """

    name: str
    knobs: dict
    run: Callable[[str, dict], dict]
    after: tuple[str, ...] = ()
    resumable: bool = False
    title: str = ""  # one line shown on the console


@dataclasses.dataclass
class StageResult:
    name: str
    outputs: dict
    seconds: float  # of the run that produced the outputs (a cached stage reports the original time)
    cached: bool
    fingerprint: str
    folder: str
    cpu_seconds: float = 0.0  # user + system CPU time of this process during the stage (contention-free cost)


def fingerprint(name: str, knobs: dict, upstream: dict[str, str]) -> str:
    payload = json.dumps({"stage": name, "knobs": knobs, "upstream": upstream}, sort_keys=True, default=str)
    return hashlib.sha256(payload.encode("utf-8")).hexdigest()


class StageBusy(KerasDistilError, RuntimeError):
    """Another live process is building the same stage folder."""


def _alive(pid) -> bool:
    try:
        os.kill(int(pid), 0)
    except (OSError, ValueError, TypeError):
        return False
    return True


def _cpu_seconds() -> float:
    times = os.times()
    return times.user + times.system


def _paths_exist(outputs: dict) -> bool:
    paths = outputs.get("paths") or {}
    return all(os.path.exists(p) for p in paths.values() if p)


class Pipeline:
    """Run stages in order under ``root``; ``fresh=True`` rebuilds every stage from nothing."""

    def __init__(self, root: str, fresh: bool = False, echo: Callable[[str], None] | None = print):
        self.root = os.path.abspath(root)
        self.fresh = fresh
        self.echo = echo or (lambda line: None)
        self.results: dict[str, StageResult] = {}

    def folder(self, name: str) -> str:
        return os.path.join(self.root, name)

    def finished(self, name: str, expected: str) -> dict | None:
        """The done marker of ``name`` when it holds ``expected`` and its paths exist, else None."""
        done = try_read_json(os.path.join(self.folder(name), DONE))
        if done is None or done.get("format") != FORMAT or done.get("fingerprint") != expected:
            return None
        return done if _paths_exist(done.get("outputs") or {}) else None

    def _prepare(self, stage: Stage, expected: str) -> str:
        """An empty folder for ``stage``, or its partial folder when it may resume the same work."""
        folder = self.folder(stage.name)
        pending = try_read_json(os.path.join(folder, PENDING))
        owner = (pending or {}).get("pid")
        if owner not in (None, os.getpid()) and not os.path.exists(os.path.join(folder, DONE)) and _alive(owner):
            raise StageBusy(f"{folder}: stage {stage.name} is being built by process {owner}; wait for it to "
                            "finish (or stop it), then run again")
        keep = (not self.fresh and stage.resumable and pending is not None
                and pending.get("fingerprint") == expected)
        if os.path.exists(folder) and not keep:
            shutil.rmtree(folder)
        if keep:
            done = os.path.join(folder, DONE)
            if os.path.exists(done):
                os.remove(done)
            logger.info("stage %s: resuming the unfinished run in %s", stage.name, folder)
        os.makedirs(folder, exist_ok=True)
        atomic_write_json(os.path.join(folder, PENDING), {"format": FORMAT, "fingerprint": expected,
                                                          "stage": stage.name, "pid": os.getpid()})
        return folder

    def expected(self, stage: Stage) -> str:
        """The fingerprint ``stage`` would have now (its upstream stages must have run)."""
        missing = [n for n in stage.after if n not in self.results]
        if missing:
            raise RuntimeError(f"stage {stage.name} runs after {', '.join(missing)}, which have not run")
        return fingerprint(stage.name, stage.knobs, {n: self.results[n].fingerprint for n in stage.after})

    def run(self, stage: Stage) -> StageResult:
        expected = self.expected(stage)
        upstream = {n: self.results[n].fingerprint for n in stage.after}
        index = len(self.results) + 1
        done = None if self.fresh else self.finished(stage.name, expected)
        if done is not None:
            result = StageResult(stage.name, done["outputs"], float(done["seconds"]), True, expected,
                                 self.folder(stage.name), float(done.get("cpu_seconds", 0.0)))
            self.echo(f"[{index}] {stage.name}: up to date ({result.seconds:.0f} s when it ran), skipped")
        else:
            self.echo(f"[{index}] {stage.name}: {stage.title or 'running'}")
            folder = self._prepare(stage, expected)
            start, cpu = time.perf_counter(), _cpu_seconds()
            outputs = stage.run(folder, {n: self.results[n].outputs for n in stage.after})
            seconds, cpu = time.perf_counter() - start, _cpu_seconds() - cpu
            atomic_write_json(os.path.join(folder, DONE), {
                "format": FORMAT, "stage": stage.name, "fingerprint": expected, "knobs": stage.knobs,
                "upstream": upstream, "outputs": outputs, "seconds": round(seconds, 2),
                "cpu_seconds": round(cpu, 2),
                "finished_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())})
            result = StageResult(stage.name, outputs, seconds, False, expected, folder, cpu)
            self.echo(f"[{index}] {stage.name}: done in {seconds:.0f} s ({cpu:.0f} s of CPU)")
        self.results[stage.name] = result
        return result
