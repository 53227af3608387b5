"""How late small reliable messages arrive next to large images, per Fast DDS transport.

A publisher process sends a PoseStamped and a 640x480 rgb8 Image (both reliable) at 15 Hz for
20 s; a subscriber process records how long after its stamp each message arrives. Run as

    .venv/bin/python tools/pose_delivery.py                 # default transports
    FASTDDS_BUILTIN_TRANSPORTS=UDPv4 .venv/bin/python tools/pose_delivery.py --sub-only

``--sub-only`` applies the environment's transport setting to the subscriber alone (what the
node does for itself). This is the measurement behind the node's UDPv4 default.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time


def run(role: str, seconds: float) -> None:
    """Publish or subscribe for ``seconds``; the subscriber prints a JSON summary."""
    import rclpy
    from geometry_msgs.msg import PoseStamped
    from rclpy.qos import QoSProfile, ReliabilityPolicy
    from sensor_msgs.msg import Image

    rclpy.init()
    node = rclpy.create_node(f'pose_delivery_{role}')
    qos = QoSProfile(depth=100, reliability=ReliabilityPolicy.RELIABLE)
    if role == 'pub':
        poses = node.create_publisher(PoseStamped, 'pose_delivery/pose', qos)
        images = node.create_publisher(Image, 'pose_delivery/image', qos)
        time.sleep(2.0)  # discovery
        data = bytes(640 * 480 * 3)
        for _ in range(int(15 * seconds)):
            stamp = node.get_clock().now().to_msg()
            pose = PoseStamped()
            pose.header.stamp = stamp
            poses.publish(pose)
            image = Image(height=480, width=640, encoding='rgb8', step=1920, data=data)
            image.header.stamp = stamp
            images.publish(image)
            rclpy.spin_once(node, timeout_sec=1 / 15)
    else:
        delays: dict[str, list[float]] = {'pose': [], 'image': []}

        def record(kind):
            def callback(msg):
                sent = msg.header.stamp.sec * 10**9 + msg.header.stamp.nanosec
                delays[kind].append((node.get_clock().now().nanoseconds - sent) / 1e9)
            return callback

        node.create_subscription(PoseStamped, 'pose_delivery/pose', record('pose'), qos)
        node.create_subscription(Image, 'pose_delivery/image', record('image'), qos)
        end = time.monotonic() + seconds + 6
        while time.monotonic() < end:
            rclpy.spin_once(node, timeout_sec=0.1)
        summary = {}
        for kind, values in delays.items():
            values.sort()
            summary[kind] = {'received': len(values),
                             'p50_s': values[len(values) // 2] if values else None,
                             'max_s': values[-1] if values else None,
                             'later_than_0.2s': sum(v > 0.2 for v in values)}
        print(json.dumps(summary))
    node.destroy_node()
    rclpy.shutdown()


def main() -> int:
    """Run a subscriber and a publisher process and print the subscriber's summary."""
    parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    parser.add_argument('--role', choices=('pub', 'sub'), help=argparse.SUPPRESS)
    parser.add_argument('--seconds', type=float, default=20.0, help='publishing time')
    parser.add_argument('--sub-only', action='store_true',
                        help='apply FASTDDS_BUILTIN_TRANSPORTS to the subscriber only')
    args = parser.parse_args()
    if args.role:
        run(args.role, args.seconds)
        return 0
    me = [sys.executable, __file__, '--seconds', str(args.seconds), '--role']
    pub_env = dict(os.environ)
    if args.sub_only:
        pub_env.pop('FASTDDS_BUILTIN_TRANSPORTS', None)
    sub = subprocess.Popen([*me, 'sub'], stdout=subprocess.PIPE, text=True)
    time.sleep(1.0)
    subprocess.run([*me, 'pub'], env=pub_env, check=True)
    out, _ = sub.communicate(timeout=60)
    print(out.strip())
    return sub.returncode


if __name__ == '__main__':
    raise SystemExit(main())
