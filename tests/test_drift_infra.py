"""Infrastructure drift classification on engine events built from Pulumi's own event types
(the JSON shape `pulumi preview --json`/the Automation API emit, parsed by EngineEvent.from_json)."""

from __future__ import annotations

from typing import Any

from pulumi.automation.events import EngineEvent

from automation.drift_infra import BENIGN, DRIFT, findings_from_events

URN = "urn:pulumi:dev::supabase-to-rds::supabase-to-rds:infra:PostgresDatabase$"
INSTANCE = "aws:rds/instance:Instance"
SG = "aws:ec2/securityGroup:SecurityGroup"
LIVE = {"engineVersion": "16", "engineVersionActual": "16.4", "autoMinorVersionUpgrade": True,
        "publiclyAccessible": False, "backupRetentionPeriod": 7, "deletionProtection": True,
        "storageEncrypted": True, "allocatedStorage": 20, "maxAllocatedStorage": 100,
        "latestRestorableTime": "2026-11-24T01:00:00Z"}


def step(op: str, type_: str, name: str, old: dict[str, Any] | None, new: dict[str, Any] | None,
         diffs: list[str] | None = None, seq: int = 1) -> EngineEvent:
    meta: dict[str, Any] = {"op": op, "urn": f"{URN}{type_}::{name}", "type": type_, "provider": ""}
    if old is not None:
        meta["old"] = {"type": type_, "urn": meta["urn"], "outputs": old, "inputs": old}
    if new is not None:
        meta["new"] = {"type": type_, "urn": meta["urn"], "outputs": new, "inputs": new}
    if diffs is not None:
        meta["diffs"] = diffs
    return EngineEvent.from_json({"sequence": seq, "timestamp": 0, "resourcePreEvent": {"metadata": meta}})


def refresh(changes: dict[str, Any], type_: str = INSTANCE, base: dict[str, Any] | None = None) -> list[EngineEvent]:
    before = dict(LIVE if base is None else base)
    return [step("refresh", type_, "db", before, {**before, **changes})]


def only(findings: list) -> Any:
    assert len(findings) == 1, findings
    return findings[0]


def test_automatic_minor_upgrade_is_benign() -> None:
    f = only(findings_from_events(refresh({"engineVersionActual": "16.6", "latestRestorableTime": "later"})))
    assert (f.kind, f.property, f.expected, f.actual) == (BENIGN, "engineVersionActual", "16.4", "16.6")


def test_minor_upgrade_with_auto_upgrades_off_is_drift() -> None:
    events = refresh({"engineVersionActual": "16.6"}, base={**LIVE, "autoMinorVersionUpgrade": False})
    assert only(findings_from_events(events)).kind == DRIFT


def test_major_version_change_is_drift() -> None:
    assert only(findings_from_events(refresh({"engineVersionActual": "17.2"}))).kind == DRIFT


def test_public_access_switched_on_is_critical_drift() -> None:
    f = only(findings_from_events(refresh({"publiclyAccessible": True})))
    assert (f.kind, f.severity) == (DRIFT, "critical") and "public access switched on" in f.reason


def test_deletion_protection_off_and_encryption_change_are_critical() -> None:
    found = {f.property: f for f in findings_from_events(refresh({"deletionProtection": False, "storageEncrypted": False}))}
    assert set(found) == {"deletionProtection", "storageEncrypted"}
    assert all(f.kind == DRIFT and f.severity == "critical" for f in found.values())


def test_storage_autoscaling_is_benign_but_growth_past_the_ceiling_is_not() -> None:
    assert only(findings_from_events(refresh({"allocatedStorage": 40}))).kind == BENIGN
    assert only(findings_from_events(refresh({"allocatedStorage": 400}))).kind == DRIFT


def test_hand_opened_ingress_to_the_internet_is_named() -> None:
    rule = {"protocol": "tcp", "fromPort": 5432, "toPort": 5432}
    base = {"ingress": [{**rule, "cidrBlocks": ["10.0.0.0/8"]}], "egress": []}
    events = refresh({"ingress": base["ingress"] + [{**rule, "cidrBlocks": ["0.0.0.0/0"]}]}, type_=SG, base=base)
    f = only(findings_from_events(events))
    assert (f.kind, f.severity) == (DRIFT, "critical") and "0.0.0.0/0" in f.reason


def test_preview_update_after_refresh_reads_live_as_actual() -> None:
    live = {**LIVE, "backupRetentionPeriod": 1}
    declared = {**LIVE, "backupRetentionPeriod": 7}
    f = only(findings_from_events([step("update", INSTANCE, "db", live, declared, diffs=["backupRetentionPeriod"])]))
    assert (f.expected, f.actual, f.severity) == (7, 1, "critical")
    assert "7 → 1" in f.reason


def test_resource_deleted_outside_pulumi_is_drift() -> None:
    f = only(findings_from_events([step("refresh", INSTANCE, "db", LIVE, None)]))
    assert f.kind == DRIFT and "deleted outside Pulumi" in f.reason


def test_unchanged_and_volatile_differences_give_nothing() -> None:
    events = [step("same", INSTANCE, "db", LIVE, LIVE), *refresh({"latestRestorableTime": "2026-11-24T02:00:00Z"})]
    assert findings_from_events(events) == []


def test_refresh_and_preview_of_the_same_change_count_once() -> None:
    events = [*refresh({"publiclyAccessible": True}),
              step("update", INSTANCE, "db", {**LIVE, "publiclyAccessible": True}, LIVE, diffs=["publiclyAccessible"], seq=2)]
    assert len(findings_from_events(events)) == 1


# -- a refresh shaped like AWS's read-back: the group's inline rules include the stack's own ---

STACK_URN = "urn:pulumi:dev::supabase-to-rds::supabase-to-rds:infra:PostgresDatabase$"
INGRESS_RULE = "aws:vpc/securityGroupIngressRule:SecurityGroupIngressRule"
EGRESS_RULE = "aws:vpc/securityGroupEgressRule:SecurityGroupEgressRule"
DB_SG, CLIENT_SG = "sg-0d1b2a3c4e5f60718", "sg-0c11e47a5b6c7d8e9"
PROVIDER = "urn:pulumi:dev::supabase-to-rds::pulumi:providers:aws::default_7_11_0::04da6b54"


def _state(type_: str, name: str, id_: str, outputs: dict[str, Any]) -> dict[str, Any]:
    return {"type": type_, "urn": f"{STACK_URN}{type_}::{name}", "id": id_, "custom": True, "delete": False,
            "protect": False, "parent": "urn:pulumi:dev::supabase-to-rds::supabase-to-rds:infra:PostgresDatabase::db",
            "provider": PROVIDER, "inputs": {}, "outputs": {"id": id_, **outputs}}


def refresh_event(old: dict[str, Any], new: dict[str, Any] | None, seq: int, diffs: list[str] | None = None) -> EngineEvent:
    """The JSON the engine emits for one resource during `preview_refresh` (what `--json` prints)."""
    meta: dict[str, Any] = {"op": "refresh", "urn": old["urn"], "type": old["type"], "provider": PROVIDER,
                            "old": old, "new": new}
    if diffs:
        meta["diffs"] = diffs
        meta["detailedDiff"] = {d: {"diffKind": "update", "inputDiff": False} for d in diffs}
    return EngineEvent.from_json({"sequence": seq, "timestamp": 1764000000 + seq,
                                  "resourcePreEvent": {"metadata": meta, "planning": True}})


def rule_state(type_: str, name: str, rule_id: str, group: str, **target: str) -> dict[str, Any]:
    return _state(type_, name, rule_id, {
        "arn": f"arn:aws:ec2:eu-west-1:123456789012:security-group-rule/{rule_id}", "description": "PostgreSQL",
        "fromPort": 5432, "toPort": 5432, "ipProtocol": "tcp", "securityGroupId": group,
        "securityGroupRuleId": rule_id, "region": "eu-west-1", "tags": None, "tagsAll": {},
        "cidrIpv4": None, "cidrIpv6": None, "prefixListId": None, "referencedSecurityGroupId": None, **target,
    })


OWN_RULES = [
    rule_state(INGRESS_RULE, "supabase-to-rds-dev-db-cidr-0", "sgr-0aa", DB_SG, cidrIpv4="172.31.0.0/16"),
    rule_state(INGRESS_RULE, "supabase-to-rds-dev-db-group-0", "sgr-0bb", DB_SG, referencedSecurityGroupId=CLIENT_SG),
    rule_state(EGRESS_RULE, "supabase-to-rds-dev-db-replication-0", "sgr-0cc", DB_SG,
               cidrIpv6="2a05:d018:135e:1600::7/128"),
]


def inline(*, cidrs: list[str] = (), v6: list[str] = (), groups: list[str] = ()) -> dict[str, Any]:
    return {"cidrBlocks": list(cidrs), "ipv6CidrBlocks": list(v6), "prefixListIds": [], "securityGroups": list(groups),
            "description": "", "fromPort": 5432, "toPort": 5432, "protocol": "tcp", "self": False}


def db_group(ingress: list[dict[str, Any]], egress: list[dict[str, Any]]) -> dict[str, Any]:
    return _state(SG, "supabase-to-rds-dev-db", DB_SG, {
        "arn": f"arn:aws:ec2:eu-west-1:123456789012:security-group/{DB_SG}", "description": "PostgreSQL 5432 from "
        "the allowed networks only; no egress", "name": "supabase-to-rds-dev-db-7f3a1c2", "namePrefix": "",
        "ownerId": "123456789012", "region": "eu-west-1", "revokeRulesOnDelete": False, "vpcId": "vpc-0a1b2c3d",
        "tags": {"Name": "supabase-to-rds-dev-db"}, "tagsAll": {"Name": "supabase-to-rds-dev-db"},
        "ingress": ingress, "egress": egress,
    })


# What AWS reads back: the group's own rules, grouped per permission as DescribeSecurityGroups does.
OWN_INGRESS = [inline(cidrs=["172.31.0.0/16"]), inline(groups=[CLIENT_SG])]
OWN_EGRESS = [inline(v6=["2a05:d018:135e:1600::7/128"])]


def realistic_refresh(ingress: list[dict[str, Any]], egress: list[dict[str, Any]], *, rule_events: bool = True) -> list[EngineEvent]:
    recorded = db_group([], [])  # created before its rule resources, so recorded with none inline
    events = [refresh_event(recorded, db_group(ingress, egress), 1, diffs=["ingress", "egress"])]
    if rule_events:
        events += [refresh_event(rule, rule, seq) for seq, rule in enumerate(OWN_RULES, start=2)]
    return events


def test_stack_own_rules_read_back_inline_are_not_drift() -> None:
    assert findings_from_events(realistic_refresh(OWN_INGRESS, OWN_EGRESS)) == []


def test_own_rules_known_from_the_exported_state_alone_are_not_drift() -> None:
    events = realistic_refresh(OWN_INGRESS, OWN_EGRESS, rule_events=False)
    assert findings_from_events(events, resources=OWN_RULES) == []
    # without knowing the rule resources at all, the same read-back would look hand-made
    assert {f.property for f in findings_from_events(events)} == {"ingress", "egress"}


def test_hand_added_rule_is_named_without_the_stack_own() -> None:
    # AWS puts a hand-added CIDR into the same permission as the stack's own one
    ingress = [inline(cidrs=["172.31.0.0/16", "0.0.0.0/1", "128.0.0.0/1"]), inline(groups=[CLIENT_SG])]
    f = only(findings_from_events(realistic_refresh(ingress, OWN_EGRESS)))
    assert (f.resource, f.property, f.kind, f.severity) == ("supabase-to-rds-dev-db", "ingress", DRIFT, "critical")
    assert f.actual == ["0.0.0.0/1", "128.0.0.0/1"] and "whole internet" in f.reason
    assert "172.31.0.0/16" not in f.reason


def test_hand_added_office_range_and_own_egress_deleted_by_hand() -> None:
    ingress = [*OWN_INGRESS, inline(cidrs=["198.51.99.0/24"])]
    events = realistic_refresh(ingress, [], rule_events=False)
    events += [refresh_event(OWN_RULES[0], OWN_RULES[0], 2), refresh_event(OWN_RULES[1], OWN_RULES[1], 3),
               refresh_event(OWN_RULES[2], None, 4)]  # the replication egress rule, deleted in the console
    found = {f.property: f for f in findings_from_events(events)}
    assert set(found) == {"ingress", "*"}
    assert found["ingress"].severity == "critical" and "added by hand for 198.51.99.0/24" in found["ingress"].reason
    assert found["*"].resource == "supabase-to-rds-dev-db-replication-0" and "deleted outside Pulumi" in found["*"].reason


# -- an access window left open (a killed run): nothing differs, so it is looked for -----------

INSTANCE_STATE = _state(INSTANCE, "supabase-to-rds-dev-postgres", "db-ABC", {**LIVE, "publiclyAccessible": True})
WINDOW_RULE = rule_state(INGRESS_RULE, "supabase-to-rds-dev-db-window", "sgr-0dd", DB_SG, cidrIpv4="198.51.99.7/32")


def test_window_left_open_is_critical_drift() -> None:
    events = [refresh_event(INSTANCE_STATE, INSTANCE_STATE, 1), refresh_event(WINDOW_RULE, WINDOW_RULE, 2),
              *realistic_refresh([*OWN_INGRESS, inline(cidrs=["198.51.99.7/32"])], OWN_EGRESS)]
    config = {"supabase-to-rds:accessWindowCidr": "198.51.99.7/32", "aws:region": "eu-west-1"}
    found = {(f.resource, f.property): f for f in findings_from_events(events, config=config)}
    assert set(found) == {("stack config", "accessWindowCidr"), ("supabase-to-rds-dev-db-window", "*"),
                          ("supabase-to-rds-dev-postgres", "publiclyAccessible")}
    assert all(f.kind == DRIFT and f.severity == "critical" for f in found.values())
    assert "198.51.99.7/32" in found["stack config", "accessWindowCidr"].reason
    assert "up --stack" in found["supabase-to-rds-dev-db-window", "*"].reason


def test_public_access_the_stack_asks_for_is_not_a_window() -> None:
    events = [refresh_event(INSTANCE_STATE, INSTANCE_STATE, 1)]
    assert findings_from_events(events, config={"supabase-to-rds:publiclyAccessible": "true"}) == []
    assert only(findings_from_events(events, config={})).property == "publiclyAccessible"


def test_closed_window_leaves_nothing_to_report() -> None:
    private = _state(INSTANCE, "supabase-to-rds-dev-postgres", "db-ABC", LIVE)
    events = [refresh_event(private, private, 1), *realistic_refresh(OWN_INGRESS, OWN_EGRESS)]
    assert findings_from_events(events, config={"aws:region": "eu-west-1"}) == []
