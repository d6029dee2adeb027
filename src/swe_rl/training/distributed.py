"""Data-parallel FSDP training through torch.distributed (one process per device, launched with torchrun).

Owns the process group (gloo on CPU, nccl on GPU), sharding the HF model with FSDP2 `fully_shard`
(bf16 parameters and activation checkpointing on GPU), the token-balanced split of each optimizer
step's examples over ranks, and gathering the full state dict for `save_pretrained` / the sampler.
The trainer (`rl_step`, `sft`) divides every rank's loss by the GLOBAL token count of the step and
FSDP sums (not averages) the gradients, so a distributed step equals the single-process step.
"""

from __future__ import annotations

import contextlib
import os
from dataclasses import dataclass, field
from pathlib import Path
from types import SimpleNamespace
from typing import Any, Callable, Iterator, Sequence, TypeVar

import torch

T = TypeVar("T")


@dataclass(frozen=True)
class DataParallel:
    """This process's place in the data-parallel group; `DataParallel()` is the single process."""

    rank: int = 0
    world_size: int = 1
    device: torch.device = field(default_factory=lambda: torch.device("cpu"))

    @property
    def enabled(self) -> bool:
        return self.world_size > 1

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    def split(self, lengths: Sequence[int]) -> list[int]:
        """Indices (ascending) of the examples this rank trains on: longest first to the least-loaded rank.

        Pure and identical on every rank, so the shards partition the step. Balancing tokens, not
        counts, keeps ranks from waiting on each other; any split gives the same update.
        """
        load = [0] * self.world_size
        owner = [0] * len(lengths)
        for i in sorted(range(len(lengths)), key=lambda i: (-lengths[i], i)):
            r = min(range(self.world_size), key=lambda r: (load[r], r))
            owner[i] = r
            load[r] += lengths[i]
        return [i for i, r in enumerate(owner) if r == self.rank]

    def _reduce(self, values: Sequence[float], op: Any) -> list[float]:
        if not self.enabled:
            return [float(v) for v in values]
        import torch.distributed as dist

        t = torch.tensor([float(v) for v in values], dtype=torch.float64, device=self.device)
        dist.all_reduce(t, op=op)
        return t.tolist()

    def sum(self, values: Sequence[float]) -> list[float]:
        import torch.distributed as dist

        return self._reduce(values, dist.ReduceOp.SUM)

    def max(self, values: Sequence[float]) -> list[float]:
        import torch.distributed as dist

        return self._reduce(values, dist.ReduceOp.MAX)

    def barrier(self) -> None:
        if self.enabled:
            import torch.distributed as dist

            dist.barrier()

    def broadcast(self, obj: Any) -> Any:
        """Rank 0's `obj` on every rank (picklable objects)."""
        if not self.enabled:
            return obj
        import torch.distributed as dist

        box = [obj]
        dist.broadcast_object_list(box, src=0)
        return box[0]

    def on_main(self, fn: Callable[[], T]) -> T | None:
        """Run `fn` on rank 0 while the other ranks wait; its result there, None elsewhere.

        A failure (a full disk, say) is raised on every rank: the others would otherwise wait in
        the next collective until the process group's timeout. Rank 0 raises its own exception,
        the others a RuntimeError naming it (an exception need not pickle).
        """
        if not self.enabled:
            return fn()
        result, error = None, None
        if self.is_main:
            try:
                result = fn()
            except Exception as e:  # noqa: BLE001 - re-raised below, on every rank
                error = e
        failure = self.broadcast(None if error is None else f"{type(error).__name__}: {error}")
        if error is not None:
            raise error
        if failure is not None:
            raise RuntimeError(f"rank 0 failed: {failure}")
        return result


SINGLE = DataParallel()


def init_distributed(backend: str = "auto", *, timeout_s: float | None = None) -> DataParallel:
    """Join the torchrun group (RANK, WORLD_SIZE, LOCAL_RANK, MASTER_ADDR/PORT from the environment).

    Without torchrun's variables (or with WORLD_SIZE=1) this is the single process: no group.
    backend: auto = nccl when CUDA is present, else gloo. timeout_s: how long a collective may wait
    (None = torch's default); the RL recipe's other ranks wait in one while rank 0 runs the rollouts.
    """
    world = int(os.environ.get("WORLD_SIZE", "1"))
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    cuda = torch.cuda.is_available() and backend != "gloo"
    device = torch.device("cuda", local_rank) if cuda else torch.device("cpu")
    if cuda:
        torch.cuda.set_device(device)
    if world <= 1:
        return DataParallel(device=device)
    for var in ("RANK", "MASTER_ADDR", "MASTER_PORT"):
        if var not in os.environ:
            raise RuntimeError(f"init_distributed: WORLD_SIZE={world} but {var} is not set (launch with torchrun)")
    import torch.distributed as dist

    if not dist.is_initialized():
        chosen = backend if backend != "auto" else ("nccl" if cuda else "gloo")
        import datetime

        timeout = datetime.timedelta(seconds=timeout_s) if timeout_s else None
        dist.init_process_group(chosen, device_id=device if chosen == "nccl" else None, timeout=timeout)
    return DataParallel(rank=dist.get_rank(), world_size=dist.get_world_size(), device=device)


def close_distributed() -> None:
    import torch.distributed as dist

    if dist.is_initialized():
        dist.destroy_process_group()


def enable_activation_checkpointing(model: Any) -> None:
    """Recompute each decoder layer's activations in backward (transformers' own, non-reentrant)."""
    kwargs = {"use_reentrant": False}
    if hasattr(model, "activation_checkpointing_enable"):  # transformers >= 5 renamed it
        model.activation_checkpointing_enable(activation_checkpointing_kwargs=kwargs)
    else:
        model.gradient_checkpointing_enable(gradient_checkpointing_kwargs=kwargs)
    model.config.use_cache = False


def decoder_layers(model: torch.nn.Module) -> list[torch.nn.Module]:
    """The repeated transformer blocks: each becomes one FSDP unit (gathered just before it runs)."""
    names = set(getattr(model, "_no_split_modules", None) or ())
    layers = [m for m in model.modules() if type(m).__name__ in names]
    if not layers:
        raise ValueError(f"{type(model).__name__}: no decoder layers found (its _no_split_modules: {sorted(names)})")
    return layers


def shard_model(
    model: torch.nn.Module,
    dp: DataParallel,
    *,
    bf16: bool | None = None,
    activation_checkpointing: bool = False,
) -> torch.nn.Module:
    """Shard `model` (float32 master weights, already on `dp.device`) over the group with FSDP2, in place.

    bf16 (default: on CUDA): parameters are all-gathered and computed in bf16, gradients reduced
    in float32. Build the optimizer AFTER this call: sharding replaces the parameters by DTensors.
    The single process gets its model back unchanged (checkpointing still applied). Every unit,
    the root included, reshards after each forward: a unit left gathered by the no-grad log-prob
    recompute got wrong gradients in the equivalence test (grad norm 0.91 instead of 1.36).
    """
    if activation_checkpointing:
        enable_activation_checkpointing(model)
    if not dp.enabled:
        return model
    from torch.distributed.device_mesh import init_device_mesh
    from torch.distributed.fsdp import FSDPModule, MixedPrecisionPolicy, fully_shard

    bf16 = dp.device.type == "cuda" if bf16 is None else bf16
    mesh = init_device_mesh(dp.device.type, (dp.world_size,))
    mp = MixedPrecisionPolicy(param_dtype=torch.bfloat16, reduce_dtype=torch.float32) if bf16 else MixedPrecisionPolicy()
    for layer in decoder_layers(model):
        fully_shard(layer, mesh=mesh, mp_policy=mp, reshard_after_forward=True)
    fully_shard(model, mesh=mesh, mp_policy=mp, reshard_after_forward=True)  # the root too (its default keeps them)
    # Each rank's loss is already divided by the step's global token count: the gradients must be
    # summed over ranks, not averaged (FSDP's default divides by the world size). Both setters act
    # on one FSDP unit only, hence the loop; plain SUM reductions also work on gloo (no PREMUL_SUM).
    for module in model.modules():
        if isinstance(module, FSDPModule):
            module.set_gradient_divide_factor(1.0)
            module.set_force_sum_reduction_for_comms(True)
    return model


def micro_batch_plan(rows: Sequence[Sequence[int]], micro_batch_rows: int, dp: DataParallel | None) -> list[list[Sequence[int]]]:
    """Rows grouped into micro-batches, padded with empty ones to the group's largest count.

    FSDP all-gathers in every forward and reduce-scatters in every backward: all ranks must run
    the same number of passes, so a rank with less work runs `idle_pass` for the missing ones.
    """
    chunks = [list(rows[i : i + micro_batch_rows]) for i in range(0, len(rows), micro_batch_rows)]
    if dp is None or not dp.enabled:
        return chunks
    n = int(dp.max([len(chunks)])[0])
    return chunks + [[] for _ in range(n - len(chunks))]


def idle_pass(model: torch.nn.Module, *, backward: bool, pad_id: int = 0) -> None:
    """A forward (and backward) on a 2-token dummy whose loss is exactly 0: it adds nothing to any gradient."""
    from swe_rl.precision import autocast
    from swe_rl.training.logprobs import packed_token_logprobs
    from swe_rl.training.packing import collate

    device = next(model.parameters()).device
    dummy = SimpleNamespace(input_ids=[pad_id, pad_id], loss_mask=[0, 0])
    batch = collate([dummy], [[0]], pad_id=pad_id).to(device)
    with autocast(device), (contextlib.nullcontext() if backward else torch.no_grad()):
        lp = packed_token_logprobs(model, batch)
    if backward:
        (lp.sum() * 0.0).backward()


def to_full(t: torch.Tensor) -> torch.Tensor:
    """A DTensor's full value (a collective: every rank must call it); a plain tensor as is."""
    return t.full_tensor() if hasattr(t, "full_tensor") else t


def iter_full_params(model: torch.nn.Module) -> Iterator[tuple[str, torch.Tensor]]:
    """(name, full tensor) for every state-dict entry, one at a time: for streaming weights to a sampler
    without holding a second full copy. Every rank must consume the whole iterator (collectives)."""
    for name, t in model.state_dict().items():
        yield name, to_full(t)


def full_state_dict(model: torch.nn.Module, dp: DataParallel, *, cpu: bool = True) -> dict[str, torch.Tensor] | None:
    """The unsharded state dict on rank 0 (None on the other ranks); every rank must call it."""
    if not dp.enabled:
        sd = model.state_dict()
        return {k: v.detach().cpu() for k, v in sd.items()} if cpu else sd
    from torch.distributed.checkpoint.state_dict import StateDictOptions, get_model_state_dict

    sd = get_model_state_dict(model, options=StateDictOptions(full_state_dict=True, cpu_offload=cpu))
    return {k: v for k, v in sd.items() if isinstance(v, torch.Tensor)} if dp.is_main else None


def save_full_model(model: torch.nn.Module, dp: DataParallel, out: str | Path, tokenizer: Any = None) -> Path | None:
    """Gather the weights and write a Hugging Face directory from rank 0 (vLLM and HFPolicy load it)."""
    sd = full_state_dict(model, dp)
    out = Path(out)

    def write() -> Path:
        model.save_pretrained(out, state_dict=sd)  # type: ignore[operator]
        if tokenizer is not None:
            tokenizer.save_pretrained(out)
        return out

    return dp.on_main(write)


def clip_grad_norm(params: Sequence[torch.Tensor], max_norm: float, dp: DataParallel | None = None) -> float:
    """Scale the gradients so their global L2 norm is at most `max_norm` (0 = no clipping); returns the norm.

    Squares are summed in float64, per local shard, then over ranks: the same number (to ~1e-15) in
    one process and under FSDP. torch's float32 norm of a 49152 x 64 embedding gradient is already
    off by ~5e-5 relative on CPU, and differently for a sharded one.
    """
    grads = [p.grad for p in params if p.grad is not None]
    local = [g.to_local() if hasattr(g, "to_local") else g for g in grads]
    sq = float(sum(torch.linalg.vector_norm(g, dtype=torch.float64) ** 2 for g in local)) if local else 0.0
    if dp is not None and dp.enabled:
        sq = dp.sum([sq])[0]
    norm = sq**0.5
    if max_norm > 0 and norm > max_norm:
        coef = max_norm / (norm + 1e-6)  # torch's clip_grad_norm_ convention
        for g in grads:
            g.mul_(coef)
    return norm
