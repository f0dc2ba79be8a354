"""``archlab app [--storage URL | RUNS_DIR] [--host 127.0.0.1] [--port 8501]``: the Streamlit dashboard.

The app reads the storage (read-only) and imports no torch. ``RUNS_DIR`` may be a runs directory
(every ``*/study.db`` is offered), one run directory or a study file; without either the app
looks in ``./runs``.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path
from typing import Any

from archlab.spaces.errors import ArchlabError

ENV_TARGET = "ARCHLAB_APP_TARGET"  # same name as archlab.app.sources.ENV_TARGET


def streamlit_command(target: str, host: str, port: int) -> list[str]:
    """The ``streamlit run`` command line of the dashboard (headless, no usage statistics), run by
    ``archlab.app.serve`` (Streamlit's command line plus a warm-up as the server starts)."""
    import archlab.app

    main = Path(archlab.app.__file__).resolve().parent / "main.py"
    return [
        sys.executable, "-m", "archlab.app.serve", "run", str(main),
        "--server.headless", "true",
        "--server.address", host,
        "--server.port", str(port),
        "--server.fileWatcherType", "none",
        "--server.runOnSave", "false",
        "--browser.gatherUsageStats", "false",
        "--global.developmentMode", "false",
        "--client.toolbarMode", "minimal",
        "--theme.base", "light",
        "--theme.primaryColor", "#d62728",
    ]  # fmt: skip


def resolve_target(storage: str | None, runs_dir: str | None) -> str:
    """The storage URL, or an absolute path to a runs/run directory or study file."""
    if storage and runs_dir:
        raise ArchlabError("give either --storage URL or RUNS_DIR, not both")
    text = storage or runs_dir or "runs"
    if "://" in text:
        return text
    path = Path(text).expanduser()
    if not path.exists():
        raise ArchlabError(f"{text}: no such runs directory, run directory or study file "
                           "(pass --storage URL for a database server)")
    if path.is_dir() and not (path / "study.db").is_file() and not any(path.glob("*/study.db")):
        raise ArchlabError(f"{text}: no study.db in it or in any of its subdirectories (runs/<name>/study.db)")
    return str(path.resolve())


def cmd_app(args: argparse.Namespace) -> int:
    target = resolve_target(args.storage, args.runs_dir)
    if not 0 < args.port < 65536:
        raise ArchlabError(f"--port {args.port}: allowed 1..65535")
    cmd = streamlit_command(target, args.host, args.port)
    if args.print_command:
        print(f"{ENV_TARGET}={target} " + " ".join(cmd))
        return 0
    env = {**os.environ, ENV_TARGET: target, "STREAMLIT_BROWSER_GATHER_USAGE_STATS": "false"}
    print(f"archlab app: http://{args.host}:{args.port}  (storage: {target})", file=sys.stderr, flush=True)
    os.execve(sys.executable, cmd, env)  # replaces this process: signals reach Streamlit directly
    return 0  # pragma: no cover


def register(sub: Any) -> None:
    p = sub.add_parser("app", help="the web dashboard over study storages (Streamlit, read-only)")
    p.add_argument("runs_dir", nargs="?", metavar="RUNS_DIR", default=None,
                   help="runs directory (every */study.db), a run directory or a study file (default ./runs)")
    p.add_argument("--storage", metavar="URL", default=None, help="Optuna storage URL (sqlite:///..., postgresql+psycopg2://...)")
    p.add_argument("--host", default="127.0.0.1", help="address to listen on (default 127.0.0.1)")
    p.add_argument("--port", type=int, default=8501, help="port (default 8501)")
    p.add_argument("--print-command", action="store_true", help=argparse.SUPPRESS)
    p.set_defaults(func=cmd_app)
