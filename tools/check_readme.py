"""Check the commands in README.md against the code, and optionally run them.

Static checks (also run by the test suite): every ``make`` target exists; every console script
exists and accepts the arguments as written (its argparse parser parses them); launch arguments
are declared by the launch file; files and folders the commands name exist. With ``--run``, the
commands that work without a ROS install are run as written from the repository root (the
console scripts of the active environment), each must exit 0.
"""

from __future__ import annotations

import argparse
import ast
import importlib
import re
import shlex
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
EXTERNAL = {'cd', 'rosdep', 'pip', 'colcon', 'rviz2', 'git', 'hf', 'source'}
RUNNABLE = ('mvfm-eval', 'mvfm-bag', 'mvfm-bench', 'mvfm-export')
LIFECYCLE = ('configure', 'activate', 'deactivate', 'cleanup', 'shutdown')


def commands(readme: Path) -> list[str]:
    """Command lines of the README's bash blocks (comments stripped, && split)."""
    text = readme.read_text()
    out = []
    for block in re.findall(r'```bash\n(.*?)```', text, flags=re.S):
        for line in block.splitlines():
            line = line.split('  #')[0].strip()
            if line and not line.startswith('#'):
                out.extend(part.strip() for part in line.split('&&'))
    return out


def console_scripts() -> dict[str, str]:
    """Console script name -> 'module:function' from setup.py."""
    found = re.findall(r"'([\w-]+) = ([\w.]+:\w+)'", (ROOT / 'setup.py').read_text())
    return dict(found)


def launch_arguments() -> set[str]:
    """Argument names declared by launch/perception.launch.py (read without launch_ros)."""
    tree = ast.parse((ROOT / 'launch' / 'perception.launch.py').read_text())
    for node in ast.walk(tree):
        if isinstance(node, ast.Assign) and getattr(node.targets[0], 'id', '') == 'ARGUMENTS':
            return {k.value for k in node.value.keys}
    raise AssertionError('launch file declares no ARGUMENTS')


def make_targets() -> set[str]:
    """Targets of the Makefile."""
    return set(re.findall(r'^([\w-]+):', (ROOT / 'Makefile').read_text(), flags=re.M))


def check_script(name: str, args: list[str], scripts: dict[str, str]) -> None:
    """Check that the console script exists and its parser accepts ``args``."""
    if name not in scripts:
        raise AssertionError(f'{name} is not a console script of setup.py')
    module = importlib.import_module(scripts[name].split(':')[0])
    if not hasattr(module, 'build_parser'):
        return
    try:
        module.build_parser().parse_args(args)
    except SystemExit as err:
        raise AssertionError(f'{name} {" ".join(args)}: arguments rejected') from err


def static_check(readme: Path = ROOT / 'README.md') -> list[str]:
    """Check every command; returns them. Raises AssertionError on the first problem."""
    scripts, targets, launch_args = console_scripts(), make_targets(), launch_arguments()
    cmds = commands(readme)
    for cmd in cmds:
        words = shlex.split(cmd)
        head = words[0]
        if head == 'make':
            missing = set(words[1:]) - targets
            assert not missing, f'{cmd}: no make target {missing}'
        elif head in scripts:
            check_script(head, words[1:], scripts)
        elif head == 'ros2' and words[1] == 'launch':
            assert words[2:4] == ['mvfm_ros', 'perception.launch.py'], cmd
            names = {w.split(':=')[0] for w in words[4:]}
            extra = names - launch_args
            assert not extra, f'{cmd}: undeclared launch arguments {extra}'
        elif head == 'ros2' and words[1] == 'run':
            assert words[2] == 'mvfm_ros', cmd
            check_script(words[3], words[4:], scripts)
        elif head == 'ros2' and words[1] == 'service':
            # A service of the node: its name and type as the node creates it.
            assert words[2] == 'call' and words[3].startswith('/mvfm_perception/'), cmd
            node = (ROOT / 'mvfm_ros' / 'ros' / 'node.py').read_text()
            package, _, kind = words[4].split('/')
            assert f"'~/{words[3].rsplit('/', 1)[1]}'" in node, f'{cmd}: no such service'
            assert f'from {package}.srv import {kind}' in node, f'{cmd}: not its type'
        elif head == 'ros2' and words[1] == 'lifecycle':
            assert words[2] == 'set' and words[3] == '/mvfm_perception', cmd
            assert words[4] in LIFECYCLE, f'{cmd}: no transition {words[4]!r}'
        elif head == 'ros2' and words[1] == 'param':
            from mvfm_ros.pipeline.settings import WHEN_LAUNCH, Settings, coerce

            assert words[2] == 'set' and words[3] == '/mvfm_perception', cmd
            spec = Settings.specs().get(words[4])
            assert spec is not None, f'{cmd}: no parameter {words[4]!r}'
            assert spec.when != WHEN_LAUNCH, f'{cmd}: {words[4]} is fixed at launch'
            import yaml

            coerce(words[4], yaml.safe_load(words[5]))
        elif head == 'torchrun':
            module = words[words.index('-m') + 1]
            importlib.import_module(module).build_parser().parse_args(
                words[words.index('-m') + 2:])
        elif head in EXTERNAL:
            continue
        else:
            raise AssertionError(f'README command not checked: {cmd}')
        for word in words[1:]:
            if re.match(r'^(config|demo|mvfm_ros|launch)/', word):
                assert (ROOT / word).exists(), f'{cmd}: {word} does not exist'
    return cmds


def run_all(readme: Path = ROOT / 'README.md') -> int:
    """Run the runnable commands as written; returns the number of failures."""
    failures = 0
    bin_dir = Path(sys.executable).parent
    for cmd in static_check(readme):
        words = shlex.split(cmd)
        if words[0] not in RUNNABLE:
            continue
        if words[0] == 'mvfm-bench' and 'cuda' in words and not _has_cuda():
            print(f'skip (no CUDA here): {cmd}')
            continue
        cleanup = [w for w in words if w.startswith('demo_output/')]
        for path in cleanup:
            subprocess.run(['rm', '-rf', str(ROOT / path)], check=True)
        print(f'$ {cmd}', flush=True)
        result = subprocess.run([str(bin_dir / words[0]), *words[1:]], cwd=ROOT)
        print(f'-> exit {result.returncode}', flush=True)
        failures += result.returncode != 0
    return failures


def _has_cuda() -> bool:
    import torch

    return torch.cuda.is_available()


def main() -> int:
    """Entry point: ``python tools/check_readme.py [--run]``."""
    parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    parser.add_argument('--run', action='store_true', help='also run the runnable commands')
    args = parser.parse_args()
    cmds = static_check()
    print(f'{len(cmds)} README commands checked against the code')
    return run_all() if args.run else 0


if __name__ == '__main__':
    raise SystemExit(main())
