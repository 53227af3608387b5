"""``colcon build`` of the package in a ROS 2 workspace, with the build chain from PyPI.

What a robot's workspace build does: rosidl generates the interfaces, the Python package is
merged into the generated module, console scripts land under ``lib/mvfm_ros`` for ``ros2 run``.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).parents[1]
VENV_BIN = Path(sys.executable).parent


def test_colcon_build_installs_interfaces_python_and_scripts(colcon_workspace) -> None:
    tmp_path = colcon_workspace
    prefix = str(VENV_BIN.parent)
    env = {**os.environ, 'AMENT_PREFIX_PATH': prefix, 'CMAKE_PREFIX_PATH': prefix,
           'PATH': f'{VENV_BIN}{os.pathsep}{os.environ["PATH"]}'}
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
