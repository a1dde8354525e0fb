"""Where a model's layers go: how many whole layers each device holds, the rest on the CPU.

llama.cpp offloads the *last* ``n_gpu_layers`` repeating layers (and, when ``n_gpu_layers``
exceeds their number, the output layer) and cuts them into contiguous runs, one per device,
in device order (``tensor_split``). A layer is never split between devices, so each device is
filled with whole layers against its own free memory; nothing is pooled.

Planning is conservative: on every device it uses, a plan sets aside the runtime's own
reserve (:attr:`Device.reserved`), ``OLLAMA_GPU_OVERHEAD``, the compute graph, the projector
(first device only) and a margin of one more layer. When no single device holds the whole
model (or ``OLLAMA_SCHED_SPREAD`` is set), layers are spread over every device in proportion
to what each can hold. With a runtime variable to pick devices (``CUDA_VISIBLE_DEVICES``), the
runner is shown only the devices the plan uses, in plan order.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace

from ollama_core.backends.discovery import CPU_BACKEND, Discovery
from ollama_core.backends.estimate import KV_CACHE_TYPES, ModelMemory, ModelShape, estimate_memory
from ollama_core.descriptors import Device
from ollama_core.gguf import GGUFFile
from ollama_core.settings import Settings

GiB = 1 << 30
_SEARCH_STEPS = 40


@dataclass(frozen=True)
class PlanSettings:
    """Server-wide settings that shape every plan."""

    flash_attention: bool | None = None
    """``OLLAMA_FLASH_ATTENTION``: forced on, forced off, or None for automatic."""
    kv_cache_type: str = "f16"
    """``OLLAMA_KV_CACHE_TYPE``: ``f16``, ``q8_0`` or ``q4_0`` (quantized types need flash attention)."""
    gpu_overhead: int = 0
    """``OLLAMA_GPU_OVERHEAD``: bytes left free on every GPU."""
    sched_spread: bool = False
    """``OLLAMA_SCHED_SPREAD``: spread every model over all GPUs even when one would hold it."""

    @classmethod
    def from_settings(cls, settings: Settings) -> PlanSettings:
        """The planning part of the server settings."""
        return cls(
            flash_attention=settings.flash_attention,
            kv_cache_type=settings.kv_cache_type,
            gpu_overhead=settings.gpu_overhead,
            sched_spread=settings.sched_spread,
        )


@dataclass(frozen=True)
class PlanRequest:
    """One load: the runner's context and batch, and the request's ``num_gpu``/``main_gpu`` options.

    ``num_gpu`` None or negative means automatic; 0 keeps everything on the CPU; N offloads N
    layers (llama.cpp counts the output layer as one more than the repeating layers).
    """

    num_ctx: int
    num_parallel: int = 1
    num_batch: int = 512
    num_gpu: int | None = None
    main_gpu: int | None = None


@dataclass(frozen=True)
class Attention:
    """The flash-attention setting passed to the runner (None lets llama.cpp decide), what the
    estimate assumes, and the KV cache type that goes with it."""

    flash_attn: bool | None
    assume_flash: bool
    kv_cache_type: str
    notes: tuple[str, ...] = ()


@dataclass(frozen=True)
class DeviceAllocation:
    """What one device holds: whole layers (with their KV cache), the compute graph and fixed costs."""

    device: Device
    layers: int
    weights: int
    kv: int
    graph: int
    fixed: int
    """The runtime's reserve, plus the projector on the first device."""

    @property
    def total(self) -> int:
        """Bytes this device gives to the model."""
        return self.weights + self.kv + self.graph + self.fixed


@dataclass(frozen=True)
class LoadPlan:
    """How a runner loads a model: the llama.cpp settings, and the memory it will use.

    ``tensor_split`` gives layers per device in the runner's device order (empty when the
    runner sees one device); ``env`` is added to the runner's environment. ``size`` is every
    byte the runner is expected to use and ``size_vram`` the part on GPUs. ``short_of_memory``
    says that GPUs were there but their free memory held only part of the model (or none of
    it), so unloading another model may let it load wholly on the GPU.
    """

    backend: str
    n_gpu_layers: int
    total_layers: int
    main_gpu: int
    tensor_split: tuple[float, ...]
    flash_attn: bool | None
    kv_cache_type: str
    size: int
    size_vram: int
    devices: tuple[DeviceAllocation, ...]
    reason: str
    env: Mapping[str, str] = field(default_factory=dict)
    notes: tuple[str, ...] = ()
    short_of_memory: bool = False

    def describe(self) -> str:
        """One line for the server log."""
        parts = [self.reason]
        if self.tensor_split:
            parts.append("split " + ",".join(f"{s:g}" for s in self.tensor_split))
        fa = "auto" if self.flash_attn is None else ("on" if self.flash_attn else "off")
        parts.append(f"flash attention {fa}, KV cache {self.kv_cache_type}")
        parts.append(f"{self.size / GiB:.2f} GiB in all, {self.size_vram / GiB:.2f} GiB on GPU")
        return "; ".join(parts + list(self.notes))


def choose_attention(shape: ModelShape, devices: Sequence[Device], settings: PlanSettings) -> Attention:
    """Flash attention and KV cache type for a model on ``devices`` (all of them must run flash attention)."""
    supported = shape.supports_flash_attention() and all(d.flash_attention for d in devices)
    notes = []
    flash: bool | None = settings.flash_attention
    if flash and not supported:
        notes.append("flash attention was requested but this model or a device does not support it")
        flash = False
    kv = settings.kv_cache_type
    if kv not in KV_CACHE_TYPES:
        notes.append(f"unknown KV cache type {kv!r}; using f16")
        kv = "f16"
    if kv != "f16":
        if flash is False or not supported:
            notes.append(f"KV cache type {kv} needs flash attention; using f16")
            kv = "f16"
        elif not shape.supports_kv_cache_type(kv):
            notes.append(f"KV cache type {kv} does not divide this model's head sizes; using f16")
            kv = "f16"
        else:
            flash = True
    return Attention(flash, supported if flash is None else flash, kv, tuple(notes))


def plan_load(
    gguf: GGUFFile,
    discovery: Discovery,
    request: PlanRequest,
    settings: PlanSettings,
    *,
    projector: GGUFFile | None = None,
) -> LoadPlan:
    """Estimate what ``gguf`` needs for ``request`` and place it on the discovered devices."""
    shape = ModelShape.from_gguf(gguf)
    chosen = discovery.accelerator
    devices = discovery.devices
    attention = choose_attention(shape, devices, settings)
    memory = estimate_memory(
        gguf,
        num_ctx=request.num_ctx,
        num_parallel=request.num_parallel,
        num_batch=request.num_batch,
        kv_cache_type=attention.kv_cache_type,
        flash_attention=attention.assume_flash,
        projector=projector,
        shape=shape,
    )
    if chosen is None or chosen.status is None:
        return cpu_plan(memory, attention, f"no GPU found; running on CPU ({discovery.why_cpu()})")
    return plan_layers(
        memory,
        devices,
        attention=attention,
        backend=chosen.name,
        num_gpu=request.num_gpu,
        main_gpu=request.main_gpu,
        gpu_overhead=settings.gpu_overhead,
        spread=settings.sched_spread,
        visible_devices_env=chosen.status.visible_devices_env,
    )


def cpu_plan(memory: ModelMemory, attention: Attention, reason: str, env: Mapping[str, str] | None = None) -> LoadPlan:
    """Everything in system memory."""
    return LoadPlan(
        backend=CPU_BACKEND,
        n_gpu_layers=0,
        total_layers=memory.block_count + 1,
        main_gpu=0,
        tensor_split=(),
        flash_attn=attention.flash_attn,
        kv_cache_type=attention.kv_cache_type,
        size=memory.cpu_total,
        size_vram=0,
        devices=(),
        reason=reason,
        env=dict(env or {}),
        notes=attention.notes,
    )


def plan_layers(
    memory: ModelMemory,
    devices: Sequence[Device],
    *,
    attention: Attention,
    backend: str,
    num_gpu: int | None = None,
    main_gpu: int | None = None,
    gpu_overhead: int = 0,
    spread: bool = False,
    visible_devices_env: str = "",
) -> LoadPlan:
    """Fit whole layers of ``memory`` onto ``devices``; what does not fit stays on the CPU.

    Single devices are tried first (``main_gpu``, then the most free memory), unless ``spread``;
    then all of them together, in the runner's device order (index order, or preference order
    when ``visible_devices_env`` lets the plan choose what the runner sees).
    """
    total = memory.block_count + 1
    hide = {visible_devices_env: ""} if visible_devices_env else {}
    if not devices:
        return cpu_plan(memory, attention, f"no {backend} device; running on CPU", hide)
    if num_gpu == 0:
        return cpu_plan(memory, attention, "num_gpu is 0; running on CPU", hide)
    forced = num_gpu is not None and num_gpu > 0
    want = min(num_gpu, total) if num_gpu is not None and forced else total
    preferred = sorted(devices, key=lambda d: (d.index != main_gpu, -d.free_memory, d.index))
    together = preferred if visible_devices_env else sorted(devices, key=lambda d: d.index)
    groups = [together] if spread or len(devices) == 1 else [[d] for d in preferred] + [together]
    placement = _Placement(memory, gpu_overhead)
    count, used, counts = placement.best(groups, want)
    notes = list(attention.notes)
    if forced and count < want:
        notes.append(
            f"num_gpu {num_gpu} asks for more layers than the estimate fits ({count}); the load may run out of memory"
        )
        count = want
        used, counts = placement.stretch(together, want)
    if count == 0:
        need = _gib(max((layer.total for layer in memory.layers), default=memory.output))
        most = _gib(max(d.free_memory for d in devices))
        reason = f"not enough free {backend} memory for one layer ({need} GiB plus graph and reserve; {most} GiB free)"
        return replace(cpu_plan(memory, attention, f"{reason}; running on CPU", hide), short_of_memory=True)
    allocations = placement.allocations(used, counts, count)
    size_vram = sum(a.total for a in allocations)
    host_layers = sum(layer.total for layer in memory.layers[: max(0, memory.block_count - count)])
    host = memory.host + host_layers + (0 if count == total else memory.host_output)
    names = ", ".join(f"{d.backend} {d.index} ({d.name})" for d in used)
    where = f"all {total} layers on {names}"
    if count < total:
        where = f"{count} of {total} layers on {names}, the rest on CPU"
    return LoadPlan(
        backend=backend,
        n_gpu_layers=count,
        total_layers=total,
        main_gpu=0 if visible_devices_env else used[0].index,
        tensor_split=_tensor_split(devices, used, counts, remapped=bool(visible_devices_env)),
        flash_attn=attention.flash_attn,
        kv_cache_type=attention.kv_cache_type,
        size=size_vram + host,
        size_vram=size_vram,
        devices=tuple(allocations),
        reason=where,
        env={visible_devices_env: ",".join(d.id for d in used)} if visible_devices_env else {},
        notes=tuple(notes),
        short_of_memory=count < total and not forced,
    )


class _Placement:
    """Fits the offloaded layers of one model onto ordered groups of devices."""

    def __init__(self, memory: ModelMemory, gpu_overhead: int) -> None:
        self.memory = memory
        self.gpu_overhead = gpu_overhead
        self.margin = max((layer.total for layer in memory.layers), default=0)

    def items(self, count: int) -> list[tuple[int, int]]:
        """(weights, kv) of the ``count`` offloaded layers, in the order llama.cpp places them."""
        n = self.memory.block_count
        layers = [(layer.weights, layer.kv) for layer in self.memory.layers[n - min(count, n) :]]
        return layers + ([(self.memory.output, 0)] if count > n else [])

    def graph(self, device: Device, count: int, group_size: int) -> int:
        """Compute buffer on ``device``: the smaller full-offload graph only with everything on one device."""
        full = count > self.memory.block_count and group_size == 1
        return self.memory.graph_full if full or device.unified else self.memory.graph_partial

    def capacity(self, devices: Sequence[Device], count: int) -> list[int]:
        """Bytes each device has left for layers once its fixed costs, graph and margin are set aside."""
        return [
            d.free_memory - self.gpu_overhead - d.reserved - self.graph(d, count, len(devices)) - self.margin
            - (self.memory.projector if i == 0 else 0)
            for i, d in enumerate(devices)
        ]

    def best(self, groups: Sequence[Sequence[Device]], limit: int) -> tuple[int, list[Device], list[int]]:
        """The group holding the most layers (the first of equals), stopping at one that holds ``limit``."""
        best: tuple[int, list[Device], list[int]] = (0, [], [])
        for group in groups:
            fit = self.most_layers(group, limit)
            if fit[0] > best[0]:
                best = fit
            if best[0] == limit:
                break
        return best

    def most_layers(self, devices: Sequence[Device], limit: int) -> tuple[int, list[Device], list[int]]:
        """The most layers (up to ``limit``) the devices hold, the devices used and layers per device."""
        for count in range(limit, 0, -1):
            group = list(devices)
            while group:
                sizes = [w + kv for w, kv in self.items(count)]
                counts = _balanced(sizes, self.capacity(group, count))
                if counts is None:
                    break
                if all(counts):
                    return count, group, counts
                group = [d for d, c in zip(group, counts) if c]
        return 0, [], []

    def stretch(self, devices: Sequence[Device], count: int) -> tuple[list[Device], list[int]]:
        """Spread ``count`` layers over ``devices`` in proportion to free memory, fitting or not."""
        sizes = [w + kv for w, kv in self.items(count)]
        weights = [max(1, d.free_memory) for d in devices]
        scale = 1
        while (counts := _balanced(sizes, [w * scale for w in weights])) is None:
            scale *= 2
        used = [d for d, c in zip(devices, counts) if c]
        return used, [c for c in counts if c]

    def allocations(self, devices: Sequence[Device], counts: Sequence[int], count: int) -> list[DeviceAllocation]:
        """What each device holds when ``count`` layers are cut into runs of ``counts``."""
        items = self.items(count)
        result = []
        start = 0
        for i, (device, n) in enumerate(zip(devices, counts)):
            chunk = items[start : start + n]
            start += n
            result.append(
                DeviceAllocation(
                    device=device,
                    layers=n,
                    weights=sum(w for w, _ in chunk),
                    kv=sum(kv for _, kv in chunk),
                    graph=self.graph(device, count, len(devices)),
                    fixed=device.reserved + (self.memory.projector if i == 0 else 0),
                )
            )
        return result


def _fill(sizes: Sequence[int], capacities: Sequence[int]) -> list[int] | None:
    """Cut ``sizes`` into contiguous runs, each as long as its capacity allows; None when some are left."""
    counts = []
    i = 0
    for cap in capacities:
        start, total = i, 0
        while i < len(sizes) and total + sizes[i] <= cap:
            total += sizes[i]
            i += 1
        counts.append(i - start)
    return counts if i == len(sizes) else None


def _balanced(sizes: Sequence[int], capacities: Sequence[int]) -> list[int] | None:
    """A contiguous cut that fills every device to about the same fraction of its capacity."""
    if _fill(sizes, capacities) is None:
        return None
    low, high = 0.0, 1.0
    for _ in range(_SEARCH_STEPS):
        middle = (low + high) / 2
        if _fill(sizes, [int(c * middle) for c in capacities]) is None:
            low = middle
        else:
            high = middle
    return _fill(sizes, [int(c * high) for c in capacities])


def _tensor_split(
    devices: Sequence[Device], used: Sequence[Device], counts: Sequence[int], *, remapped: bool
) -> tuple[float, ...]:
    """Layers per device in the runner's device order; empty when the runner sees only one device."""
    if remapped:
        return tuple(float(c) for c in counts) if len(used) > 1 else ()
    if len(devices) == 1:
        return ()
    split = [0.0] * (max(d.index for d in devices) + 1)
    for device, count in zip(used, counts):
        split[device.index] = float(count)
    return tuple(split)


def _gib(value: int) -> str:
    return f"{value / GiB:.2f}"
