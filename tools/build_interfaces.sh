#!/usr/bin/env bash
# Build msg/ into a virtual environment with the ROS 2 build chain from PyPI (make interfaces).
#
# The generated C libraries go to VENV/lib (on the ROS wheels' library path), the generated
# Python modules (mvfm_ros.msg and its typesupport extensions) to VENV/lib/mvfm_ros_interfaces,
# which mvfm_ros/__init__.py adds to the package's search path: the package itself stays an
# editable install of this checkout. The launch and config files, the console scripts for
# `ros2 run` and the package's ament index entry go to VENV as colcon would install them. CMake runs on a copy of the interface sources because it
# refuses include directories inside the source tree, and .venv is inside this checkout.
set -euo pipefail
venv=$(cd "${1:?usage: build_interfaces.sh VENV [BUILD_DIR]}" && pwd)
root=$(cd "$(dirname "$0")/.." && pwd)
build=${2:-$root/build/interfaces}
rm -rf "$build" && mkdir -p "$build/src" "$build/cmake"
cp -r "$root/CMakeLists.txt" "$root/package.xml" "$root/msg" "$root/cmake" "$root/launch" \
  "$root/config" "$root/demo" "$build/src/"
export AMENT_PREFIX_PATH="$venv" CMAKE_PREFIX_PATH="$venv" PATH="$venv/bin:$PATH"
cmake -S "$build/src" -B "$build/cmake" -DMVFM_SKIP_PYTHON=ON \
  -DCMAKE_INSTALL_PREFIX="$venv" -DPYTHON_INSTALL_DIR=lib/mvfm_ros_interfaces \
  -DPython3_EXECUTABLE="$venv/bin/python" -DBUILD_TESTING=OFF > "$build/configure.log" 2>&1 \
  || { cat "$build/configure.log"; exit 1; }
cmake --build "$build/cmake" --target install -- -j"$(nproc)" > "$build/build.log" 2>&1 \
  || { tail -50 "$build/build.log"; exit 1; }
echo "interfaces installed into $venv (log: $build/build.log)"
