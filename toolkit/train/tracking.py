"""MLflow: one MLflow run per tk run, when mlflow is installed and the recipe (log.mlflow) or
MLFLOW_TRACKING_URI asks for it: the recipe as params, each epoch's metrics, the test metrics and
the run's files; later, `tk export`, `tk verify` and `tk bench` add their artifacts and results
to the same MLflow run, found through RUN/mlflow.json.

Uses MlflowClient (no global active run, nothing left set in the process). mlflow is an optional
extra ([mlflow]: mlflow-skinny), never in the device install; this module imports it only when a
run asked for it, and nothing here imports Keras at module level (the CLI's bench path imports it).
"""

from __future__ import annotations

import importlib.util
import json
import logging
import os
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any, Iterable, Optional

from .. import __version__
from ..core.context import SILENT, Context
from ..core.errors import TkError
from ..core.io import write_json_atomic

if TYPE_CHECKING:  # annotations only: tk bench logs through here on the device, where no recipe is read
    from ..core.recipe import Recipe

RECORD = "mlflow.json"  # in the run folder: {"tracking_uri", "experiment_id", "run_id"}
INSTALL = "pip install 'tk-edge[mlflow]'"
# The run's own files, logged when it finishes (phases' histories and curves, the TensorBoard logs too).
RUN_FILES = ("model.keras", "metrics.json", "recipe.yaml", "labels.txt", "split.json")


def wanted_uri(recipe: Recipe, ctx: Context = SILENT) -> Optional[str]:
    """The tracking URI to log to ("" for mlflow's own default), or None when nobody asked."""
    section = recipe.log
    uri = section.mlflow_tracking_uri or os.environ.get("MLFLOW_TRACKING_URI") or ""
    if section.mlflow is False or (section.mlflow == "auto" and not uri):
        return None
    if importlib.util.find_spec("mlflow") is None:
        if section.mlflow is True:
            raise TkError(f"log.mlflow: true needs mlflow, which is not installed: {INSTALL} (or log.mlflow: false)")
        ctx.say(f"note: MLFLOW_TRACKING_URI is set but mlflow is not installed: not logged to MLflow ({INSTALL})")
        return None
    return uri


def _client(uri: str):
    logging.getLogger("mlflow").setLevel(logging.WARNING)  # its INFO lines are not tk's to print
    from mlflow.tracking import MlflowClient

    return MlflowClient(tracking_uri=uri or None)


def _one_line(exc: Exception) -> str:
    text = str(exc).strip().splitlines()
    return text[0][:300] if text else type(exc).__name__


class MlflowTracker:
    def __init__(self, client, run_id: str, ctx: Context = SILENT):
        self.client, self.run_id, self.ctx = client, run_id, ctx
        self.broken = False  # a logging failure mid-run is said once; training goes on

    @classmethod
    def start(cls, recipe: Recipe, work: Path, resume: bool, ctx: Context = SILENT) -> Optional["MlflowTracker"]:
        """The MLflow run of this tk run (an interrupted run's, on --resume), or None if not asked."""
        uri = wanted_uri(recipe, ctx)
        if uri is None:
            return None
        record = Path(work) / RECORD
        try:
            client = _client(uri)
            earlier = _read_record(record) if resume else None
            if earlier is not None:
                client.update_run(earlier["run_id"], status="RUNNING")
                ctx.say(f"MLflow: continuing run {earlier['run_id']}")
                return cls(client, earlier["run_id"], ctx)
            name = recipe.log.mlflow_experiment or recipe.name
            experiment = client.get_experiment_by_name(name)
            experiment_id = experiment.experiment_id if experiment else client.create_experiment(name)
            tags = {"tk.version": __version__, "tk.recipe": str(recipe.source_path or "")}
            run = client.create_run(experiment_id, run_name=recipe.name, tags=tags)
            params = _flat(recipe.to_dict())
            client.log_batch(run.info.run_id, params=_params(params))
        except TkError:
            raise
        except Exception as exc:  # MlflowException, a server that does not answer, ...
            raise TkError(
                f"log.mlflow: cannot log to the MLflow tracking URI {uri or '(mlflow default)'}: {_one_line(exc)}; "
                "fix the URI (log.mlflow_tracking_uri or MLFLOW_TRACKING_URI) or set log.mlflow: false"
            ) from None
        write_json_atomic(
            record, {"tracking_uri": uri, "experiment_id": experiment_id, "run_id": run.info.run_id, "experiment": name}
        )
        where = uri or "mlflow's default store"
        ctx.say(f"MLflow: experiment {name}, run {run.info.run_id} at {where}")
        return cls(client, run.info.run_id, ctx)

    def _safely(self, what: str, call, *args, **kwargs) -> None:
        if self.broken:
            return
        try:
            call(*args, **kwargs)
        except Exception as exc:  # noqa: BLE001 -- a logging failure must not end the training
            self.broken = True
            self.ctx.say(f"warning: MLflow {what} failed ({_one_line(exc)}); not logging to MLflow from here on")

    def callback(self, phase: str):
        import keras

        tracker = self

        class MlflowEpochs(keras.callbacks.Callback):
            def on_epoch_end(self, epoch, logs=None):
                metrics = {f"{phase}/{k}": float(v) for k, v in (logs or {}).items()}
                tracker.log_metrics(metrics, step=epoch)

        return MlflowEpochs()

    def log_metrics(self, metrics: dict[str, float], step: int = 0) -> None:
        from mlflow.entities import Metric

        stamp = int(time.time() * 1000)
        batch = [Metric(key, value, stamp, step) for key, value in metrics.items()]
        self._safely("logging metrics", self.client.log_batch, self.run_id, metrics=batch)

    def log_files(self, files: Iterable[Path], artifact_path: Optional[str] = None) -> None:
        for path in files:
            if Path(path).is_dir():
                self._safely(f"logging {path}", self.client.log_artifacts, self.run_id, str(path), artifact_path)
            elif Path(path).is_file():
                self._safely(f"logging {path}", self.client.log_artifact, self.run_id, str(path), artifact_path)

    def finish(self, work: Path, metrics: dict[str, Any], ctx: Context = SILENT) -> None:
        """Test metrics and the run's files; the MLflow run ends FINISHED."""
        work = Path(work)
        scores = {"test/accuracy": metrics["accuracy"]}
        for name, per in metrics.get("per_class", {}).items():
            scores.update({f"test/{name}/precision": per["precision"], f"test/{name}/recall": per["recall"]})
        self.log_metrics(scores)
        self.log_files(work / name for name in RUN_FILES)
        for phase in sorted(p for p in (work / "phases").glob("*") if p.is_dir()):
            self.log_files([phase / "history.json", phase / "curves.png"], f"phases/{phase.name}")
        self.log_files([work / "logs"], "tensorboard")
        self.end("FINISHED")

    def end(self, status: str) -> None:
        self._safely("ending the run", self.client.set_terminated, self.run_id, status)


def log_results(run_dir: Path, kind: str, metrics: dict[str, float], files: Iterable[Path], ctx: Context = SILENT):
    """Add a later command's results to the run's MLflow run (`kind`: export, verify, bench), if
    training logged one (RUN/mlflow.json). Says why when it cannot; never fails the command."""
    record_path = Path(run_dir) / RECORD
    if not record_path.is_file():
        return
    record = _read_record(record_path)
    if record is None:
        ctx.say(f"note: {record_path} is not readable: {kind} results not logged to MLflow")
        return
    uri, run_id = record["tracking_uri"], record["run_id"]
    if importlib.util.find_spec("mlflow") is None:
        ctx.say(
            f"note: this run logs to MLflow, but mlflow is not installed here: {kind} results not logged ({INSTALL})"
        )
        return
    try:
        tracker = MlflowTracker(_client(uri), run_id, ctx)
    except Exception as exc:  # noqa: BLE001
        ctx.say(f"warning: MLflow at {uri}: {_one_line(exc)}; {kind} results not logged")
        return
    tracker.log_metrics({f"{kind}/{k}": float(v) for k, v in metrics.items() if v is not None})
    tracker.log_files(files, kind)
    if not tracker.broken:
        ctx.say(f"MLflow: {kind} results logged to run {run_id}")


def log_bench(run_dir: Path, report: dict[str, Any], ctx: Context = SILENT) -> None:
    """A bench report's rows of this call (p50/p90/p99, throughput, cold start, RSS per thread
    count; accuracy per artifact) and bench.json, when training logged to MLflow."""
    figures: dict[str, float] = {}
    for row in report.get("rows", []):
        if row.get("file") not in report.get("benched", []):
            continue
        where = f"{row['file']}/threads{row['threads']}"
        for key in ("p50_ms", "p90_ms", "p99_ms", "throughput_ips", "cold_start_s", "peak_rss_mb"):
            if isinstance(row.get(key), (int, float)):
                figures[f"{where}/{key}"] = row[key]
        if isinstance(row.get("accuracy"), (int, float)):
            figures[f"{row['file']}/accuracy"] = row["accuracy"]
    log_results(run_dir, "bench", figures, [Path(run_dir) / "bench.json"], ctx)


def _read_record(path: Path) -> Optional[dict[str, str]]:
    try:
        record = json.loads(Path(path).read_text())
    except (OSError, ValueError):
        return None
    ok = isinstance(record, dict) and all(isinstance(record.get(k), str) for k in ("tracking_uri", "run_id"))
    return record if ok else None


def _flat(obj: Any, prefix: str = "") -> dict[str, str]:
    if isinstance(obj, dict):
        out: dict[str, str] = {}
        for key, value in obj.items():
            out.update(_flat(value, f"{prefix}{key}."))
        return out
    return {prefix[:-1]: json.dumps(obj) if isinstance(obj, (list, tuple)) else str(obj)}


def _params(params: dict[str, str]):
    from mlflow.entities import Param

    return [Param(key, value[:6000]) for key, value in params.items()]
