"""Deployments and the boot decision (pure): which of a machine's deployments apply right now, and
whether it gets nothing (exit), a menu, or a required deployment after a countdown."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from . import BootKernel, Exit, MachineAction
from .rules import HostFacts, in_collection, is_unknown_collection

__all__ = ["PROFILE_KINDS", "Collection", "Deployment", "Menu", "MenuItem", "Profile", "RunProfile",
           "Skipped", "decide_boot", "BootDecision"]

PROFILE_KINDS = ("kernel", "wimboot", "chain", "template")
INTENTS = ("available", "required")


@dataclass(frozen=True)
class Profile:
    """What a deployment boots. kernel: kernel/initrds/args from /content; wimboot: WinPE through
    wimboot (files = bootmgr, BCD, boot.sdi, boot.wim ... under /content); chain: a URL; template: a
    custom iPXE script with ``{{placeholders}}``."""

    kind: str
    kernel: str = ""
    initrds: tuple[str, ...] = ()
    args: str = ""
    url: str = ""
    template: str = ""

    def to_json(self) -> dict[str, Any]:
        d: dict[str, Any] = {"kind": self.kind}
        if self.kind in ("kernel", "wimboot"):
            d.update(kernel=self.kernel, initrds=list(self.initrds), args=self.args)
        elif self.kind == "chain":
            d["url"] = self.url
        else:
            d["template"] = self.template
        return d

    @classmethod
    def from_json(cls, d: Mapping[str, Any]) -> Profile:
        return cls(kind=str(d["kind"]), kernel=str(d.get("kernel", "")),
                   initrds=tuple(str(x) for x in d.get("initrds", ())), args=str(d.get("args", "")),
                   url=str(d.get("url", "")), template=str(d.get("template", "")))


@dataclass(frozen=True)
class Collection:
    id: int
    name: str
    rules: tuple[Mapping[str, Any], ...] = ()
    require_login: bool = False  # its deployments need a login at the iPXE prompt (issue 6)


@dataclass(frozen=True)
class Deployment:
    id: int
    name: str
    collection_id: int
    profile: Profile
    intent: str = "available"  # available | required
    countdown: int = 10  # seconds before a required deployment starts by itself
    window_start: float | None = None
    window_end: float | None = None
    one_shot: bool = True
    require_approval: bool = False
    enabled: bool = True
    priority: int = 0
    require_login: bool = False  # a login at the iPXE prompt before it runs (issue 6)


@dataclass(frozen=True)
class MenuItem:
    deployment_id: int
    name: str
    required: bool


@dataclass(frozen=True)
class Menu:
    """A menu of deployments; `default` runs after `timeout` seconds (None: local disk)."""

    items: tuple[MenuItem, ...]
    default: int | None
    timeout: int
    technician: bool = True


@dataclass(frozen=True)
class RunProfile:
    """Run this deployment now (required, countdown 0; or chosen from a menu)."""

    deployment_id: int
    name: str
    profile: Profile


@dataclass(frozen=True)
class Skipped:
    deployment_id: int
    reason: str


BootDecision = Exit | BootKernel | Menu | RunProfile


@dataclass(frozen=True)
class Applicable:
    deployments: tuple[Deployment, ...]
    skipped: tuple[Skipped, ...] = field(default_factory=tuple)


def applicable(host: HostFacts, deployments: Sequence[Deployment], collections: Mapping[int, Collection],
               done: frozenset[int], approved: frozenset[int], now: float) -> Applicable:
    """The deployments that apply to `host` now, best first, and why the others that target it do not."""
    out: list[Deployment] = []
    skipped: list[Skipped] = []
    for d in deployments:
        coll = collections.get(d.collection_id)
        if coll is None or not d.enabled or not in_collection(coll.id, coll.rules, host):
            continue
        if d.window_start is not None and now < d.window_start:
            skipped.append(Skipped(d.id, "before its time window"))
        elif d.window_end is not None and now >= d.window_end:
            skipped.append(Skipped(d.id, "after its time window"))
        elif host.installed and is_unknown_collection(coll.rules) and coll.id not in host.static_collections:
            skipped.append(Skipped(d.id, "re-image guard: machine has a recorded install"))
        elif d.one_shot and d.id in done:
            skipped.append(Skipped(d.id, "one-shot: already succeeded on this machine"))
        elif d.require_approval and d.id not in approved:
            skipped.append(Skipped(d.id, "awaiting approval"))
        else:
            out.append(d)
    out.sort(key=lambda d: (d.intent != "required", -d.priority, d.id))
    return Applicable(tuple(out), tuple(skipped))


def decide_boot(host: HostFacts | None, *, legacy_action: MachineAction | None,
                deployments: Sequence[Deployment], collections: Mapping[int, Collection],
                done: frozenset[int] = frozenset(), approved: frozenset[int] = frozenset(),
                now: float, available_timeout: int = 10, applicable_now: Applicable | None = None) -> BootDecision:
    """The boot decision. An explicit per-machine action (the foundation's) wins; otherwise the
    machine's applicable deployments make a menu, required ones preselected with their countdown; a
    required deployment with countdown 0 runs without a menu; nothing to do exits to the next device.
    `applicable_now`: what `applicable` gives for these arguments, when the caller has it already."""
    if legacy_action is not None and legacy_action.kernel:
        return BootKernel(kernel=legacy_action.kernel, initrd=legacy_action.initrd, args=legacy_action.args)
    if host is None:
        return Exit(reason="machine could not be identified")
    app = applicable_now if applicable_now is not None else applicable(host, deployments, collections, done,
                                                                        approved, now)
    if not app.deployments:
        why = f" ({app.skipped[0].reason})" if app.skipped else ""
        return Exit(reason=f"nothing deployed to this machine{why}")
    first = app.deployments[0]
    if first.intent == "required" and first.countdown <= 0:
        return RunProfile(first.id, first.name, first.profile)
    items = tuple(MenuItem(d.id, d.name, d.intent == "required") for d in app.deployments)
    if first.intent == "required":
        return Menu(items, default=first.id, timeout=first.countdown)
    return Menu(items, default=None, timeout=available_timeout)
