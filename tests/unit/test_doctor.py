"""ops.doctor decisions on fake facts: each check's status and fix."""

from __future__ import annotations

from dataclasses import dataclass, field

from ovsbridge.errors import EnvironmentProblem
from ovsbridge.ops.backend import OvsPort
from ovsbridge.ops.doctor import (
    BridgeFacts,
    DockerFacts,
    ProbeResult,
    UplinkFacts,
    diagnose,
)


@dataclass
class Facts:
    root: bool = True
    ovs_down: bool = False
    kernel: bool = False
    bridges_: list[BridgeFacts] = field(default_factory=lambda: [
        BridgeFacts("ovsbr0", "netdev", 1500, {"ovsbridge.uplink": "eth0"})])
    ports_: list[OvsPort] = field(default_factory=list)
    mtus: dict[str, int] = field(default_factory=dict)
    offload: set[str] = field(default_factory=set)
    docker_: DockerFacts = field(default_factory=lambda: DockerFacts("1.41", "20.10", False))
    daemon: str | None = "0.1.0"
    stale: list[tuple[str, str]] = field(default_factory=list)
    uplink_: UplinkFacts = field(default_factory=lambda: UplinkFacts(
        "eth0", True, True, True, (), ("198.51.100.2/24",), "ovsbr0"))

    def is_root(self) -> bool:
        return self.root

    def ovs_version(self) -> str:
        if self.ovs_down:
            raise EnvironmentProblem("cannot reach OVS at x", hint="start Open vSwitch")
        return "3.1.0"

    def kernel_datapath(self) -> bool:
        return self.kernel

    def bridges(self) -> list[BridgeFacts]:
        return self.bridges_

    def ports(self, bridge: str) -> list[OvsPort]:
        return self.ports_

    def port_mtu(self, port: str) -> int | None:
        return self.mtus.get(port, 1500)

    def link_kind(self, name: str) -> str | None:
        return "veth"

    def tx_checksum_on(self, name: str) -> bool | None:
        return name in self.offload

    def docker(self) -> DockerFacts:
        return self.docker_

    def daemon_version(self) -> str | None:
        return self.daemon

    def stale_ports(self, bridge: str) -> list[tuple[str, str]]:
        return self.stale

    def dhcp_probe(self, bridge: str, timeout: float) -> ProbeResult:
        return ProbeResult("198.51.100.1", "198.51.100.150", 0.2)

    def uplink(self, bridge: str, uplink: str) -> UplinkFacts:
        return self.uplink_


def statuses(facts: Facts, **kwargs: object) -> dict[str, list[str]]:
    report = diagnose(facts, "0.1.0", **kwargs)  # type: ignore[arg-type]
    out: dict[str, list[str]] = {}
    for check in report.checks:
        out.setdefault(check.name, []).append(check.status)
    return out


def test_all_ok() -> None:
    facts = Facts(ports_=[OvsPort("ovsbr0", "ovbx", 1, "", None, None)])
    got = statuses(facts, dhcp_probe=True)
    assert all(s == ["ok"] for s in got.values()), got
    assert set(got) == {"root", "ovs", "datapath", "docker", "daemon", "offload", "mtu",
                        "stale-ports", "uplink", "dhcp"}


def test_warnings_and_failures_name_the_subject_and_the_fix() -> None:
    pw = OvsPort("ovsbr0", "veth1pl42", 2, "", None, None, {"pipework.containerid": "c"})
    facts = Facts(ports_=[pw], offload={"veth1pl42"}, mtus={"veth1pl42": 1400},
                  stale=[("ovbdead", "container gone")], daemon="0.0.9",
                  docker_=DockerFacts("1.41", "24.0", True),
                  bridges_=[BridgeFacts("ovsbr0", "netdev", 1500, {"ovsbridge.uplink": "eth0"}),
                            BridgeFacts("br-sys", "system", 1500)],
                  uplink_=UplinkFacts("eth0", True, True, False, (), (), None))
    report = diagnose(facts, "0.1.0", bridge="ovsbr0")  # type: ignore[arg-type]
    checks = {c.name: c for c in report.checks if c.status != "ok"}
    assert checks["offload"].subject == "veth1pl42" and "adopt" in (checks["offload"].fix or "")
    assert checks["mtu"].status == "warning" and "mtu_request=1500" in (checks["mtu"].fix or "")
    assert "ovbdead" in checks["stale-ports"].message
    assert checks["daemon"].status == "warning"
    assert checks["docker"].status == "fail" and "rootless" in checks["docker"].message
    assert checks["datapath"].status == "fail" and checks["datapath"].subject == "br-sys"
    assert checks["uplink"].status == "fail" and "down" in checks["uplink"].message
    assert report.failed


def test_ovs_down_fails_and_skips_the_bridge_checks() -> None:
    got = statuses(Facts(ovs_down=True))
    assert got["ovs"] == ["fail"] and "offload" not in got and "stale-ports" not in got
