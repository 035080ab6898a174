"""Pass 4 (tune): MetaSchedule tuning of the fused PrimFuncs, kept in a database folder
(``fcos3d-compile --tune-trials N --tuning-db DIR``); a second compile with the same folder reuses it.

Before the search, passes/schedule.py's default schedule of every task is measured and recorded, and it is
also part of the search space (beside MetaSchedule's CPU rules): the database's best, which a compile
applies, is never a schedule measured slower than the untuned one.
Functions the database has no record of keep the default schedule (the schedule pass runs after this one).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from tvm import IRModule

from fcos3d.errors import Fcos3dError

__all__ = ["Tuning", "apply_tuning"]


@dataclass(frozen=True)
class Tuning:
    """``trials``: MetaSchedule trials in all, spread over the tasks the database has no record of (0: only
    apply the database). ``database``: the folder of MetaSchedule's JSON database (created when missing)."""

    trials: int = 0
    database: Path | None = None

    def __post_init__(self):
        if self.trials < 0:
            raise ValueError(f"Tuning.trials is {self.trials}: give 0 (apply the database only) or more")
        if self.trials > 0 and self.database is None:
            raise ValueError("Tuning.trials > 0 needs a database folder to keep the results: pass --tuning-db DIR")


def _measure(lib, args_info) -> list[float]:
    """Seconds of a built PrimFunc on random arguments: 3 means of >= 10 ms each (MetaSchedule keeps their mean;
    on a shared machine the spread is the other jobs)."""
    import tvm
    from tvm.s_tir import meta_schedule as ms
    from tvm.s_tir.meta_schedule.runner.local_runner import default_alloc_argument, default_run_evaluator

    config = ms.runner.EvaluatorConfig(number=1, repeat=3, min_repeat_ms=10, enable_cpu_cache_flush=False)
    dev = tvm.cpu()
    args = default_alloc_argument(dev, [a.as_json() for a in args_info], 1)
    return default_run_evaluator(lib, dev, config, args)


def _commit_default(database, task_mod: IRModule, target) -> None:
    """Measure passes/schedule.py's schedule of one task and commit it as a tuning record: the database's best
    is then never slower than the untuned compile (with few trials, MetaSchedule's own candidates can be)."""
    from tvm import s_tir
    from tvm.s_tir import meta_schedule as ms
    from tvm.s_tir.meta_schedule.builder.local_builder import default_build

    from .passes.schedule import apply_default_schedule

    sch = s_tir.Schedule(task_mod)
    apply_default_schedule(sch, target)
    args_info = ms.arg_info.ArgInfo.from_prim_func(task_mod["main"])
    seconds = _measure(default_build(sch.mod, target, None), args_info)
    database.commit_tuning_record(
        ms.database.TuningRecord(sch.trace, database.commit_workload(task_mod), seconds, target, args_info)
    )


def _in_process_measure():
    """MetaSchedule's builder and runner, in this process: its default ones start worker processes that each
    import TVM (tens of seconds per batch on a busy 2-core machine). The candidates are MetaSchedule's CPU
    schedules and ours, which compile and run safely; the price is that a crashing candidate would end the
    compile. Built modules go from builder to runner in memory, keyed by a made-up artifact path."""
    import itertools

    from tvm.ir.utils import derived_object
    from tvm.s_tir import meta_schedule as ms
    from tvm.s_tir.meta_schedule.builder.local_builder import default_build
    from tvm.s_tir.meta_schedule.runner.local_runner import LocalRunnerFuture

    built: dict[str, object] = {}
    counter = itertools.count()

    @derived_object
    class InProcessBuilder(ms.builder.PyBuilder):
        def build(self, build_inputs):
            results = []
            for item in build_inputs:
                try:
                    key = f"in-process-{next(counter)}"
                    built[key] = default_build(item.mod, item.target, None)
                    results.append(ms.builder.BuilderResult(key, None))
                except Exception as exc:  # a candidate TVM cannot compile: MetaSchedule drops it
                    results.append(ms.builder.BuilderResult(None, f"build failed: {exc}"))
            return results

    @derived_object
    class InProcessRunner(ms.runner.PyRunner):
        def run(self, runner_inputs):
            futures = []
            for item in runner_inputs:
                try:
                    seconds = _measure(built.pop(str(item.artifact_path)), item.args_info)
                    futures.append(LocalRunnerFuture(res=seconds))
                except Exception as exc:
                    futures.append(LocalRunnerFuture(error_message=f"run failed: {exc}"))
            return futures

    return InProcessBuilder(), InProcessRunner()


def _uses_amx(task_mod: IRModule, target) -> bool:
    """The default schedule puts this task's GEMM on AMX tiles (passes/schedule._schedule_gemm_amx)."""
    from tvm import s_tir

    from .passes.schedule import AMX_CONFIG_ATTR, apply_default_schedule

    sch = s_tir.Schedule(task_mod)
    apply_default_schedule(sch, target)
    return AMX_CONFIG_ATTR in str(sch.trace)


def _tasks(mod: IRModule, target):
    """MetaSchedule's tasks (one per distinct PrimFunc, weighted by its calls), without the functions that
    arrive already scheduled (kernels.py's im2col and padding) and without the convs on AMX tiles: MetaSchedule
    has no AMX rule (its evolutionary search cannot replay a tensorized tile whose configuration is loaded
    outside the trace), and they keep the default schedule, the fastest unit of the core."""
    from tvm.s_tir import meta_schedule as ms

    return [
        t
        for t in ms.relax_integration.extract_tasks(mod, target)
        if not t.dispatched[0]["main"].attrs.get("tirx.is_scheduled", False) and not _uses_amx(t.dispatched[0], target)
    ]


def apply_tuning(mod: IRModule, target, tuning: Tuning | None) -> IRModule:
    """Tune (when ``tuning.trials``) the tasks the database lacks, then replace every function the database
    knows by its best schedule, marked ``tirx.is_scheduled``. ``None`` or no database: ``mod`` unchanged."""
    if tuning is None or tuning.database is None:
        return mod
    from tvm import relax
    from tvm.s_tir import meta_schedule as ms

    from .passes.schedule import apply_default_schedule

    work_dir = Path(tuning.database)
    work_dir.mkdir(parents=True, exist_ok=True)
    try:
        database = ms.database.JSONDatabase(work_dir=str(work_dir))
    except Exception as exc:  # TVM reports a damaged database file as a bare RuntimeError of its JSON reader
        first = (str(exc).strip().splitlines() or [type(exc).__name__])[-1]
        raise Fcos3dError(
            f"{work_dir}: not a readable MetaSchedule tuning database ({first[:200]}); delete its "
            "database_*.json files (or pass another --tuning-db) to tune afresh"
        ) from None
    tasks = [t for t in _tasks(mod, target) if not database.has_workload(t.dispatched[0])]
    if tuning.trials > 0 and tasks:
        for task in tasks:
            _commit_default(database, task.dispatched[0], target)

        def default(sch):
            apply_default_schedule(sch, target, space=True)
            return sch

        space = ms.space_generator.SpaceGeneratorUnion(
            [ms.space_generator.PostOrderApply(), ms.space_generator.ScheduleFn(default)]
        )
        per_task = max(1, -(-tuning.trials // len(tasks)))
        # A population in proportion to the trials: the default (512 samples, 4 generations per round) spends
        # minutes of search per task before the first measurement.
        strategy = ms.search_strategy.EvolutionarySearch(
            population_size=min(512, max(32, 8 * per_task)), genetic_num_iters=2 if per_task < 64 else 4
        )
        contexts, weights = ms.relax_integration.extracted_tasks_to_tune_contexts(
            tasks, str(work_dir), space=space, strategy=strategy, seed=0
        )
        builder, runner = _in_process_measure()
        ms.tune.tune_tasks(
            tasks=contexts,
            task_weights=weights,
            work_dir=str(work_dir),
            database=database,
            builder=builder,
            runner=runner,  # no RemoveBuildArtifact: there are no artifact files
            measure_callbacks=[ms.measure_callback.AddToDatabase(), ms.measure_callback.UpdateCostModel()],
            max_trials_global=tuning.trials,
            max_trials_per_task=per_task,
            num_trials_per_iter=min(64, per_task),
        )
    with target, database:
        return relax.transform.MetaScheduleApplyDatabase(enable_warning=False)(mod)
