"""Stack configuration: read once, validated as a whole, turned into frozen settings.

A config mistake in an infrastructure program is expensive to find late (a typo in
`allowedCidrs` silently leaves the database unreachable; `engineVersion: "16.3"` drifts
and fails on the next minor upgrade), so every problem is collected and reported
together before a single resource is declared.
"""

from __future__ import annotations

import difflib
import ipaddress
import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

PROJECT = "supabase-to-rds"
PORT = 5432
# Keys the driver sets for one `up` and removes afterwards (see automation/stack.py).
ACCESS_WINDOW_KEY = "accessWindowCidr"
APPLY_IMMEDIATELY_KEY = "applyImmediately"
SUPPORTED_MAJORS = range(13, 19)
MIN_GP3_STORAGE_GB = 20
MAX_STORAGE_GB = 65536
RESERVED_USERNAMES = {"rdsadmin", "rdsrepladmin", "rds_superuser", "postgres_fdw"}
NETWORK_MODES = ("default", "new")
PASSWORD_MODES = ("managed", "random")
# "A large part of the internet", counted in addresses that are routable on the public internet
# (private, shared, loopback, link-local, documentation, multicast and reserved blocks are not):
# more than a /8 of IPv4 (16.7 M addresses, 1/256 of the space) or more than a /32 of IPv6 (a
# whole ISP's allocation). Spelling does not matter: 0.0.0.0/1 + 128.0.0.0/1 counts as /0.
MAX_PUBLIC_V4 = 2 ** 24
MAX_PUBLIC_V6 = 2 ** 96
NON_PUBLIC_V4 = tuple(ipaddress.ip_network(n) for n in (
    "0.0.0.0/8", "10.0.0.0/8", "100.64.0.0/10", "127.0.0.0/8", "169.254.0.0/16", "172.16.0.0/12",
    "192.0.0.0/24", "192.0.2.0/24", "192.168.0.0/16", "198.18.0.0/15", "198.51.100.0/24",
    "203.0.113.0/24", "224.0.0.0/4", "240.0.0.0/4",
))
GLOBAL_UNICAST_V6 = ipaddress.ip_network("2000::/3")
DOCUMENTATION_V6 = ipaddress.ip_network("2001:db8::/32")


class ConfigError(Exception):
    """All problems with a stack's config, one per line."""

    def __init__(self, problems: list[str]) -> None:
        self.problems = problems
        super().__init__(
            "invalid stack configuration:\n" + "\n".join(f"  - {p}" for p in problems)
        )


@dataclass(frozen=True)
class NetworkSettings:
    mode: str = "default"
    cidr: str = "10.42.0.0/16"
    az_count: int = 2


def _overlap(a: ipaddress.IPv4Network | ipaddress.IPv6Network,
             b: ipaddress.IPv4Network | ipaddress.IPv6Network) -> int:
    """Addresses two CIDR blocks share: CIDR blocks are either nested or disjoint."""
    if a.version != b.version or not a.overlaps(b):
        return 0
    return min(a.num_addresses, b.num_addresses)


def public_addresses(cidrs: Iterable[str]) -> tuple[int, int]:
    """(IPv4, IPv6) addresses the union of `cidrs` covers on the public internet.

    Overlapping and adjacent blocks are merged first, so a range listed twice or split into
    halves counts once; the non-public blocks are disjoint, so subtracting overlaps is exact."""
    nets = [ipaddress.ip_network(c) for c in cidrs]
    v4 = ipaddress.collapse_addresses(n for n in nets if n.version == 4)
    v6 = ipaddress.collapse_addresses(n for n in nets if n.version == 6)
    public_v4 = sum(n.num_addresses - sum(_overlap(n, b) for b in NON_PUBLIC_V4) for n in v4)
    public_v6 = sum(_overlap(n, GLOBAL_UNICAST_V6) - _overlap(n, DOCUMENTATION_V6) for n in v6)
    return public_v4, public_v6


def covers_large_public_range(cidrs: Iterable[str]) -> bool:
    v4, v6 = public_addresses(cidrs)
    return v4 > MAX_PUBLIC_V4 or v6 > MAX_PUBLIC_V6


def is_public_address(cidr: str) -> bool:
    """True for a block on the public internet (the window then needs public accessibility)."""
    return any(public_addresses([cidr]))


@dataclass(frozen=True)
class AccessSettings:
    allowed_cidrs: tuple[str, ...] = ()
    allowed_security_group_ids: tuple[str, ...] = ()
    allow_public_internet: bool = False
    # One operator address (/32 or /128), set by `up --access window` for one run only.
    access_window_cidr: str | None = None
    # Where RDS may connect out to on 5432 (a logical-replication subscriber reaching Supabase).
    replication_source_cidrs: tuple[str, ...] = ()

    @property
    def opens_to_internet(self) -> bool:
        return covers_large_public_range(self.allowed_cidrs)


@dataclass(frozen=True)
class AccessWindow:
    """What one `up --access window` opens: shared by the program (which declares it) and the
    driver (which prints it before opening), so the two cannot disagree."""

    cidr: str
    public: bool

    def describe(self) -> str:
        what = f"PostgreSQL port {PORT} from {self.cidr} only (one security-group ingress rule)"
        if self.public:
            return what + (" and public accessibility on the instance (a public address; the security group "
                           "still admits only that address)")
        if ipaddress.ip_network(self.cidr).version == 6:
            return what + ("; the instance stays private: this stack's VPCs have no IPv6 route, so an IPv6 address "
                           "reaches it only through a dual-stack VPC of your own (pass an IPv4 --access-cidr otherwise)")
        return what + ("; the instance stays private (the address is not on the public internet, or the subnets "
                       "have no internet route)")


def access_window(settings: "StackSettings") -> AccessWindow | None:
    """Public accessibility only where it can help: a public IPv4 operator address (the VPCs this
    stack uses have no IPv6) and subnets with an internet route (the default VPC's default
    subnets, or `network.mode: new` with publiclyAccessible)."""
    cidr = settings.access.access_window_cidr
    if cidr is None:
        return None
    routable = settings.network.mode == "default" or settings.database.publicly_accessible
    ipv4 = ipaddress.ip_network(cidr).version == 4
    return AccessWindow(cidr, public=routable and ipv4 and is_public_address(cidr))


@dataclass(frozen=True)
class DatabaseSettings:
    engine_version: str = "16"
    instance_class: str = "db.t4g.micro"
    allocated_storage: int = 20
    max_allocated_storage: int = 100
    db_name: str = "app"
    master_username: str = "app_admin"
    password_mode: str = "managed"
    backup_retention_days: int = 7
    deletion_protection: bool = True
    skip_final_snapshot: bool = False
    publicly_accessible: bool = False
    multi_az: bool = False
    kms_key_id: str | None = None
    slow_query_ms: int = 1000
    apply_immediately: bool = False

    @property
    def parameter_family(self) -> str:
        return f"postgres{self.engine_version}"


def replication_route_problem(settings: "StackSettings") -> str | None:
    """Egress rules admit traffic; they do not route it. RDS reaches a source on the internet only
    with a public address (publiclyAccessible, subnets with an internet gateway) or a NAT gateway
    this stack does not create; an IPv6 source also needs a dual-stack VPC, which it does not build."""
    cidrs = [ipaddress.ip_network(c) for c in settings.access.replication_source_cidrs]
    public = [str(c) for c in cidrs if is_public_address(str(c))]
    if not public:
        return None
    problems = []
    if any(c.version == 6 for c in cidrs if str(c) in public):
        problems.append("IPv6 sources need a dual-stack VPC and instance, which this stack does not create: use "
                        "Supabase's IPv4 add-on and its IPv4 address")
    if not settings.database.publicly_accessible:
        problems.append("the instance has no public address, so it reaches the internet only through a NAT gateway "
                        "you provide (or set publiclyAccessible: true; inbound stays limited to allowedCidrs)")
    if not problems:
        return None
    return "replicationSourceCidrs " + ", ".join(public) + ": " + "; ".join(problems)


@dataclass(frozen=True)
class StackSettings:
    network: NetworkSettings = field(default_factory=NetworkSettings)
    access: AccessSettings = field(default_factory=AccessSettings)
    database: DatabaseSettings = field(default_factory=DatabaseSettings)
    tags: Mapping[str, str] = field(default_factory=dict)


# config key -> (section, field); `network` is a structured object of its own.
FLAT_KEYS: dict[str, tuple[str, str]] = {
    "allowedCidrs": ("access", "allowed_cidrs"),
    "allowedSecurityGroupIds": ("access", "allowed_security_group_ids"),
    "allowPublicInternet": ("access", "allow_public_internet"),
    ACCESS_WINDOW_KEY: ("access", "access_window_cidr"),
    "replicationSourceCidrs": ("access", "replication_source_cidrs"),
    "engineVersion": ("database", "engine_version"),
    "instanceClass": ("database", "instance_class"),
    "allocatedStorage": ("database", "allocated_storage"),
    "maxAllocatedStorage": ("database", "max_allocated_storage"),
    "dbName": ("database", "db_name"),
    "masterUsername": ("database", "master_username"),
    "passwordMode": ("database", "password_mode"),
    "backupRetentionDays": ("database", "backup_retention_days"),
    "deletionProtection": ("database", "deletion_protection"),
    "skipFinalSnapshot": ("database", "skip_final_snapshot"),
    "publiclyAccessible": ("database", "publicly_accessible"),
    "multiAz": ("database", "multi_az"),
    "kmsKeyId": ("database", "kms_key_id"),
    "slowQueryMs": ("database", "slow_query_ms"),
    APPLY_IMMEDIATELY_KEY: ("database", "apply_immediately"),
}
NETWORK_KEYS = {"mode": "mode", "cidr": "cidr", "azCount": "az_count"}
KNOWN_KEYS = {*FLAT_KEYS, "network", "tags"}


def decode(raw: str | None) -> Any:
    """Pulumi hands every value over as a string; structured values arrive as JSON."""
    if raw is None:
        return None
    try:
        return json.loads(raw)
    except ValueError:
        return raw


class _Checker:
    """Collects problems instead of stopping at the first one."""

    def __init__(self) -> None:
        self.problems: list[str] = []

    def fail(self, message: str) -> None:
        self.problems.append(message)

    def boolean(self, key: str, value: Any) -> bool | None:
        if isinstance(value, bool):
            return value
        if isinstance(value, str) and value.lower() in ("true", "false"):
            return value.lower() == "true"
        self.fail(f"{key}: expected true or false, got {value!r}")
        return None

    def integer(self, key: str, value: Any, low: int, high: int, hint: str = "") -> int | None:
        try:
            number = int(value)
        except (TypeError, ValueError):
            self.fail(f"{key}: expected a whole number, got {value!r}")
            return None
        if not low <= number <= high:
            self.fail(f"{key}: {number} is out of range {low}..{high}{hint}")
            return None
        return number

    def choice(self, key: str, value: Any, options: tuple[str, ...]) -> str | None:
        if value in options:
            return str(value)
        self.fail(f"{key}: unknown value {value!r}; use one of: {', '.join(options)}")
        return None

    def string_list(self, key: str, value: Any) -> list[str]:
        if isinstance(value, str):
            value = [value]
        if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
            self.fail(f"{key}: expected a list of strings, got {value!r}")
            return []
        return value

    def identifier(self, key: str, value: Any) -> str | None:
        text = str(value)
        ok = 0 < len(text) <= 63 and text[0].isalpha() and all(c.isalnum() or c == "_" for c in text)
        if not ok or not text.isascii():
            self.fail(f"{key}: {text!r} must start with a letter and hold only letters, digits and _ (max 63)")
            return None
        return text


def _check_cidrs(check: _Checker, key: str, cidrs: list[str], *, allow_public: bool) -> tuple[str, ...]:
    good = []
    for cidr in cidrs:
        try:
            good.append(str(ipaddress.ip_network(cidr, strict=True)))
        except ValueError as exc:
            check.fail(f"{key}: {cidr!r} is not a network in CIDR notation ({exc})")
    if covers_large_public_range(good) and not allow_public:
        v4, v6 = public_addresses(good)
        check.fail(
            f"{key}: {', '.join(good)} cover {v4:,} public IPv4 / {v6:.3g} public IPv6 addresses — the whole "
            "internet or a large part of it (more than a /8 of IPv4 or a /32 of IPv6); list your own networks "
            "instead, or set allowPublicInternet: true if you really mean it"
        )
    return tuple(good)


def _check_window(check: _Checker, value: Any) -> str | None:
    if value is None:
        return None
    try:
        net = ipaddress.ip_network(str(value), strict=True)
    except ValueError as exc:
        check.fail(f"accessWindowCidr: {value!r} is not an address in CIDR notation ({exc})")
        return None
    if net.prefixlen != net.max_prefixlen:
        check.fail(f"accessWindowCidr: {net} is a range; the access window admits exactly one address "
                   f"(/{net.max_prefixlen}), e.g. {net.network_address}/{net.max_prefixlen}")
        return None
    return str(net)


def _network(check: _Checker, raw: Any) -> NetworkSettings:
    if raw is None:
        return NetworkSettings()
    if isinstance(raw, str):
        raw = {"mode": raw}
    if not isinstance(raw, dict):
        check.fail(f"network: expected an object like {{mode: default}}, got {raw!r}")
        return NetworkSettings()
    values: dict[str, Any] = {}
    for key, value in raw.items():
        if key not in NETWORK_KEYS:
            check.fail(f"network.{key}: unknown key; known: {', '.join(NETWORK_KEYS)}")
        values[NETWORK_KEYS.get(key, key)] = value
    mode = check.choice("network.mode", values.get("mode", "default"), NETWORK_MODES) or "default"
    cidr = str(values.get("cidr", NetworkSettings.cidr))
    try:
        net = ipaddress.ip_network(cidr, strict=True)
        if net.version != 4 or not 16 <= net.prefixlen <= 24:
            check.fail(f"network.cidr: {cidr} must be an IPv4 block between /16 and /24")
    except ValueError as exc:
        check.fail(f"network.cidr: {cidr!r} does not parse ({exc})")
    az_count = check.integer("network.azCount", values.get("azCount", values.get("az_count", 2)), 2, 6,
                             " (RDS needs subnets in at least 2 availability zones)") or 2
    return NetworkSettings(mode=mode, cidr=cidr, az_count=az_count)


def _unknown_keys(check: _Checker, raw: Mapping[str, Any]) -> None:
    for key in raw:
        if key not in KNOWN_KEYS:
            close = difflib.get_close_matches(key, sorted(KNOWN_KEYS), n=1)
            hint = f" — did you mean {close[0]!r}?" if close else ""
            check.fail(f"{key}: unknown config key{hint}")


def _database(check: _Checker, values: dict[str, Any]) -> DatabaseSettings:
    d = DatabaseSettings()
    version = str(values.get("engine_version", d.engine_version))
    if not version.isdigit():
        check.fail(
            f"engineVersion: {version!r} — give the major version only (e.g. \"16\"); AWS upgrades minor "
            "versions automatically and a pinned minor shows as drift and fails as a downgrade"
        )
    elif int(version) not in SUPPORTED_MAJORS:
        check.fail(f"engineVersion: {version} is not a supported major ({SUPPORTED_MAJORS.start}..{SUPPORTED_MAJORS.stop - 1})")
    instance_class = str(values.get("instance_class", d.instance_class))
    if not instance_class.startswith("db."):
        check.fail(f"instanceClass: {instance_class!r} is not an RDS class (e.g. db.t4g.micro, db.m7g.large)")
    storage = check.integer("allocatedStorage", values.get("allocated_storage", d.allocated_storage),
                            MIN_GP3_STORAGE_GB, MAX_STORAGE_GB, " GB (gp3 needs at least 20 GB)")
    max_storage = check.integer("maxAllocatedStorage", values.get("max_allocated_storage", d.max_allocated_storage),
                                MIN_GP3_STORAGE_GB, MAX_STORAGE_GB, " GB")
    if storage and max_storage and max_storage <= storage:
        check.fail(f"maxAllocatedStorage: {max_storage} must be above allocatedStorage ({storage}) for storage autoscaling")
    username = check.identifier("masterUsername", values.get("master_username", d.master_username))
    if username and username.lower() in RESERVED_USERNAMES:
        check.fail(f"masterUsername: {username!r} is reserved by RDS; pick another name")
    kms = values.get("kms_key_id")
    return DatabaseSettings(
        engine_version=version,
        instance_class=instance_class,
        allocated_storage=storage or d.allocated_storage,
        max_allocated_storage=max_storage or d.max_allocated_storage,
        db_name=check.identifier("dbName", values.get("db_name", d.db_name)) or d.db_name,
        master_username=username or d.master_username,
        password_mode=check.choice("passwordMode", values.get("password_mode", d.password_mode), PASSWORD_MODES) or d.password_mode,
        backup_retention_days=check.integer("backupRetentionDays", values.get("backup_retention_days", d.backup_retention_days),
                                            1, 35, " days (RDS keeps automated backups 1..35 days)") or d.backup_retention_days,
        deletion_protection=_bool(check, "deletionProtection", values, "deletion_protection", d.deletion_protection),
        skip_final_snapshot=_bool(check, "skipFinalSnapshot", values, "skip_final_snapshot", d.skip_final_snapshot),
        publicly_accessible=_bool(check, "publiclyAccessible", values, "publicly_accessible", d.publicly_accessible),
        multi_az=_bool(check, "multiAz", values, "multi_az", d.multi_az),
        kms_key_id=str(kms) if kms else None,
        slow_query_ms=check.integer("slowQueryMs", values.get("slow_query_ms", d.slow_query_ms), -1, 3_600_000) or d.slow_query_ms,
        apply_immediately=_bool(check, APPLY_IMMEDIATELY_KEY, values, "apply_immediately", d.apply_immediately),
    )


def _bool(check: _Checker, key: str, values: dict[str, Any], name: str, default: bool) -> bool:
    if name not in values:
        return default
    result = check.boolean(key, values[name])
    return default if result is None else result


def _access(check: _Checker, values: dict[str, Any]) -> AccessSettings:
    allow_public = _bool(check, "allowPublicInternet", values, "allow_public_internet", False)
    cidrs = _check_cidrs(check, "allowedCidrs", check.string_list("allowedCidrs", values.get("allowed_cidrs", [])),
                         allow_public=allow_public)
    replication = _check_cidrs(
        check, "replicationSourceCidrs",
        check.string_list("replicationSourceCidrs", values.get("replication_source_cidrs", [])), allow_public=allow_public)
    groups = tuple(check.string_list("allowedSecurityGroupIds", values.get("allowed_security_group_ids", [])))
    for group in groups:
        if not group.startswith("sg-"):
            check.fail(f"allowedSecurityGroupIds: {group!r} is not a security group id (sg-…)")
    window = _check_window(check, values.get("access_window_cidr"))
    return AccessSettings(cidrs, groups, allow_public, window, replication)


def load_settings(raw: Mapping[str, Any]) -> StackSettings:
    """Validate decoded config values (key → value, without the project prefix)."""
    check = _Checker()
    _unknown_keys(check, raw)
    values: dict[str, dict[str, Any]] = {"access": {}, "database": {}}
    for key, (section, name) in FLAT_KEYS.items():
        if raw.get(key) is not None:
            values[section][name] = raw[key]
    network = _network(check, raw.get("network"))
    access = _access(check, values["access"])
    database = _database(check, values["database"])
    tags = raw.get("tags") or {}
    if not isinstance(tags, dict):
        check.fail(f"tags: expected a map of key: value, got {tags!r}")
        tags = {}
    if check.problems:
        raise ConfigError(check.problems)
    return StackSettings(network=network, access=access, database=database,
                         tags={str(k): str(v) for k, v in tags.items()})


def config_key(key: str) -> str:
    """The full `project:key` name Pulumi stores a setting under."""
    return f"{PROJECT}:{key}"


def raw_from_pulumi(all_config: Mapping[str, str]) -> dict[str, Any]:
    """The project's keys from Pulumi's flat `project:key` config map, decoded."""
    prefix = PROJECT + ":"
    return {k[len(prefix):]: decode(v) for k, v in all_config.items() if k.startswith(prefix)}
