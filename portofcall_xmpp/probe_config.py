"""
Modules for C{GET /probe} (SPEC §9), in the XMPP Blackbox Exporter's shape.

A module says which prober runs (C{c2s}, C{s2s}, C{login}, C{ping}), how long
it may take, and what makes it fail.  Four modules are built in, named as
C{prosodyctl check connectivity} and the exporter's example configuration
name them; C{--probe-config FILE} adds more from YAML::

    modules:
      c2s_strict:
        prober: c2s
        timeout: 15s
        c2s:
          directtls: false
          fail_if_sasl_mechanism_offered: [PLAIN]
          restrict_ip_version: ipv4
      ping_home:
        prober: ping
        ping:
          account: monitor
          fail_if_not:
            - success: true
            - error_condition: remote-server-not-found
    accounts:
      monitor:
        client_address: monitor@example.org
        client_password: secret

Accounts live only in the file: a password never appears in a URL, and
L{Account}'s C{repr} leaves it out.  Every mistake in the file is a
L{ConfigError} naming the file and line.
"""

from __future__ import annotations

import re

import attrs
import yaml

from .errors import RequestError
from .names import InvalidJID, parse_jid
from .validate import check_domain

PROBERS = ("c2s", "s2s", "login", "ping")
IP_VERSIONS = {"ipv4": 4, "ipv6": 6}
_DURATION = re.compile(r"^([0-9]+)(ms|s|m|h|d|w|y)$")
_UNITS = {"ms": 0.001, "s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800, "y": 31536000}


class ConfigError(Exception):
    """The probe configuration file is not usable; the message names file and line."""


@attrs.frozen
class PingResult:
    """One acceptable outcome of a ping (C{fail_if_not}): a pong, or an error that matches."""

    success: bool = False
    error_type: str | None = None
    error_condition: str | None = None

    def matches(self, success: bool, error_type: str | None, condition: str | None) -> bool:
        if self.success:
            return success
        if success:
            return False
        if self.error_type is not None and self.error_type != error_type:
            return False
        return self.error_condition is None or self.error_condition == condition


@attrs.frozen
class Account:
    """A provisioned account for the C{login} and C{ping} probers."""

    name: str
    address: str
    password: str = attrs.field(repr=False)
    directtls: bool = False


@attrs.frozen
class Module:
    """
    One C{/probe} module.

    @ivar timeout: seconds, or L{None} for the endpoint's own default.
    @ivar restrict_ip_version: 4, 6, or L{None} for either.
    @ivar from_: the s2s stream's C{from}, or L{None}.
    @ivar fail_if_not: for C{ping}: the acceptable results (default: a pong).
    """

    name: str
    prober: str
    timeout: float | None = None
    directtls: bool = False
    tls_verify: bool = True
    fail_if_sasl_mechanism_offered: tuple[str, ...] = ()
    fail_if_sasl_mechanism_not_offered: tuple[str, ...] = ()
    fail_if_dialback_offered: bool = False
    fail_if_dialback_not_offered: bool = False
    restrict_ip_version: int | None = None
    from_: str | None = None
    account: Account | None = None
    fail_if_not: tuple[PingResult, ...] = (PingResult(success=True),)


BUILTIN_MODULES = {
    "c2s_normal_auth": Module("c2s_normal_auth", "c2s"),
    "c2s_direct_tls": Module("c2s_direct_tls", "c2s", directtls=True),
    "s2s_normal": Module("s2s_normal", "s2s"),
    "s2s_direct_tls": Module("s2s_direct_tls", "s2s", directtls=True),
}

# The keys each section may hold: key -> reader(node, where) -> value.
_TLS_CONFIG_KEYS = ("insecure_skip_verify",)


class _Reader:
    """Reads the composed YAML tree, so every error can name its line."""

    def __init__(self, path: str):
        self.path = path

    def fail(self, node, message: str):
        line = node.start_mark.line + 1 if node is not None else 1
        raise ConfigError(f"{self.path}:{line}: {message}")

    def mapping(self, node, what: str, allowed=None) -> dict:
        if node is None or (isinstance(node, yaml.ScalarNode) and node.value in ("", "~", "null")):
            return {}
        if not isinstance(node, yaml.MappingNode):
            self.fail(node, f"{what} must be a mapping")
        found = {}
        for key_node, value_node in node.value:
            key = self.string(key_node, f"a key of {what}")
            if key in found:
                self.fail(key_node, f"{what}: {key!r} is given twice")
            if allowed is not None and key not in allowed:
                self.fail(
                    key_node,
                    f"{what}: unknown key {key!r} (known: {', '.join(sorted(allowed))})",
                )
            found[key] = value_node
        return found

    def string(self, node, what: str) -> str:
        if not isinstance(node, yaml.ScalarNode) or node.tag.endswith((":map", ":seq")):
            self.fail(node, f"{what} must be a string")
        if node.tag == "tag:yaml.org,2002:null" or node.value == "":
            self.fail(node, f"{what} must not be empty")
        return node.value

    def boolean(self, node, what: str) -> bool:
        if isinstance(node, yaml.ScalarNode) and node.value in ("true", "True", "false", "False"):
            return node.value in ("true", "True")
        self.fail(node, f"{what} must be true or false")

    def strings(self, node, what: str) -> tuple[str, ...]:
        if not isinstance(node, yaml.SequenceNode):
            self.fail(node, f"{what} must be a list")
        return tuple(self.string(item, f"an item of {what}") for item in node.value)

    def duration(self, node, what: str) -> float:
        text = self.string(node, what)
        match = _DURATION.match(text)
        if match is None or int(match.group(1)) == 0:
            self.fail(node, f"{what} must be a duration such as 500ms, 10s or 1m, not {text!r}")
        return int(match.group(1)) * _UNITS[match.group(2)]

    def ip_version(self, node, what: str) -> int:
        text = self.string(node, what)
        if text not in IP_VERSIONS:
            self.fail(node, f"{what} must be ipv4 or ipv6, not {text!r}")
        return IP_VERSIONS[text]


def _check_domain(reader: _Reader, node, text: str, what: str) -> str:
    try:
        return check_domain(text, what)
    except RequestError as e:
        reader.fail(node, str(e))


def _check_jid(reader: _Reader, node, text: str, what: str) -> str:
    try:
        jid = parse_jid(text)
    except InvalidJID as e:
        reader.fail(node, f"{what}: {e}")
    if jid.local is None:
        reader.fail(node, f"{what} must be an account's JID (user@domain), not {text!r}")
    return jid.bare


def _accounts(reader: _Reader, node) -> dict[str, Account]:
    accounts = {}
    for name, section in reader.mapping(node, "accounts").items():
        what = f"accounts.{name}"
        fields = reader.mapping(
            section, what, ("client_address", "client_password", "directtls", "tls_config",
                            "health_check_timeout")
        )
        for required in ("client_address", "client_password"):
            if required not in fields:
                reader.fail(section, f"{what}: {required} is required")
        address_node = fields["client_address"]
        address = _check_jid(
            reader, address_node, reader.string(address_node, f"{what}.client_address"),
            f"{what}.client_address",
        )
        password = reader.string(fields["client_password"], f"{what}.client_password")
        directtls = reader.boolean(fields["directtls"], f"{what}.directtls") if (
            "directtls" in fields
        ) else False
        accounts[name] = Account(name, address, password, directtls)
    return accounts


_SECTION_KEYS = {
    "c2s": (
        "directtls", "tls_config", "fail_if_sasl_mechanism_not_offered",
        "fail_if_sasl_mechanism_offered", "export_sasl_mechanisms", "restrict_ip_version",
    ),
    "s2s": (
        "from", "directtls", "tls_config", "fail_if_sasl_mechanism_not_offered",
        "fail_if_sasl_mechanism_offered", "fail_if_dialback_offered",
        "fail_if_dialback_not_offered", "export_auth_mechanisms", "restrict_ip_version",
    ),
    "login": (
        "account", "directtls", "tls_config", "fail_if_sasl_mechanism_not_offered",
        "fail_if_sasl_mechanism_offered", "restrict_ip_version",
    ),
    "ping": (
        "account", "fail_if_not", "no_shared_connection", "ping_timeout", "tls_config",
        "restrict_ip_version",
    ),
}


def _module(reader: _Reader, name: str, node, accounts: dict[str, Account]) -> Module:
    what = f"modules.{name}"
    fields = reader.mapping(node, what, ("prober", "timeout", *PROBERS, "ibr"))
    if "prober" not in fields:
        reader.fail(node, f"{what}: prober is required (one of {', '.join(PROBERS)})")
    prober = reader.string(fields["prober"], f"{what}.prober")
    if prober not in PROBERS:
        reader.fail(
            fields["prober"],
            f"{what}: unknown prober {prober!r} (this service runs {', '.join(PROBERS)})",
        )
    for other in (*PROBERS, "ibr"):
        if other != prober and other in fields:
            reader.fail(fields[other], f"{what}: a {prober} module has no {other} section")
    values = {"name": name, "prober": prober}
    if "timeout" in fields:
        values["timeout"] = reader.duration(fields["timeout"], f"{what}.timeout")
    section_node = fields.get(prober)
    where = f"{what}.{prober}"
    section = reader.mapping(section_node, where, _SECTION_KEYS[prober])
    for key, value_node in section.items():
        key_what = f"{where}.{key}"
        if key in ("directtls", "fail_if_dialback_offered", "fail_if_dialback_not_offered"):
            values[key] = reader.boolean(value_node, key_what)
        elif key in ("fail_if_sasl_mechanism_offered", "fail_if_sasl_mechanism_not_offered"):
            values[key] = tuple(m.upper() for m in reader.strings(value_node, key_what))
        elif key == "restrict_ip_version":
            values[key] = reader.ip_version(value_node, key_what)
        elif key == "tls_config":
            tls = reader.mapping(value_node, key_what, _TLS_CONFIG_KEYS)
            if "insecure_skip_verify" in tls:
                values["tls_verify"] = not reader.boolean(
                    tls["insecure_skip_verify"], f"{key_what}.insecure_skip_verify"
                )
        elif key == "from":
            text = reader.string(value_node, key_what)
            values["from_"] = _check_domain(reader, value_node, text, key_what)
        elif key == "account":
            account = reader.string(value_node, key_what)
            if account not in accounts:
                reader.fail(value_node, f"{key_what}: no account named {account!r} in accounts")
            values["account"] = accounts[account]
        elif key == "fail_if_not":
            values[key] = _ping_results(reader, value_node, key_what)
        # export_sasl_mechanisms, export_auth_mechanisms, no_shared_connection,
        # ping_timeout: accepted for compatibility; this service always exports
        # the mechanisms, never shares a connection, and times the whole probe.
    if values.get("fail_if_dialback_offered") and values.get("fail_if_dialback_not_offered"):
        reader.fail(section_node, f"{where}: cannot both require and forbid dialback")
    if prober in ("login", "ping") and "account" not in values:
        reader.fail(section_node or node, f"{where}: account is required")
    if prober in ("login", "ping") and "directtls" not in values:
        values["directtls"] = values["account"].directtls
    return Module(**values)


def _ping_results(reader: _Reader, node, what: str) -> tuple[PingResult, ...]:
    if not isinstance(node, yaml.SequenceNode) or not node.value:
        reader.fail(node, f"{what} must be a non-empty list")
    results = []
    for item in node.value:
        fields = reader.mapping(item, f"an item of {what}", ("success", "error_type",
                                                             "error_condition"))
        if not fields:
            reader.fail(item, f"an item of {what} must say what it matches")
        results.append(
            PingResult(
                success=reader.boolean(fields["success"], f"{what}.success")
                if "success" in fields
                else False,
                error_type=reader.string(fields["error_type"], f"{what}.error_type")
                if "error_type" in fields
                else None,
                error_condition=reader.string(fields["error_condition"], f"{what}.error_condition")
                if "error_condition" in fields
                else None,
            )
        )
    return tuple(results)


def parse(text: str, path: str = "<probe config>") -> dict[str, Module]:
    """
    The modules of a probe configuration (the built-in ones, then the file's).

    @raise ConfigError: naming C{path} and the line of the first problem.
    """
    reader = _Reader(path)
    try:
        root = yaml.compose(text, Loader=yaml.SafeLoader)
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        line = mark.line + 1 if mark is not None else 1
        raise ConfigError(f"{path}:{line}: not valid YAML: {getattr(e, 'problem', e)}") from e
    top = reader.mapping(root, "the configuration", ("modules", "accounts"))
    accounts = _accounts(reader, top.get("accounts"))
    modules = dict(BUILTIN_MODULES)
    for name, node in reader.mapping(top.get("modules"), "modules").items():
        modules[name] = _module(reader, name, node, accounts)
    return modules


def load(path: str) -> dict[str, Module]:
    """L{parse} the file at C{path}; an unreadable file is a L{ConfigError} too."""
    try:
        with open(path, encoding="utf-8") as f:
            text = f.read()
    except (OSError, UnicodeDecodeError) as e:
        raise ConfigError(f"{path}: cannot read: {getattr(e, 'strerror', None) or e}") from e
    return parse(text, path)
