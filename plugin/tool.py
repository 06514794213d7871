"""The framework-neutral tool contract: ``suggest_content`` and ``record_feedback``.

Every adapter (LangChain, OpenAI tools, MCP, HTTP, LlamaIndex) only translates this contract:
a name, a description written for an LLM, a pydantic input model whose JSON schema is
strict-mode compatible, a pydantic output model, and ``call(args) -> output | ToolError``::

    suggest, feedback = contract_tools(rec, ToolContext(user_id="u1", conversation_id="c9"))
    out = suggest.call({"conversation": "User: my parcel is late", "k": 3})
    if isinstance(out, ToolError): ...

Who the user is (``user_id``), whose data it is (``tenant``) and which chat this is
(``conversation_id``) come from the host application through a ``ToolContext``. They are not
tool arguments, so a model can never act as another user or reach another tenant's items; a
call that tries is refused with a structured error.

``call`` never raises for bad input and never lets a traceback reach the model: wrong types,
out-of-range values, unknown fields, oversized conversations, unknown items and failures of
the engine all come back as a ``ToolError`` with a code, a message and per-field details.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any, ClassVar, Generic, Literal, TypeVar

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from convrec.knowledge.items import ItemKind
from convrec.types import Event, EventType, Suggestion

if TYPE_CHECKING:
    from convrec.recommender import Recommender

__all__ = [
    "FEEDBACK_DESCRIPTION",
    "FEEDBACK_TOOL_NAME",
    "SUGGEST_DESCRIPTION",
    "SUGGEST_TOOL_NAME",
    "ChatMessage",
    "ContractTool",
    "FeedbackInput",
    "FeedbackOutput",
    "FieldIssue",
    "Limits",
    "RecordFeedbackTool",
    "SuggestContentTool",
    "SuggestFilters",
    "SuggestInput",
    "SuggestOutput",
    "ToolContext",
    "ToolError",
    "contract_tools",
    "strict_schema",
    "warm_up",
]

logger = logging.getLogger(__name__)

SUGGEST_TOOL_NAME = "suggest_content"
FEEDBACK_TOOL_NAME = "record_feedback"

SUGGEST_DESCRIPTION = (
    "Find help-centre articles and products that fit the live support conversation. Call it "
    "proactively after each user turn that shows a need (a problem, a question, a product "
    "they want), without waiting to be asked. Pass the conversation so far: a list of "
    "{role, content} messages (oldest first) or a plain-text transcript. It returns up to k "
    "suggestions (default 3, at most 10), each with id, kind, title, url, a snippet, a "
    "one-line reason and a relevance score, plus 'surfaced' and a one-line 'note'. When "
    "'surfaced' is false the list is empty: nothing is relevant enough, so do not mention "
    "suggestions to the user. When it is true, offer the best one or two naturally with "
    "their links. Optional: 'kinds' (article, product), 'filters' on products (in_stock, "
    "price_min, price_max, category, tags_any, locale) and 'exclude_ids'. At most 50 messages "
    "or 20,000 characters. The user and store are set by the application, not by you."
)

FEEDBACK_DESCRIPTION = (
    "Record what the user did with a suggestion from suggest_content, so later suggestions "
    "improve: 'clicked' (opened it), 'dismissed' (said it does not help; it will not be "
    "suggested to them again), 'purchased', 'helpful' or 'not_helpful' (their verdict on an "
    "article). Pass the item 'id' from suggest_content as item_id. Call it once per action; "
    "it returns whether the event was recorded. The user is set by the application."
)


# --------------------------------------------------------------------------------------------
# Strict-mode JSON schemas
# --------------------------------------------------------------------------------------------


def strict_schema(model: type[BaseModel]) -> dict[str, Any]:
    """The model's JSON schema for strict function calling, self-contained.

    OpenAI's strict mode (and other strict validators) accept an object only when every
    property is listed in ``required`` and ``additionalProperties`` is false, so optional
    arguments are typed ``T | None`` and a model sends ``null`` for them (Python callers may
    still omit them). ``$ref``s are inlined for frameworks that read one property at a time
    (MCP per-argument schemas, LlamaIndex); titles and defaults are dropped.
    """
    schema = model.model_json_schema()
    defs = schema.pop("$defs", {})

    def strict(node: Any) -> Any:
        if isinstance(node, list):
            return [strict(v) for v in node]
        if not isinstance(node, dict):
            return node
        ref = node.get("$ref")
        if isinstance(ref, str) and ref.startswith("#/$defs/"):
            extra = {k: v for k, v in node.items() if k != "$ref"}
            return strict({**defs[ref.removeprefix("#/$defs/")], **extra})
        out = {k: strict(v) for k, v in node.items() if k not in ("title", "default")}
        if isinstance(node.get("properties"), dict):
            out["properties"] = {name: strict(prop) for name, prop in node["properties"].items()}
            out["required"] = list(node["properties"])
            out["additionalProperties"] = False
        return out

    return strict(schema)


# --------------------------------------------------------------------------------------------
# Inputs and outputs
# --------------------------------------------------------------------------------------------


class ChatMessage(BaseModel):
    """One turn of the conversation as the model passes it."""

    model_config = ConfigDict(extra="forbid")

    role: Literal["user", "assistant", "system", "tool"] = Field(
        description="Who spoke: user (the customer), assistant (you or a human agent), "
                    "system or tool.")
    content: str = Field(description="What was said.")

    @field_validator("role", mode="before")
    @classmethod
    def _lower(cls, value: object) -> object:
        return value.strip().lower() if isinstance(value, str) else value


class SuggestFilters(BaseModel):
    """Metadata conditions on candidates. The tenant is not here: the host sets it."""

    model_config = ConfigDict(extra="forbid")

    in_stock: bool | None = Field(default=None, description="Products in stock only (true).")
    price_min: float | None = Field(default=None, ge=0, description="Lowest product price.")
    price_max: float | None = Field(default=None, ge=0, description="Highest product price.")
    category: str | None = Field(default=None, description="Product category, exact match.")
    tags_any: list[str] | None = Field(default=None,
                                       description="Items with at least one of these tags.")
    locale: str | None = Field(default=None, description="Article language, e.g. 'en'.")


class SuggestInput(BaseModel):
    """Arguments of suggest_content."""

    model_config = ConfigDict(extra="forbid", title=SUGGEST_TOOL_NAME)

    conversation: list[ChatMessage] | str = Field(
        description="The conversation so far, oldest first: a list of {role, content} "
                    "messages, or a plain-text transcript with 'User:' / 'Assistant:' lines.")
    k: int | None = Field(default=None, ge=1, le=10,
                          description="At most this many suggestions, 1 to 10 (null: 3).")
    kinds: list[ItemKind] | None = Field(
        default=None, description="Only these kinds: article, product (null: both).")
    filters: SuggestFilters | None = Field(default=None,
                                           description="Conditions on items (null: none).")
    exclude_ids: list[str] | None = Field(
        default=None, description="Item ids not to suggest, e.g. ones already offered.")


class SuggestOutput(BaseModel):
    """What suggest_content answers."""

    suggestions: list[Suggestion] = Field(
        default_factory=list, description="Best first; empty when not surfaced.")
    surfaced: bool = Field(description="False: stay silent about suggestions.")
    note: str = Field(description="One line on why these items, or why none.")

    def as_text(self) -> str:
        """Short text for a model: one line per suggestion with its id and URL."""
        if not self.surfaced or not self.suggestions:
            return f"No suggestions; do not mention any to the user. ({self.note})"
        lines = [f"{len(self.suggestions)} suggestion(s), best first:"]
        for n, s in enumerate(self.suggestions, start=1):
            where = f" {s.url}" if s.url else ""
            lines.append(f"{n}. [{s.kind}] {s.title} (id: {s.id}){where} - {s.reason} "
                         f"(score {s.score:.2f})")
        return "\n".join(lines)


FeedbackAction = Literal["clicked", "dismissed", "purchased", "helpful", "not_helpful"]

#: How a feedback action is stored: (event type, value). A verdict is a rating: helpful is
#: ``rate`` 1.0 and not helpful ``rate`` 0.0, so the history keeps one event vocabulary and
#: the model reads a verdict like any other rating on the 0..1 scale.
FEEDBACK_EVENTS: dict[str, tuple[EventType, float | None]] = {
    "clicked": ("click", None),
    "dismissed": ("dismiss", None),
    "purchased": ("purchase", None),
    "helpful": ("rate", 1.0),
    "not_helpful": ("rate", 0.0),
}


class FeedbackInput(BaseModel):
    """Arguments of record_feedback."""

    model_config = ConfigDict(extra="forbid", title=FEEDBACK_TOOL_NAME)

    item_id: str = Field(description="The suggestion's id from suggest_content.")
    action: FeedbackAction = Field(
        description="clicked, dismissed, purchased, helpful or not_helpful.")

    @field_validator("item_id")
    @classmethod
    def _not_blank(cls, value: str) -> str:
        # Checked here rather than as ``minLength``: strict function calling rejects string
        # length keywords in a schema.
        if not value.strip():
            raise ValueError("must not be empty")
        return value.strip()

    @field_validator("action", mode="before")
    @classmethod
    def _normalise(cls, value: object) -> object:
        if isinstance(value, str):
            return value.strip().lower().replace(" ", "_").replace("-", "_")
        return value


class FeedbackOutput(BaseModel):
    """What record_feedback answers."""

    recorded: bool
    item_id: str
    event_type: EventType = Field(description="The history event written.")
    value: float | None = Field(default=None, description="1.0 helpful, 0.0 not helpful.")
    note: str

    def as_text(self) -> str:
        return self.note


ErrorCode = Literal[
    "invalid_arguments",
    "reserved_argument",
    "conversation_too_large",
    "unknown_item",
    "unknown_tool",
    "no_user",
    "rejected",
    "internal_error",
]


class FieldIssue(BaseModel):
    """One problem with one argument, addressed by its dotted path (``filters.price_max``)."""

    field: str
    message: str


class ToolError(BaseModel):
    """A failed call, written for the model to read and correct: never a traceback."""

    error: Literal[True] = True
    code: ErrorCode
    message: str
    details: list[FieldIssue] = Field(default_factory=list)

    def as_text(self) -> str:
        issues = "; ".join(f"{d.field}: {d.message}" for d in self.details)
        return f"Error ({self.code}): {self.message}" + (f" [{issues}]" if issues else "")

    @classmethod
    def from_validation(cls, exc: ValidationError, tool: str) -> ToolError:
        return cls.from_errors(exc.errors(include_url=False, include_input=False), tool)

    @classmethod
    def from_errors(cls, errors: Sequence[Mapping[str, Any]], tool: str) -> ToolError:
        """From pydantic-style error dicts (``loc``, ``msg``, ``type``)."""
        details = [
            FieldIssue(field=".".join(str(p) for p in err["loc"]) or "(arguments)",
                       message=str(err["msg"]))
            for err in errors
        ]
        smuggled = [d.field for d, err in zip(details, errors, strict=True)
                    if err["type"] == "extra_forbidden" and d.field in RESERVED_ARGUMENTS]
        if smuggled:
            return _reserved_error(smuggled)
        return cls(code="invalid_arguments",
                   message=f"The arguments of {tool} are invalid; fix the fields listed and "
                           "call again.",
                   details=details)


def _reserved_error(names: list[str]) -> ToolError:
    return ToolError(
        code="reserved_argument",
        message="The user, tenant and conversation are set by the application; call again "
                "without them.",
        details=[FieldIssue(field=name, message="not a tool argument") for name in names])


# --------------------------------------------------------------------------------------------
# Context and limits
# --------------------------------------------------------------------------------------------


class ToolContext(BaseModel):
    """What the host application knows and the model must not choose.

    ``user_id`` reads and writes the user's history (dismissed items are not suggested
    again; feedback needs it); ``tenant`` selects whose items and history are used (default:
    the recommender's setting); ``conversation_id`` lets suggest skip items already shown in
    this chat and logs impressions (only when ``user_id`` is set too).
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    user_id: str | None = Field(default=None, min_length=1)
    tenant: str | None = Field(default=None, min_length=1)
    conversation_id: str | None = Field(default=None, min_length=1)


class Limits(BaseModel):
    """Caps on what one call may send, so a runaway agent cannot stall the host."""

    model_config = ConfigDict(frozen=True)

    max_messages: int = Field(default=50, ge=1)
    max_chars: int = Field(default=20_000, ge=1)


#: Arguments a model might try to smuggle in; refused with a ``reserved_argument`` error.
RESERVED_ARGUMENTS = frozenset({"user_id", "tenant", "conversation_id", "user", "tenant_id"})

InT = TypeVar("InT", bound=BaseModel)
OutT = TypeVar("OutT", bound=BaseModel)


# --------------------------------------------------------------------------------------------
# The tools
# --------------------------------------------------------------------------------------------


class ContractTool(Generic[InT, OutT]):
    """Validation, context injection and error handling shared by the tools.

    Subclasses set ``name``, ``description``, ``input_model``, ``output_model`` and implement
    ``_run``. Instances are cheap and immutable: ``bind`` returns a copy with a new context.
    """

    name: ClassVar[str]
    description: ClassVar[str]
    input_model: ClassVar[type[BaseModel]]
    output_model: ClassVar[type[BaseModel]]

    def __init__(self, recommender: Recommender, context: ToolContext | None = None,
                 limits: Limits | None = None) -> None:
        self.recommender = recommender
        self.context = context or ToolContext()
        self.limits = limits or Limits()

    def bind(self, context: ToolContext | None = None, **fields: str | None) -> ContractTool:
        """A copy of this tool for another user/tenant/conversation."""
        ctx = context or self.context.model_copy(update=fields)
        return type(self)(self.recommender, ToolContext.model_validate(ctx.model_dump()),
                          self.limits)

    @property
    def tenant(self) -> str:
        return self.context.tenant or self.recommender.settings.tenant

    def input_schema(self) -> dict[str, Any]:
        """JSON schema of the arguments (strict-mode compatible, self-contained)."""
        return strict_schema(self.input_model)

    def output_schema(self) -> dict[str, Any]:
        """JSON schema of a successful answer."""
        return self.output_model.model_json_schema()

    def parse(self, args: Mapping[str, Any] | BaseModel | str | bytes | None) -> InT | ToolError:
        """Validate raw arguments (a dict, a JSON string or a model) into the input model."""
        if isinstance(args, self.input_model):
            return args  # type: ignore[return-value]
        if isinstance(args, BaseModel):
            args = args.model_dump()
        if isinstance(args, str | bytes):
            try:
                args = json.loads(args or "{}")
            except json.JSONDecodeError as exc:
                return ToolError(code="invalid_arguments",
                                 message=f"The arguments are not valid JSON: {exc.msg} at "
                                         f"character {exc.pos}.")
            except (UnicodeDecodeError, RecursionError):
                return ToolError(code="invalid_arguments",
                                 message="The arguments are not valid UTF-8 JSON.")
        if args is None:
            args = {}
        if not isinstance(args, Mapping):
            return ToolError(code="invalid_arguments",
                             message="The arguments must be a JSON object.")
        reserved = sorted(RESERVED_ARGUMENTS & set(args))
        if reserved:
            return _reserved_error(reserved)
        try:
            return self.input_model.model_validate(dict(args))  # type: ignore[return-value]
        except ValidationError as exc:
            return ToolError.from_validation(exc, self.name)

    def call(self, args: Mapping[str, Any] | BaseModel | str | bytes | None,
             context: ToolContext | None = None) -> OutT | ToolError:
        """Run the tool: the output model, or a ``ToolError`` (never raises for bad input).

        ``context`` overrides the bound context for this call (a host serving many users
        passes it per request).
        """
        parsed = self.parse(args)
        if isinstance(parsed, ToolError):
            return parsed
        ctx = context or self.context
        try:
            return self._run(parsed, ctx)
        except ToolFailure as failure:
            return failure.error
        except Exception as exc:  # the model gets a code, the host log gets the traceback
            logger.exception("%s failed", self.name)
            return ToolError(code="internal_error",
                             message=f"{self.name} failed on the server ({type(exc).__name__}); "
                                     "continue without it.")

    def _run(self, args: InT, context: ToolContext) -> OutT:
        raise NotImplementedError


class ToolFailure(Exception):
    """Raised inside ``_run`` to answer with a specific ``ToolError``."""

    def __init__(self, error: ToolError) -> None:
        super().__init__(error.message)
        self.error = error


class SuggestContentTool(ContractTool[SuggestInput, SuggestOutput]):
    """``suggest_content``: articles and products for the conversation, or silence.

    Impressions are logged by ``Recommender.suggest`` (once per call, when the context has
    both a user and a conversation); this tool writes nothing else.
    """

    name = SUGGEST_TOOL_NAME
    description = SUGGEST_DESCRIPTION
    input_model = SuggestInput
    output_model = SuggestOutput

    def _run(self, args: SuggestInput, context: ToolContext) -> SuggestOutput:
        self._check_size(args.conversation)
        conversation: Any = args.conversation
        if isinstance(conversation, list):
            conversation = [m.model_dump() for m in conversation]
        filters = args.filters.model_dump(exclude_none=True) if args.filters else None
        result = self.recommender.suggest(
            conversation,
            user_id=context.user_id,
            k=args.k,
            kinds=args.kinds,
            filters=filters,
            conversation_id=context.conversation_id,
            tenant=context.tenant,
            exclude_ids=args.exclude_ids or (),
        )
        return SuggestOutput(suggestions=result.suggestions, surfaced=result.surfaced,
                             note=result.note)

    def _check_size(self, conversation: list[ChatMessage] | str) -> None:
        if isinstance(conversation, str):
            chars, messages = len(conversation), conversation.count("\n") + 1
        else:
            chars, messages = sum(len(m.content) for m in conversation), len(conversation)
        details = []
        if messages > self.limits.max_messages:
            details.append(FieldIssue(
                field="conversation",
                message=f"{messages} messages (lines); at most {self.limits.max_messages}"))
        if chars > self.limits.max_chars:
            details.append(FieldIssue(
                field="conversation",
                message=f"{chars} characters; at most {self.limits.max_chars}"))
        if details:
            raise ToolFailure(ToolError(
                code="conversation_too_large",
                message="The conversation is too large; send only the recent turns "
                        "(the last few are what matter).",
                details=details))


class RecordFeedbackTool(ContractTool[FeedbackInput, FeedbackOutput]):
    """``record_feedback``: one behaviour event in the user's history per call.

    clicked -> ``click``, dismissed -> ``dismiss``, purchased -> ``purchase``; helpful and
    not_helpful -> ``rate`` with value 1.0 and 0.0 (see ``FEEDBACK_EVENTS``).
    """

    name = FEEDBACK_TOOL_NAME
    description = FEEDBACK_DESCRIPTION
    input_model = FeedbackInput
    output_model = FeedbackOutput

    def _run(self, args: FeedbackInput, context: ToolContext) -> FeedbackOutput:
        if not context.user_id:
            raise ToolFailure(ToolError(
                code="no_user",
                message="No user is signed in to this conversation, so feedback cannot be "
                        "recorded; continue without it."))
        tenant = context.tenant or self.recommender.settings.tenant
        if not self.recommender.get_items([args.item_id], tenant=tenant):
            raise ToolFailure(ToolError(
                code="unknown_item",
                message=f"There is no item with id {args.item_id!r}; use an id returned by "
                        f"{SUGGEST_TOOL_NAME}.",
                details=[FieldIssue(field="item_id", message="unknown id")]))
        event_type, value = FEEDBACK_EVENTS[args.action]
        event = Event(user_id=context.user_id, item_id=args.item_id, type=event_type,
                      value=value, tenant=tenant, conversation_id=context.conversation_id)
        try:
            self.recommender.log_event(event)
        except ValueError as exc:  # e.g. the conversation belongs to another user
            raise ToolFailure(ToolError(code="rejected", message=str(exc))) from exc
        return FeedbackOutput(recorded=True, item_id=args.item_id, event_type=event_type,
                              value=value, note=f"Recorded {args.action} on {args.item_id}.")


def warm_up(recommender: Recommender) -> None:
    """Open the encoder and the index now, so a server's first call is not the slow one."""
    recommender.encoder.encode_queries(["warm up"])
    _ = recommender.index


def contract_tools(recommender: Recommender, context: ToolContext | None = None,
                   limits: Limits | None = None) -> tuple[SuggestContentTool, RecordFeedbackTool]:
    """Both tools, bound to the same recommender and host context."""
    return (SuggestContentTool(recommender, context, limits),
            RecordFeedbackTool(recommender, context, limits))
