"""task.*: client-created tasks, cancellation, the task fields xapi lets a client set."""

from __future__ import annotations

from typing import Any

from ..calls import Ctx, Handlers, new_task
from ..model import ApiError

HANDLERS = Handlers("task")


@HANDLERS.api("task.create")
def task_create(ctx: Ctx, label: str, description: str) -> str:
    return new_task(ctx, label, description)


@HANDLERS.api("task.cancel")
def task_cancel(ctx: Ctx, task: str) -> None:
    rec = ctx.db.get(task, "task")
    if "cancel" not in rec["allowed_operations"] or rec["status"] != "pending":
        raise ApiError("OPERATION_NOT_ALLOWED", f"Task {task} cannot be cancelled in state {rec['status']}")
    ctx.db.set(
        task,
        status="cancelled",
        finished=ctx.dep.now(),
        progress=1.0,
        error_info=["TASK_CANCELLED", task],
        allowed_operations=[],
    )


@HANDLERS.api("task.destroy")
def task_destroy(ctx: Ctx, task: str) -> None:
    ctx.db.get(task, "task")
    ctx.db.destroy(task)


def _task_setter(field: str):
    def fn(ctx: Ctx, task: str, value: Any) -> None:
        ctx.db.get(task, "task")
        ctx.db.set(task, **{field: value})

    return fn


for _f in ("status", "progress", "result", "error_info"):
    HANDLERS.api(f"task.set_{_f}")(_task_setter(_f))
