"""Write the demo bag: a generated indoor sequence as a robot would record it.

Topics: ``/camera/image`` (rgb8), ``/camera/camera_info``, ``/camera/depth`` (16UC1, mm, like an
RGB-D camera; used only to score correspondences in the demo), ``/tf`` (map -> base_link),
``/tf_static`` (base_link -> camera_optical) and ``/pose`` (PoseStamped of camera_optical in
map). ``python -m mvfm_ros.demo.make_bag OUTPUT`` regenerates the shipped one.
"""

from __future__ import annotations

import argparse
import shutil
from pathlib import Path

import numpy as np
from rosbags.rosbag2 import StoragePlugin, Writer
from rosbags.typesys import Stores, get_typestore

from mvfm_ros.data.procedural import SceneConfig, SceneGenerator
from mvfm_ros.geometry.interpolation import invert_pose, matrix_to_quat
from mvfm_ros.messages.factory import rosbags_factory

# base_link (x forward, y left, z up) -> camera optical frame (x right, y down, z forward),
# camera 0.2 m ahead and 1 m above base_link; the robot's height comes from the trajectory.
BASE_TO_OPTICAL = np.array([[0.0, 0.0, 1.0, 0.2], [-1.0, 0.0, 0.0, 0.0],
                            [0.0, -1.0, 0.0, 1.0], [0.0, 0.0, 0.0, 1.0]])


def write_demo_bag(output: Path, frames: int = 36, size: tuple[int, int] = (240, 320),
                   rate_hz: float = 10.0, seed: int = 2024, speed: float = 0.3) -> Path:
    """Generate the sequence and write it as an MCAP bag folder at ``output``."""
    output = Path(output)
    if output.exists():
        shutil.rmtree(output)
    sample = SceneGenerator(seed, SceneConfig(*size, supersample=2)).sequence(
        0, frames, 'orbit', speed=speed)
    store = get_typestore(Stores.ROS2_JAZZY)
    t = store.types
    build = rosbags_factory(store)
    header = build.header
    start_ns = 1_700_000_000 * 1_000_000_000

    def transform(ns: int, parent: str, child: str, pose: np.ndarray):
        q = matrix_to_quat(pose[:3, :3])
        return t['geometry_msgs/msg/TransformStamped'](
            header=header(ns, parent), child_frame_id=child,
            transform=t['geometry_msgs/msg/Transform'](
                translation=t['geometry_msgs/msg/Vector3'](*map(float, pose[:3, 3])),
                rotation=t['geometry_msgs/msg/Quaternion'](*map(float, q))))

    def image(ns: int, array: np.ndarray, encoding: str):
        return build.image(header(ns, 'camera_optical'), array, encoding)

    with Writer(output, version=9, storage_plugin=StoragePlugin.MCAP) as writer:
        conns = {topic: writer.add_connection(topic, kind, typestore=store) for topic, kind in (
            ('/camera/image', 'sensor_msgs/msg/Image'),
            ('/camera/camera_info', 'sensor_msgs/msg/CameraInfo'),
            ('/camera/depth', 'sensor_msgs/msg/Image'),
            ('/tf', 'tf2_msgs/msg/TFMessage'), ('/tf_static', 'tf2_msgs/msg/TFMessage'),
            ('/pose', 'geometry_msgs/msg/PoseStamped'))}

        def write(topic: str, ns: int, msg) -> None:
            writer.write(conns[topic], ns, store.serialize_cdr(msg, conns[topic].msgtype))

        static = t['tf2_msgs/msg/TFMessage'](
            transforms=[transform(start_ns, 'base_link', 'camera_optical', BASE_TO_OPTICAL)])
        write('/tf_static', start_ns, static)
        k = sample.intrinsics[0].double().numpy()
        for i in range(frames):
            ns = start_ns + int(i * 1e9 / rate_hz)
            optical = sample.cam_to_world[i].double().numpy()
            base = optical @ invert_pose(BASE_TO_OPTICAL)
            write('/tf', ns, t['tf2_msgs/msg/TFMessage'](
                transforms=[transform(ns, 'map', 'base_link', base)]))
            write('/pose', ns, t['geometry_msgs/msg/PoseStamped'](
                header=header(ns, 'map'), pose=build.pose(optical)))
            write('/camera/camera_info', ns,
                  build.camera_info(header(ns, 'camera_optical'), k, *size))
            rgb = (sample.images[i].permute(1, 2, 0) * 255 + 0.5).byte().numpy()
            write('/camera/image', ns, image(ns, rgb, 'rgb8'))
            depth_mm = (sample.depth[i].numpy() * 1000 + 0.5).clip(0, 65535).astype(np.uint16)
            write('/camera/depth', ns, image(ns, depth_mm, '16UC1'))
    return output


def main() -> None:
    """Entry point: ``python -m mvfm_ros.demo.make_bag OUTPUT``."""
    parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    parser.add_argument('output', type=Path)
    parser.add_argument('--frames', type=int, default=36, help='images in the bag')
    parser.add_argument('--size', type=int, nargs=2, default=(240, 320), metavar=('H', 'W'),
                        help='image height and width (4:3 like an RGB-D camera)')
    args = parser.parse_args()
    path = write_demo_bag(args.output, args.frames, tuple(args.size))
    total = sum(f.stat().st_size for f in path.rglob('*') if f.is_file())
    print(f'wrote {path} ({total / 2**20:.1f} MB)')


if __name__ == '__main__':
    main()
