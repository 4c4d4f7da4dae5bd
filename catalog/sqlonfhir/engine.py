"""How the publishing pipeline picks its row function: the fast plan when the view has one."""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping
from typing import Any

from catalog.sqlonfhir.plan import compile_plan
from catalog.sqlonfhir.views import CompiledView

__all__ = ["ENGINE_ENV", "fast_rows"]

# MESH_CONVERSION_ENGINE=general sends every resource through the general evaluator (a
# benchmark's "before", or a way out should the fast plan ever be suspected).
ENGINE_ENV = "MESH_CONVERSION_ENGINE"

RowsOf = Callable[[dict[str, Any]], list[dict[str, Any]]]


def fast_rows(view: CompiledView, view_json: Mapping[str, Any] | None) -> RowsOf:
    """`view.rows`, or the compiled plan's rows (identical results) when the view has a plan."""
    if view_json is None or os.environ.get(ENGINE_ENV) == "general":
        return view.rows
    plan = compile_plan(view_json, view)
    return view.rows if plan is None else plan.rows
