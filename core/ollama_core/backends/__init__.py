"""Compute backends: device discovery, memory estimates and layer-offload plans.

Backend plugins (:class:`~ollama_core.descriptors.Backend`) only report devices.
:mod:`.discovery` asks every backend for its status, :mod:`.estimate` reads what a model needs
from its GGUF header, and :mod:`.plan` decides how many whole layers go to which device.
:mod:`.llama_build` tells whether the installed llama-cpp-python can offload at all.
"""
