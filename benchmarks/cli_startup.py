"""Start-up cost of the command line: ``samix-hub --version``, ``--help`` and every
``samix-hub COMMAND --help``, as CPU time (user + sys) of a fresh process.

Each command runs in its own subprocess (``python -m samix_hub ...``, what the ``samix-hub``
script runs); its CPU time is read from ``resource.getrusage(RUSAGE_CHILDREN)`` around the run.
Commands are timed in interleaved rounds and the median is reported, with its ratio to
``python -c "import torch"`` (the cost every command paid before the package top became lazy)
and the budget: 0.5 s for ``--version`` / ``--help``, 1 s for a command's ``--help``. A
separate run of each records whether it imported torch (it must not: a command imports its
heavy modules when it runs).

    python benchmarks/cli_startup.py                 # 5 rounds; writes results/cli_startup.md
    python benchmarks/cli_startup.py --rounds 9
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import statistics
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
RESULTS = HERE / "results"
REPO = HERE.parent
#: CPU seconds a start-up may take: the top level (--version, --help), a command's --help.
TOP_BUDGET, COMMAND_BUDGET = 0.5, 1.0

#: Runs ``python -m samix_hub ARGS`` in this process and reports whether torch got imported.
PROBE = (
    "import runpy, sys\n"
    "sys.argv = ['samix-hub', *sys.argv[1:]]\n"
    "try:\n"
    "    runpy.run_module('samix_hub', run_name='__main__', alter_sys=True)\n"
    "except SystemExit:\n"
    "    pass\n"
    "print('TORCH', 'torch' in sys.modules, file=sys.stderr)\n"
)


def _env() -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO), env.get("PYTHONPATH")]))
    return env


def cpu_seconds(argv: list[str]) -> float:
    """User + sys CPU seconds of one run of ``argv`` (a child process, waited for)."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    proc = subprocess.run(argv, env=_env(), capture_output=True, text=True, check=False)
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if proc.returncode != 0:
        raise SystemExit(f"{' '.join(argv)}: exit {proc.returncode}\n{proc.stderr}")
    return (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)


def imports_torch(args: list[str]) -> bool:
    proc = subprocess.run(
        [sys.executable, "-c", PROBE, *args], env=_env(), capture_output=True, text=True
    )
    return "TORCH True" in proc.stderr


def command_names() -> list[str]:
    from samix_hub.cli.main import cli

    return sorted(cli.commands)


def measure(rounds: int) -> dict[str, object]:
    cases: dict[str, list[str]] = {
        "python -c pass": [sys.executable, "-c", "pass"],
        'python -c "import torch"': [sys.executable, "-c", "import torch"],
        "samix-hub --version": [sys.executable, "-m", "samix_hub", "--version"],
        "samix-hub --help": [sys.executable, "-m", "samix_hub", "--help"],
    }
    for name in command_names():
        cases[f"samix-hub {name} --help"] = [sys.executable, "-m", "samix_hub", name, "--help"]
    times: dict[str, list[float]] = {case: [] for case in cases}
    for _ in range(rounds):  # interleaved: a change in machine load hits every case alike
        for case, argv in cases.items():
            times[case].append(cpu_seconds(argv))
    torch_s = statistics.median(times['python -c "import torch"'])
    rows = []
    for case, argv in cases.items():
        median = statistics.median(times[case])
        budget = None
        if case.startswith("samix-hub"):
            budget = TOP_BUDGET if case.count(" ") == 1 else COMMAND_BUDGET
        rows.append(
            {
                "case": case,
                "cpu_s": median,
                "ratio_to_import_torch": median / torch_s,
                "budget_s": budget,
                "within_budget": None if budget is None else median <= budget,
                "imports_torch": imports_torch(argv[3:]) if case.startswith("samix-hub") else None,
            }
        )
    return {
        "rounds": rounds,
        "python": platform.python_version(),
        "platform": platform.platform(),
        "cpu_count": os.cpu_count(),
        "load_average_1min": os.getloadavg()[0] if hasattr(os, "getloadavg") else None,
        "date": time.strftime("%Y-%m-%d"),
        "rows": rows,
    }


def table(result: dict[str, object]) -> str:
    rows = result["rows"]
    assert isinstance(rows, list)
    lines = [
        f"CLI start-up, CPU time (user + sys) of a fresh process, median of {result['rounds']} "
        f"interleaved rounds; Python {result['python']}, {result['cpu_count']} CPUs, "
        f"load {result['load_average_1min']:.1f}, {result['date']}.",
        "",
        "| command | CPU s | / import torch | budget s | within | imports torch |",
        "|---|---|---|---|---|---|",
    ]
    for r in rows:
        budget = "" if r["budget_s"] is None else f"{r['budget_s']:.1f}"
        within = {None: "", True: "yes", False: "**no**"}[r["within_budget"]]
        torch_col = {None: "", True: "**yes**", False: "no"}[r["imports_torch"]]
        lines.append(
            f"| `{r['case']}` | {r['cpu_s']:.3f} | {r['ratio_to_import_torch']:.2f} | {budget} "
            f"| {within} | {torch_col} |"
        )
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--out", type=Path, default=RESULTS)
    args = parser.parse_args()
    result = measure(max(1, args.rounds))
    text = table(result)
    print(text)
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "cli_startup.md").write_text(text)
    (args.out / "cli_startup.json").write_text(json.dumps(result, indent=2) + "\n")


if __name__ == "__main__":
    main()
