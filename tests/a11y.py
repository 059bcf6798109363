"""axe-core in the browser tests: run it on the page as it stands and fail on what it finds.

axe-core is vendored for the tests only (``tests/vendor/axe-core``, never served): it is
evaluated in the page through the DevTools protocol, which the page's Content-Security-Policy
doesn't govern, so the page keeps its real CSP while it is checked.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

AXE_JS = Path(__file__).resolve().parent / "vendor" / "axe-core" / "axe.min.js"
BLOCKING = ("serious", "critical")

_RUN = """async (options) => {
    const results = await axe.run(document, options);
    return results.violations.map((v) => ({
        id: v.id,
        impact: v.impact,
        help: v.help,
        nodes: v.nodes.map((n) => ({ target: n.target.join(" "), summary: n.failureSummary })),
    }));
}"""


def axe_violations(page: Any, impacts: tuple[str, ...] = BLOCKING) -> list[dict[str, Any]]:
    """axe-core's violations on ``page`` now (all rules it runs by default: WCAG 2.x A and AA,
    best practices), those of the given impacts only."""
    if not page.evaluate("typeof window.axe !== 'undefined'"):
        page.evaluate(AXE_JS.read_text(encoding="utf-8"))
    found = page.evaluate(_RUN, {"resultTypes": ["violations"]})
    return [v for v in found if v["impact"] in impacts]


def describe(violations: list[dict[str, Any]]) -> str:
    """One line per violation, then one per element it names (its CSS target and axe's summary)."""
    lines = []
    for v in violations:
        lines.append(f"[{v['impact']}] {v['id']}: {v['help']}")
        for node in v["nodes"]:
            summary = " ".join((node["summary"] or "").split())
            lines.append(f"    {node['target']}  — {summary[:300]}")
    return "\n".join(lines)


def assert_no_serious_violations(page: Any, state: str) -> None:
    """Fail, listing each serious or critical violation and the elements it names."""
    violations = axe_violations(page)
    assert not violations, f"axe-core, {state}:\n{describe(violations)}"
