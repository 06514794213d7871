"""Read items from files: JSON Lines, CSV, and folders of Markdown or HTML articles.

Every problem is reported as ``FILE:LINE: field 'x': message`` (Markdown and HTML files are one
item each, so their line is the file's first). By default a file with any bad record yields
nothing; ``skip_invalid=True`` keeps the valid records and lists the rejected ones.
"""

from __future__ import annotations

import csv
import json
import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from html.parser import HTMLParser
from pathlib import Path
from typing import Any

import yaml
from pydantic import ValidationError

from convrec.knowledge.items import Article, Product, parse_item

ITEM_FILE_SUFFIXES = {".jsonl", ".ndjson", ".csv"}
ARTICLE_FILE_SUFFIXES = {".md", ".markdown", ".html", ".htm"}


@dataclass(frozen=True)
class LoadIssue:
    """One rejected record: where it is and what is wrong with it."""

    file: str
    line: int
    field: str | None
    message: str

    def __str__(self) -> str:
        where = f"{self.file}:{self.line}"
        what = f"field '{self.field}': " if self.field else ""
        return f"{where}: {what}{self.message}"


class ItemLoadError(ValueError):
    """Raised when input files hold invalid records; lists every problem found."""

    def __init__(self, issues: list[LoadIssue]):
        self.issues = issues
        shown = "\n".join(f"  {issue}" for issue in issues[:20])
        more = f"\n  ... and {len(issues) - 20} more" if len(issues) > 20 else ""
        super().__init__(f"{len(issues)} invalid item record(s):\n{shown}{more}")


@dataclass
class LoadResult:
    """Items read, where each came from, and the records rejected (with skip_invalid)."""

    items: list[Article | Product] = field(default_factory=list)
    #: item id -> the path it was loaded through (the file or folder given), so a re-ingest of
    #: that path can remove items that are no longer there.
    sources: dict[str, str] = field(default_factory=dict)
    rejected: list[LoadIssue] = field(default_factory=list)


def load_items(
    paths: str | Path | Iterable[str | Path],
    *,
    tenant: str | None = None,
    skip_invalid: bool = False,
) -> LoadResult:
    """Load items from files and folders.

    A folder is walked for ``.jsonl``, ``.csv``, ``.md`` and ``.html`` files. ``tenant``, when
    given, fills the tenant of records that do not name one. Duplicate ids within one load are
    an error. Raises ``ItemLoadError`` on any bad record unless ``skip_invalid``.
    """
    if isinstance(paths, str | Path):
        paths = [paths]
    result = LoadResult()
    issues: list[LoadIssue] = []
    first_seen: dict[str, tuple[str, int]] = {}
    for root, file in _expand(paths, issues):
        for line, record, error in _records(file):
            if error is not None:
                issues.append(error)
                continue
            if tenant is not None and not record.get("tenant"):
                record["tenant"] = tenant
            item = _validate(record, str(file), line, issues)
            if item is None:
                continue
            if item.id in first_seen:
                other_file, other_line = first_seen[item.id]
                issues.append(LoadIssue(str(file), line, "id",
                    f"duplicate id {item.id!r} (first at {other_file}:{other_line})"))
                continue
            first_seen[item.id] = (str(file), line)
            result.items.append(item)
            result.sources[item.id] = root
    if issues and not skip_invalid:
        raise ItemLoadError(issues)
    result.rejected = issues
    return result


def _expand(paths: Iterable[str | Path], issues: list[LoadIssue]) -> Iterator[tuple[str, Path]]:
    for raw in paths:
        path = Path(raw)
        root = str(path.resolve())
        if path.is_dir():
            for child in sorted(path.rglob("*")):
                if child.is_file() and child.suffix.lower() in (
                    ITEM_FILE_SUFFIXES | ARTICLE_FILE_SUFFIXES
                ) and not child.name.lower().startswith("readme"):
                    yield root, child
        elif path.is_file():
            if path.suffix.lower() in ITEM_FILE_SUFFIXES | ARTICLE_FILE_SUFFIXES:
                yield root, path
            else:
                issues.append(LoadIssue(str(path), 0, None,
                    "unsupported file type (use .jsonl, .csv, .md or .html)"))
        else:
            issues.append(LoadIssue(str(path), 0, None, "no such file or folder"))


Record = tuple[int, dict[str, Any], LoadIssue | None]


def _records(file: Path) -> Iterator[Record]:
    suffix = file.suffix.lower()
    try:
        if suffix in {".jsonl", ".ndjson"}:
            yield from _jsonl_records(file)
        elif suffix == ".csv":
            yield from _csv_records(file)
        else:
            yield _document_record(file)
    except UnicodeDecodeError as exc:
        yield 0, {}, LoadIssue(str(file), 0, None, f"not UTF-8 text ({exc.reason})")


def _jsonl_records(file: Path) -> Iterator[Record]:
    with file.open(encoding="utf-8") as handle:
        for number, text in enumerate(handle, start=1):
            if not text.strip():
                continue
            try:
                record = json.loads(text)
            except json.JSONDecodeError as exc:
                yield number, {}, LoadIssue(str(file), number, None, f"invalid JSON: {exc.msg}")
                continue
            if not isinstance(record, dict):
                yield number, {}, LoadIssue(str(file), number, None, "expected a JSON object")
                continue
            yield number, record, None


#: CSV cells that hold lists or objects.
_CSV_LIST_FIELDS = {"tags"}
_CSV_OBJECT_FIELDS = {"attributes", "metadata"}


def _csv_records(file: Path) -> Iterator[Record]:
    with file.open(encoding="utf-8", newline="") as handle:
        reader = csv.DictReader(handle)
        if not reader.fieldnames:
            return
        line = 1
        for row in reader:
            number = line + 1
            line = reader.line_num
            record: dict[str, Any] = {}
            problem: LoadIssue | None = None
            for key, value in row.items():
                if key is None:
                    problem = LoadIssue(str(file), number, None, "more cells than header columns")
                    break
                key = key.strip()
                if value is None or value.strip() == "":
                    continue
                value = value.strip()
                if key.startswith(("attributes.", "metadata.")):
                    section, name = key.split(".", 1)
                    record.setdefault(section, {})[name] = _csv_scalar(value)
                elif key in _CSV_OBJECT_FIELDS:
                    try:
                        record[key] = json.loads(value)
                    except json.JSONDecodeError as exc:
                        problem = LoadIssue(str(file), number, key, f"invalid JSON: {exc.msg}")
                        break
                elif key in _CSV_LIST_FIELDS:
                    record[key] = value
                else:
                    record[key] = value
            yield number, record, problem


def _csv_scalar(value: str) -> str | int | float | bool:
    lowered = value.lower()
    if lowered in {"true", "false"}:
        return lowered == "true"
    for cast in (int, float):
        try:
            return cast(value)
        except ValueError:
            pass
    return value


_FRONT_MATTER = re.compile(r"\A---\s*\n(.*?)\n---\s*(?:\n|\Z)", re.DOTALL)


def _document_record(file: Path) -> Record:
    """One article from a Markdown or HTML file with optional YAML front matter."""
    text = file.read_text(encoding="utf-8")
    meta: dict[str, Any] = {}
    match = _FRONT_MATTER.match(text)
    if match:
        try:
            loaded = yaml.safe_load(match.group(1)) or {}
        except yaml.YAMLError as exc:
            mark = getattr(exc, "problem_mark", None)
            line = mark.line + 2 if mark is not None else 1
            return line, {}, LoadIssue(str(file), line, None, f"invalid front matter: {exc}")
        if not isinstance(loaded, dict):
            return 1, {}, LoadIssue(str(file), 1, None, "front matter is not a mapping")
        meta = loaded
        text = text[match.end():]
    record: dict[str, Any] = {"kind": "article", "id": file.stem.lower().replace(" ", "-")}
    if file.suffix.lower() in {".html", ".htm"}:
        page = _HtmlText.parse(text)
        if page.title:
            record["title"] = page.title
        record["body"] = page.text
    else:
        record["body"] = text.strip()
        heading = re.search(r"^#\s+(.+)$", text, re.MULTILINE)
        if heading:
            record["title"] = heading.group(1).strip()
    record.update({k: v for k, v in meta.items() if v is not None})
    for key in ("id", "title", "url", "section", "locale"):
        if key in record and not isinstance(record[key], str):
            record[key] = str(record[key])
    return 1, record, None


class _HtmlText(HTMLParser):
    """Visible text and title of an HTML page (scripts and styles dropped)."""

    def __init__(self) -> None:
        super().__init__()
        self.title = ""
        self._chunks: list[str] = []
        self._skip = 0
        self._in_title = False
        self._h1 = ""
        self._in_h1 = False

    @classmethod
    def parse(cls, html: str) -> _HtmlText:
        parser = cls()
        parser.feed(html)
        if not parser.title:
            parser.title = parser._h1.strip()
        return parser

    @property
    def text(self) -> str:
        return re.sub(r"\n\s*\n+", "\n\n", "".join(self._chunks)).strip()

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag in {"script", "style"}:
            self._skip += 1
        elif tag == "title":
            self._in_title = True
        elif tag == "h1":
            self._in_h1 = True
        if tag in {"p", "br", "li", "h1", "h2", "h3", "h4", "div", "tr"}:
            self._chunks.append("\n")

    def handle_endtag(self, tag: str) -> None:
        if tag in {"script", "style"}:
            self._skip = max(0, self._skip - 1)
        elif tag == "title":
            self._in_title = False
        elif tag == "h1":
            self._in_h1 = False

    def handle_data(self, data: str) -> None:
        if self._skip:
            return
        if self._in_title:
            self.title += data.strip()
            return
        if self._in_h1:
            self._h1 += data
        self._chunks.append(data)


def _validate(record: dict[str, Any], file: str, line: int, issues: list[LoadIssue]):
    record.setdefault("kind", "product" if "price" in record or "description" in record
                      else "article")
    try:
        return parse_item(record)
    except ValidationError as exc:
        for error in exc.errors():
            loc = [str(part) for part in error["loc"] if part not in ("article", "product")]
            if error["type"] in ("union_tag_invalid", "union_tag_not_found"):
                loc = ["kind"]
            issues.append(LoadIssue(file, line, ".".join(loc) or None, error["msg"]))
        return None
