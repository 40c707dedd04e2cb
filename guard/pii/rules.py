"""The PII rules file (``policies/pii.toml``): what to do with each entity type, per direction.

Schema (every key optional except where noted)::

    version = 1

    [defaults]                      # applies to every entity type without its own value
    threshold = 0.5                 # Presidio score at which a finding counts on its score alone
    protect_validated = true        # a finding its type's validator accepts counts at any score
    to_client = "allow"             # action for data travelling server -> client
    to_server = "allow"             # action for data travelling client -> server
    on_denied_reveal = "pass"       # token sent back, principal may not reveal: pass | deny
    scan_blobs = false              # also scan base64 blobs (image/audio data, resource blob)

    [entities.EMAIL_ADDRESS]        # one table per Presidio entity type
    to_client = "tokenize"
    to_server = "allow"
    threshold = 0.5

    [entities.CREDIT_CARD]
    to_client = { action = "mask", keep_last = 4 }
    to_server = "block"

    [entities.DATE_TIME]
    context = ["birth", "dob"]      # replaces the type's recognizer context words

    [[overrides]]                   # later overrides win; globs match server, tool, entity
    server = "crm"
    tool = "send_message"
    entity = "EMAIL_ADDRESS"
    to_server = "allow"

    [[recognizers]]                 # custom recognizers, declared in data, not code
    name = "employee_id"
    entity = "EMPLOYEE_ID"
    patterns = [{ name = "emp", regex = '\\bEMP-\\d{6}\\b', score = 0.6 }]
    context = ["employee", "staff"]
    deny_list = ["EMP-CEO"]

Actions: ``allow``, ``redact``, ``mask`` (``keep_last``, ``mask_char``), ``hash``
(HMAC-SHA256, keyed), ``encrypt`` (AES-GCM, reversible), ``tokenize`` (AES-SIV,
deterministic and reversible), ``block`` (deny the message, ``PII_BLOCKED``).

Parsing collects every problem (:class:`~guard.configtools.Problems`) instead of stopping.
"""

from __future__ import annotations

import re
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field
from fnmatch import fnmatchcase
from pathlib import Path
from typing import Any, Literal

import regex

from guard import configtools as ct

ActionKind = Literal["allow", "redact", "mask", "hash", "encrypt", "tokenize", "block"]
ACTIONS: tuple[ActionKind, ...] = ("allow", "redact", "mask", "hash", "encrypt", "tokenize", "block")
KEYED_ACTIONS = frozenset({"hash", "encrypt", "tokenize"})
"""Actions that need the PII key ring."""

VALIDATED_SCORES = {"PHONE_NUMBER": 0.4, "US_SSN": 0.5, "US_ITIN": 0.5, "IP_ADDRESS": 0.6, "MAC_ADDRESS": 0.6}
"""Presidio's score for a valid value of these types without a context word (types whose
checksum validation Presidio already turns into a score of 1.0 are not listed)."""
ENTITY_NAME = re.compile(r"^[A-Z][A-Z0-9_]{0,63}$")
_RULE_KEYS = {"threshold", "to_client", "to_server", "on_denied_reveal", "protect_validated"}
_DEFAULT_KEYS = _RULE_KEYS | {"scan_blobs"}
_OVERRIDE_KEYS = _RULE_KEYS | {"server", "tool", "entity"}
_ACTION_KEYS = {"action", "keep_last", "mask_char", "replacement"}
_RECOGNIZER_KEYS = {"name", "entity", "patterns", "context", "deny_list", "deny_list_score"}
_PATTERN_KEYS = {"name", "regex", "score"}
_TOP_KEYS = {"version", "defaults", "entities", "overrides", "recognizers"}


@dataclass(frozen=True)
class ActionSpec:
    """One action with its parameters."""

    kind: ActionKind
    keep_last: int = 4
    """``mask``: how many trailing letters/digits stay visible."""
    mask_char: str = "*"
    """``mask``: the character that replaces hidden letters/digits."""
    replacement: str | None = None
    """``redact``: replacement text; ``{entity}`` is replaced by the entity type. Default
    ``[REDACTED:{entity}]``."""

    @property
    def is_allow(self) -> bool:
        return self.kind == "allow"


ALLOW = ActionSpec("allow")


@dataclass(frozen=True)
class EntityPolicy:
    """The resolved rule for one entity type on one server/tool."""

    threshold: float
    """Minimum analyzer score at which a match counts on its score alone."""
    to_client: ActionSpec
    to_server: ActionSpec
    on_denied_reveal: Literal["pass", "deny"]
    protect_validated: bool = True
    """Validators over thresholds: a match its type's validator accepts is protected at any
    score (``guard.pii.validators``); ``false`` leaves it to the threshold."""


@dataclass(frozen=True)
class _Partial:
    threshold: float | None = None
    to_client: ActionSpec | None = None
    to_server: ActionSpec | None = None
    on_denied_reveal: Literal["pass", "deny"] | None = None
    protect_validated: bool | None = None


@dataclass(frozen=True)
class Override:
    server: str
    tool: str
    entity: str
    rule: _Partial

    def matches(self, entity: str, server: str, tool: str | None) -> bool:
        if not fnmatchcase(entity, self.entity) or not fnmatchcase(server, self.server):
            return False
        return self.tool == "*" or (tool is not None and fnmatchcase(tool, self.tool))


@dataclass(frozen=True)
class PatternSpec:
    name: str
    regex: str
    score: float


@dataclass(frozen=True)
class RecognizerSpec:
    """A custom recognizer declared in the rules file (regex patterns and/or a deny list)."""

    name: str
    entity: str
    patterns: tuple[PatternSpec, ...] = ()
    context: tuple[str, ...] = ()
    deny_list: tuple[str, ...] = ()
    deny_list_score: float = 1.0


@dataclass(frozen=True)
class PIIRules:
    """The parsed rules file. :meth:`resolve` gives the policy for (entity, server, tool)."""

    defaults: EntityPolicy = field(
        default_factory=lambda: EntityPolicy(0.5, ALLOW, ALLOW, "pass"))
    entities: Mapping[str, _Partial] = field(default_factory=dict)
    overrides: tuple[Override, ...] = ()
    recognizers: tuple[RecognizerSpec, ...] = ()
    context: Mapping[str, tuple[str, ...]] = field(default_factory=dict)
    """``[entities.X] context``: words that replace the type's recognizer context words."""
    scan_blobs: bool = False
    source: Path | None = None
    _cache: dict[tuple[str, str, str | None], EntityPolicy] = field(
        default_factory=dict, repr=False, compare=False)

    def resolve(self, entity: str, server: str, tool: str | None) -> EntityPolicy:
        """Defaults, then ``[entities.X]``, then every matching override in file order."""
        key = (entity, server, tool)
        cached = self._cache.get(key)
        if cached is not None:
            return cached
        layers = [self.entities.get(entity, _Partial())]
        layers += [o.rule for o in self.overrides if o.matches(entity, server, tool)]
        d = self.defaults
        threshold, to_client, to_server, reveal = d.threshold, d.to_client, d.to_server, d.on_denied_reveal
        validated = d.protect_validated
        for layer in layers:
            threshold = layer.threshold if layer.threshold is not None else threshold
            to_client = layer.to_client or to_client
            to_server = layer.to_server or to_server
            reveal = layer.on_denied_reveal or reveal
            validated = layer.protect_validated if layer.protect_validated is not None else validated
        policy = EntityPolicy(threshold, to_client, to_server, reveal, validated)
        if len(self._cache) < 4096:
            self._cache[key] = policy
        return policy

    def detected_entities(self) -> frozenset[str] | None:
        """Entity types the analyzer must look for; ``None`` means every supported type.

        Every type named in ``[entities]``, in an override (without globs) or by a custom
        recognizer; all types when a default action is not ``allow`` or an override uses
        an entity glob, since then an unnamed type can matter.
        """
        if not (self.defaults.to_client.is_allow and self.defaults.to_server.is_allow):
            return None
        names = set(self.entities) | {r.entity for r in self.recognizers}
        for o in self.overrides:
            if any(ch in o.entity for ch in "*?["):
                return None
            names.add(o.entity)
        return frozenset(names)

    def warnings(self) -> list[str]:
        """Settings that let values guard could validate through (``guard check-config`` prints them).

        With ``protect_validated = false`` the threshold alone decides; a threshold above the
        score Presidio gives a *valid* value of the type without a context word (a phone number
        scores 0.4, a dashed SSN 0.5, an IP address 0.6) lets such values through unprotected.
        """
        out: list[str] = []
        scopes: list[tuple[str, str, str | None]] = [("entities." + e, e, None) for e in sorted(self.entities)]
        scopes += [(f"overrides[{i}]", o.entity, o.tool if o.tool != "*" else None)
                   for i, o in enumerate(self.overrides) if o.entity in VALIDATED_SCORES]
        if not self.defaults.protect_validated:
            scopes += [("defaults", e, None) for e in sorted(VALIDATED_SCORES) if e not in self.entities]
        for where, entity, tool in scopes:
            score = VALIDATED_SCORES.get(entity)
            if score is None:
                continue
            policy = self.resolve(entity, "*", tool)
            if not policy.protect_validated and policy.threshold > score:
                out.append(f"pii.rules.{where}: threshold {policy.threshold:g} with protect_validated = false lets "
                           f"valid {entity} values through (Presidio scores them {score:g} without a context word)")
        return out

    def uses_keys(self) -> bool:
        """True if some action needs the key ring (hash, encrypt, tokenize)."""
        partials = [*self.entities.values(), *(o.rule for o in self.overrides)]
        specs = [self.defaults.to_client, self.defaults.to_server]
        for p in partials:
            specs += [s for s in (p.to_client, p.to_server) if s is not None]
        return any(s.kind in KEYED_ACTIONS for s in specs)


def _action(raw: Any, path: str, problems: ct.Problems) -> ActionSpec | None:
    if isinstance(raw, str):
        raw = {"action": raw}
    if not isinstance(raw, Mapping):
        problems.add(path, 'must be an action name or a table with "action"')
        return None
    ct.unknown_keys(raw, _ACTION_KEYS, path, problems)
    kind = raw.get("action")
    if kind not in ACTIONS:
        problems.add(path, f"action must be one of {', '.join(ACTIONS)}")
        return None
    keep_last = ct.get(raw, "keep_last", int, 4, path, problems)
    if keep_last < 0:
        problems.add(ct.join(path, "keep_last"), "must not be negative")
        keep_last = 4
    mask_char = ct.get(raw, "mask_char", str, "*", path, problems)
    if len(mask_char) != 1:
        problems.add(ct.join(path, "mask_char"), "must be a single character")
        mask_char = "*"
    replacement = ct.get(raw, "replacement", str, "", path, problems) or None
    return ActionSpec(kind, keep_last=keep_last, mask_char=mask_char, replacement=replacement)


def _partial(raw: Mapping[str, Any], path: str, problems: ct.Problems) -> _Partial:
    threshold: float | None = None
    if "threshold" in raw:
        value = ct.get(raw, "threshold", float, 0.5, path, problems)
        if not 0.0 <= value <= 1.0:
            problems.add(ct.join(path, "threshold"), "must be between 0 and 1")
        else:
            threshold = value
    to_client = _action(raw["to_client"], ct.join(path, "to_client"), problems) if "to_client" in raw else None
    to_server = _action(raw["to_server"], ct.join(path, "to_server"), problems) if "to_server" in raw else None
    reveal: Literal["pass", "deny"] | None = None
    if "on_denied_reveal" in raw:
        choice = ct.choice(raw, "on_denied_reveal", ("pass", "deny"), "pass", path, problems)
        reveal = "deny" if choice == "deny" else "pass"
    validated = ct.get(raw, "protect_validated", bool, True, path, problems) if "protect_validated" in raw else None
    return _Partial(threshold, to_client, to_server, reveal, validated)


def _recognizer(raw: Any, path: str, problems: ct.Problems) -> RecognizerSpec | None:
    if not isinstance(raw, Mapping):
        problems.add(path, "must be a table")
        return None
    ct.unknown_keys(raw, _RECOGNIZER_KEYS, path, problems)
    name = ct.get(raw, "name", str, "", path, problems)
    entity = ct.get(raw, "entity", str, "", path, problems)
    if not name:
        problems.add(path, "needs a name")
    if not ENTITY_NAME.match(entity):
        problems.add(ct.join(path, "entity"), "must be an upper-case entity name like EMPLOYEE_ID")
    patterns: list[PatternSpec] = []
    raw_patterns = raw.get("patterns", [])
    if not isinstance(raw_patterns, list):
        problems.add(ct.join(path, "patterns"), "must be a list of tables")
        raw_patterns = []
    for i, p in enumerate(raw_patterns):
        ppath = f"{path}.patterns[{i}]"
        if not isinstance(p, Mapping):
            problems.add(ppath, "must be a table")
            continue
        ct.unknown_keys(p, _PATTERN_KEYS, ppath, problems)
        rx = ct.get(p, "regex", str, "", ppath, problems)
        score = ct.get(p, "score", float, 0.5, ppath, problems)
        if not 0.0 < score <= 1.0:
            problems.add(ct.join(ppath, "score"), "must be in (0, 1]")
        try:
            regex.compile(rx)
        except regex.error as exc:
            problems.add(ct.join(ppath, "regex"), f"invalid regular expression: {exc}")
            continue
        if not rx:
            problems.add(ct.join(ppath, "regex"), "must not be empty")
            continue
        patterns.append(PatternSpec(ct.get(p, "name", str, f"{name}-{i}", ppath, problems), rx, score))
    deny_list = ct.str_list(raw, "deny_list", (), path, problems)
    if not patterns and not deny_list:
        problems.add(path, "needs patterns or a deny_list")
    return RecognizerSpec(
        name=name,
        entity=entity,
        patterns=tuple(patterns),
        context=ct.str_list(raw, "context", (), path, problems),
        deny_list=deny_list,
        deny_list_score=ct.get(raw, "deny_list_score", float, 1.0, path, problems),
    )


def parse_rules(raw: Mapping[str, Any], problems: ct.Problems, source: Path | None = None,
                path: str = "pii.rules") -> PIIRules:
    """Build :class:`PIIRules` from a decoded TOML document, adding every problem found."""
    ct.unknown_keys(raw, _TOP_KEYS, path, problems)
    version = ct.get(raw, "version", int, 1, path, problems)
    if version != 1:
        problems.add(ct.join(path, "version"), "only version 1 is supported")
    draw = ct.table(raw, "defaults", path, problems)
    ct.unknown_keys(draw, _DEFAULT_KEYS, ct.join(path, "defaults"), problems)
    dp = _partial(draw, ct.join(path, "defaults"), problems)
    base = EntityPolicy(0.5, ALLOW, ALLOW, "pass")
    defaults = EntityPolicy(
        threshold=dp.threshold if dp.threshold is not None else base.threshold,
        to_client=dp.to_client or base.to_client,
        to_server=dp.to_server or base.to_server,
        on_denied_reveal=dp.on_denied_reveal or base.on_denied_reveal,
        protect_validated=dp.protect_validated if dp.protect_validated is not None else True,
    )
    entities: dict[str, _Partial] = {}
    context: dict[str, tuple[str, ...]] = {}
    for name, body in ct.table(raw, "entities", path, problems).items():
        epath = f"{path}.entities.{name}"
        if not ENTITY_NAME.match(str(name)):
            problems.add(epath, "entity names are upper-case like EMAIL_ADDRESS")
            continue
        if not isinstance(body, Mapping):
            problems.add(epath, "must be a table")
            continue
        ct.unknown_keys(body, _RULE_KEYS | {"context"}, epath, problems)
        entities[str(name)] = _partial(body, epath, problems)
        if "context" in body:
            words = ct.str_list(body, "context", (), epath, problems)
            if not words:
                problems.add(ct.join(epath, "context"), "must list at least one word")
            context[str(name)] = tuple(w.lower() for w in words)
    overrides: list[Override] = []
    raw_overrides = raw.get("overrides", [])
    if not isinstance(raw_overrides, list):
        problems.add(ct.join(path, "overrides"), "must be an array of tables ([[overrides]])")
        raw_overrides = []
    for i, body in enumerate(raw_overrides):
        opath = f"{path}.overrides[{i}]"
        if not isinstance(body, Mapping):
            problems.add(opath, "must be a table")
            continue
        ct.unknown_keys(body, _OVERRIDE_KEYS, opath, problems)
        overrides.append(Override(
            server=ct.get(body, "server", str, "*", opath, problems),
            tool=ct.get(body, "tool", str, "*", opath, problems),
            entity=ct.get(body, "entity", str, "*", opath, problems),
            rule=_partial(body, opath, problems),
        ))
    recognizers: list[RecognizerSpec] = []
    raw_recognizers = raw.get("recognizers", [])
    if not isinstance(raw_recognizers, list):
        problems.add(ct.join(path, "recognizers"), "must be an array of tables ([[recognizers]])")
        raw_recognizers = []
    names: set[str] = set()
    for i, body in enumerate(raw_recognizers):
        spec = _recognizer(body, f"{path}.recognizers[{i}]", problems)
        if spec is not None:
            if spec.name in names:
                problems.add(f"{path}.recognizers[{i}]", f"duplicate recognizer name {spec.name!r}")
            names.add(spec.name)
            recognizers.append(spec)
    return PIIRules(
        defaults=defaults,
        entities=entities,
        overrides=tuple(overrides),
        recognizers=tuple(recognizers),
        context=context,
        scan_blobs=ct.get(draw, "scan_blobs", bool, False, ct.join(path, "defaults"), problems),
        source=source,
    )


def load_rules(path: Path, problems: ct.Problems, label: str = "pii.rules") -> PIIRules:
    """Read and parse a rules file; problems (unreadable, bad TOML, bad rules) are collected."""
    try:
        raw = tomllib.loads(path.read_text(encoding="utf-8"))
    except OSError as exc:
        problems.add(label, f"cannot read {path}: {exc.strerror}")
        return PIIRules(source=path)
    except tomllib.TOMLDecodeError as exc:
        problems.add(label, f"{path} is not valid TOML: {exc}")
        return PIIRules(source=path)
    return parse_rules(raw, problems, source=path.resolve(), path=label)
