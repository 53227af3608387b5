"""The package's layers: imports point one way, no cycles, only the ROS layer imports ROS.

The order is written down once here and in the README's Layout section (checked below).
Every first-party import counts, at module level or inside a function, TYPE_CHECKING ones too.
"""

from __future__ import annotations

import ast
from collections import defaultdict
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = ROOT / 'mvfm_ros'
# Folders from the top (commands that drive the node) to the bottom (plain geometry); a folder
# imports folders below it, never above, and folders of one rank do not import each other.
LAYERS = (
    ('bench',),  # mvfm-bench, mvfm-export, the soak (drives the node with the demo player)
    ('demo',),  # mvfm-demo: the player that drives the node, the report, the demo model
    ('ros',),  # the rclpy runtime: node, intake, inputs, TF, publishing, CLI
    ('messages',),  # ROS-free message code: conversions, factory, frame assembly, TF tree, bags
    ('train', 'eval'),  # mvfm-train, mvfm-eval
    ('pipeline',),  # settings, window, engine, worker, outputs
    ('lift',),  # operators, lifting, the voxel map
    ('models', 'viz'),  # the model, checkpoints, weights; pictures
    ('layers', 'data'),  # adapter layers; samples, loaders, generated scenes
    ('geometry',),  # cameras, poses, rays, projection, matching
    ('',),  # the package's own helpers (_lazy, resources)
)
RANK = {folder: rank for rank, folders in enumerate(LAYERS) for folder in folders}
ROS = ('rclpy', 'tf2_ros', 'tf2_py', 'launch', 'launch_ros', 'sensor_msgs', 'geometry_msgs',
       'nav_msgs', 'std_msgs', 'std_srvs', 'diagnostic_msgs', 'lifecycle_msgs',
       'builtin_interfaces', 'rcl_interfaces')
# Tools that drive the node as a separate process publish and subscribe with rclpy themselves.
NODE_DRIVERS = {'mvfm_ros.demo.player', 'mvfm_ros.bench.soak'}


def modules() -> dict[str, Path]:
    found = {}
    for path in PACKAGE.rglob('*.py'):
        parts = path.relative_to(ROOT).with_suffix('').parts
        name = '.'.join(parts[:-1] if parts[-1] == '__init__' else parts)
        found[name] = path
    return found


def imports(name: str, path: Path, known: set[str]) -> tuple[set[str], set[str]]:
    """First-party modules and third-party top-level packages a module imports."""
    tree = ast.parse(path.read_text(), filename=str(path))
    package = name if path.name == '__init__.py' else name.rpartition('.')[0]
    first, third = set(), set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            targets = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ''
            if node.level:
                base = '.'.join(package.split('.')[:len(package.split('.')) - node.level + 1]
                                + ([node.module] if node.module else []))
            targets = [f'{base}.{alias.name}' for alias in node.names] + [base]
        else:
            continue
        for target in targets:
            if target.split('.')[0] != 'mvfm_ros':
                third.add(target.split('.')[0])
                continue
            while target and target not in known:  # from x import name: the module x
                target = target.rpartition('.')[0]
            if target and target != name and target != 'mvfm_ros':
                first.add(target)
    return first, third


def folder(name: str) -> str:
    parts = name.split('.')
    return parts[1] if len(parts) > 2 or (len(parts) == 2 and
                                           (PACKAGE / parts[1]).is_dir()) else ''


def graph() -> tuple[dict[str, set[str]], dict[str, set[str]]]:
    found = modules()
    edges, external = {}, {}
    for name, path in found.items():
        edges[name], external[name] = imports(name, path, set(found))
    return edges, external


def cycles(edges: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one node (Tarjan)."""
    index, low, stack, on, out = {}, {}, [], set(), []
    counter = [0]

    def visit(v: str) -> None:
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on.add(v)
        for w in edges.get(v, ()):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                out.append(sorted(component))

    for v in list(edges):
        if v not in index:
            visit(v)
    return out


def test_every_folder_has_a_layer() -> None:
    folders = {p.name for p in PACKAGE.iterdir() if p.is_dir() and (p / '__init__.py').exists()}
    assert folders == set(RANK) - {''}


def test_no_import_cycle_between_files_or_folders() -> None:
    edges, _ = graph()
    assert not cycles(edges)
    folders = defaultdict(set)
    for a, targets in edges.items():
        for b in targets:
            if folder(a) != folder(b):
                folders[folder(a)].add(folder(b))
    assert not cycles(folders)


def test_imports_point_down_the_layers() -> None:
    edges, _ = graph()
    wrong = sorted(f'{a} -> {b}' for a, targets in edges.items() for b in targets
                   if folder(a) != folder(b) and RANK[folder(b)] <= RANK[folder(a)])
    assert not wrong


def test_only_the_ros_layer_imports_ros() -> None:
    _, external = graph()
    offenders = {name: sorted(found & set(ROS)) for name, found in external.items()
                 if found & set(ROS) and folder(name) != 'ros' and name not in NODE_DRIVERS}
    assert not offenders


def test_readme_writes_the_layer_order_down() -> None:
    text = (ROOT / 'README.md').read_text()
    order = ' → '.join('/'.join(f'`{f}`' for f in layer) for layer in LAYERS if layer != ('',))
    assert order in text, order


def test_no_module_is_too_long() -> None:
    lengths = {name: len(path.read_text().splitlines()) for name, path in modules().items()}
    assert max(lengths.values()) <= 400, sorted(lengths.items(), key=lambda x: -x[1])[:3]
    assert lengths['mvfm_ros.ros.node'] < 300 and lengths['mvfm_ros.messages.bag'] < 300
