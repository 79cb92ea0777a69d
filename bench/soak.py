"""Soak: sync + faults + kills, in a loop, for N minutes; then check nothing was lost.

Runs a sandbox Tasks API that injects faults, a fake back-office API (the ``http``
connector's vendor) that injects its own (429 storms, 5xx, dropped connections, truncated
JSON), and ``fragment sync`` processes, some of them SIGKILLed at random points. Between
runs the backlog changes and operators complete tasks. At the end it runs clean syncs
until one is ``ok`` and checks the guarantees of docs/reliability.md:

* one task per record, none twice; every open record has its task;
* a task is done exactly when its record was resolved in the source or an operator
  completed it;
* every operator completion had exactly one write-back effect, and nothing the sync
  closed was written back;
* a second source, a ``file`` backlog, is appended to all along by another program
  holding the file's lock (``<file>.lock``) while its syncs (some killed) write back:
  no appended row is lost, every completed row is marked done, one task per row, and no
  temporary file is left.

Usage::

    python bench/soak.py --minutes 5 --seed 7
    python bench/soak.py --minutes 30 --records 5000 --faults 0.2
    python bench/soak.py --minutes 5 --runners 2     # two concurrent syncs per round

Then it runs the property tests with a random Hypothesis search (profile ``soak``; CI
runs them derandomized): a failure prints the example to pin with ``@example``.

Exit code 0 when every check held, 1 otherwise. Everything is seeded.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import random
import signal
import subprocess
import sys
import tempfile
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from fragment_core.connectors.file import FileConfig, FileConnector, write_sample
from fragment_core.sandbox.runner import run_sandbox
from fragment_core.task import SOURCE_FIELD, TaskStatus, task_uid
from fragment_core.testing.backoffice import FakeBackoffice

#: Exit code of a `fragment sync` refused by the source's lease (another run holds it).
EXIT_BUSY = 5

SOURCE = "soak"
FILE_SOURCE = "soak-file"
TOKEN = "soak-backoffice-token"
#: The other program: appends a row under the backlog's lock every few milliseconds
#: until the stop file appears, logging each id it appended.
APPENDER = """
import fcntl, sys, time
from pathlib import Path
backlog, log, stop = (Path(a) for a in sys.argv[1:4])
n = 0
with log.open("a") as out:
    while not stop.exists():
        n += 1
        row_id = f"F-{n:06d}"
        with open(str(backlog) + ".lock", "a") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            with backlog.open("a", newline="") as handle:
                handle.write(f"{row_id},Appended row {n},,,,\\n")
        out.write(row_id + "\\n")
        out.flush()
        time.sleep(0.02)
"""


@dataclass
class Tally:
    runs: Counter[str] = field(default_factory=Counter)
    kills: int = 0
    vendor_faults: Counter[str] = field(default_factory=Counter)
    completed: set[str] = field(default_factory=set)
    file_completed: set[str] = field(default_factory=set)
    resolved_in_source: int = 0
    added: int = 0


def write_config(folder: Path, tasks_url: str, token: str, office: FakeBackoffice) -> Path:
    (folder / "token").write_text(token)
    config = folder / "fragment.toml"
    config.write_text(
        f'[tasks_api]\nurl = "{tasks_url}"\ntoken_file = "token"\nrate_limit = 0\n'
        "batch_size = 50\n"
        f'[state]\nurl = "sqlite:///{(folder / "state.db").as_posix()}"\n'
        f'[[sources]]\nname = "{SOURCE}"\nconnector = "http"\n'
        "[sources.close]\nmax_share = 0.9\n"
        + office.source_options("SOAK_TOKEN", page=200, extra="timeout = 2\n")
        + f'[[sources]]\nname = "{FILE_SOURCE}"\nconnector = "file"\n'
        "[sources.close]\nmax_share = 0.9\n"
        f'[sources.options]\npath = "{(folder / "backlog.csv").as_posix()}"\n'
    )
    return config


def inject_vendor_fault(rng: random.Random, office: FakeBackoffice, tally: Tally) -> None:
    kind = rng.choice(["429", "503", "drop", "truncate", "timeout", "none", "none"])
    if kind == "429":
        office.api.rate_limit_next(rng.randint(1, 3), wait=0.2, path="/tickets")
    elif kind == "503":
        office.api.fail_next(rng.randint(1, 2), status=503, path="/tickets")
    elif kind == "timeout":
        office.api.fail_next(1, kind="timeout", seconds=3, path="/tickets")
    elif kind != "none":
        office.api.fail_next(1, kind=kind, path="/tickets")  # type: ignore[arg-type]
    tally.vendor_faults[kind] += 1


def change_the_world(rng: random.Random, office: FakeBackoffice, client: Any, tally: Tally) -> None:
    """The source changes and operators complete some tasks."""
    open_ids = office.open_ids()
    for eid in rng.sample(open_ids, min(len(open_ids) // 50 + 1, len(open_ids))):
        office.tickets[eid] = "resolved"
        tally.resolved_in_source += 1
    for _ in range(rng.randint(0, 30)):
        office.add(1)
        tally.added += 1
    synced = {
        t.external_id
        for t in client.list_tasks(
            fields={SOURCE_FIELD: SOURCE}, status=TaskStatus.TODO, page_size=1000
        )
    }
    candidates = sorted(synced & set(office.open_ids()))
    chosen = rng.sample(candidates, min(rng.randint(0, 10), len(candidates)))
    if chosen:
        client.patch_tasks(
            [{"uid": str(task_uid(SOURCE, eid)), "status": "DONE"} for eid in chosen]
        )
        tally.completed.update(chosen)
    file_todo = sorted(
        t.external_id or ""
        for t in client.list_tasks(
            fields={SOURCE_FIELD: FILE_SOURCE}, status=TaskStatus.TODO, page_size=1000
        )
    )
    picked = rng.sample(file_todo, min(rng.randint(0, 5), len(file_todo)))
    if picked:
        client.patch_tasks(
            [{"uid": str(task_uid(FILE_SOURCE, eid)), "status": "DONE"} for eid in picked]
        )
        tally.file_completed.update(picked)


def run_syncs(
    command: list[str], env: dict[str, str], tally: Tally, kill_after: float | None, count: int = 1
) -> None:
    """``count`` concurrent runs of ``command`` (all on one state), SIGKILLed after
    ``kill_after`` seconds if still going; a run refused by the source's lease (exit 5)
    counts as ``busy``."""
    processes = [
        subprocess.Popen(command, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        for _ in range(count)
    ]
    until = None if kill_after is None else time.monotonic() + kill_after
    for process in processes:
        left = None if until is None else max(0.0, until - time.monotonic())
        try:
            out, err = process.communicate(timeout=left)
        except subprocess.TimeoutExpired:
            process.send_signal(signal.SIGKILL)
            process.communicate()
            tally.kills += 1
            tally.runs["killed"] += 1
            continue
        if b"Traceback" in err:
            print(err.decode(), file=sys.stderr)
            tally.runs["crashed"] += 1
        elif process.returncode == EXIT_BUSY:
            tally.runs["busy"] += 1
        else:
            tally.runs[json.loads(out).get("outcome", "?") if out.strip() else "?"] += 1


def converge(commands: list[list[str]], env: dict[str, str]) -> bool:
    """Clean runs of each command until one exits 0 (at most 10 each)."""
    for each in commands:
        for _ in range(10):
            done = subprocess.run(each, env=env, capture_output=True, timeout=600)
            if done.returncode == 0:
                break
        else:
            print(f"no clean run of {each[-2]} at the end", file=sys.stderr)
            return False
    return True


def source_problems(tasks: list[Any], office: FakeBackoffice, tally: Tally) -> list[str]:
    """What broke the guarantees for the back-office source."""
    by_id = Counter(t.external_id for t in tasks)
    done = {t.external_id for t in tasks if t.status == TaskStatus.DONE}
    resolved = {k for k, v in office.tickets.items() if v == "resolved"}
    problems = []
    duplicates = sum(n - 1 for n in by_id.values() if n > 1)
    if duplicates:
        problems.append(f"{duplicates} duplicate tasks")
    missing = set(office.open_ids()) - set(by_id)
    if missing:
        problems.append(f"{len(missing)} open records without a task")
    expected_done = (resolved & set(by_id)) | tally.completed
    if done != expected_done:
        problems.append(
            f"done tasks differ: {len(done - expected_done)} unexpected, "
            f"{len(expected_done - done)} missing"
        )
    wrong_effects = {k: n for k, n in office.effects.items() if n != 1 or k not in tally.completed}
    lost = tally.completed - set(office.effects)
    if wrong_effects:
        problems.append(f"write-back effects not exactly once / echoed: {len(wrong_effects)}")
    if lost:
        problems.append(f"{len(lost)} operator completions never written back")
    return problems


def file_problems(
    file_tasks: list[Any], row_status: dict[str, Any], appended: list[str], tally: Tally,
    folder: Path,
) -> list[str]:  # fmt: skip
    """What broke the guarantees for the file source appended to by another program."""
    problems = []
    lost_rows = [i for i in appended if i not in row_status]
    if lost_rows:
        problems.append(f"{len(lost_rows)} of {len(appended)} appended file rows lost")
    unmarked = [i for i in tally.file_completed if row_status.get(i) != "done"]
    if unmarked:
        problems.append(f"{len(unmarked)} file completions not marked done in the file")
    file_by_id = Counter(t.external_id for t in file_tasks)
    if any(n > 1 for n in file_by_id.values()):
        problems.append("duplicate tasks of the file source")
    if set(row_status) - set(file_by_id):
        problems.append(f"{len(set(row_status) - set(file_by_id))} file rows without a task")
    temporaries = list(folder.glob(".backlog.csv.*.tmp"))
    if temporaries:
        problems.append(f"{len(temporaries)} temporary files left next to the backlog")
    return problems


def soak(minutes: float, seed: int, records: int, faults: float, runners: int = 1) -> int:
    logging.getLogger("stamina").setLevel(logging.ERROR)  # retries are expected here
    rng = random.Random(seed)
    office = FakeBackoffice(records, token=TOKEN, prefix="S", digits=6, effect_delay=0.005)
    tally = Tally()
    folder = Path(tempfile.mkdtemp(prefix="fragment-soak-"))
    deadline = time.monotonic() + minutes * 60
    started = time.monotonic()
    backlog = write_sample(folder / "backlog.csv", 100)
    appended_log, stop_file = folder / "appended.log", folder / "appender.stop"
    appender = subprocess.Popen(
        [sys.executable, "-c", APPENDER, str(backlog), str(appended_log), str(stop_file)]
    )
    with (
        office.api,
        run_sandbox(faults=faults, seed=seed, fault_retry_after=0.05, in_thread=False) as sandbox,
    ):
        config = write_config(folder, sandbox.url, sandbox.token, office)
        base = [sys.executable, "-m", "fragment_core", "--config", str(config), "sync"]
        command = [*base, SOURCE, "--json"]
        file_command = [*base, FILE_SOURCE, "--json"]
        env = {**os.environ, "SOAK_TOKEN": TOKEN}
        client = sandbox.client(retry_attempts=20, retry_wait_initial=0.01, retry_wait_max=0.2)
        while time.monotonic() < deadline:
            change_the_world(rng, office, client, tally)
            inject_vendor_fault(rng, office, tally)
            run_syncs(command, env, tally, rng.uniform(1.0, 4.0) if rng.random() < 0.5 else None,
                      runners)  # fmt: skip
            run_syncs(file_command, env, tally,
                      rng.uniform(0.3, 1.5) if rng.random() < 0.3 else None)  # fmt: skip

        # converge: stop the appender, clean vendor, clean runs until ok
        stop_file.touch()
        appender.wait(timeout=60)
        office.api.reset()
        if not converge([command, file_command], env):
            return 1
        tasks = list(client.list_tasks(fields={SOURCE_FIELD: SOURCE}, page_size=1000))
        file_tasks = list(client.list_tasks(fields={SOURCE_FIELD: FILE_SOURCE}, page_size=1000))
        stats = sandbox.stats()
        client.close()

    _, rows = FileConnector(FileConfig(path=backlog), source=FILE_SOURCE).read_rows()
    row_status = {str(r["id"]): r.get("status") for r in rows}
    appended = appended_log.read_text().split()
    problems = source_problems(tasks, office, tally)
    problems += file_problems(file_tasks, row_status, appended, tally, folder)
    if tally.runs["crashed"]:
        problems.append(f"{tally.runs['crashed']} runs printed a traceback")
    by_id = Counter(t.external_id for t in tasks)
    summary = {
        "minutes": round((time.monotonic() - started) / 60, 2),
        "seed": seed,
        "runs": dict(tally.runs),
        "kills": tally.kills,
        "tasks_api_faults": stats.get("faults", {}),
        "tasks_api_requests": stats.get("requests"),
        "vendor_faults": dict(tally.vendor_faults),
        "tasks": len(tasks),
        "records_added": tally.added,
        "resolved_in_source": tally.resolved_in_source,
        "operator_completions": len(tally.completed),
        "write_back_calls": office.write_backs(),
        "write_back_effects": sum(office.effects.values()),
        "duplicates": sum(n - 1 for n in by_id.values() if n > 1),
        "file_rows_appended_by_another_program": len(appended),
        "file_rows": len(rows),
        "file_operator_completions": len(tally.file_completed),
        "problems": problems,
    }
    print(json.dumps(summary, indent=2))
    return 1 if problems else 0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--minutes", type=float, default=5.0, help="how long to loop")
    parser.add_argument("--seed", type=int, default=1, help="seed of every random choice")
    parser.add_argument("--records", type=int, default=2000, help="records at the start")
    parser.add_argument("--faults", type=float, default=0.2, help="Tasks API fault share")
    parser.add_argument(
        "--runners",
        type=int,
        default=1,
        help="concurrent `fragment sync` processes of the main source on one state each "
        "round (more than 1 exercises the per-source lease: the others exit busy)",
    )
    parser.add_argument(
        "--no-fuzz",
        action="store_true",
        help="skip the random Hypothesis search of the property tests after the soak",
    )
    args = parser.parse_args()
    if not 0 < args.minutes <= 24 * 60:
        parser.error("--minutes must be between 0 and 1440")
    if args.runners < 1:
        parser.error("--runners must be at least 1")
    code = soak(args.minutes, args.seed, args.records, args.faults, args.runners)
    if not args.no_fuzz:
        code = max(code, fuzz())
    sys.exit(code)


#: The property tests whose random search the soak runs (CI runs them derandomized).
FUZZ_TESTS = (
    "tests/test_fuzz_records.py",
    "tests/test_fuzz_config.py",
    "tests/test_fuzz_cli.py",
    "tests/test_plan_properties.py",
)


def fuzz() -> int:
    """The property tests with a fresh random search (the ``soak`` Hypothesis profile):
    CI draws the same examples every time, so new ones are found here (and locally)."""
    root = Path(__file__).resolve().parents[1]
    env = {k: v for k, v in os.environ.items() if k != "CI"}
    env["HYPOTHESIS_PROFILE"] = "soak"
    done = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", *FUZZ_TESTS],
        cwd=root,
        env=env,
    )
    print(json.dumps({"fuzz": "passed" if done.returncode == 0 else "FAILED"}))
    return 0 if done.returncode == 0 else 1


if __name__ == "__main__":
    main()
