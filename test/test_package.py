"""Package layout: package.xml, setup.py, console scripts (the layers: test_layers.py)."""

from __future__ import annotations

import re
import xml.etree.ElementTree as ET
from pathlib import Path

import mvfm_ros

ROOT = Path(__file__).resolve().parents[1]


def test_package_xml_declares_the_runtime_dependencies() -> None:
    root = ET.parse(ROOT / 'package.xml').getroot()
    assert root.get('format') == '3'
    assert root.findtext('name') == 'mvfm_ros'
    assert root.find('export/build_type').text == 'ament_cmake'  # msg/ needs rosidl
    assert root.findtext('member_of_group') == 'rosidl_interface_packages'
    tools = {e.text for e in root.findall('buildtool_depend')}
    assert {'ament_cmake', 'rosidl_default_generators'} <= tools
    deps = {e.text for e in root.findall('exec_depend')}
    for dep in ('rclpy', 'sensor_msgs', 'geometry_msgs', 'nav_msgs', 'std_msgs',
                'diagnostic_msgs', 'tf2_ros', 'launch_ros', 'python3-numpy', 'python3-yaml',
                'rosidl_default_runtime'):
        assert dep in deps, dep


def test_cmake_installs_the_console_scripts_of_setup_py() -> None:
    """``ros2 run mvfm_ros NAME`` (colcon) and the pip console scripts are the same list."""
    setup = re.findall(r"'([\w-]+) = ([\w.]+):(\w+)'", (ROOT / 'setup.py').read_text())
    cmake = re.findall(r'"([\w-]+)=([\w.]+):(\w+)"', (ROOT / 'CMakeLists.txt').read_text())
    assert setup and sorted(setup) == sorted(cmake)


def test_versions_agree() -> None:
    xml_version = ET.parse(ROOT / 'package.xml').getroot().findtext('version')
    setup_version = re.search(r"version='([^']+)'", (ROOT / 'setup.py').read_text()).group(1)
    assert xml_version == setup_version == mvfm_ros.__version__


def test_ament_resource_marker_exists() -> None:
    assert (ROOT / 'resource' / 'mvfm_ros').is_file()


def test_importing_the_package_does_not_import_torch() -> None:
    import subprocess
    import sys

    code = 'import sys, mvfm_ros; print("torch" in sys.modules)'
    out = subprocess.run([sys.executable, '-c', code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == 'False'


def test_console_scripts_answer_help_fast_and_document_every_option() -> None:
    """``--help`` loads no PyTorch, and every option says what it does (defaults shown)."""
    import subprocess
    import sys

    scripts = dict(re.findall(r"'([\w-]+) = ([\w.]+):main'", (ROOT / 'setup.py').read_text()))
    assert len(scripts) >= 8
    for name, module in scripts.items():
        code = (f'import sys, {module} as m; '
                'p = m.build_parser() if hasattr(m, "build_parser") else None; '
                'bad = [a.dest for a in (p._actions if p else []) '
                '       if a.dest != "help" and not (a.help or "").strip()]; '
                'print("torch" in sys.modules, bad)')
        out = subprocess.run([sys.executable, '-c', code], capture_output=True, text=True,
                             check=True).stdout.strip().split(maxsplit=1)
        assert out == ['False', '[]'], (name, out)
        exe = Path(sys.executable).with_name(name)
        if exe.exists():
            run = subprocess.run([str(exe), '--help'], capture_output=True, text=True,
                                 timeout=60)
            assert run.returncode == 0 and 'usage' in run.stdout, name
