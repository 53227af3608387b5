"""The sliding-window perception pipeline (no ROS imports): frames in, per-view outputs out."""

from mvfm_ros.pipeline.config import PipelineConfig
from mvfm_ros.pipeline.engine import Engine, demo_model_path
from mvfm_ros.pipeline.frame import PROBLEMS, Frame, FrameError, ViewResult, WindowResult
from mvfm_ros.pipeline.pipeline import Pipeline, PipelineStats
from mvfm_ros.pipeline.poses import PoseBuffer, PoseLookupError
from mvfm_ros.pipeline.worker import AsyncPipeline

__all__ = [
    'AsyncPipeline',
    'Engine',
    'Frame',
    'FrameError',
    'Pipeline',
    'PipelineConfig',
    'PROBLEMS',
    'PipelineStats',
    'PoseBuffer',
    'PoseLookupError',
    'ViewResult',
    'WindowResult',
    'demo_model_path',
]
