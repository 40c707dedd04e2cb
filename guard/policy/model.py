"""The Casbin model guard evaluates, the subject naming convention and the built-in rules.

The model (shipped as ``policies/model.conf``, identical to :data:`MODEL_TEXT`) is an
RBAC-with-deny model over MCP messages::

    request  r = sub, srv, act, obj, args     principal, upstream, MCP method, target, arguments
    policy   p = sub, srv, act, obj, eft, cond
    effect   some(where (p.eft == allow)) && !some(where (p.eft == deny))

The effect is *default deny with deny-overrides*: a request is allowed only if some
``allow`` rule matches and no ``deny`` rule does. (``!some(where (p.eft == deny))`` alone
would allow everything that no rule mentions.)

guard evaluates this model with a compiled index (:mod:`guard.policy.engine`) instead of
pycasbin's per-rule expression loop, for speed; :mod:`guard.policy.casbin_ref` loads the very
same model and rules into a real :class:`casbin.Enforcer` as the reference implementation,
and the test-suite checks that both agree. Because the index implements *this* matcher, a
model whose matcher or effect differs is refused with an explanation rather than silently
evaluated differently.

Naming convention (injection-proof by construction: request data is never parsed):

* the authenticated principal's subject ``alice`` becomes ``user:alice``;
* each role claim ``analyst`` becomes ``role:analyst`` -- a role link for this request only,
  never written to the policy store;
* an unauthenticated session is ``anonymous``;
* ``*`` in a rule's subject column matches every principal.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Final

from guard import mcp

MODEL_TEXT: Final = """\
# guard's Casbin model: authorization for MCP messages.
#
# A request is: who (sub), which upstream server (srv), which MCP method (act),
# on what (obj: tool name, resource URI, prompt name, ...), with which arguments (args).
[request_definition]
r = sub, srv, act, obj, args

# A rule is: subject, server, method, target, effect (allow | deny), and an optional
# argument condition (cond), e.g.  p, role:analyst, db, tools/call, query, allow, database == analytics
[policy_definition]
p = sub, srv, act, obj, eft, cond

# Role links: g, user:alice, role:admin   (a user holds a role)
#             g, role:admin, role:support (admin inherits everything support may do)
# The roles in a caller's token are added as links for that one request only.
[role_definition]
g = _, _

# Default deny, and an explicit deny overrides any allow.
# (!some(where (p.eft == deny)) alone would allow every request no rule mentions.)
[policy_effect]
e = some(where (p.eft == allow)) && !some(where (p.eft == deny))

# subjectMatch: p.sub is *, the caller, or a role the caller holds (via token or g links).
# globMatch:    anchored glob; * = one path segment, ** = anything, a lone * = any value.
# argsMatch:    the declarative cond column over a read-only view of the arguments
#               (empty cond = no constraint); request data is never evaluated as code.
#               Conditions are true, false or undecidable (missing argument, wrong type):
#               an allow rule matches only when its condition is true, a deny rule
#               unless it is false -- so an undecidable condition denies.
[matchers]
m = subjectMatch(r.sub, p.sub) && globMatch(r.srv, p.srv) && globMatch(r.act, p.act) \\
    && globMatch(r.obj, p.obj) && argsMatch(r.args, p.cond, p.eft)
"""

REQUEST_TOKENS: Final = ("r_sub", "r_srv", "r_act", "r_obj", "r_args")
POLICY_TOKENS: Final = ("p_sub", "p_srv", "p_act", "p_obj", "p_eft", "p_cond")
EFFECT: Final = "some(where (p_eft == allow)) && !some(where (p_eft == deny))"
MATCHER: Final = (
    "subjectMatch(r_sub, p_sub) && globMatch(r_srv, p_srv) && globMatch(r_act, p_act) "
    "&& globMatch(r_obj, p_obj) && argsMatch(r_args, p_cond, p_eft)"
)
LEGACY_MATCHER: Final = MATCHER.replace("argsMatch(r_args, p_cond, p_eft)", "argsMatch(r_args, p_cond)")
"""The matcher before conditions became three-valued (refused with a pointer to the change)."""

USER_PREFIX: Final = "user:"
ROLE_PREFIX: Final = "role:"
ANONYMOUS_SUBJECT: Final = "anonymous"
ANY_SUBJECT: Final = "*"

PII_REVEAL: Final = "pii/reveal"
"""Action the PII stage checks before revealing a protected value (obj ``<tool>/<ENTITY_TYPE>``)."""
RESPONSE_PREFIX: Final = "response/"
"""Action prefix for a client's response to a server->client request (``response/roots/list``)."""

BUILTIN_ALLOWED_METHODS: Final = (
    mcp.INITIALIZE,
    mcp.PING,
    mcp.SERVER_DISCOVER,
    "notifications/initialized",
    "notifications/cancelled",
    "notifications/progress",
    "notifications/roots/list_changed",
)
"""Protocol plumbing allowed for everyone unless a rule denies it."""

BUILTIN_RULES: Final = tuple(
    ("*", "*", method, "*", "allow", "") for method in (*BUILTIN_ALLOWED_METHODS, RESPONSE_PREFIX + "**")
)
"""Rules prepended to every policy (``*`` subject), shown as ``builtin`` in decisions."""

KNOWN_NOTIFICATIONS: Final = frozenset(
    {
        "notifications/initialized",
        "notifications/cancelled",
        "notifications/progress",
        "notifications/roots/list_changed",
        "notifications/message",
        "notifications/resources/updated",
        "notifications/resources/list_changed",
        "notifications/tools/list_changed",
        "notifications/prompts/list_changed",
        "notifications/tasks/status",
    }
)
KNOWN_ACTIONS: Final = frozenset(
    mcp.CLIENT_REQUESTS
    | mcp.SERVER_REQUESTS
    | KNOWN_NOTIFICATIONS
    | {PII_REVEAL, "tasks/get", "tasks/result", "tasks/list", "tasks/cancel"}
    | {RESPONSE_PREFIX + m for m in mcp.SERVER_REQUESTS}
)
"""Every action guard knows how to produce, for ``guard policy check``'s unknown-action warning."""


class ModelError(ValueError):
    """The model file is not valid, or not the model guard evaluates."""


@dataclass(frozen=True, slots=True)
class ModelInfo:
    """A validated model: its text (for the Casbin reference enforcer)."""

    text: str


def _squash(text: str) -> str:
    return re.sub(r"\s+", "", text)


def validate_model(text: str) -> ModelInfo:
    """Parse ``text`` with pycasbin and check it is the model guard's index evaluates.

    Raises :class:`ModelError` naming the first section that differs, so an operator who edits
    the matcher learns that guard would not honour the edit (instead of being silently ignored).
    """
    from casbin.model import Model  # local import: pycasbin is only needed at load time

    model = Model()
    try:
        model.load_model_from_text(text)
    except Exception as exc:  # pycasbin raises bare Exceptions for syntax errors
        raise ModelError(f"model does not parse: {exc}") from exc
    sections = {key: model[key] for key in model.keys()}
    for key, name in (("r", "request_definition"), ("p", "policy_definition"), ("e", "policy_effect"),
                      ("m", "matchers")):
        if key not in sections or key not in sections[key]:
            raise ModelError(f"model has no [{name}] {key} = ...")
    if tuple(t.strip() for t in model["r"]["r"].tokens) != REQUEST_TOKENS:
        raise ModelError("[request_definition] must be: r = sub, srv, act, obj, args")
    if tuple(t.strip() for t in model["p"]["p"].tokens) != POLICY_TOKENS:
        raise ModelError("[policy_definition] must be: p = sub, srv, act, obj, eft, cond")
    if "g" not in sections or "g" not in sections["g"] or _squash(model["g"]["g"].value) != "_,_":
        raise ModelError("[role_definition] must be: g = _, _")
    if _squash(model["e"]["e"].value) != _squash(EFFECT):
        raise ModelError(
            "[policy_effect] must be: e = some(where (p.eft == allow)) && !some(where (p.eft == deny)) "
            "(default deny, deny overrides)"
        )
    if _squash(model["m"]["m"].value) == _squash(LEGACY_MATCHER):
        raise ModelError(
            "[matchers] uses argsMatch(r.args, p.cond); conditions are three-valued now and a deny rule "
            "with an undecidable condition denies, which the matcher must say: use argsMatch(r.args, p.cond, p.eft)"
        )
    if _squash(model["m"]["m"].value) != _squash(MATCHER):
        raise ModelError(
            "[matchers] differs from the matcher guard evaluates; keep: m = subjectMatch(r.sub, p.sub) && "
            "globMatch(r.srv, p.srv) && globMatch(r.act, p.act) && globMatch(r.obj, p.obj) && "
            "argsMatch(r.args, p.cond, p.eft)"
        )
    return ModelInfo(text=text)
