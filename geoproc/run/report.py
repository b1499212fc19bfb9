"""What a workflow run did: a JSON report and one summary line."""

from __future__ import annotations

import dataclasses
import time
from dataclasses import dataclass, field
from typing import Any

__all__ = ["RunReport", "ProductReport"]


@dataclass
class ProductReport:
    """One product's part of a run: its action (created, updated, recomputed, unchanged) and regions."""

    name: str
    output: str
    action: str = "unchanged"
    regions_written: int = 0
    regions_skipped: int = 0
    pixels: int = 0
    labels: list[str] = field(default_factory=list)
    labels_appended: list[str] = field(default_factory=list)
    labels_rewritten: list[str] = field(default_factory=list)

    def summary(self) -> str:
        parts = [f"{self.action}, {self.regions_written} regions written"]
        if self.labels_appended:
            parts.append(f"{len(self.labels_appended)} dates appended")
        if self.labels_rewritten:
            parts.append(f"{len(self.labels_rewritten)} rewritten in place ({', '.join(d[:10] for d in self.labels_rewritten)})")
        return "; ".join(parts)


@dataclass
class RunReport:
    """A workflow run: items found and new, dates they touch, regions written per product, seconds, failures.

    ``input_bytes`` is the size of the new and updated items' asset files where they are local files (remote
    assets are not counted): the new input a run took in, not every byte its regions read.

    Examples
    --------
    >>> r = RunReport(workflow="nightly", run_id="abc", state="out/nightly.workflow")
    >>> r.finish(time.perf_counter())
    >>> r.summary()
    'nightly: nothing new (0 items found); 0 regions computed, 0.0 s'
    """

    workflow: str
    run_id: str
    state: str
    started: str = ""
    items_found: int = 0
    new_items: list[str] = field(default_factory=list)
    updated_items: list[str] = field(default_factory=list)
    dates: list[str] = field(default_factory=list)
    products: list[ProductReport] = field(default_factory=list)
    input_bytes: int = 0
    seconds: float = 0.0
    failures: list[dict[str, Any]] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    @property
    def regions_written(self) -> int:
        return sum(p.regions_written for p in self.products)

    def finish(self, started: float) -> None:
        self.seconds = round(time.perf_counter() - started, 3)

    def summary(self) -> str:
        """One line for logs and cron mail."""
        if not self.new_items and not self.updated_items and not self.regions_written and not self.failures:
            return (f"{self.workflow}: nothing new ({self.items_found} items found); "
                    f"{self.regions_written} regions computed, {self.seconds:.1f} s")
        text = (f"{self.workflow}: {len(self.new_items)} new and {len(self.updated_items)} updated items on "
                f"{len(self.dates)} dates; {self.regions_written} regions written in {len(self.products)} products, "
                f"{self.input_bytes / 1e6:,.2f} MB of new inputs, {self.seconds:.1f} s")
        if self.failures:
            text += "; FAILED " + "; ".join(f"{f['product']}: {f['error'][:200]} (items {', '.join(f['items'][:5])})"
                                            for f in self.failures)
        return text

    def to_dict(self) -> dict[str, Any]:
        out = dataclasses.asdict(self)
        out["regions_written"] = self.regions_written
        out["summary"] = self.summary()
        return out

    def brief(self) -> dict[str, Any]:
        return {"run_id": self.run_id, "started": self.started, "new_items": len(self.new_items),
                "updated_items": len(self.updated_items), "regions_written": self.regions_written,
                "seconds": self.seconds, "failed": bool(self.failures)}
