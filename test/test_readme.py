"""The README and config files agree with the code: parameters, commands, launch file, RViz."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import pytest
import yaml

from mvfm_ros.pipeline import outputs
from mvfm_ros.pipeline.settings import Settings, coerce, markdown_table

ROOT = Path(__file__).parents[1]


def load_checker():
    spec = importlib.util.spec_from_file_location('check_readme', ROOT / 'tools' /
                                                  'check_readme.py')
    module = importlib.util.module_from_spec(spec)
    sys.modules['check_readme'] = module
    spec.loader.exec_module(module)
    return module


def test_readme_parameter_table_is_the_code_table() -> None:
    assert markdown_table() in (ROOT / 'README.md').read_text()


def test_readme_output_table_is_the_code_table() -> None:
    assert outputs.markdown_table() in (ROOT / 'README.md').read_text()


def test_every_readme_command_matches_the_code() -> None:
    commands = load_checker().static_check()
    assert any(c.startswith('mvfm-bag') for c in commands)
    assert any(c.startswith('ros2 launch mvfm_ros perception.launch.py') for c in commands)


def test_checker_rejects_a_wrong_command(tmp_path) -> None:
    checker = load_checker()
    bad = tmp_path / 'README.md'
    bad.write_text('```bash\nmvfm-bag in out --no-such-flag\n```\n')
    with pytest.raises(AssertionError, match='arguments rejected'):
        checker.static_check(bad)
    bad.write_text('```bash\nros2 launch mvfm_ros perception.launch.py colour:=red\n```\n')
    with pytest.raises(AssertionError, match='undeclared launch arguments'):
        checker.static_check(bad)


def test_perception_yaml_sets_only_declared_parameters_with_their_types() -> None:
    data = yaml.safe_load((ROOT / 'config' / 'perception.yaml').read_text())
    values = data['mvfm_perception']['ros__parameters']
    declared = Settings.defaults()
    assert set(values) <= set(declared)
    for name, value in values.items():
        assert type(coerce(name, value)) is type(declared[name]), (name, value)
        assert type(value) is type(declared[name]), (name, value)  # written as the type is
    Settings.from_values(values)  # a configuration the node accepts
    assert len(values) >= 15


def test_launch_file_declares_its_arguments_and_starts_the_console_script() -> None:
    text = (ROOT / 'launch' / 'perception.launch.py').read_text()
    checker = load_checker()
    assert checker.launch_arguments() == {'config', 'namespace', 'image', 'camera_info',
                                          'pose_topic', 'depth', 'pose_source', 'use_sim_time',
                                          'autostart', 'log_level'}
    assert "executable='perception_node'" in text
    assert 'perception_node' in checker.console_scripts()
    try:
        import launch_ros  # noqa: F401
    except ImportError:
        pytest.skip('launch_ros is not installable from PyPI: the launch file was checked '
                    'statically only; it is exercised where ROS 2 is installed')
    spec = importlib.util.spec_from_file_location('perception_launch',
                                                  ROOT / 'launch' / 'perception.launch.py')
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    description = module.generate_launch_description()
    assert len(description.entities) == 11  # the arguments, then the node and its events


def test_rviz_config_shows_the_node_images() -> None:
    data = yaml.safe_load((ROOT / 'config' / 'mvfm.rviz').read_text())
    topics = {d['Topic']['Value'] for d in data['Visualization Manager']['Displays']
              if d['Class'] == 'rviz_default_plugins/Image'}
    assert topics == {'/camera/image', '/mvfm/features/pca', '/mvfm/normals/color',
                      '/mvfm/segmentation/color', '/mvfm/ops/superpixels/color'}
    clouds = [d for d in data['Visualization Manager']['Displays']
              if d['Class'] == 'rviz_default_plugins/PointCloud2']
    assert [d['Topic']['Value'] for d in clouds] == ['/mvfm/map']
    assert clouds[0]['Color Transformer'] == 'RGB8'  # the map's packed rgb field
