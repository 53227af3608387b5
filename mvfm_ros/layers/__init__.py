"""Trainable building blocks: multi-view adapter, ray embedding, LoRA."""

from mvfm_ros.layers.lora import LoRALinear
from mvfm_ros.layers.mv_adapter import MVAdapter
from mvfm_ros.layers.ray_embed import RayEmbed

__all__ = ['LoRALinear', 'MVAdapter', 'RayEmbed']
