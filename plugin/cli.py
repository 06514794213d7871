"""The ``convrec`` command line: ingest, suggest, demo, train, evaluate, serve.

Only argparse is imported up front, so ``convrec --help`` answers at once; each command
imports what it needs when it runs.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

Handler = Callable[[argparse.Namespace], int]
_COMMANDS: dict[str, Handler] = {}


def command(name: str) -> Callable[[Handler], Handler]:
    def register(fn: Handler) -> Handler:
        _COMMANDS[name] = fn
        return fn

    return register


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="convrec",
        description="Surface the right help article or product from a chat, or stay silent.",
    )
    parser.add_argument(
        "--workspace",
        type=Path,
        default=None,
        help="workspace folder (default: $CONVREC_WORKSPACE or ./.convrec)",
    )
    parser.add_argument("--tenant", default=None, help="tenant of the items and users")
    # The same options after the command name (`convrec demo --workspace W`) too.
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument(
        "--workspace",
        type=Path,
        default=argparse.SUPPRESS,
        help="workspace folder (default: $CONVREC_WORKSPACE or ./.convrec)",
    )
    common.add_argument("--tenant", default=argparse.SUPPRESS, help="tenant of the items and users")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")

    p = sub.add_parser("ingest", parents=[common], help="load articles and products into the index")
    p.add_argument(
        "paths",
        nargs="+",
        type=Path,
        help="JSONL or CSV item files, Markdown/HTML files, or folders of them",
    )
    p.add_argument(
        "--skip-invalid",
        action="store_true",
        help="write the valid records and list the rejected ones",
    )
    p.add_argument(
        "--no-prune", action="store_true", help="keep items that a re-read path no longer holds"
    )

    p = sub.add_parser("suggest", parents=[common], help="suggest items for a chat transcript")
    p.add_argument(
        "--transcript",
        "-t",
        required=True,
        help="JSON messages or 'User: ... / Assistant: ...' text; '-' for stdin",
    )
    p.add_argument("-k", type=int, default=None, help="at most this many suggestions")
    p.add_argument("--kinds", default=None, help="comma-separated: article,product")
    p.add_argument("--user", default=None, help="user id (reads and writes history)")
    p.add_argument("--conversation", default=None, help="conversation id")
    p.add_argument("--in-stock", action="store_true", help="products in stock only")
    p.add_argument("--price-max", type=float, default=None)
    p.add_argument("--category", default=None)
    p.add_argument("--format", choices=("table", "json"), default="table")

    p = sub.add_parser(
        "demo", parents=[common], help="ingest the example store and replay its support chats"
    )
    p.add_argument(
        "--keep", action="store_true", help="keep the demo workspace (default: a temporary folder)"
    )
    p.add_argument("--conversation", default=None, help="replay only this conversation id")

    p = sub.add_parser(
        "serve", parents=[common], help="serve the suggest_content tool over MCP or HTTP"
    )
    p.add_argument("protocol", choices=("mcp", "http"))
    p.add_argument(
        "--transport",
        choices=("stdio", "streamable-http"),
        default="stdio",
        help="MCP transport (default: stdio)",
    )
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=8000)
    p.add_argument(
        "--user",
        default=None,
        help="user id the host injects into every call (MCP; HTTP takes a header)",
    )

    p = sub.add_parser(
        "import-events", parents=[common], help="import a behaviour events file into history"
    )
    p.add_argument("path", type=Path)
    p.add_argument("--skip-invalid", action="store_true")

    p = sub.add_parser("history", parents=[common], help="print what is stored about a user (JSON)")
    p.add_argument("user")

    p = sub.add_parser("forget", parents=[common], help="remove everything stored about a user")
    p.add_argument("user")

    sub.add_parser(
        "gate",
        parents=[common],
        help="print the surfacing gate in force and where it comes from (JSON)",
    )

    p = sub.add_parser(
        "calibrate",
        parents=[common],
        help="fit the surfacing gate on labelled decisions and save it in the workspace",
    )
    p.add_argument(
        "--labels",
        type=Path,
        default=None,
        help='JSONL of {"score" or "relevance", "label", "text"?} (default: the decisions '
        "logged in the workspace's history, labelled by clicks, reads and purchases)",
    )
    group = p.add_mutually_exclusive_group()
    group.add_argument("--threshold", type=float, default=None, help="keep this threshold")
    group.add_argument(
        "--precision", type=float, default=None, help="lowest threshold reaching this precision"
    )
    p.add_argument(
        "--no-intent",
        dest="intent",
        action="store_false",
        help="fit the similarity curve only, not the weights over the last user turn",
    )
    p.add_argument("--dry-run", action="store_true", help="report, but do not save gate.json")

    p = sub.add_parser(
        "adapt-encoder",
        parents=[common],
        help="fine-tune the encoder on the indexed items' own texts (then re-ingest and "
        "calibrate with it)",
    )
    p.add_argument(
        "--out", type=Path, default=None, help="new folder (default: WORKSPACE/encoders/kb-HASH)"
    )
    p.add_argument("--epochs", type=int, default=3)
    p.add_argument(
        "--no-logs",
        dest="logs",
        action="store_false",
        help="the items' own texts only, not what users said before clicking a suggestion",
    )

    p = sub.add_parser(
        "train",
        parents=[common],
        help="train the sequence model (on files, or on the workspace's history and items)",
    )
    p.add_argument("--items", type=Path, default=None, help="items file (JSONL)")
    p.add_argument("--events", type=Path, default=None, help="events file (JSONL)")
    p.add_argument("--out", type=Path, default=None, help="model folder (default: workspace)")
    p.add_argument("--epochs", type=int, default=None, help="most epochs (default 100)")
    p.add_argument(
        "--max-minutes",
        type=float,
        default=None,
        help="wall-clock budget; the learning rate anneals to 0 by then (default: none)",
    )
    p.add_argument("--seed", type=int, default=None)
    p.add_argument(
        "--all",
        dest="use_all",
        action="store_true",
        help="train on every event (production); by default each user's last "
        "event is held out for evaluate and the one before for validation",
    )

    p = sub.add_parser(
        "evaluate", parents=[common], help="leave-one-out evaluation of a trained model"
    )
    p.add_argument("--items", type=Path, required=True)
    p.add_argument("--events", type=Path, required=True)
    p.add_argument("--model", type=Path, required=True)
    p.add_argument("-k", type=int, default=10)
    p.add_argument("--json", action="store_true", help="print one JSON object")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not args.command:
        parser.print_help()
        return 0
    try:
        return _COMMANDS[args.command](args)
    except KeyboardInterrupt:
        return 130
    except CliError as exc:
        print(f"convrec {args.command}: {exc}", file=sys.stderr)
        return 2
    except Exception as exc:  # errors users can act on, without a traceback
        from convrec.events import EventFileError
        from convrec.knowledge.loaders import ItemLoadError

        if isinstance(
            exc, ItemLoadError | EventFileError | FileNotFoundError | FileExistsError | ValueError
        ):
            print(f"convrec {args.command}: {exc}", file=sys.stderr)
            return 2
        raise


class CliError(Exception):
    """A problem with the command's input, reported without a traceback."""


def _recommender(args: argparse.Namespace, workspace: Path | None = None):
    from convrec.recommender import Recommender
    from convrec.settings import Settings

    settings = Settings()
    update: dict[str, Any] = {}
    if workspace or args.workspace:
        update["workspace"] = workspace or args.workspace
    if args.tenant:
        update["tenant"] = args.tenant
    return Recommender(settings.model_copy(update=update))


# -- ingest ----------------------------------------------------------------------------------
@command("ingest")
def _ingest(args: argparse.Namespace) -> int:
    from tqdm import tqdm

    rec = _recommender(args)
    bar: tqdm | None = None

    def progress(advance: int, total: int) -> None:
        nonlocal bar
        if bar is None:  # a bar only for long ingests
            bar = tqdm(
                total=total, unit="item", desc="ingest", file=sys.stderr, disable=total < 200
            )
        bar.update(advance)

    try:
        report = rec.ingest(
            args.paths, skip_invalid=args.skip_invalid, prune=not args.no_prune, progress=progress
        )
    finally:
        if bar is not None:
            bar.close()
    print(report.summary())
    rejected = getattr(report, "rejected", [])
    if rejected:
        print(f"{len(rejected)} record(s) rejected:", file=sys.stderr)
        for issue in rejected:
            print(f"  {issue}", file=sys.stderr)
    return 0


# -- suggest ---------------------------------------------------------------------------------
def read_transcript(source: str) -> Any:
    """A transcript from a file or stdin: JSON (a list of messages, or {"messages": [...]})
    or plain text."""
    if source == "-":
        text = sys.stdin.read()
    else:
        path = Path(source)
        if not path.is_file():
            raise CliError(f"no such transcript file: {source}")
        text = path.read_text(encoding="utf-8")
    stripped = text.lstrip()
    if stripped.startswith(("[", "{")):
        try:
            data = json.loads(text)
        except json.JSONDecodeError as exc:
            raise CliError(f"{source}:{exc.lineno}: invalid JSON: {exc.msg}") from exc
        if isinstance(data, dict):
            data = data.get("messages", data.get("conversation"))
        if not isinstance(data, list):
            raise CliError(f"{source}: expected a list of messages or {{'messages': [...]}}")
        return data
    return text


@command("suggest")
def _suggest(args: argparse.Namespace) -> int:
    from pydantic import ValidationError

    from convrec.types import parse_transcript

    try:
        messages = parse_transcript(read_transcript(args.transcript))
    except ValidationError as exc:
        raise CliError(f"{args.transcript}: {exc}") from exc
    filters: dict[str, Any] = {}
    if args.in_stock:
        filters["in_stock"] = True
    if args.price_max is not None:
        filters["price_max"] = args.price_max
    if args.category:
        filters["category"] = args.category
    kinds = [k.strip() for k in args.kinds.split(",")] if args.kinds else None
    rec = _recommender(args)
    result = rec.suggest(
        messages,
        user_id=args.user,
        k=args.k,
        kinds=kinds,
        filters=filters,
        conversation_id=args.conversation,
    )
    if args.format == "json":
        print(result.model_dump_json(indent=2))
    else:
        print(format_result(result))
    return 0


def format_result(result: Any, indent: str = "") -> str:
    """A SuggestionResult as readable lines."""
    if not result.surfaced:
        return f"{indent}(silent) {result.note}"
    lines = []
    for n, s in enumerate(result.suggestions, start=1):
        lines.append(f"{indent}{n}. [{s.kind}] {s.title}  (relevance {s.score:.2f})")
        if s.url:
            lines.append(f"{indent}   {s.url}")
        lines.append(f"{indent}   why: {s.reason}")
    return "\n".join(lines)


# -- demo ------------------------------------------------------------------------------------
@command("demo")
def _demo(args: argparse.Namespace) -> int:
    from convrec.demo import run_demo

    return run_demo(workspace=args.workspace, keep=args.keep, only=args.conversation)


# -- serve -----------------------------------------------------------------------------------
@command("serve")
def _serve(args: argparse.Namespace) -> int:
    rec = _recommender(args)
    if args.protocol == "mcp":
        from convrec.adapters.mcp import run_server

        run_server(rec, transport=args.transport, host=args.host, port=args.port, user_id=args.user)
    else:
        from convrec.adapters.http import run_server

        run_server(rec, host=args.host, port=args.port)
    return 0


# -- history ---------------------------------------------------------------------------------
@command("import-events")
def _import_events(args: argparse.Namespace) -> int:
    report = _recommender(args).import_events(args.path, skip_invalid=args.skip_invalid)
    print(report.model_dump_json(indent=2))
    return 0


@command("history")
def _history(args: argparse.Namespace) -> int:
    print(_recommender(args).history(args.user).model_dump_json(indent=2))
    return 0


@command("forget")
def _forget(args: argparse.Namespace) -> int:
    print(f"removed {_recommender(args).forget_user(args.user)} row(s) about {args.user}")
    return 0


@command("gate")
def _gate(args: argparse.Namespace) -> int:
    print(_recommender(args).gate_in_force().model_dump_json(indent=2))
    return 0


@command("calibrate")
def _calibrate(args: argparse.Namespace) -> int:
    from convrec.pipeline.gate import read_decisions_jsonl

    rec = _recommender(args)
    decisions = read_decisions_jsonl(args.labels) if args.labels else None
    report = rec.calibrate_gate(  # a ValueError is reported by main(), exit status 2
        decisions,
        threshold=args.threshold,
        precision=args.precision,
        intent=args.intent,
        save=not args.dry_run,
    )
    print(report.model_dump_json(indent=2, exclude={"gate": {"intent"}}))
    return 0


@command("adapt-encoder")
def _adapt_encoder(args: argparse.Namespace) -> int:
    from convrec.knowledge.adapt import AdaptConfig

    rec = _recommender(args)
    report = rec.adapt_encoder(args.out, config=AdaptConfig(epochs=args.epochs), logs=args.logs)
    print(report.model_dump_json(indent=2))
    print(
        f"To use it: CONVREC_ENCODER_MODEL={report.out_dir} convrec ingest ... (every item is "
        "encoded again). The similarity scale moves: the gate anchors itself on the new "
        "encoder (convrec gate shows it) until convrec calibrate fits it on your logs.",
        file=sys.stderr,
    )
    return 0


# -- train / evaluate ------------------------------------------------------------------------
@command("train")
def _train(args: argparse.Namespace) -> int:
    from convrec import training

    if (args.items is None) != (args.events is None):
        raise CliError(
            "give both --items and --events, or neither (to train on the workspace's history)"
        )
    rec = _recommender(args)
    if args.max_minutes is not None and args.max_minutes <= 0:
        raise CliError(f"--max-minutes must be positive, got {args.max_minutes}")
    max_seconds = None if args.max_minutes is None else args.max_minutes * 60
    overrides = {
        k: v
        for k, v in (("epochs", args.epochs), ("seed", args.seed), ("max_seconds", max_seconds))
        if v is not None
    }
    train_config = None
    if overrides:
        from convrec.model import TrainConfig

        train_config = TrainConfig(**overrides)
    if args.items is None:
        report = rec.train(use_all=args.use_all, train_config=train_config)
    else:
        out = args.out or rec.settings.resolved_model_dir
        report = training.train_from_files(
            args.items, args.events, out, train_config=train_config, use_all=args.use_all
        )
    print(
        f"trained on {report.n_users} users, {report.n_events} events, "
        f"{report.n_items} items in {report.seconds:.1f}s "
        f"(best epoch {report.best_epoch} of {report.epochs_run}); "
        f"validation {report.valid or 'not held out (--all)'}; saved to {report.out_dir}"
    )
    return 0


@command("evaluate")
def _evaluate(args: argparse.Namespace) -> int:
    from convrec import training

    metrics = training.evaluate_from_files(args.items, args.events, args.model, k=args.k)
    if args.json:
        print(json.dumps(metrics))
    else:
        for key, value in metrics.items():
            print(f"{key:>10}  {value}")
    return 0


if __name__ == "__main__":  # pragma: no cover
    raise SystemExit(main())
