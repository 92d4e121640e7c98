"""Runs the model for the continuous engine: prefill, the decode step, its CUDA graphs.

Every row's state lives on the device in buffers indexed by row (its next input
token, its position, how many tokens it has, its sampling settings, whether it
is decoding), so a decode step needs nothing from the host: it reads those
buffers, writes each row's keys and values into its slot, chooses the next tokens
(sampling.py) and advances the buffers in place. The host only launches it and,
between steps, starts, moves or stops rows with a few small device writes.

On CUDA the step is captured once per step shape during start-up and replayed
(step_graphs.py): with the Triton attention kernel a shape is a rows bucket (x
greedy or sampling: a step whose rows are all greedy pays no vocabulary sort);
with SDPA also an attention-length bucket. Rows are padded up to the bucket;
padding rows are inactive and write only the scratch position. The layers' dense
parts may be compiled inside those graphs (step_kernels.py).

Results reach the host through `TokenRead`: one non-blocking copy of the launch's
tokens into pinned memory plus a marker after it, waited on when the engine reads
them (one step later for a decode step), so the GPU already runs the next step
while the host streams and checks stops. Every copy and wait goes through
`self.io` (transfers.py), whose pinned buffers are reused only once the device is
done with them.
"""
from __future__ import annotations

import logging

import torch

from . import kv_slots, sampling, step_kernels, transfers
from .decoder import SlotDecoder
from .grammar import bitmask_words
from .kv_slots import KVSlots
from .sampling import RowParams
from .step_graphs import StepGraphs, check_same

log = logging.getLogger(__name__)
# Rows buckets the decode step is captured for (up to the number of slots, which is
# always one too). With SDPA a padding row reads a whole slot in attention, so
# buckets are dense: every count to 8, then steps of at most a quarter, which keeps
# a step's reads within ~1.25x of what its rows hold (llava_model_attention_read_ratio).
# With the Triton kernel a padding row reads nothing but still costs its share of
# the dense work, so the same buckets serve.
ROW_BUCKETS = (1, 2, 3, 4, 5, 6, 7, 8, 10, 12, 14, 16, 20, 24, 28, 32, 40, 48, 56, 64, 80, 96, 112, 128, 160, 192,
               224, 256)
_READ_BUFFERS = 8     # pinned host buffers in rotation (the engine keeps at most 3 reads pending)


class TokenRead:
    """Tokens of one launch on their way to the host; `jobs[i]` owns `tokens()[i]`.
    The copy lands in pinned memory some time after it is queued: `tokens()` waits
    for the marker recorded after it first (transfers.py)."""

    def __init__(self, io, source: torch.Tensor, jobs: list, ring: transfers.HostRing, start=None,
                 decode: bool = True):
        self.jobs, self.decode = jobs, decode
        self._io, self._start = io, start
        index, buffer = ring.take()
        self._host = buffer[:len(jobs)]
        io.to_host(source[:len(jobs)], self._host)
        self._ready = io.mark(timing=start is not None)
        ring.copied(index, self._ready)

    def tokens(self) -> list[int]:
        self._io.wait(self._ready)
        return self._host.tolist()

    @property
    def seconds(self) -> float:
        """Device time from `start` to the copy (CUDA events), or wall time on the CPU."""
        return self._ready.seconds_since(self._start) if self._start is not None else 0.0


class Runner:
    def __init__(self, model, length: int, eos_ids: list[int], pad_rows: bool | None = None):
        self.model, self.length = model, length
        self.device = model.device
        self.cuda = self.device.type == "cuda"
        self.io = transfers.for_device(self.device)  # every host-device copy and wait (tests swap in a double)
        self.decoder = SlotDecoder(model, length)
        self.eos = torch.tensor(eos_ids, dtype=torch.int64, device=self.device)
        # Pad steps up to a rows bucket: needed for graphs; tests turn it on elsewhere.
        self.pad_rows = self.cuda if pad_rows is None else pad_rows
        self.attention = step_kernels.SDPA
        self.parts = step_kernels.LayerParts(compiled=False)
        self.compile_backend = "inductor"  # tests compile on the CPU with a lighter one
        self.graphs = StepGraphs()
        self.kv: KVSlots | None = None
        self.rows = 0

    # ------------------------------------------------------------ memory

    def slot_bytes(self) -> int:
        return kv_slots.slot_bytes(self.model.config.get_text_config(), self.model.dtype, self.length)

    def allocate(self, rows: int) -> None:
        text = self.model.config.get_text_config()
        self.kv = None  # free the old cache first: two whole caches may not fit at once
        self.kv = KVSlots(text.num_hidden_layers, rows, self.decoder.kv_heads, self.decoder.head_dim, self.length,
                          self.model.dtype, self.device)
        self.rows = rows
        self.tokens = torch.zeros(rows, dtype=torch.int64, device=self.device)
        self.positions = torch.full((rows,), self.kv.scratch, dtype=torch.int64, device=self.device)
        self.generated = torch.zeros(rows, dtype=torch.int64, device=self.device)
        self.active = torch.zeros(rows, dtype=torch.bool, device=self.device)
        self.params = RowParams.empty(rows, self.device)
        # Each row's allowed next tokens, one bit per vocabulary id (all set: unconstrained).
        self.bitmask = torch.full((rows, bitmask_words(self.decoder.lm_head.out_features)), -1, dtype=torch.int32,
                                  device=self.device)
        self._reads = transfers.HostRing(self.io, _READ_BUFFERS, rows, torch.int64)
        # Masks are staged here for their copy to the device; a prefill sets its row's
        # mask twice, and each decode step every constrained row's.
        self._masks = transfers.HostRing(self.io, 2 * rows + 2, self.bitmask.shape[1], torch.int32)

    def prefill_peak_bytes(self, prompt_tokens: int, images: int, tiles: int, image_size: int) -> int:
        """Activation memory the largest prefill needs beyond what is allocated now
        (CUDA): the vision tower over `images` x `tiles` tiles and `prompt_tokens`
        through the decoder in one pass, into a one-row slot."""
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats(self.device)
        before = torch.cuda.memory_allocated(self.device)
        self.allocate(1)
        vision = self.model.model
        pixels = torch.zeros(images * tiles, 3, image_size, image_size, dtype=self.model.dtype, device=self.device)
        vision.vision_tower(pixels, output_hidden_states=True)
        del pixels
        hidden = torch.zeros(1, prompt_tokens, self.model.config.get_text_config().hidden_size,
                             dtype=self.model.dtype, device=self.device)
        positions = torch.arange(prompt_tokens, device=self.device).unsqueeze(0)
        self.decoder.logits(self.decoder.forward(hidden, positions, self.kv, 0, prompt_tokens, causal_from_zero=True))
        torch.cuda.synchronize(self.device)
        peak = torch.cuda.max_memory_allocated(self.device) - before - self.kv.nbytes
        self.kv = None
        torch.cuda.empty_cache()
        return max(0, peak)

    # ------------------------------------------------------------ rows

    def begin_row(self, row: int, params, seed: int) -> None:
        """A job takes `row`: its sampling settings; it does not decode until `activate`."""
        self.params.set_row(row, params, seed)
        self.deactivate(row)
        self.generated[row] = 0
        self.bitmask[row] = -1

    def set_mask(self, row: int, constraint) -> None:
        """The tokens `row`'s grammar allows next, for the next step that decodes it."""
        index, staged = self._masks.take()
        constraint.fill(staged)
        self.io.to_device(self.bitmask[row], staged)
        self._masks.copied(index, self.io.mark())

    def activate(self, row: int, position: int) -> None:
        """The row's prompt is in its slot and its first token in `tokens`: decode from `position`."""
        self.positions[row] = position
        self.generated[row] = 1
        self.active[row] = True

    def deactivate(self, row: int) -> None:
        self.positions[row] = self.kv.scratch
        self.active[row] = False

    def move(self, src: int, dst: int, kv_tokens: int) -> None:
        """Row `src` continues in row `dst`: its slot's live positions and its state."""
        self.kv.move(src, dst, kv_tokens)
        for buffer in (self.tokens, self.positions, self.generated, self.active, self.bitmask):
            buffer[dst] = buffer[src]
        self.params.copy_row(src, dst)
        self.deactivate(src)

    def read(self, rows: slice, jobs: list, start=None, decode: bool = True) -> TokenRead:
        """The tokens of rows `rows` on their way to the host; `start` (a marker from
        before the launch) times it."""
        return TokenRead(self.io, self.tokens[rows], jobs, self._reads, start, decode)

    # ------------------------------------------------------------ prefill

    def embeddings(self, prepared) -> torch.Tensor:
        return self.decoder.prompt_embeddings(prepared)

    def prefill(self, row: int, embeds: torch.Tensor, start: int, end: int, last: bool,
                constrained: bool = False) -> None:
        """Write prompt positions [start, end) into `row`'s slot; after the last chunk
        choose the row's first token into `tokens[row]` (within its grammar's mask if
        `constrained`: set it first with `set_mask`)."""
        positions = torch.arange(start, end, device=self.device).unsqueeze(0)
        hidden = self.decoder.forward(embeds[:, start:end], positions, self.kv, row, end, causal_from_zero=start == 0)
        if last:
            logits = self.decoder.logits(hidden)
            bitmask = self.bitmask[row:row + 1] if constrained else None
            self.tokens[row] = sampling.choose(logits, self.generated[row:row + 1], self.params.rows(row + 1, row),
                                               self.eos, bitmask=bitmask)[0]

    # ------------------------------------------------------------ decode

    def prepare_step(self, attention: str = step_kernels.AUTO, compiled: bool = False, on_progress=None) -> None:
        """Choose the attention and the layer parts (step_kernels.py); when compiled,
        compile now, one step per rows bucket with every row inactive, and fall back
        to the plain parts if that fails. Call after `allocate`."""
        self.attention = step_kernels.choose_attention(attention, self.decoder, self.device)
        self.parts = step_kernels.LayerParts(compiled, self.compile_backend)
        if not compiled:
            return
        if on_progress:
            on_progress("compiling the decode step")
        try:
            for rows in sorted({rows for rows, _, _ in self.shapes()}, reverse=True):
                self.step(rows, self.length)
        except Exception as exc:  # compiling is an optimisation: never a reason not to serve
            self.parts.give_up(exc)
        finally:
            self._reset_rows()

    def padded(self, rows: int) -> int:
        if not self.pad_rows:
            return rows
        return next((b for b in ROW_BUCKETS if b >= rows and b <= self.rows), self.rows)

    def attended(self, longest: int) -> int:
        """Positions a step reads per row: the Triton kernel takes each row's own
        length; SDPA reads up to the longest row's length bucket."""
        if self.attention == step_kernels.TRITON:
            return self.length
        return kv_slots.attention_length(longest, self.length)

    def decode(self, rows: int, longest: int, sampled: bool = True, constrained: bool = True) -> int | None:
        """Launch one decode step for rows [0, rows) whose longest will hold `longest`
        positions after it. Returns the KV positions its attention reads per layer
        (None: exactly those its rows hold, the Triton kernel). `sampled`
        False (every row greedy) runs the step without the sampling sort; `constrained`
        False (no row has a grammar) lets an uncaptured step skip the masks."""
        shape = (self.padded(rows), self.attended(longest), sampled)
        graph = self.graphs.get(shape)
        if graph is not None:
            graph.replay()
        else:
            self.step(*shape, constrained=constrained)
        return None if self.attention == step_kernels.TRITON else shape[0] * shape[1]

    def step(self, rows: int, attend: int, sampled: bool = True, constrained: bool = True) -> None:
        """One decode step over rows [0, rows), attention over at most the first
        `attend` positions of each slot. Only device work on preallocated buffers:
        capturable."""
        tokens, positions, generated = self.tokens[:rows], self.positions[:rows], self.generated[:rows]
        hidden = self.decoder.embed(tokens).unsqueeze(1)
        lengths = None
        if self.attention == step_kernels.TRITON:  # a row not decoding (at the scratch position) reads nothing
            lengths = torch.where(positions < self.kv.scratch, positions + 1, 0)
        hidden = self.decoder.decode(hidden, positions, self.kv, attend, lengths, self.parts.project,
                                     self.parts.finish)
        chosen = sampling.choose(self.decoder.logits(hidden), generated, self.params.rows(rows), self.eos, sampled,
                                 self.bitmask[:rows] if constrained else None)
        active = self.active[:rows]
        tokens.copy_(torch.where(active, chosen, tokens))
        advance = active.to(torch.int64)
        positions.add_(advance)
        generated.add_(advance)

    # ------------------------------------------------------------ CUDA graphs

    def shapes(self) -> list[tuple[int, int, bool]]:
        """Every (rows, attention length, sampling) a step can run at, largest first."""
        row_buckets = sorted({self.padded(n) for n in range(1, self.rows + 1)}, reverse=True)
        lengths = sorted({self.attended(n) for n in range(1, self.length + 1)}, reverse=True)
        return [(rows, attend, sampled) for rows in row_buckets for attend in lengths for sampled in (True, False)]

    def capture(self, on_progress=None) -> None:
        """Capture the decode step at every shape; a shape that fails runs uncaptured
        (step_graphs.py). Replays are checked against the eager step at the full
        attention length: every shape with the Triton kernel; with SDPA's length
        buckets one per rows bucket and sampling, as the shorter ones run the same
        kernels (checking all of them would cost minutes of start-up on the 7B)."""
        try:
            self.graphs.capture(self, self.shapes(), on_progress, checked=lambda shape: shape[1] == self.length)
        finally:
            self._reset_rows()

    def record(self, shape: tuple[int, int, bool], pool):
        """Capture the step at `shape` into a CUDA graph sharing `pool` (tests replace this
        on the CPU to run the capture logic without CUDA)."""
        graph = torch.cuda.CUDAGraph()
        with torch.cuda.graph(graph, pool=pool):
            self.step(*shape)
        return graph

    def synchronize(self) -> None:
        self.io.synchronize()

    def check_replay(self, shape: tuple[int, int, bool], graph) -> None:
        """Run one step eagerly and replayed from the same state; the tokens must agree."""
        rows, attend, _ = shape
        self.positions[:rows] = torch.arange(rows, device=self.device) % attend
        self.tokens[:rows] = torch.arange(rows, device=self.device) % self.model.config.get_text_config().vocab_size
        self.generated[:rows] = 1
        self.active[:rows] = True
        saved = [t.clone() for t in (self.tokens, self.positions, self.generated)]
        self.step(*shape)
        eager = self.tokens[:rows].clone()
        for buffer, value in zip((self.tokens, self.positions, self.generated), saved):
            buffer.copy_(value)
        graph.replay()
        check_same(eager, self.tokens[:rows], shape)
        self._reset_rows()

    def _reset_rows(self) -> None:
        self.bitmask.fill_(-1)
        self.active.zero_()
        self.positions.fill_(self.kv.scratch)
        self.generated.zero_()
        self.tokens.zero_()
