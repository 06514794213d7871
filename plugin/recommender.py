"""The facade: one object that ingests items, keeps history and makes suggestions.

    rec = Recommender(workspace="./.convrec")
    rec.ingest(["help-centre/", "catalogue.jsonl"])
    result = rec.suggest("User: my parcel is a week late", user_id="u1")

Heavy parts (the encoder, Chroma, the history database, the trained model) are opened on first
use, so constructing a Recommender is cheap.
"""

from __future__ import annotations

import threading
import warnings
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from convrec.knowledge.index import Hit, ItemFilter, VectorIndex
from convrec.knowledge.items import Article, ItemKind, Product
from convrec.pipeline.conversation import build_query, readable_turns
from convrec.pipeline.explain import explain
from convrec.pipeline.gate import Decision, Gate, GateCalibration
from convrec.pipeline.personalize import (
    Personalizer,
    Step,
    has_checkpoint,
    live_steps,
)
from convrec.pipeline.rules import Candidate, linked_item_ids, mmr
from convrec.settings import Settings
from convrec.types import Event, Message, Suggestion, SuggestionResult, parse_transcript

if TYPE_CHECKING:
    from convrec.history import HistoryStore
    from convrec.knowledge.adapt import AdaptConfig, AdaptReport
    from convrec.knowledge.encoder import ContentEncoder
    from convrec.knowledge.ingest import IngestReport
    from convrec.pipeline.anchor import GateAnchor, GateInForce


class Recommender:
    """Suggest articles and products from a conversation, or stay silent."""

    def __init__(
        self,
        settings: Settings | None = None,
        *,
        workspace: str | Path | None = None,
        encoder: ContentEncoder | None = None,
        index: VectorIndex | None = None,
        history: HistoryStore | None = None,
    ):
        settings = settings or Settings()
        if workspace is not None:
            settings = settings.model_copy(update={"workspace": Path(workspace)})
        self.settings = settings
        self._encoder = encoder
        self._index = index
        self._own_index = index is None  # opened from the settings: the workspace describes it
        self._history = history
        self._personalizer: Personalizer | None | bool = None
        self._gate_file: tuple[int, Gate] | None = None
        self._anchor: tuple[tuple, GateAnchor | None] | None = None
        self._lock = threading.RLock()

    # -- parts, opened lazily ----------------------------------------------------------------
    @property
    def encoder(self) -> ContentEncoder:
        if self._encoder is None:
            with self._lock:
                if self._encoder is None:
                    from convrec.knowledge.cache import EmbeddingCache
                    from convrec.knowledge.encoder import ContentEncoder

                    cache = EmbeddingCache(self.settings.workspace / "embeddings.sqlite")
                    self._encoder = ContentEncoder(
                        self.settings.encoder_model, cache=cache,
                        image_weight=self.settings.image_weight,
                        title_weight=self.settings.title_weight,
                        fetch_image_urls=self.settings.fetch_image_urls,
                        image_root=self.settings.image_root)
        return self._encoder

    @property
    def index(self) -> VectorIndex:
        if self._index is None:
            with self._lock:
                if self._index is None:
                    from convrec.knowledge.index import http_index, persistent_index

                    if self.settings.chroma_url:
                        self._index = http_index(self.settings.chroma_url,
                                                 self.settings.collection)
                    else:
                        self._index = persistent_index(self.settings.workspace / "chroma",
                                                       self.settings.collection)
        return self._index

    @property
    def history_store(self) -> HistoryStore:
        if self._history is None:
            with self._lock:
                if self._history is None:
                    from convrec.history import HistoryStore

                    self.settings.workspace.mkdir(parents=True, exist_ok=True)
                    self._history = HistoryStore(self.settings.workspace / "history.sqlite")
        return self._history

    @property
    def personalizer(self) -> Personalizer | None:
        """The trained sequence model, when a checkpoint is in the model folder."""
        if self._personalizer is False:
            return None
        if self._personalizer is None:
            with self._lock:
                model_dir = self.settings.resolved_model_dir
                if has_checkpoint(model_dir):
                    self._personalizer = Personalizer.from_dir(model_dir, self.encoder)
                else:
                    self._personalizer = False
        return self._personalizer or None

    def reload_model(self) -> None:
        """Pick up a new (or removed) checkpoint on the next suggest call."""
        self._personalizer = None

    @property
    def gate_path(self) -> Path:
        """Where ``calibrate_gate`` saves a fitted gate: ``gate.json`` in the workspace."""
        return self.settings.workspace / "gate.json"

    @property
    def gate(self) -> Gate:
        """The gate in force: a fitted ``gate.json`` in the workspace when there is one (a
        threshold set explicitly in the settings still wins); else the settings' curve,
        anchored on the encoder when it is not the packaged MiniLM (see ``gate_anchor``)."""
        s = self.settings.suggest
        path = self.gate_path
        try:
            stamp = path.stat().st_mtime_ns
        except OSError:
            anchor = self.gate_anchor()
            if anchor is not None:
                return Gate(center=anchor.center, scale=anchor.scale, threshold=s.threshold)
            return Gate(center=s.gate_center, scale=s.gate_scale, threshold=s.threshold)
        if self._gate_file is None or self._gate_file[0] != stamp:
            self._gate_file = (stamp, Gate.load(path))
        gate = self._gate_file[1]
        if "threshold" in s.model_fields_set:
            gate = gate.with_threshold(s.threshold)
        return gate

    def gate_anchor(self, *, force: bool = False) -> GateAnchor | None:
        """The settings' curve moved onto this encoder's off-topic floor on the indexed items,
        or ``None`` when the shipped curve applies as it is.

        The shipped curve was fitted for the packaged all-MiniLM-L6-v2; with any other encoder
        (and ``anchor_gate`` on, ``gate_center``/``gate_scale`` not set explicitly) everyday
        off-topic chat is sent through the index and the curve moved to sit as far above its
        best matches as the shipped curve sits above MiniLM's (``convrec.pipeline.anchor``).
        It is measured once per encoder and item count, and kept in the workspace
        (``gate_anchor.json``) for the next process; an ingest measures it again. ``force``
        measures it for any encoder (a report, not what the gate uses).
        """
        from convrec.knowledge.encoder import DEFAULT_MODEL_NAME

        s = self.settings.suggest
        if not force and (not s.anchor_gate or {"gate_center", "gate_scale"} & s.model_fields_set
                          or self.encoder.name == DEFAULT_MODEL_NAME):
            return None
        tenant = self.settings.tenant
        # The whole index's count is cheap to read on every call (a tenant's is not) and
        # changes whenever any ingest or removal does: then the anchor is measured again.
        key = (self.encoder.name, tenant, self.index.count(), s.gate_center, s.gate_scale)
        if self._anchor is None or self._anchor[0] != key:
            with self._lock:  # one measurement, whichever thread asks first
                if self._anchor is None or self._anchor[0] != key:
                    self._anchor = (key, self._measured_anchor(key))
        return self._anchor[1]

    @property
    def _anchor_path(self) -> Path | None:
        """Where the anchor is kept between processes: only for the index the settings
        describe (one handed in may hold anything)."""
        return self.settings.workspace / "gate_anchor.json" if self._own_index else None

    def _measured_anchor(self, key: tuple) -> GateAnchor | None:
        from convrec.pipeline.anchor import measure_anchor, read_saved_anchor, save_anchor

        path = self._anchor_path
        anchor = read_saved_anchor(path, key) if path else None
        if anchor is None:
            s, tenant = self.settings.suggest, self.settings.tenant
            n_items = self.index.count(tenant)
            if not n_items:
                return None
            base = Gate(center=s.gate_center, scale=s.gate_scale, threshold=s.threshold)
            anchor = measure_anchor(self.encoder, self.index, base, ItemFilter(tenant=tenant),
                                    n_items=n_items)
            if anchor is not None and path:
                save_anchor(path, key, anchor)
        return anchor

    def gate_in_force(self) -> GateInForce:
        """The gate ``suggest`` reads now and where it comes from (``convrec gate``)."""
        from convrec.pipeline.anchor import GateInForce

        gate = self.gate
        fitted = self.gate_path.exists()
        anchor = None if fitted else self.gate_anchor()
        return GateInForce(
            source="fitted" if fitted else "anchored" if anchor else "settings",
            center=gate.center, scale=gate.scale, threshold=gate.threshold,
            intent=bool(gate.intent), path=str(self.gate_path) if fitted else None,
            anchor=anchor)

    def calibrate_gate(
        self,
        decisions: Sequence[Decision] | None = None,
        *,
        tenant: str | None = None,
        threshold: float | None = None,
        precision: float | None = None,
        intent: bool = True,
        save: bool = True,
    ) -> GateCalibration:
        """Fit the gate on labelled decisions and (by default) save it as the workspace's gate.

        ``decisions`` default to the ones logged in the history store (``logged_decisions``:
        surfaced lists, positive when the user then clicked, read or bought). With ``intent``
        and decisions that know their last user turn, the gate also learns what users' words
        say about wanting a suggestion. ``precision`` picks the lowest threshold reaching it on
        these data; else ``threshold`` (default: the current one) is kept.
        """
        from convrec.pipeline.feedback import logged_decisions
        from convrec.pipeline.gate import auc, calibrate, precision_recall, relevances

        tenant = tenant or self.settings.tenant
        if decisions is None:
            decisions = logged_decisions(self.history_store, tenant=tenant)
        decisions = list(decisions)
        if len({d.label for d in decisions}) < 2:
            raise ValueError(
                f"calibrating needs decisions of both kinds, welcome and unwelcome; found "
                f"{sum(d.label for d in decisions)} welcome of {len(decisions)}. Log suggestions "
                "with a user_id and conversation_id and the user's feedback (clicks, dismissals),"
                " or give labelled decisions (convrec calibrate --labels FILE)")
        before = self.gate
        texts = [d.text for d in decisions]
        known = [i for i, t in enumerate(texts) if t]
        vectors = np.zeros((len(decisions), self.encoder.dim), dtype=np.float32)
        if known:
            vectors[known] = self.encoder.encode_queries([texts[i] for i in known])
        scores = [d.raw_score(before, vectors[i] if texts[i] else None)
                  for i, d in enumerate(decisions)]
        labels = [d.label for d in decisions]
        use_intent = intent and bool(known)
        turn_vectors = vectors if use_intent else None
        gate = calibrate(scores, labels, threshold=before.threshold if threshold is None
                         else threshold, precision=precision, turn_vectors=turn_vectors,
                         encoder=self.encoder.name if use_intent else None)
        path = gate.save(self.gate_path) if save else None
        return GateCalibration(
            gate=gate.to_dict(), n_decisions=len(labels), n_positive=sum(labels),
            n_with_text=len(known), intent=use_intent,
            auc=auc(relevances(gate, scores, turn_vectors), labels),
            auc_before=auc(scores, labels),
            in_sample=precision_recall(gate, scores, labels, turn_vectors),
            path=str(path) if path else None)

    # -- items ------------------------------------------------------------------------------
    def ingest(
        self,
        source: str | Path | Iterable[str | Path] | Sequence[Article | Product],
        *,
        tenant: str | None = None,
        skip_invalid: bool = False,
        prune: bool = True,
        progress: Callable[[int, int], None] | None = None,
    ) -> IngestReport:
        """Load items from files/folders (or take Item objects) and bring the index up to date.

        Re-ingesting an unchanged source encodes nothing; items removed from a re-read path
        are deleted (``prune``). Raises ``ItemLoadError`` on bad records unless
        ``skip_invalid``, in which case the report lists what was rejected.
        """
        from convrec.knowledge.ingest import ingest_items
        from convrec.knowledge.loaders import load_items

        tenant = tenant or self.settings.tenant
        self._anchor = None  # the items change: the gate's anchor is measured again
        if self._anchor_path:
            self._anchor_path.unlink(missing_ok=True)
        if isinstance(source, str | Path):
            source = [source]
        source = list(source)
        if source and all(isinstance(s, Article | Product) for s in source):
            items = [i if i.tenant == tenant or tenant == "default" else
                     i.model_copy(update={"tenant": tenant}) for i in source]
            return ingest_items(items, self.index, self.encoder, prune_sources=False,
                                progress=progress)
        loaded = load_items(source, tenant=tenant, skip_invalid=skip_invalid)
        report = ingest_items(
            loaded.items, self.index, self.encoder, sources=loaded.sources,
            prune_sources=prune, read_roots=[str(Path(s).resolve()) for s in source],
            progress=progress,
        )
        report.rejected = loaded.rejected  # type: ignore[attr-defined]
        return report

    def get_items(self, ids: Sequence[str], tenant: str | None = None) -> list[Article | Product]:
        return [s.item for s in self.index.get(ids, tenant or self.settings.tenant)]

    def adapt_encoder(self, out_dir: str | Path | None = None, *, tenant: str | None = None,
                      config: AdaptConfig | None = None, logs: bool = True) -> AdaptReport:
        """Fine-tune a copy of the encoder on the indexed items' own texts (no labels needed)
        and, with ``logs``, on what users said before taking up a suggested item (the
        history's clicks, reads and purchases); save it and return an ``AdaptReport``. The
        running encoder is unchanged: configure the saved folder as ``encoder_model`` and
        ingest again (see ``convrec.knowledge.adapt``). Default folder:
        ``WORKSPACE/encoders/kb-<hash>``."""
        from convrec.knowledge.adapt import adapt_encoder
        from convrec.pipeline.feedback import logged_clicks

        tenant = tenant or self.settings.tenant
        items = self.get_items(sorted(self.index.fingerprints(tenant)), tenant)
        queries: list[tuple[str, Article | Product]] = []
        if logs:
            by_id = {item.id: item for item in items}
            queries = [(said, by_id[item_id])
                       for said, item_id in logged_clicks(self.history_store, tenant=tenant)
                       if item_id in by_id]  # items removed since are left out
        return adapt_encoder(items, out_dir, encoder=self.encoder, config=config,
                             root=self.settings.workspace, queries=queries)

    # -- suggestions ------------------------------------------------------------------------
    def suggest(
        self,
        transcript: str | list[Message] | list[dict[str, Any]],
        user_id: str | None = None,
        k: int | None = None,
        kinds: Sequence[ItemKind] | None = None,
        filters: ItemFilter | dict[str, Any] | None = None,
        *,
        conversation_id: str | None = None,
        tenant: str | None = None,
        exclude_ids: Sequence[str] = (),
        log: bool = True,
    ) -> SuggestionResult:
        """Suggest up to ``k`` items for the conversation so far, or none.

        Recent turns weigh more than old ones and user turns more than assistant turns. Items
        already linked in the conversation, already suggested in it (``conversation_id``) or
        dismissed by the user are skipped; the rest are diversified (MMR). Nothing is surfaced
        when the best candidate's calibrated relevance is below the threshold; the result's
        ``note`` says why.
        """
        s = self.settings.suggest
        k = k or s.default_k
        tenant = tenant or self.settings.tenant
        where = self._filter(filters, kinds, tenant, exclude_ids)
        turns = readable_turns(parse_transcript(transcript), s.max_turns)
        if not turns:
            return self._silent("The conversation has no turns with text yet.", 0.0,
                                conversation_id)

        query = build_query(turns, self.encoder.encode_queries([t.content for t in turns]), s)
        hits = self._candidates(query.vector, query.focus, where)
        skip = self._already_shown(user_id, conversation_id, tenant)
        skip |= linked_item_ids(turns, [h.item for h in hits])
        hide_sold_out = where.in_stock is None and not s.include_out_of_stock
        candidates = [
            Candidate(h.item, float(h.vector @ query.vector), h.vector)
            for h in hits
            if h.item.id not in skip
            and not (hide_sold_out and isinstance(h.item, Product) and not h.item.in_stock)
        ]
        if not candidates:
            return self._silent("No item matches the filters that is not already shown.", 0.0,
                                conversation_id)
        gate = self.gate
        if gate.intent and gate.encoder != self.encoder.name:
            from convrec.knowledge.encoder import EncoderMismatchError

            raise EncoderMismatchError(
                f"{self.gate_path} was fitted on {gate.encoder!r} vectors but the encoder is "
                f"{self.encoder.name!r}: refit it (convrec calibrate) or remove it")
        said = query.focus  # the last user turn: what an intent-aware gate reads
        best = max(candidates, key=lambda c: c.score)
        relevance = gate.relevance(best.score, said)
        if relevance < gate.threshold:
            silent = self._silent(
                f"Nothing is relevant enough to surface: the best match, {best.item.title!r}, "
                f"has relevance {relevance:.2f} < threshold {gate.threshold:.2f}.",
                relevance, conversation_id)
            if log and user_id and conversation_id:
                # The held-back best candidate, logged as not surfaced: calibrating the gate
                # later needs the decisions below the threshold too.
                held_back = silent.model_copy(update={"suggestions": [self._suggestion(
                    best, relevance, "held back by the gate")]})
                self._log_impressions(user_id, conversation_id, held_back, tenant, turns)
            return silent

        eligible = [c for c in candidates
                    if gate.relevance(c.score, said) >= s.min_item_relevance]
        ranked = self._personalize(eligible, turns, user_id, tenant)
        chosen = mmr(ranked, k, s.mmr_lambda, s.max_per_kind)
        content_score = {c.item.id: c.score for c in eligible}
        suggestions = [
            self._suggestion(c, gate.relevance(content_score[c.item.id], said),
                             explain(c.item, c.vector, query.turns, query.vectors, query.weights))
            for c in chosen
        ]
        result = SuggestionResult(
            suggestions=suggestions, surfaced=True, relevance=relevance,
            threshold=gate.threshold, conversation_id=conversation_id,
            note=f"{len(suggestions)} suggestion(s); best relevance {relevance:.2f}.",
        )
        if log and user_id and conversation_id:
            self._log_impressions(user_id, conversation_id, result, tenant, turns)
        return result

    def _filter(self, filters, kinds, tenant, exclude_ids) -> ItemFilter:
        if isinstance(filters, ItemFilter):
            where = filters
        else:
            where = ItemFilter.model_validate(dict(filters or {}) | {"tenant": tenant})
        update: dict[str, Any] = {"tenant": tenant}
        if kinds:
            update["kinds"] = list(kinds)
        if exclude_ids:
            update["exclude_ids"] = list(where.exclude_ids) + list(exclude_ids)
        return where.model_copy(update=update)

    def _candidates(self, vector: np.ndarray, focus: np.ndarray | None,
                    where: ItemFilter) -> list[Hit]:
        n = self.settings.suggest.candidates
        hits = {h.item.id: h for h in self.index.query(vector, n, where)}
        if focus is not None:
            for h in self.index.query(focus, n // 2, where):
                hits.setdefault(h.item.id, h)
        return list(hits.values())

    def _personalize(self, candidates: list[Candidate], turns: list[Message],
                     user_id: str | None, tenant: str) -> list[Candidate]:
        """Rerank by content similarity plus the trained model's score (when there is one).

        Both are read as log-odds: the conversation's through the gate's calibrated slope, the
        model's as the logits it was trained to produce (softmax over the catalogue). A confident
        model moves items a lot, an unsure one barely; ``model_weight`` scales its say."""
        personalizer = self.personalizer
        weight = self.settings.suggest.model_weight
        if personalizer is None or weight == 0 or len(candidates) < 2:
            return candidates
        steps: list[Step] = []
        if user_id:
            for entry in self.history_store.timeline(user_id, tenant=tenant,
                                                     limit=personalizer.loaded.config.max_len):
                if entry.kind == "turn":
                    if not personalizer.reads_turns:
                        continue
                    role = "user_turn" if entry.role == "user" else "assistant_turn"
                    steps.append(Step(role, entry.ts, text=entry.text))
                else:
                    steps.append(Step(entry.type, entry.ts, item_id=entry.item_id))
        if personalizer.reads_turns:
            steps += live_steps(turns)
        model = personalizer.scores(steps, lambda st: self._step_vectors(st, tenant),
                                    [c.item.id for c in candidates],
                                    np.stack([c.vector for c in candidates]))
        content = np.array([c.score for c in candidates], dtype=np.float32)
        # A product of experts in log-odds: the gate's slope turns cosine into log-odds, the
        # model's scores are softmax logits; back on the cosine scale for MMR.
        combined = content + weight * (model - model.mean()) / self.settings.suggest.gate_scale
        return [Candidate(c.item, float(v), c.vector) for c, v in zip(candidates, combined,
                                                                       strict=True)]

    def _step_vectors(self, steps: Sequence[Step], tenant: str) -> np.ndarray:
        """Content vector of each step: turns are encoded, items read from the index."""
        vectors = np.zeros((len(steps), self.encoder.dim), dtype=np.float32)
        text_rows = [i for i, s in enumerate(steps) if s.text is not None]
        if text_rows:
            vectors[text_rows] = self.encoder.encode_queries([steps[i].text for i in text_rows])
        item_ids = list({s.item_id for s in steps if s.item_id})
        stored = {si.item.id: si.vector for si in self.index.get(item_ids, tenant)}
        for i, step in enumerate(steps):
            if step.item_id in stored:
                vectors[i] = stored[step.item_id]
        return vectors

    def _already_shown(self, user_id, conversation_id, tenant) -> set[str]:
        if not (user_id or conversation_id):
            return set()
        store = self.history_store
        shown: set[str] = set()
        if conversation_id:
            shown |= store.suggested_item_ids(conversation_id, tenant=tenant)
        if user_id:
            shown |= store.dismissed_item_ids(user_id, tenant=tenant)
        return shown

    def _log_impressions(self, user_id, conversation_id, result, tenant,
                         turns: Sequence[Message] = ()) -> None:
        """Log what was suggested, and (``log_user_turns``) the user turn it answered unless
        the host logged it already: what calibrating the gate on words and adapting the
        encoder on clicks read, whichever way (tool, HTTP, Python) the call came."""
        from convrec.history import ConversationOwnerError

        store = self.history_store
        said = next((t.content for t in reversed(turns) if t.role == "user"), None)
        try:
            if said and self.settings.log_user_turns:
                recent = store.conversation_messages(conversation_id, tenant=tenant, limit=20)
                last = next((m.content for m in reversed(recent) if m.role == "user"), None)
                if last != said:
                    store.log_message(user_id, Message(role="user", content=said),
                                      conversation_id=conversation_id, tenant=tenant)
            store.log_impressions(user_id, conversation_id, result.suggestions,
                                  surfaced=result.surfaced, tenant=tenant)
        except ConversationOwnerError as exc:
            # A host bug (one conversation id for two users) must not break the chat.
            warnings.warn(f"impressions not logged: {exc}", stacklevel=3)

    @staticmethod
    def _suggestion(c: Candidate, relevance: float, reason: str) -> Suggestion:
        item = c.item
        extra: dict[str, Any] = {}
        if isinstance(item, Product):
            extra = {"price": item.price, "currency": item.currency, "in_stock": item.in_stock}
        return Suggestion(id=item.id, kind=item.kind, title=item.title, url=item.url,
                          snippet=item.snippet(), score=round(relevance, 4), reason=reason,
                          **extra)

    def _silent(self, note: str, relevance: float, conversation_id) -> SuggestionResult:
        return SuggestionResult(suggestions=[], surfaced=False, note=note, relevance=relevance,
                                threshold=self.settings.suggest.threshold,
                                conversation_id=conversation_id)

    # -- history ------------------------------------------------------------------------------
    def log_message(self, user_id: str, message: Message | dict[str, Any],
                    conversation_id: str | None = None, tenant: str | None = None) -> None:
        """Store one conversation turn of a user."""
        if not isinstance(message, Message):
            message = Message.model_validate(message)
        self.history_store.log_message(user_id, message, conversation_id=conversation_id,
                                       tenant=tenant or self.settings.tenant)

    def log_event(self, event: Event | dict[str, Any]) -> None:
        """Store one behaviour event (view, click, purchase, dismiss, ...)."""
        if not isinstance(event, Event):
            event = Event.model_validate({"tenant": self.settings.tenant, **event})
        self.history_store.log_event(event)

    def import_events(self, path: str | Path, *, skip_invalid: bool = False,
                      tenant: str | None = None):
        """Import an events file (JSONL or CSV); unknown item ids are errors."""
        tenant = tenant or self.settings.tenant
        known = set(self.index.fingerprints(tenant))
        return self.history_store.import_events(path, known_item_ids=known,
                                                skip_invalid=skip_invalid, tenant=tenant)

    def history(self, user_id: str, tenant: str | None = None, limit: int | None = None):
        """Everything stored about a user: messages, events, impressions."""
        return self.history_store.history(user_id, tenant=tenant or self.settings.tenant,
                                          limit=limit)

    def forget_user(self, user_id: str, tenant: str | None = None) -> int:
        """Remove everything about a user; returns the number of rows deleted."""
        return self.history_store.forget_user(user_id, tenant=tenant or self.settings.tenant)

    # -- training -----------------------------------------------------------------------------
    def export_training_files(self, folder: str | Path, tenant: str | None = None
                              ) -> tuple[Path, Path]:
        """Write the tenant's items and every user's timeline (turns and item events) as the
        items and events files that ``convrec train`` reads."""
        import json

        tenant = tenant or self.settings.tenant
        folder = Path(folder)
        folder.mkdir(parents=True, exist_ok=True)
        items_path, events_path = folder / "items.jsonl", folder / "events.jsonl"
        with items_path.open("w", encoding="utf-8") as out:
            for meta in self.index.fingerprints(tenant).values():
                out.write(meta["item"] + "\n")
        store = self.history_store
        with events_path.open("w", encoding="utf-8") as out:
            for user in store.users(tenant):
                for entry in store.timeline(user, tenant=tenant):
                    row: dict[str, Any] = {"user": user, "ts": entry.ts.isoformat()}
                    if entry.kind == "turn":
                        if entry.role not in ("user", "assistant"):
                            continue
                        row |= {"type": f"{entry.role}_turn", "text": entry.text}
                    else:
                        row |= {"type": entry.type, "item": entry.item_id}
                        if entry.value is not None:
                            row["value"] = entry.value
                    out.write(json.dumps(row) + "\n")
        return items_path, events_path

    def train(self, *, use_all: bool = True, tenant: str | None = None, **options: Any):
        """Train the sequence model on the stored history and items, write the checkpoint to
        the model folder, and use it from the next ``suggest``. ``use_all=False`` holds out
        each user's last item event (for an honest ``evaluate``)."""
        import tempfile

        from convrec.training import train_from_files

        with tempfile.TemporaryDirectory() as tmp:
            items, events = self.export_training_files(tmp, tenant)
            report = train_from_files(items, events, self.settings.resolved_model_dir,
                                      encoder=self.encoder, use_all=use_all, **options)
        self.reload_model()
        return report

    # -- lifecycle -----------------------------------------------------------------------------
    def close(self) -> None:
        if self._history is not None:
            self._history.close()

    def __enter__(self) -> Recommender:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
