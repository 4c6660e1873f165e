"""Lab files (`labs/*.yaml`) as validated, typed models.

A lab file names hosts, networks and a services node; everything else has a default, so
a two-host pool is a few lines. Unknown keys are errors. `load_lab` reports every problem
with the file and line it comes from, before anything is started.
"""

from __future__ import annotations

import ipaddress
import json
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, ValidationInfo, field_validator

from .errors import SpecError
from .yamlfile import LocatedDocument, load_located, parse_located

NAME_PATTERN = r"^[a-z][a-z0-9-]{0,23}$"
Name = Annotated[str, Field(pattern=NAME_PATTERN)]


class StrictModel(BaseModel):
    """Every spec model refuses unknown keys: a typo must not be silently ignored."""

    model_config = ConfigDict(extra="forbid", frozen=True)


class NetworkSpec(StrictModel):
    """A lab network: one vde_switch; hosts on it share a subnet."""

    subnet: ipaddress.IPv4Network | None = Field(
        None, description="IPv4 /24 or larger; derived from the lab name when omitted"
    )

    @field_validator("subnet")
    @classmethod
    def _private(cls, value: ipaddress.IPv4Network | None) -> ipaddress.IPv4Network | None:
        if value is not None:
            if not value.is_private or value.is_loopback:
                raise ValueError("a lab subnet must be a private (RFC 1918) range")
            if value.prefixlen > 24:
                raise ValueError("a lab subnet must be /24 or larger")
        return value


class DiskSpec(StrictModel):
    """An extra, empty data disk (the root disk is the image's overlay)."""

    name: Name
    size_gib: int = Field(ge=1, le=512)


class HostSpec(StrictModel):
    """One nested hypervisor host: its own QEMU process."""

    image: Name = "debian-xen"
    role: Literal["xen"] = "xen"
    vcpus: int = Field(1, ge=1, le=16)
    memory_mib: int = Field(2048, ge=512, le=65536)
    dom0_memory_mib: int = Field(1024, ge=256)
    nics: list[Name] | None = Field(None, description="networks in NIC order; default: the lab's first network")
    disks: list[DiskSpec] = Field(default_factory=list)

    @field_validator("dom0_memory_mib")
    @classmethod
    def _dom0_fits(cls, value: int, info: ValidationInfo) -> int:
        memory = info.data.get("memory_mib")
        if memory is not None and value > memory - 256:
            raise ValueError(
                f"must leave at least 256 MiB of memory_mib ({memory}) to Xen and guests"
            )
        return value


class ServicesSpec(StrictModel):
    """The lab's services node: plain Debian serving NFS (and later heartbeat collection)."""

    name: Name = "services"
    image: Name = "services"
    vcpus: int = Field(1, ge=1, le=8)
    memory_mib: int = Field(512, ge=256, le=16384)
    nics: list[Name] | None = Field(None, description="networks in NIC order; default: the lab's first network")
    nfs_export: str = Field("/srv/xenlab", pattern=r"^/[A-Za-z0-9/_.-]+$")


class SimSpec(StrictModel):
    """How the simulated pool of a `backend: sim` lab behaves (see xenlab/sim/README.md)."""

    time_scale: float = Field(0.05, gt=0, le=1, description="xapi operations (join, start, migrate) take their "
                              "modelled duration times this; HA timeouts and heartbeats are not scaled")
    guest_boot_s: float = Field(0.5, ge=0, le=600, description="from VM start to the guest's first heartbeat")
    switchover_pause_s: float = Field(0.2, ge=0, le=60, description="a live-migrated guest is paused this long")


class LabSpec(StrictModel):
    """A whole lab: validated as a unit so cross-references (nics -> networks) are checked."""

    name: Name
    description: str = ""
    backend: Literal["qemu", "sim"] = Field("qemu", description="qemu: nested Xen hosts; sim: simulated xapi "
                                            "hosts in the xenlab process (no QEMU)")
    sim: SimSpec | None = Field(None, description="the simulated pool's model (backend: sim only)")
    accel: Literal["auto", "kvm", "tcg"] = "auto"
    networks: dict[Name, NetworkSpec] = Field(default_factory=lambda: {"lab": NetworkSpec()}, min_length=1)
    hosts: dict[Name, HostSpec] = Field(min_length=1, max_length=32)
    services: ServicesSpec | None = Field(default_factory=ServicesSpec)

    @field_validator("hosts", mode="before")
    @classmethod
    def _empty_host_is_default(cls, value: Any) -> Any:
        # `h1:` with nothing under it means "a host with all defaults".
        if isinstance(value, dict):
            return {k: ({} if v is None else v) for k, v in value.items()}
        return value

    @field_validator("networks", mode="before")
    @classmethod
    def _empty_network_is_default(cls, value: Any) -> Any:
        if isinstance(value, dict):
            return {k: ({} if v is None else v) for k, v in value.items()}
        return value

    def cross_check(self) -> list[tuple[tuple[Any, ...], str]]:
        """Problems between sections (nic -> network, name clashes), each with its YAML path."""
        problems: list[tuple[tuple[Any, ...], str]] = []
        machines: list[tuple[tuple[Any, ...], str, list[str]]] = [
            (("hosts", n), n, self.nics_of(h)) for n, h in self.hosts.items()
        ]
        if self.services is not None:
            if self.services.name in self.hosts:
                problems.append((("services", "name"), f"services name {self.services.name!r} is also a host name"))
            machines.append((("services",), self.services.name, self.nics_of(self.services)))
        known = ", ".join(sorted(self.networks)) or "none"
        for loc, machine, nics in machines:
            seen: set[str] = set()
            for index, nic in enumerate(nics):
                if nic not in self.networks:
                    problems.append((loc + ("nics", index), f"{machine}: nic {nic!r} is not a network of this lab (networks: {known})"))
                if nic in seen:
                    problems.append((loc + ("nics", index), f"{machine}: network {nic!r} is listed twice"))
                seen.add(nic)
        named = [(name, n.subnet) for name, n in self.networks.items() if n.subnet is not None]
        for i, (name_a, a) in enumerate(named):
            for name_b, b in named[i + 1 :]:
                if a.overlaps(b):
                    problems.append((("networks", name_b, "subnet"), f"subnet {b} of {name_b!r} overlaps {a} of {name_a!r}"))
        if len(self.networks) > 8:
            problems.append((("networks",), "at most 8 networks per lab"))
        if self.sim is not None and self.backend != "sim":
            problems.append((("sim",), "a sim section needs `backend: sim`"))
        if self.backend == "sim" and len({(h.memory_mib, h.dom0_memory_mib) for h in self.hosts.values()}) > 1:
            problems.append((("hosts",), "the hosts of a sim lab all have the same memory_mib and dom0_memory_mib"))
        return problems

    def nics_of(self, machine: HostSpec | ServicesSpec) -> list[str]:
        """A machine's networks in NIC order (the lab's first network unless given)."""
        return list(machine.nics) if machine.nics is not None else [next(iter(self.networks))]

    def machine_names(self) -> list[str]:
        names = list(self.hosts)
        if self.services is not None:
            names.append(self.services.name)
        return names


def _message(error: dict[str, Any]) -> str:
    loc = ".".join(str(p) for p in error["loc"])
    msg = error["msg"]
    if error["type"] == "extra_forbidden":
        return f"unknown key {error['loc'][-1]!r}" + (f" in {'.'.join(map(str, error['loc'][:-1]))}" if len(error["loc"]) > 1 else "")
    if error["type"] == "missing":
        return f"missing required key {loc!r}"
    if error["type"] == "string_pattern_mismatch":
        return f"{loc}: {error['input']!r} is not a valid name (lowercase letters, digits and '-', starting with a letter, at most 24)"
    msg = msg.removeprefix("Value error, ")
    return f"{loc}: {msg}" if loc else msg


def validate_document(model: type[StrictModel], doc: LocatedDocument) -> Any:
    """Validate located YAML data against a model; all problems reported with lines."""
    if not isinstance(doc.data, dict):
        raise SpecError(doc.path, [(1, "expected a mapping of keys at the top level")])
    try:
        spec = model.model_validate(doc.data)
    except ValidationError as exc:
        problems = []
        for error in exc.errors(include_url=False):
            loc = tuple(p for p in error["loc"] if not (isinstance(p, str) and p.startswith("function-")))
            # pydantic appends "[key]" for dict keys; our paths match the YAML structure
            problems.append((doc.line_of(loc), _message({**error, "loc": loc})))
        raise SpecError(doc.path, problems) from None
    cross_check = getattr(spec, "cross_check", None)
    if cross_check is not None:
        found = cross_check()
        if found:
            raise SpecError(doc.path, [(doc.line_of(loc), msg) for loc, msg in found])
    return spec


def load_lab(path: str | Path) -> LabSpec:
    """Read and validate a lab file; raises SpecError naming file and line."""
    return validate_document(LabSpec, load_located(path))


def parse_lab(text: str, path: str = "<string>") -> LabSpec:
    return validate_document(LabSpec, parse_located(text, path))


def resolve_lab_path(name_or_path: str, labs_dir: Path | None = None) -> Path:
    """`xen-pool2` or `labs/xen-pool2.yaml` -> an existing file path."""
    candidate = Path(name_or_path)
    if candidate.suffix in (".yaml", ".yml") or "/" in name_or_path:
        return candidate
    base = labs_dir or Path.cwd() / "labs"
    for suffix in (".yaml", ".yml"):
        if (base / f"{name_or_path}{suffix}").exists():
            return base / f"{name_or_path}{suffix}"
    return base / f"{name_or_path}.yaml"


def lab_json_schema() -> str:
    return json.dumps(LabSpec.model_json_schema(), indent=2)

