"""The code's picture is a tree: no import loop between the project's modules (imports inside functions count
too), and the one-way flow holds: training and the dashboard meet only in contract/ and scoring/ (ROUGE, the
failure lenses, statistics), which import neither; the dashboard imports nothing from training/; nothing imports
the dashboard but app.py (and the benchmarks)."""

import ast
from pathlib import Path

from tests.helpers import ROOT

PACKAGES = ("contract", "scoring", "training", "dashboard")


def project_modules() -> dict[str, Path]:
    files = {p.relative_to(ROOT).with_suffix("").as_posix().replace("/", "."): p
             for pkg in PACKAGES for p in (ROOT / pkg).rglob("*.py")}
    files["app"] = ROOT / "app.py"
    return {name.removesuffix(".__init__"): path for name, path in files.items()}


def imports_of(path: Path, modules: dict) -> set[str]:
    """Every project module `path` imports, at the top or inside a function."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names = [node.module, *(f"{node.module}.{a.name}" for a in node.names)]
        else:
            continue
        found |= {n for n in names if n in modules and n not in PACKAGES}
    return found


def graph() -> dict[str, set[str]]:
    modules = project_modules()
    return {name: imports_of(path, modules) - {name} for name, path in modules.items()}


def test_no_import_loops():
    edges = graph()
    state = {}

    def visit(node, path):
        state[node] = "open"
        for nxt in sorted(edges[node]):
            assert state.get(nxt) != "open", "import loop: " + " -> ".join([*path, node, nxt])
            if nxt not in state:
                visit(nxt, [*path, node])
        state[node] = "done"

    for node in sorted(edges):
        if node not in state:
            visit(node, [])


def test_one_way_flow():
    edges = graph()
    for module, targets in edges.items():
        if module.startswith("contract"):
            assert not {t for t in targets if not t.startswith("contract")}, module
        if module.startswith("training"):
            assert not {t for t in targets if t.startswith("dashboard")}, module
        if module.startswith("scoring"):
            assert not {t for t in targets if t.startswith(("training", "dashboard"))}, module
        if module.startswith("dashboard"):
            assert not {t for t in targets if t.startswith("training")}, module
    assert {m for m, t in edges.items() if any(x.startswith("dashboard") for x in t)
            and not m.startswith("dashboard")} == {"app"}


def test_the_metrics_tab_and_the_vote_handlers_rate_votes_without_the_store_module():
    """The ratings are pure functions of a votes frame (scoring/preferences.py); only the Vote tab, the handlers
    that store battles and app.py know the store."""
    edges = graph()
    assert "dashboard.votes" not in edges["dashboard.metrics_tab"]
    assert not {t for t in edges["scoring.preferences"] if t.startswith(("dashboard", "training"))}


def floors(module: str, edges: dict) -> list[str]:
    """The longest chain of imports from `module` that stays inside its package."""
    package = module.split(".")[0]
    inside = [t for t in edges[module] if t.startswith(package + ".")]
    return [module, *max((floors(t, edges) for t in inside), key=len, default=[])]


def test_training_stands_at_most_six_floors_and_preflight_never_reaches_the_evaluation():
    edges = graph()
    tallest = max((floors(m, edges) for m in edges if m.startswith("training.")), key=len)
    assert len(tallest) <= 6, " -> ".join(tallest)
    reached, todo = set(), ["training.preflight"]
    while todo:
        for target in edges[todo.pop()] - reached:
            reached.add(target)
            todo.append(target)
    assert "training.evaluate" not in reached  # checking options never loads the evaluation


def test_the_layout_and_schema_part_of_contract_and_scoring_s_pure_parts_import_no_torch():
    """What both sides share as facts (where files live, their schemas, outside text, the cost model, the verdict)
    loads without torch or transformers: only contract/loading.py and contract/int8.py are runtime code."""
    import subprocess
    import sys

    pure = ["contract.files", "contract.protocol", "contract.untrusted", "contract.hub", "contract.children",
            "scoring.cost", "scoring.verdict", "scoring.stats", "scoring.preferences"]
    check = (f"import sys; import {', '.join(pure)}; "
             "heavy = [m for m in ('torch', 'transformers', 'peft') if m in sys.modules]; print(heavy)")
    done = subprocess.run([sys.executable, "-c", check], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0 and done.stdout.strip() == "[]", done.stdout + done.stderr[-500:]
