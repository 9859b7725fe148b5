"""Infrastructure drift: what a refresh preview and a no-change preview say, classified.

Not every difference is a problem. AWS upgrades minor engine versions by itself while
auto minor upgrades are on, and storage autoscaling grows `allocatedStorage`: those are
*benign* and reported without failing. A hand-opened ingress rule, public access, shorter
backups, deletion protection off or changed encryption are *drift* and fail the check.

A security group's inline `ingress`/`egress` reads back from AWS with *every* rule the group
has, including the ones this stack declares as separate SecurityGroupIngressRule/EgressRule
resources; those are subtracted before anything is called "added by hand". An access window
that a killed run left open shows no difference at all (config, state and AWS agree), so it
is looked for explicitly: the window config key, the window rule, public access not asked for.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import asdict, dataclass
from typing import Any

from infra.config import ACCESS_WINDOW_KEY, config_key, covers_large_public_range

BENIGN, DRIFT = "benign", "drift"
INSTANCE = "aws:rds/instance:Instance"
SECURITY_GROUP = "aws:ec2/securityGroup:SecurityGroup"
RULE_TYPES = {"aws:vpc/securityGroupIngressRule:SecurityGroupIngressRule": "ingress",
              "aws:vpc/securityGroupEgressRule:SecurityGroupEgressRule": "egress"}
WINDOW_KEY = config_key(ACCESS_WINDOW_KEY)
PUBLIC_KEY = config_key("publiclyAccessible")
WINDOW_RULE_SUFFIX = "-db-window"
PROTOCOLS = {"6": "tcp", "17": "udp", "all": "-1"}
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


# One permission: protocol, from port, to port, and one source or destination (CIDR, prefix
# list or security group). AWS and the provider group them differently; atoms compare exactly.
Atom = tuple[str, int, int, str]


def _ports(protocol: str, low: Any, high: Any) -> tuple[int, int]:
    return (0, 0) if protocol == "-1" else (int(low or 0), int(high or 0))


def _protocol(value: Any) -> str:
    text = str(value or "-1").lower()
    return PROTOCOLS.get(text, text)


def inline_atoms(rules: Any) -> set[Atom]:
    """A security group's inline `ingress`/`egress` list, one atom per source."""
    found: set[Atom] = set()
    for rule in rules or []:
        protocol = _protocol(rule.get("protocol"))
        ports = _ports(protocol, rule.get("fromPort"), rule.get("toPort"))
        sources = [*(rule.get("cidrBlocks") or []), *(rule.get("ipv6CidrBlocks") or []),
                   *(rule.get("prefixListIds") or []), *(rule.get("securityGroups") or [])]
        if rule.get("self"):
            sources.append("self")
        found |= {(protocol, *ports, source) for source in sources}
    return found


def rule_atom(outputs: Mapping[str, Any]) -> Atom:
    """A SecurityGroupIngressRule/EgressRule resource's state as the atom its group reads back."""
    protocol = _protocol(outputs.get("ipProtocol"))
    source = (outputs.get("cidrIpv4") or outputs.get("cidrIpv6") or outputs.get("referencedSecurityGroupId")
              or outputs.get("prefixListId") or "")
    return (protocol, *_ports(protocol, outputs.get("fromPort"), outputs.get("toPort")), source)


def _sources(atoms: Iterable[Atom]) -> list[str]:
    return sorted({atom[3] for atom in atoms})


def _rules_changed(direction: str, added: set[Atom], removed: set[Atom]) -> Verdict:
    opened = _sources(added)
    cidrs = [s for s in opened if "/" in s]
    if set(opened) & OPEN_CIDRS or covers_large_public_range(cidrs):
        return DRIFT, "critical", f"{direction} opened to the whole internet by hand: " + ", ".join(opened)
    if added:
        return (DRIFT, "critical" if direction == "ingress" else "warning",
                f"{direction} rule added by hand for " + ", ".join(opened))
    return DRIFT, "warning", f"{direction} rule removed outside Pulumi: " + ", ".join(_sources(removed))


RULES: dict[tuple[str, str], Callable[[Any, Any, Mapping[str, Any]], Verdict]] = {
    (INSTANCE, "engineVersion"): _engine_version,
    (INSTANCE, "engineVersionActual"): _engine_version,
    (INSTANCE, "allocatedStorage"): _storage,
    (INSTANCE, "publiclyAccessible"): _public,
    (INSTANCE, "backupRetentionPeriod"): _backups,
    (INSTANCE, "deletionProtection"): _flag_off("deletion protection"),
    (INSTANCE, "storageEncrypted"): _encryption,
    (INSTANCE, "kmsKeyId"): _encryption,
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


def _steps(events: Iterable[Any]) -> list[Any]:
    return [pre.metadata for event in events if (pre := getattr(event, "resource_pre_event", None)) is not None]


def _sides(meta: Any) -> list[Mapping[str, Any]]:
    """Every state a step shows for its resource, as {id, outputs}."""
    return [{"id": getattr(side, "id", None), "outputs": dict(side.outputs or side.inputs or {})}
            for side in (meta.old, meta.new) if side is not None]


def own_rules(steps: Iterable[Any], resources: Iterable[Mapping[str, Any]] = ()) -> dict[tuple[str, str | None], set[Atom]]:
    """Atoms of the stack's own rule resources, by (direction, security group id)."""
    owned: dict[tuple[str, str | None], set[Atom]] = {}
    states = [(meta.type, side) for meta in steps for side in _sides(meta)]
    states += [(r.get("type"), {"outputs": r.get("outputs") or {}}) for r in resources]
    for type_, side in states:
        direction = RULE_TYPES.get(str(type_))
        if direction is not None:
            outputs = side["outputs"]
            owned.setdefault((direction, outputs.get("securityGroupId")), set()).add(rule_atom(outputs))
    return owned


def _group_rules(direction: str, group_id: str | None, expected: Any, actual: Any,
                 owned: Mapping[tuple[str, str | None], set[Atom]]) -> tuple[set[Atom], set[Atom]]:
    """(added, removed) inline atoms that none of the stack's own rule resources account for."""
    own = owned.get((direction, group_id), set()) | owned.get((direction, None), set())
    before, after = inline_atoms(expected), inline_atoms(actual)
    return after - before - own, before - after - own


def window_findings(steps: Iterable[Any], config: Mapping[str, Any] | None,
                    resources: Iterable[Mapping[str, Any]] = ()) -> list[InfraFinding]:
    """An access window that a killed run left open: nothing differs, so look for it by name."""
    found: list[InfraFinding] = []
    fix = " — close it: python -m automation up --stack <stack> (removes the window and applies)"
    if config and config.get(WINDOW_KEY):
        found.append(InfraFinding("stack config", "config", "accessWindowCidr", None, config[WINDOW_KEY], DRIFT,
                                  "critical", f"access window left open for {config[WINDOW_KEY]}{fix}"))
    names = {meta.urn.rsplit("::", 1)[-1] for meta in steps
             if meta.type in RULE_TYPES and meta.new is not None and getattr(meta.op, "value", meta.op) != "create"}
    names |= {str(r.get("urn", "")).rsplit("::", 1)[-1] for r in resources if r.get("type") in RULE_TYPES}
    for name in sorted(n for n in names if n.endswith(WINDOW_RULE_SUFFIX)):
        found.append(InfraFinding(name, "aws:vpc/securityGroupIngressRule:SecurityGroupIngressRule", "*", None, "exists",
                                  DRIFT, "critical", f"access window rule still exists{fix}"))
    if config is not None and str(config.get(PUBLIC_KEY, "false")).lower() != "true":
        for meta in steps:
            live = meta.new if getattr(meta.op, "value", meta.op) == "refresh" else meta.old
            if meta.type == INSTANCE and live is not None and (live.outputs or {}).get("publiclyAccessible"):
                found.append(InfraFinding(meta.urn.rsplit("::", 1)[-1], INSTANCE, "publiclyAccessible", False, True,
                                          DRIFT, "critical", "publicly accessible although the stack does not ask "
                                          f"for it (an access window left open, or switched on by hand){fix}"))
    return found


def findings_from_events(events: Iterable[Any], *, config: Mapping[str, Any] | None = None,
                         resources: Iterable[Mapping[str, Any]] = ()) -> list[InfraFinding]:
    """Findings from the ResourcePreEvents of a refresh preview and a regular preview.

    `config` is the stack's flat config (`project:key` → value) and `resources` the exported
    state's resources; with them, a window left open and the stack's own rules are recognised."""
    steps = _steps(events)
    resources = list(resources)
    owned = own_rules(steps, resources)
    findings: dict[tuple[str, str], InfraFinding] = {}
    for meta in steps:
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
        group_id = next((side["id"] or side["outputs"].get("id") for side in _sides(meta)), None)
        for prop in _changed_keys(meta, expected, actual):
            before, after = expected.get(prop), actual.get(prop)
            if meta.type == SECURITY_GROUP and prop in ("ingress", "egress"):
                added, removed = _group_rules(prop, group_id, before, after, owned)
                if not added and not removed:
                    continue  # only the stack's own rule resources, read back inline
                kind, severity, reason = _rules_changed(prop, added, removed)
                before, after = _sources(removed), _sources(added)
            else:
                kind, severity, reason = classify(meta.type, prop, before, after, context)
            findings.setdefault((name, prop), InfraFinding(name, meta.type, prop, before, after, kind, severity, reason))
    for finding in window_findings(steps, config, resources):
        findings.setdefault((finding.resource, finding.property), finding)
    return list(findings.values())
