#!/usr/bin/env bash
# Build the ROS 2 tools that have no PyPI wheels into the test environment (make ros-tools):
# tf2 and tf2_ros (the TF pose source), launch / launch_ros (`ros2 launch`) and the `ros2`
# command line, from the upstream Jazzy sources in SOURCES (../shared/ros-src: tarballs with a
# README of what was checked). They are third-party code built into VENV, never part of the
# package. A machine with ROS 2 installed has them already and does not need this.
#
# CMake packages first, in dependency order (their imported targets from the PyPI wheels get the
# include-directory fix of cmake/wheel_include_dirs.cmake), then the pure-Python packages with
# pip (no dependencies pulled: the lock holds what they need).
set -euo pipefail
venv=$(cd "${1:?usage: build_ros_tools.sh VENV SOURCES [BUILD_DIR]}" && pwd)
sources=$(cd "${2:?usage: build_ros_tools.sh VENV SOURCES [BUILD_DIR]}" && pwd)
root=$(cd "$(dirname "$0")/.." && pwd)
build=${3:-$root/build/ros-tools}
rm -rf "$build" && mkdir -p "$build/src"
for archive in "$sources"/*.tar.gz; do tar -xzf "$archive" -C "$build/src"; done
export AMENT_PREFIX_PATH="$venv" CMAKE_PREFIX_PATH="$venv" PATH="$venv/bin:$PATH"
for package in geometry2/tf2_msgs rcl_interfaces/composition_interfaces geometry2/tf2 \
    geometry2/tf2_py; do
  name=$(basename "$package")
  cmake -S "$build/src/$package" -B "$build/cmake/$name" -DCMAKE_INSTALL_PREFIX="$venv" \
    -DPython3_EXECUTABLE="$venv/bin/python" -DBUILD_TESTING=OFF -DCMAKE_BUILD_TYPE=Release \
    -DCMAKE_PROJECT_INCLUDE="$root/cmake/wheel_include_dirs.cmake" -DMVFM_FIX_AT_END=ON \
    > "$build/$name.configure.log" 2>&1 || { tail -40 "$build/$name.configure.log"; exit 1; }
  cmake --build "$build/cmake/$name" --target install -- -j"$(nproc)" \
    > "$build/$name.build.log" 2>&1 || { tail -40 "$build/$name.build.log"; exit 1; }
  echo "built $name"
done
python_packages=(geometry2/tf2_ros_py osrf_pycommon rosidl_runtime_py launch/launch
  launch/launch_xml launch/launch_yaml launch_ros/launch_ros launch_ros/ros2launch
  ros2cli/ros2cli ros2cli/ros2pkg ros2cli/ros2node ros2cli/ros2service ros2cli/ros2topic
  ros2cli/ros2param ros2cli/ros2lifecycle ros2cli/ros2run ros2cli/ros2action
  ros2cli/ros2interface)
"$venv/bin/python" -m pip install --quiet --no-deps --no-build-isolation \
  "${python_packages[@]/#/$build/src/}" > "$build/pip.log" 2>&1 \
  || { tail -40 "$build/pip.log"; exit 1; }
echo "ROS tools (tf2_ros, launch, ros2 CLI) installed into $venv (logs: $build)"
