"""Model id -> loaded rerank engine. Models load in the background; one failing leaves the others serving."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from service.errors import InvalidRequest, ModelUnavailable
from service.rerank.cross_encoder import load_cross_encoder
from service.rerank.engine import RerankEngine
from service.settings import RerankSettings

log = logging.getLogger("fathom.rerank")


@dataclass(slots=True)
class ModelState:
    """Where one configured model stands: loading, ready (an engine), or failed (a reason)."""

    model_id: str
    task: asyncio.Task[None] | None = None
    engine: RerankEngine | None = None
    error: str | None = None

    @property
    def status(self) -> str:
        if self.engine is not None:
            return "ready"
        return "failed" if self.error is not None else "loading"


class ModelRegistry:
    def __init__(
        self,
        settings: RerankSettings,
        cache_dir: Path,
        batch_observer: Callable[[str], Callable[[int, int], None]] | None = None,
    ) -> None:
        self.settings = settings
        self.cache_dir = cache_dir
        self.batch_observer = batch_observer
        self.states = {model_id: ModelState(model_id) for model_id in settings.enabled_models()}

    @property
    def default_model(self) -> str:
        return self.settings.default_model

    def start_loading(self) -> None:
        """Begin loading every configured model, in parallel with serving."""
        for state in self.states.values():
            state.task = asyncio.get_running_loop().create_task(
                self._load(state), name=f"load {state.model_id}"
            )

    async def _load(self, state: ModelState) -> None:
        config = self.settings.models[state.model_id]
        try:
            encoder = await asyncio.to_thread(
                load_cross_encoder,
                state.model_id,
                config.path,
                cache_dir=self.cache_dir,
                max_length=self.settings.max_length,
                threads=self.settings.threads,
                allow_spinning=self.settings.allow_spinning,
                quantize=config.quantize,
            )
        except ModelUnavailable as exc:
            state.error = str(exc)
            log.error("rerank model %s is not available: %s", state.model_id, exc)
            return
        state.engine = RerankEngine(
            encoder,
            batch_size=self.settings.batch_size,
            max_wait_ms=self.settings.max_wait_ms,
            max_queue_pairs=self.settings.max_queue_pairs,
            cycle_ms=self.settings.cycle_ms,
        )
        # One run before serving: ONNX Runtime's first run is slow, and a search budget needs the
        # cost per token measured before the first request asks for it.
        await asyncio.to_thread(state.engine.calibrate)
        if self.batch_observer is not None:
            state.engine.stats.observers.append(self.batch_observer(state.model_id))
        state.engine.start()
        log.info("rerank model %s loaded", state.model_id)

    async def engine(self, model_id: str | None) -> RerankEngine:
        """The engine for a model id, waiting for it if it is still loading."""
        model_id = model_id or self.default_model
        state = self.states.get(model_id)
        if state is None:
            available = ", ".join(sorted(self.states)) or "none"
            raise InvalidRequest(f"unknown model {model_id!r}; available models: {available}")
        if state.engine is None and state.task is not None:
            await asyncio.shield(state.task)
        if state.engine is None:
            reason = state.error or "it has not started loading"
            raise ModelUnavailable(f"model {model_id!r} is not available: {reason}")
        return state.engine

    async def wait_loaded(self) -> None:
        """Until every model has loaded or failed."""
        tasks = [state.task for state in self.states.values() if state.task is not None]
        await asyncio.gather(*tasks)

    async def close(self) -> None:
        for state in self.states.values():
            if state.task is not None and not state.task.done():
                state.task.cancel()
            if state.engine is not None:
                await state.engine.stop()
