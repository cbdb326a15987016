"""Paper reproductions: each module here rebuilds one paper's main claim at small scale.

A reproduction is a module of this package that defines ``REPRODUCTION``, a
:class:`Reproduction`. Its ``run(ctx)`` builds the experiment from ulam's public
API (never the algorithm itself), measures the claimed figure, and returns an
:class:`Outcome`: claims (measured figure against a threshold, pass or fail),
Markdown tables and PNG figures. ``ulam reproduce`` discovers every module here,
runs the chosen ones and writes ``report.md``.

Adding one is adding a file::

    # src/ulam/reproduce/my_method.py
    from ulam.reproduce import Reproduction, Outcome, claim

    def run(ctx):
        measured = ...
        return Outcome(claims=[claim("slope of error vs n", measured, "<=", -0.45)])

    REPRODUCTION = Reproduction(name="my-method", paper="Author et al. 2024, *Title*",
                                summary="what the claim is", run=run)
"""

from __future__ import annotations

import dataclasses
import importlib
import json
import math
import operator
import pkgutil
import time
import traceback
from pathlib import Path
from typing import Callable, Iterable, Sequence

__all__ = [
    "Claim",
    "claim",
    "Context",
    "Outcome",
    "Reproduction",
    "markdown_table",
    "discover",
    "run_reproductions",
    "write_report",
]

_RELATIONS: dict[str, Callable[[float, float], bool]] = {
    "<=": operator.le,
    ">=": operator.ge,
    "<": operator.lt,
    ">": operator.gt,
}


@dataclasses.dataclass(frozen=True)
class Claim:
    """One checked statement: ``measured relation threshold``, e.g. ``slope <= -0.45``."""

    description: str
    measured: float
    relation: str
    threshold: float
    passed: bool
    paper: str = ""  # the paper's own figure, for comparison in the report

    def as_row(self) -> list[str]:
        return [
            self.description,
            _fmt(self.measured),
            f"{self.relation} {_fmt(self.threshold)}",
            self.paper or "",
            "PASS" if self.passed else "FAIL",
        ]


def claim(description: str, measured: float, relation: str, threshold: float, paper: str = "") -> Claim:
    """Build a :class:`Claim`; a non-finite measurement always fails."""
    if relation not in _RELATIONS:
        raise ValueError(f"relation: expected one of {sorted(_RELATIONS)}, got {relation!r}")
    measured = float(measured)
    threshold = float(threshold)
    passed = math.isfinite(measured) and _RELATIONS[relation](measured, threshold)
    return Claim(description, measured, relation, threshold, bool(passed), paper)


@dataclasses.dataclass
class Outcome:
    """What a reproduction returns: claims, Markdown tables, figure paths and notes."""

    claims: list[Claim] = dataclasses.field(default_factory=list)
    tables: list[str] = dataclasses.field(default_factory=list)
    figures: list[Path] = dataclasses.field(default_factory=list)
    notes: str = ""


@dataclasses.dataclass
class Context:
    """What a reproduction is given: size mode, seed, where to write, and progress."""

    quick: bool
    seed: int
    out_dir: Path
    report_progress: Callable[[str], None] = lambda message: None

    def key(self, salt: int = 0):
        """A JAX key derived from the run's seed (``salt`` separates independent streams)."""
        import jax

        return jax.random.fold_in(jax.random.key(self.seed), salt)

    def figure_path(self, name: str) -> Path:
        self.out_dir.mkdir(parents=True, exist_ok=True)
        return self.out_dir / name

    def progress(self, message: str) -> None:
        """Show what the reproduction is doing now (the CLI puts it on its progress bar)."""
        self.report_progress(message)

    def size(self, quick, full):
        """``quick`` under ``--quick``, else ``full``."""
        return quick if self.quick else full


@dataclasses.dataclass(frozen=True)
class Reproduction:
    """A paper's claim rebuilt at small scale."""

    name: str
    paper: str
    summary: str
    run: Callable[[Context], Outcome]
    #: Which claims (thresholds or cases) changed from earlier versions, and why, with the old figures;
    #: ``write_report`` lists these in their own section.
    changes: str = ""


@dataclasses.dataclass
class RunRecord:
    reproduction: Reproduction
    outcome: Outcome | None
    seconds: float
    error: str = ""

    @property
    def passed(self) -> bool:
        return self.outcome is not None and not self.error and all(c.passed for c in self.outcome.claims)


def discover() -> dict[str, Reproduction]:
    """Every reproduction in this package, by name (modules starting with ``_`` are skipped)."""
    found: dict[str, Reproduction] = {}
    for info in pkgutil.iter_modules(__path__):
        if info.name.startswith("_"):
            continue
        module = importlib.import_module(f"{__name__}.{info.name}")
        rep = getattr(module, "REPRODUCTION", None)
        if isinstance(rep, Reproduction):
            if rep.name in found:
                raise RuntimeError(f"two reproductions are named {rep.name!r}")
            found[rep.name] = rep
    return dict(sorted(found.items()))


def run_reproductions(
    reproductions: Sequence[Reproduction],
    *,
    quick: bool,
    seed: int,
    out_dir: Path,
    on_start: Callable[[Reproduction], None] = lambda r: None,
    on_message: Callable[[str], None] = lambda m: None,
    on_end: Callable[[RunRecord], None] = lambda r: None,
) -> list[RunRecord]:
    """Run reproductions one after another; a crash is recorded as a failure, not raised."""
    records = []
    for rep in reproductions:
        on_start(rep)
        ctx = Context(quick=quick, seed=seed, out_dir=Path(out_dir) / rep.name, report_progress=on_message)
        start = time.perf_counter()
        try:
            outcome = rep.run(ctx)
            record = RunRecord(rep, outcome, time.perf_counter() - start)
        except Exception:  # the report must show the failure and go on with the rest
            record = RunRecord(rep, None, time.perf_counter() - start, traceback.format_exc())
        records.append(record)
        on_end(record)
    return records


def markdown_table(headers: Sequence[str], rows: Iterable[Sequence[object]]) -> str:
    """A GitHub-flavoured Markdown table; floats are shown with 4 significant digits."""
    lines = ["| " + " | ".join(str(h) for h in headers) + " |", "|" + "---|" * len(headers)]
    for row in rows:
        lines.append("| " + " | ".join(_fmt(x) if isinstance(x, float) else str(x) for x in row) + " |")
    return "\n".join(lines)


def _fmt(x: float) -> str:
    if not math.isfinite(x):
        return str(x)
    if x != 0 and (abs(x) >= 1e5 or abs(x) < 1e-3):
        return f"{x:.3e}"
    return f"{x:.4g}"


def write_report(records: Sequence[RunRecord], out_dir: Path, *, quick: bool, seed: int) -> Path:
    """Write ``report.md`` (and ``report.json``) summarising every claim; returns the Markdown path."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    lines = [
        "# ulam reproduction report",
        "",
        f"Mode: {'quick' if quick else 'full'} · seed {seed} · "
        f"{sum(r.passed for r in records)} of {len(records)} reproductions pass.",
        "",
        "## Claims",
        "",
    ]
    rows = []
    for rec in records:
        if rec.outcome is None:
            rows.append([rec.reproduction.name, "crashed", "", "", "", "FAIL"])
            continue
        for c in rec.outcome.claims:
            rows.append([rec.reproduction.name, *c.as_row()])
        if not rec.outcome.claims:
            rows.append([rec.reproduction.name, "(no claims)", "", "", "", "FAIL"])
    lines.append(markdown_table(["reproduction", "claim", "measured", "threshold", "paper", "result"], rows))
    changed = [rec.reproduction for rec in records if rec.reproduction.changes.strip()]
    if changed:
        lines += ["", "## Claims changed from earlier versions, and why", ""]
        lines += [f"- **{rep.name}**: {' '.join(rep.changes.split())}" for rep in changed]
    for rec in records:
        rep = rec.reproduction
        lines += ["", f"## {rep.name}", "", f"*{rep.paper}* — {rep.summary}", "", f"Time: {rec.seconds:.1f} s.", ""]
        if rec.error:
            lines += ["Crashed:", "", "```", rec.error.rstrip(), "```"]
            continue
        assert rec.outcome is not None
        for table in rec.outcome.tables:
            lines += [table, ""]
        for fig in rec.outcome.figures:
            try:
                rel = Path(fig).resolve().relative_to(out_dir.resolve())
            except ValueError:  # a figure written outside the report folder: link it as given
                rel = Path(fig)
            lines += [f"![{Path(fig).stem}]({rel.as_posix()})", ""]
        if rec.outcome.notes:
            lines += [rec.outcome.notes.strip(), ""]
    path = out_dir / "report.md"
    path.write_text("\n".join(lines) + "\n")
    summary = [
        {
            "name": rec.reproduction.name,
            "passed": rec.passed,
            "seconds": rec.seconds,
            "error": rec.error,
            "claims": [dataclasses.asdict(c) for c in (rec.outcome.claims if rec.outcome else [])],
        }
        for rec in records
    ]
    (out_dir / "report.json").write_text(json.dumps({"quick": quick, "seed": seed, "reproductions": summary}, indent=2))
    return path
