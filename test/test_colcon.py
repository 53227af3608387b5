"""``colcon build`` of the package in a ROS 2 workspace, with the build chain from PyPI.

What a robot's workspace build does: rosidl generates the interfaces, the Python package is
merged into the generated module, console scripts land under ``lib/mvfm_ros`` for ``ros2 run``.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).parents[1]
VENV_BIN = Path(sys.executable).parent


def test_colcon_build_installs_interfaces_python_and_scripts(tmp_path) -> None:
    colcon = VENV_BIN / 'colcon'
    if not colcon.exists() or shutil.which('cmake') is None:
        pytest.skip('colcon (requirements-dev.txt) or cmake is not installed')
    source = tmp_path / 'src' / 'mvfm_ros'
    files = subprocess.run(['git', 'ls-files', '-co', '--exclude-standard'], cwd=ROOT,
                           capture_output=True, text=True, check=True).stdout.split()
    for name in files:  # the package as a checkout has it, without .venv or build outputs
        if (ROOT / name).is_file() and not name.startswith('docs/'):
            (source / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(ROOT / name, source / name)
    prefix = str(VENV_BIN.parent)
    env = {**os.environ, 'AMENT_PREFIX_PATH': prefix, 'CMAKE_PREFIX_PATH': prefix,
           'PATH': f'{VENV_BIN}{os.pathsep}{os.environ["PATH"]}'}
    build = subprocess.run(
        [str(colcon), 'build', '--cmake-args', f'-DPython3_EXECUTABLE={sys.executable}',
         '-DBUILD_TESTING=OFF'], cwd=tmp_path, env=env, capture_output=True, text=True,
        timeout=600)
    assert build.returncode == 0, build.stdout[-3000:] + build.stderr[-3000:]
    install = tmp_path / 'install' / 'mvfm_ros'
    scripts = {p.name for p in (install / 'lib' / 'mvfm_ros').iterdir()}
    assert {'perception_node', 'process_bag', 'mvfm-bag', 'mvfm-train'} <= scripts
    assert (install / 'share' / 'mvfm_ros' / 'launch' / 'perception.launch.py').is_file()
    assert (install / 'share' / 'mvfm_ros' / 'msg' / 'FeatureWindow.msg').is_file()
    # The installed package (sourced as a user would) has both the Python code and the
    # generated message classes in one module.
    site = install / 'lib' / f'python{sys.version_info.major}.{sys.version_info.minor}' / \
        'site-packages'
    check = ('import mvfm_ros, mvfm_ros.msg, mvfm_ros.messages.bag;'
             'm = mvfm_ros.msg.FeatureWindow(window_id=3);'
             'print(mvfm_ros.__file__, m.window_id)')
    run = subprocess.run([sys.executable, '-c', check], cwd=tmp_path, capture_output=True,
                         text=True, timeout=120,
                         env={**env, 'PYTHONPATH': str(site),
                              'LD_LIBRARY_PATH': str(install / 'lib')})
    assert run.returncode == 0, run.stderr
    path, window_id = run.stdout.split()
    assert Path(path).is_relative_to(site) and window_id == '3'
