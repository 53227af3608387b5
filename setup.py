"""Build script for the mvfm_ros ament_python package (also installable with plain pip)."""

from glob import glob

from setuptools import find_packages, setup

PACKAGE = 'mvfm_ros'

setup(
    name=PACKAGE,
    version='0.1.0',
    packages=find_packages(exclude=['test', 'test.*']),
    data_files=[
        ('share/ament_index/resource_index/packages', [f'resource/{PACKAGE}']),
        (f'share/{PACKAGE}', ['package.xml']),
        (f'share/{PACKAGE}/launch', glob('launch/*.launch.py')),
        (f'share/{PACKAGE}/config', glob('config/*.yaml') + glob('config/*.rviz')),
        (f'share/{PACKAGE}/config/demo', glob('config/demo/*.yaml')),
        (f'share/{PACKAGE}/config/dinov2', glob('config/dinov2/*.yaml')),
        (f'share/{PACKAGE}/msg', glob('msg/*.msg')),
        (f'share/{PACKAGE}/demo/bag', glob('demo/bag/*')),
    ],
    package_data={PACKAGE: ['demo/*.safetensors']},
    python_requires='>=3.10',
    install_requires=[
        'numpy',
        'pyyaml',
        'safetensors',
        'timm>=1.0.20',
        'torch>=2.4',
        'torchvision',
        'huggingface_hub',
        'scikit-image',
        'matplotlib',
        'tqdm',
        'rosbags',
        'mcap',
        'onnx',
        'onnxruntime',
        'plyfile',
    ],
    zip_safe=False,
    maintainer='mvfm_ros maintainers',
    maintainer_email='maintainers@mvfm-ros.dev',
    description='Multi-view consistent vision foundation models for ROS 2.',
    license='Apache-2.0',
    tests_require=['pytest'],
    entry_points={
        'console_scripts': [
            'mvfm-train = mvfm_ros.train.cli:main',
            'mvfm-eval = mvfm_ros.eval.cli:main',
            'perception_node = mvfm_ros.ros.node_cli:main',
            'mvfm-bag = mvfm_ros.messages.bag_cli:main',
            'process_bag = mvfm_ros.messages.bag_cli:main',
            'mvfm-demo = mvfm_ros.demo.cli:main',
            'mvfm-bench = mvfm_ros.bench.cli:main',
            'mvfm-export = mvfm_ros.bench.export_cli:main',
            'mvfm-convert = mvfm_ros.models.convert_cli:main',
        ],
    },
)
