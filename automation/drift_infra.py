"""Infrastructure drift: what a refresh preview and a no-change preview say, classified.

Not every difference is a problem. AWS upgrades minor engine versions by itself while
auto minor upgrades are on, and storage autoscaling grows `allocatedStorage`: those are
*benign* and reported without failing. A hand-opened ingress rule, public access, shorter
backups, deletion protection off or changed encryption are *drift* and fail the check.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import asdict, dataclass
from typing import Any

BENIGN, DRIFT = "benign", "drift"
INSTANCE = "aws:rds/instance:Instance"
SECURITY_GROUP = "aws:ec2/securityGroup:SecurityGroup"
# Attributes AWS changes continuously; a difference in them says nothing about configuration.
VOLATILE = {"latestRestorableTime", "status", "__meta", "__inputs", "hostedZoneId", "tagsAll", "resourceId"}
OPEN_CIDRS = {"0.0.0.0/0", "::/0"}
UNCHANGED_OPS = {"same", "read", "discard"}


@dataclass(frozen=True)
class InfraFinding:
    resource: str
    type: str
    property: str
    expected: Any
    actual: Any
    kind: str
    severity: str
    reason: str

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


Verdict = tuple[str, str, str]  # kind, severity, reason
# Every rule is called as rule(expected, actual, state): expected is what Pulumi declared or
# recorded, actual is what AWS has now.


def _major(version: Any) -> str:
    return str(version or "").split(".")[0]


def _version_tuple(version: Any) -> tuple[int, ...]:
    return tuple(int(p) for p in str(version or "0").split(".") if p.isdigit())


def _engine_version(expected: Any, actual: Any, state: Mapping[str, Any]) -> Verdict:
    auto = state.get("autoMinorVersionUpgrade", True)
    if _major(expected) == _major(actual) and _version_tuple(actual) >= _version_tuple(expected) and auto:
        return BENIGN, "info", f"AWS applied an automatic minor upgrade {expected} → {actual}"
    return DRIFT, "warning", f"engine version changed outside Pulumi {expected} → {actual}"


def _storage(expected: Any, actual: Any, state: Mapping[str, Any]) -> Verdict:
    ceiling = state.get("maxAllocatedStorage") or 0
    if isinstance(expected, int) and isinstance(actual, int) and expected < actual <= ceiling:
        return BENIGN, "info", f"storage autoscaling grew the volume {expected} → {actual} GB"
    return DRIFT, "warning", f"allocated storage changed outside Pulumi {expected} → {actual}"


def _flag_off(what: str) -> Callable[[Any, Any, Mapping[str, Any]], Verdict]:
    def rule(expected: Any, actual: Any, _state: Mapping[str, Any]) -> Verdict:
        return DRIFT, "critical" if not actual else "warning", f"{what} switched {'off' if not actual else 'on'} outside Pulumi"
    return rule


def _public(expected: Any, actual: Any, _state: Mapping[str, Any]) -> Verdict:
    return DRIFT, "critical" if actual else "warning", f"public access switched {'on' if actual else 'off'} outside Pulumi"


def _backups(expected: Any, actual: Any, _state: Mapping[str, Any]) -> Verdict:
    shorter = isinstance(expected, int) and isinstance(actual, int) and actual < expected
    return DRIFT, "critical" if shorter else "warning", f"backup retention changed {expected} → {actual} days"


def _encryption(expected: Any, actual: Any, _state: Mapping[str, Any]) -> Verdict:
    return DRIFT, "critical", f"storage encryption changed {expected} → {actual}"


def _cidrs(rules: Any) -> set[str]:
    found: set[str] = set()
    for rule in rules or []:
        found |= set(rule.get("cidrBlocks") or []) | set(rule.get("ipv6CidrBlocks") or [])
    return found


def _ingress(expected: Any, actual: Any, _state: Mapping[str, Any]) -> Verdict:
    opened = _cidrs(actual) - _cidrs(expected)
    if opened & OPEN_CIDRS:
        return DRIFT, "critical", "ingress opened to the whole internet by hand: " + ", ".join(sorted(opened))
    if opened:
        return DRIFT, "critical", "ingress rule added by hand for " + ", ".join(sorted(opened))
    return DRIFT, "warning", "ingress rules changed outside Pulumi"


RULES: dict[tuple[str, str], Callable[[Any, Any, Mapping[str, Any]], Verdict]] = {
    (INSTANCE, "engineVersion"): _engine_version,
    (INSTANCE, "engineVersionActual"): _engine_version,
    (INSTANCE, "allocatedStorage"): _storage,
    (INSTANCE, "publiclyAccessible"): _public,
    (INSTANCE, "backupRetentionPeriod"): _backups,
    (INSTANCE, "deletionProtection"): _flag_off("deletion protection"),
    (INSTANCE, "storageEncrypted"): _encryption,
    (INSTANCE, "kmsKeyId"): _encryption,
    (SECURITY_GROUP, "ingress"): _ingress,
    (SECURITY_GROUP, "egress"): lambda expected, actual, state: (DRIFT, "warning", "egress rules changed outside Pulumi"),
}


def classify(type_: str, prop: str, expected: Any, actual: Any, state: Mapping[str, Any]) -> Verdict:
    rule = RULES.get((type_, prop))
    if rule is not None:
        return rule(expected, actual, state)
    return DRIFT, "warning", f"{prop} changed outside Pulumi"


def _changed_keys(meta: Any, old: Mapping[str, Any], new: Mapping[str, Any]) -> list[str]:
    """The engine's own diff keys when it gives them, else a comparison of the two states."""
    keys = list(meta.diffs or []) or list(meta.detailed_diff or {})
    if not keys:
        keys = [k for k in sorted(set(old) | set(new)) if old.get(k) != new.get(k)]
    return [k.split(".")[0].split("[")[0] for k in keys if k.split(".")[0].split("[")[0] not in VOLATILE]


def _state(side: Any, *, inputs: bool) -> dict[str, Any]:
    if side is None:
        return {}
    return dict((side.inputs if inputs else side.outputs) or side.outputs or {})


def findings_from_events(events: Iterable[Any]) -> list[InfraFinding]:
    """Findings from the ResourcePreEvents of a refresh preview and a regular preview."""
    findings: dict[tuple[str, str], InfraFinding] = {}
    for event in events:
        pre = getattr(event, "resource_pre_event", None)
        if pre is None:
            continue
        meta = pre.metadata
        op = getattr(meta.op, "value", meta.op)
        if op in UNCHANGED_OPS or meta.type == "pulumi:pulumi:Stack":
            continue
        name = meta.urn.rsplit("::", 1)[-1]
        if op in ("create", "delete") or (op == "refresh" and meta.new is None):
            gone = op != "delete"
            finding = InfraFinding(name, meta.type, "*", None, None, DRIFT, "critical" if meta.type == INSTANCE else "warning",
                                   "deleted outside Pulumi (would be re-created)" if gone else "exists but is no longer declared")
            findings.setdefault((name, "*"), finding)
            continue
        # A refresh goes from the recorded state (expected) to the live one (actual); an update
        # goes from the live state, as refreshed, to what the program declares.
        if op == "refresh":
            expected, actual = _state(meta.old, inputs=False), _state(meta.new, inputs=False)
        else:
            expected, actual = _state(meta.new, inputs=True), _state(meta.old, inputs=False)
        context = {**actual, **expected}
        for prop in _changed_keys(meta, expected, actual):
            kind, severity, reason = classify(meta.type, prop, expected.get(prop), actual.get(prop), context)
            findings.setdefault((name, prop), InfraFinding(name, meta.type, prop, expected.get(prop), actual.get(prop),
                                                           kind, severity, reason))
    return list(findings.values())
