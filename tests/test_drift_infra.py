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
