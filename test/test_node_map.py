"""The node with depth over DDS: lifted operators, the world-frame map and its reset service."""

from __future__ import annotations

import numpy as np
import pytest

rclpy = pytest.importorskip('rclpy', reason='rclpy (ROS 2 Jazzy wheels) not installed')

from ros_helpers import ConsoleLog, Player, make_node, stamp, start, wait_for  # noqa: E402
from sensor_msgs.msg import Image, PointCloud2  # noqa: E402
from std_srvs.srv import Trigger  # noqa: E402

from mvfm_ros.demo.report import cloud_array  # noqa: E402
from mvfm_ros.eval.lift_metrics import surface_distance  # noqa: E402
from mvfm_ros.messages.conversions import image_fields  # noqa: E402

VOXEL = 0.05


def test_node_maps_depth_lifts_operators_and_resets(ros_context, sequence, capfd) -> None:
    sample, images = sequence
    log = ConsoleLog(capfd)
    harness = start(make_node(use_depth=True, map_period=0.2, map_voxel_size=VOXEL,
                              operators=['superpixels', 'lift_operators:raises'],
                              allow_module_operators=True))
    try:
        maps = harness.subscribe(PointCloud2, '/mvfm/map')
        lifted = harness.subscribe(Image, '/mvfm/ops/superpixels')
        colours = harness.subscribe(Image, '/mvfm/ops/superpixels/color')
        depth_pub = harness.publisher(Image, 'depth')
        player = Player(harness)
        assert wait_for(lambda: depth_pub.get_subscription_count() > 0, 10)
        for i in range(len(images)):
            depth = Image(**image_fields(sample.depth[i].numpy().astype(np.float32), '32FC1'))
            depth.header.frame_id = 'camera_optical'
            stamp(depth, (50 + i) * 200_000_000)
            depth_pub.publish(depth)
            player.send(images[i], sample.intrinsics[i].numpy(),
                        sample.cam_to_world[i].double().numpy(), (50 + i) * 200_000_000)
            assert wait_for(lambda i=i: len(lifted) > i, 30), f'no lifted output for {i}'
        # The operator that raises is logged and counted; the node kept serving every frame.
        counts = harness.node.pipeline.stats.counts
        assert counts['operator_errors'] == len(images) and counts['depth_missing'] == 0
        assert log.has('[operator_errors]') and log.has('broken operator')
        assert {(m.encoding, m.header.frame_id) for m in lifted} == {('32SC1', 'camera_optical')}
        assert len(colours) == len(images)
        # The map: PointCloud2 in world_frame with the named fields, covering every frame.
        assert wait_for(lambda: len(harness.node.pipeline.stats.map_update) == len(images), 10)
        published = len(maps)
        assert wait_for(lambda: len(maps) > published, 10)  # a map with every frame in it
        msg = maps[-1]
        assert msg.width > 100
        assert msg.header.frame_id == 'map'
        assert [f.name for f in msg.fields][:6] == ['x', 'y', 'z', 'rgb', 'label', 'confidence']
        assert [f.name for f in msg.fields][6:] == [f'f{i}' for i in range(8)]
        cloud = cloud_array(msg)
        # Points on the generated surfaces: within 2 voxels of the depth of some view.
        best = surface_distance(np.stack([cloud['x'], cloud['y'], cloud['z']], 1), sample)
        assert (best <= 2 * VOXEL).mean() > 0.99
        assert (cloud['label'] >= 0).mean() > 0.9
        # The reset service empties the map; the next map message is empty.
        client = harness.peer.create_client(Trigger, '/mvfm_perception/reset_map')
        assert client.wait_for_service(timeout_sec=10)
        future = client.call_async(Trigger.Request())
        assert wait_for(future.done, 10) and future.result().success
        assert future.result().message == f'{len(cloud)} voxels removed'
        seen = len(maps)
        assert wait_for(lambda: len(maps) > seen + 1 and maps[-1].width == 0, 10)
    finally:
        harness.close()
