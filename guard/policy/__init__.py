"""Authorization with Casbin: model, rules, indexed evaluation, hot reload, author tooling.

Modules (each with one job)::

    model.py       the Casbin model guard evaluates, naming convention, built-in rules
    glob.py        anchored, linear-time glob patterns (no regexes, no ReDoS)
    conditions.py  the declarative argument-condition column (never evaluated as code)
    targets.py     target limits; URIs with dot segments are refused
    rules.py       policy.csv -> typed rules and role links, with line-numbered errors
    engine.py      indexed immutable Snapshot, Authorizer.check()
    casbin_ref.py  the same model/rules in a real casbin.Enforcer (reference, explain)
    store.py       PolicyStore: load, atomic hot reload, status, reload events
    settings.py    [policy] configuration
    lint.py        guard policy check
    cases.py       guard policy test
    cli.py         guard policy check|test|explain

The pipeline stage lives in :mod:`guard.pipeline.authorize`. This package's ``__init__`` stays
import-light (configuration imports :mod:`guard.policy.settings`).
"""
